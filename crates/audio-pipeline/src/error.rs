//! Errors of the platform API.

use crate::config::ConfigError;
use crate::frame::Pcm16K;
use crate::packet::EncodedPacket;
use crate::stats::PlatformHealth;

/// The pipeline threads could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `threads` or `max_calls_per_thread` was zero.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The operating system refused a thread.
    #[error("could not spawn pipeline thread {index}")]
    Spawn {
        /// Thread index.
        index: usize,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A call could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The platform is overloaded; existing calls keep their deadlines.
    #[error("platform overloaded: refusing new calls until the load drops")]
    Overloaded,
    /// One more call would take the least loaded thread past the admission budget
    /// ([`crate::HealthThresholds::admission_busy_fraction`] of the tick), at the
    /// measured cost per call.
    #[error(
        "platform at capacity: {calls} calls at about {call_cost_us} us each per 20 ms tick leave no thread room for one more within its {budget_us} us budget; refusing new calls until some end"
    )]
    AtCapacity {
        /// Calls on the platform, including ones queued for their thread.
        calls: usize,
        /// Estimated cost of one call per tick, microseconds.
        call_cost_us: u64,
        /// Work per tick one thread may be given, microseconds.
        budget_us: u64,
    },
    /// Every thread holds `max_calls_per_thread` calls.
    #[error("all {threads} pipeline threads are full ({per_thread} calls each)")]
    Full {
        /// Threads.
        threads: usize,
        /// Calls per thread.
        per_thread: usize,
    },
    /// The call's configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// libopus refused to create or configure a codec.
    #[error("Opus {what} failed")]
    Codec {
        /// The step that failed.
        what: &'static str,
        /// libopus's error.
        #[source]
        source: opus::Error,
    },
    /// The platform has shut down.
    #[error("the pipeline has shut down")]
    ShutDown,
}

impl AdmissionError {
    /// The health at which admission was refused, when that is why.
    pub fn health(&self) -> Option<PlatformHealth> {
        match self {
            AdmissionError::Overloaded | AdmissionError::AtCapacity { .. } => {
                Some(PlatformHealth::Overloaded)
            }
            _ => None,
        }
    }
}

/// A frame the bot sent could not be queued; the frame is handed back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The send queue is full (the bot is sending faster than 20 ms per frame).
    #[error("send queue full")]
    Full(Pcm16K),
    /// The call was removed.
    #[error("call removed")]
    Removed(Pcm16K),
}

impl SendError {
    /// The frame that was not sent.
    pub fn into_frame(self) -> Pcm16K {
        match self {
            SendError::Full(f) | SendError::Removed(f) => f,
        }
    }
}

impl std::fmt::Debug for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Full(_) => f.write_str("SendError::Full(..)"),
            SendError::Removed(_) => f.write_str("SendError::Removed(..)"),
        }
    }
}

/// An inbound packet could not be queued; the packet is handed back.
#[derive(Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushPacketError {
    /// The inbound queue is full (a flood, or a stalled pipeline); counted as dropped.
    #[error("inbound packet queue full")]
    Full(EncodedPacket),
    /// The call was removed.
    #[error("call removed")]
    Removed(EncodedPacket),
}

impl PushPacketError {
    /// The packet that was not queued.
    pub fn into_packet(self) -> EncodedPacket {
        match self {
            PushPacketError::Full(p) | PushPacketError::Removed(p) => p,
        }
    }
}

impl std::fmt::Debug for PushPacketError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushPacketError::Full(p) => write!(f, "PushPacketError::Full(seq {})", p.meta.seq),
            PushPacketError::Removed(p) => {
                write!(f, "PushPacketError::Removed(seq {})", p.meta.seq)
            }
        }
    }
}
