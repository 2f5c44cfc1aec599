//! The media session and its serialized blob.
//!
//! A bot creates one [`MediaSession`] per call from [`AudioSocketSettings`] and the media
//! platform's [`MediaPlatformSettings`]. The session owns fresh render/source context ids and
//! a random, unguessable [`MediaSessionId`]; its [`Blob`] is what the calling service needs
//! to connect media to the bot, embedded as an escaped JSON string in an
//! `appHostedMediaConfig`.
//!
//! ```
//! use media_session::{AudioSocketSettings, Blob, MediaPlatformSettings, MediaSession, StreamDirection};
//!
//! let platform = MediaPlatformSettings::new("http://127.0.0.1:8445/MediaProcessor")?;
//! let session = MediaSession::new(&platform, &AudioSocketSettings::default(), None)?;
//! let json = session.blob().to_json();
//! assert!(json.starts_with("{\"mpUri\":\"http://127.0.0.1:8445/MediaProcessor\""));
//! let back = Blob::parse(&json)?;
//! assert_eq!(back.mp_media_session_id, *session.id());
//! assert_eq!(session.audio_socket().direction, StreamDirection::SendRecv);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod blob;
mod error;
mod ids;
mod session;

pub use blob::{Blob, MAX_BLOB_BYTES};
pub use error::{BlobError, JsonType, SessionError};
pub use ids::{ContextId, MediaSessionId};
pub use session::{
    AudioFormat, AudioSocketSettings, MAX_UNMIXED_STREAMS, MediaPlatformSettings, MediaSession,
    MpUri, StreamDirection,
};
