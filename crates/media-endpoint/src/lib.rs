//! WebRTC media endpoint at a media session's `mpUri`, bridged to the audio pipeline.
//!
//! The calling service opens media WHIP-style: `POST {mpUri}/sessions/{mpMediaSessionId}`
//! with an SDP offer (`Content-Type: application/sdp`, ICE gathering complete). The endpoint
//! answers `201 Created` with the SDP answer and a `Location` for the leg; `DELETE` on that
//! location ends it. Unknown or finished session: 404; a second leg: 409; bad SDP: 400;
//! another content type: 415.
//!
//! Each leg is a WebRTC peer connection (ICE host candidates on the configured addresses
//! only, no mDNS, DTLS-SRTP, Opus 48000/2 with in-band FEC, `telephone-event`, audio level
//! header extensions). One task per leg moves RTP payloads into the call's wait-free inbound
//! queue and encoded packets from its outbound queue onto the wire; it runs no DSP.
//!
//! ```no_run
//! use media_endpoint::{EndpointConfig, MediaEndpoint, QueueLink, SessionHooks};
//! use media_session::{ContextId, MediaSessionId};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse()?)).await?;
//! let (mut far, link) = QueueLink::new(64);
//! let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
//! let session = MediaSessionId::random();
//! let handle = endpoint.register(session, SessionHooks::new(ContextId::random(), link, events_tx))?;
//! println!("POST offers to {}/sessions/{}", endpoint.mp_uri(), session.expose());
//! while let Some(event) = events.recv().await {
//!     println!("{event:?}");
//!     while let Ok(packet) = far.received.pop() {
//!         let _ = far.to_send.push(media_endpoint::OutboundAudio::new(packet.payload, None));
//!     }
//! }
//! # drop(handle);
//! # Ok(())
//! # }
//! ```

mod bridge;
mod config;
mod dtmf;
mod error;
mod events;
mod leg;
mod quality;
mod registry;
mod sdp;
mod server;
pub mod service;
mod tls;

pub use bridge::{
    InboundRtp, NetworkPort, OutboundAudio, PushError, QueueLink, QueuePort, ReceivedPacket,
    SharedStatus,
};
pub use config::{EndpointConfig, TlsConfig};
pub use dtmf::Tone;
pub use error::{BindError, RegisterError, ToneError};
pub use events::{EndReason, EndpointEvent, FailureReason, SendStatus};
pub use quality::QualityData;
pub use registry::{LegId, SessionHandle, SessionHooks};
pub use sdp::OfferError;
pub use server::MediaEndpoint;
