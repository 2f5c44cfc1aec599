//! botmedia: an app-hosted real-time media engine for calling bots.
//!
//! A bot is one [`Bot`]: the Graph calling client, its notification webhook and the media
//! platform. [`Bot::call`] places a call (to a user, a group, a meeting, a phone number: see
//! [`CallRequest`]) and [`Bot::next_incoming`] hands over calls that ring the bot; both give
//! a [`BotCall`] that owns the Graph call and its audio, with one stream of 20 ms [`Pcm16K`]
//! frames and events. In meetings, [`BotSettings::with_unmixed_meeting_audio`] asks for
//! the dominant speakers' voices apart beside the mix, and [`BotCall::unmixed`] names the
//! participant of each; [`recording::SpeakerRecorder`] writes one WAV per participant and
//! who spoke when (`examples/recorder.rs` uses it).
//!
//! ```no_run
//! use botmedia::{Bot, BotSettings, CallItem, CallRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The emulator's built-in app; BotSettings::from_env() or ::new() for the real service.
//! let bot = Bot::start(BotSettings::emulator("http://127.0.0.1:8440")).await?;
//! let mut call = bot.call(CallRequest::peer_to_peer("112f7296-5fa4-42ca-bae8-6a692b15d4b8", None)).await?;
//! while let Some(item) = call.next().await {
//!     match item {
//!         CallItem::Frame(frame) => drop(call.send(frame.pcm)), // an echo
//!         other => println!("{other:?}"),
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The layers underneath are public too: [`MediaPlatform`] and [`MediaSession`] for media
//! without the Graph client (a bot whose signalling is elsewhere), [`graph`] for the Graph
//! model, client, tokens and webhook, [`session`] for blobs, [`pipeline`] for the audio
//! pipeline's configuration, and [`endpoint`] for the media endpoint's settings.

mod bot;
mod bot_session;
mod error;
pub mod metrics;
mod platform;
pub mod recording;
mod socket;

pub use audio_pipeline::{
    CallLatency, CallObserver, CallStats, Csrcs, FrameSource, LatencyHistogram, Pcm16K,
    PlatformHealth, ReceivedFrame, SendError, Ticks, UnmixedFrame, UnmixedFrames,
};
pub use bot::{
    Bot, BotCall, BotError, BotSettings, CallItem, CallSummary, EnvError, INSTANCE_PLACEHOLDER,
    IncomingBotCall, Speaker, SpeakerFrame, SpeakerFrames, Speakers, emulator_app,
};
pub use bot_session::MediaSession;
pub use error::{PlatformError, SessionError};
pub use media_endpoint::{EndReason, FailureReason, QualityData, SendStatus, Tone, ToneError};
pub use platform::{MediaPlatform, MediaPlatformSettings, SessionMediaSettings};
pub use signalling::calls::CallEvent;
pub use signalling::client::RejectReason;
pub use signalling::model::CallState;
pub use signalling::token::SecretString;
pub use signalling::{CallId, CallRequest, Credentials};
pub use socket::{AudioSocket, AudioSocketEvent, AudioSocketItem, Quality};

/// The audio pipeline: configuration, frames, counters, resampling, mixing, WAV files.
pub mod pipeline {
    pub use audio_pipeline::*;
}

/// Media session descriptions: settings, ids, the blob.
pub mod session {
    pub use media_session::*;
}

/// The media endpoint: its settings (TLS certificate), events and errors.
pub mod endpoint {
    pub use media_endpoint::*;
}

/// Microsoft Graph calling: the call model, request builders and validation, the REST
/// client, tokens, the notification webhook and per-call state.
pub mod graph {
    pub use signalling::*;
}

/// WAV files: read prompts, write recordings.
pub mod wav {
    pub use audio_pipeline::wav::*;
}

/// The local calling service (Graph API, tokens, notifications, media, dashboard), for a
/// bot's own tests and demos. Feature `emulator`.
#[cfg(feature = "emulator")]
pub mod emulator {
    pub use emulator::*;
}
