//! botmedia: an app-hosted real-time media engine for calling bots.
//!
//! A bot starts one [`MediaPlatform`] (pipeline threads and the WebRTC endpoint at
//! `mpUri`), creates a [`MediaSession`] per call, hands the session's blob to the calling
//! service in `appHostedMediaConfig`, and exchanges 20 ms [`Pcm16K`] frames through the
//! session's [`AudioSocket`].
//!
//! ```no_run
//! use botmedia::{AudioSocketItem, MediaPlatform, MediaPlatformSettings};
//! use botmedia::session::AudioSocketSettings;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let platform = MediaPlatform::start(MediaPlatformSettings::default()).await?;
//! let mut session = platform.create_session(AudioSocketSettings::default(), None)?;
//! println!("blob: {}", session.blob().to_json());
//! let socket = session.audio_socket();
//! while let Some(item) = socket.next().await {
//!     match item {
//!         // An echo: send back what was heard.
//!         AudioSocketItem::Frame(frame) => drop(socket.send(frame.pcm)),
//!         AudioSocketItem::Event(event) => println!("{event:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod bot_session;
pub mod demo;
mod error;
pub mod load;
mod platform;
mod socket;
mod tone;

pub use audio_pipeline::{
    CallLatency, CallStats, FrameSource, LatencyHistogram, Pcm16K, PlatformHealth, ReceivedFrame,
    SendError, Ticks,
};
pub use bot_session::MediaSession;
pub use error::{PlatformError, SessionError};
pub use media_endpoint::{EndReason, FailureReason, QualityData, SendStatus, Tone, ToneError};
pub use platform::{MediaPlatform, MediaPlatformSettings, SessionMediaSettings};
pub use socket::{AudioSocket, AudioSocketEvent, AudioSocketItem, Quality};

/// Pipeline building blocks: configuration, resampling, mixing.
pub mod pipeline {
    pub use audio_pipeline::{
        CallConfig, Capacity, HealthThresholds, JitterConfig, OpusConfig, PipelineConfig, Realtime,
        mix, resample,
    };
}

/// Media session descriptions: settings, ids, the blob.
pub mod session {
    pub use media_session::{
        AudioFormat, AudioSocketSettings, Blob, BlobError, ContextId, MediaSessionId,
        StreamDirection,
    };
}
