//! 20 ms audio frames on dedicated real-time threads: wait-free queues, jitter buffer,
//! Opus, resampling and mixing. No async and no network in this crate.
//!
//! A [`Pipeline`] runs a few threads that tick every call each 20 ms on absolute
//! deadlines. [`Pipeline::add_call`] allocates everything a call needs and returns its
//! three handles: the [`CallHandle`] that owns it, the [`NetworkHalf`] (encoded packets in
//! and out) and the [`BotHalf`] (PCM frames in and out). After that nothing on the
//! pipeline threads allocates, locks or logs.
//!
//! Beside the mix, a call can receive up to [`MAX_UNMIXED_STREAMS`] unmixed speaker
//! streams ([`CallConfig::unmixed_streams`]): the network side tags each packet with its
//! stream ([`RtpMeta::stream`]), and every [`ReceivedFrame`] carries the speakers' own
//! audio for the same tick in [`ReceivedFrame::unmixed`], each tagged with its source id.
//!
//! ```
//! use audio_pipeline::{CallConfig, Pcm16K, Pipeline, PipelineConfig, Realtime};
//!
//! let pipeline = Pipeline::start(PipelineConfig {
//!     threads: 1,
//!     realtime: Realtime::Off,
//!     ..PipelineConfig::default()
//! })?;
//! let mut call = pipeline.add_call(CallConfig::default())?;
//! call.bot.try_send(Pcm16K::SILENCE).map_err(|e| e.to_string())?;
//! // Within a tick or two the pacer has encoded it for the network side.
//! let deadline = audio_pipeline::now() + audio_pipeline::Ticks::from_millis(500);
//! let packet = loop {
//!     if let Some(p) = call.network.pop_packet() { break p; }
//!     assert!(audio_pipeline::now() < deadline, "no packet");
//!     std::thread::sleep(std::time::Duration::from_millis(5));
//! };
//! assert!(packet.meta.marker, "the first packet starts a talkspurt");
//! drop(call.handle); // removes the call
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod mix;
pub mod resample;
pub mod wav;

mod call;
mod codec;
mod config;
mod error;
mod frame;
mod jitter;
mod latency;
#[cfg(target_arch = "x86_64")]
mod opus_nsq;
#[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
mod opus_warped;
mod pacer;
mod packet;
mod pipeline;
mod receive;
mod rt;
mod send;
mod stats;
mod time;
mod tsm;
mod unmixed;

pub use call::{BotHalf, Call, CallHandle, CallId, CallObserver, ManualCall, NetworkHalf};
pub use config::{
    CallConfig, ConfigError, FrameCallback, HealthThresholds, JitterConfig, MAX_JITTER_DELAY,
    OpusConfig, PipelineConfig, Realtime, ThreadStartHook,
};
pub use error::{AdmissionError, PushPacketError, SendError, StartError};
pub use frame::{
    BYTES_PER_FRAME, FrameError, FrameSource, Pcm16K, ReceivedFrame, SAMPLE_RATE_HZ,
    SAMPLES_PER_FRAME,
};
pub use jitter::{InsertOutcome, JitterBuffer, JitterStats, Playout};
pub use latency::{CallLatency, LatencyBucket, LatencyHistogram};
pub use pacer::{PacedFrame, Pacer, PacerStats};
pub use packet::{
    AUDIO_LEVEL_SILENT, Csrcs, EncodedPacket, MAX_CSRCS, MAX_PAYLOAD, PacketError, RtpMeta,
};
pub use pipeline::Pipeline;
pub use receive::{PulledFrame, Receiver, ReceiverStats};
pub use stats::{CallStats, Capacity, PlatformHealth, ThreadLoad};
pub use time::{FRAME_DURATION, Ticks, now};
pub use unmixed::{MAX_UNMIXED_STREAMS, UnmixedFrame, UnmixedFrames};
