//! WebRTC media endpoint at a media session's `mpUri`, bridged to the audio pipeline.
//!
//! The calling service opens media WHIP-style: `POST {mpUri}/sessions/{mpMediaSessionId}`
//! with an SDP offer (`Content-Type: application/sdp`, ICE gathering complete). The endpoint
//! answers `201 Created` with the SDP answer and a `Location` for the leg; `DELETE` on that
//! location ends it. Unknown or finished session: 404; a second leg: 409; bad SDP: 400;
//! another content type: 415; no free ICE port in the configured range: 503 with
//! `Retry-After: 1`.
//!
//! Each leg is a WebRTC peer connection (ICE host candidates on the configured addresses
//! only, no mDNS, DTLS-SRTP, Opus 48000/2 with in-band FEC, `telephone-event`, audio level
//! header extensions). Legs are sans-IO; a small fixed pool of network pump threads drives
//! them on their sockets (see [`network_stats`]), moving RTP payloads into each call's
//! wait-free inbound queue as they arrive and encoded packets from its outbound queue onto
//! the wire as soon as a pipeline tick queued them; they run no DSP.
//!
//! The endpoint is bridged to the pipeline through a [`NetworkPort`], implemented for
//! [`audio_pipeline::NetworkHalf`] (and by [`QueuePort`], a plain pair of rings for tests):
//!
//! ```no_run
//! use std::time::Duration;
//! use audio_pipeline::{CallConfig, Pipeline, PipelineConfig};
//! use media_endpoint::{EndpointConfig, EndpointEvent, MediaEndpoint, SessionHooks, Tone};
//! use media_session::{ContextId, MediaSessionId};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pipeline = Pipeline::start(PipelineConfig::default())?;
//! // The endpoint turns sending on once connected.
//! let call_config = CallConfig { send_active: false, ..CallConfig::default() };
//! let call = pipeline.add_call(call_config)?;
//!
//! let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:8445".parse()?)).await?;
//! let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
//! let session = MediaSessionId::random();
//! let hooks = SessionHooks::new(ContextId::random(), call.network, events_tx);
//! let handle = endpoint.register(session, hooks)?;
//! // The service now POSTs its offer to {mpUri}/sessions/{mpMediaSessionId}.
//! println!("{}/sessions/{}", endpoint.mp_uri(), session.expose());
//! while let Some(event) = events.recv().await {
//!     match event {
//!         EndpointEvent::ToneReceived(_) => handle.send_tone(Tone::Pound, Duration::from_millis(100))?,
//!         EndpointEvent::StreamFailure(_) | EndpointEvent::LegEnded(_) => break,
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#[doc(hidden)]
pub mod bench_support;
mod bridge;
mod config;
mod dtmf;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzzing;
mod leg;
mod path;
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
pub use config::{EndpointConfig, IceAddress, TlsConfig};
pub use dtmf::Tone;
pub use error::{BindError, RegisterError, ToneError};
pub use events::{EndReason, EndpointEvent, FailureReason, SendStatus};
pub use leg::pump::{NetworkStats, network_stats};
pub use quality::QualityData;
pub use registry::{LegId, SessionHandle, SessionHooks};
pub use sdp::OfferError;
pub use server::MediaEndpoint;
