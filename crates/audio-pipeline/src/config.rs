//! Configuration of the platform and of each call.

use crate::frame::ReceivedFrame;
use crate::time::Ticks;
use std::fmt;
use std::sync::Arc;

/// A setting outside its valid range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Opus bitrate outside 6 000..=510 000 b/s.
    #[error("Opus bitrate {bps} b/s is outside 6000..=510000")]
    Bitrate {
        /// Value given.
        bps: u32,
    },
    /// Opus complexity outside 0..=10.
    #[error("Opus complexity {value} is outside 0..=10")]
    Complexity {
        /// Value given.
        value: u8,
    },
    /// A queue or pool sized zero.
    #[error("{which} must be at least 1")]
    ZeroCapacity {
        /// Which setting.
        which: &'static str,
    },
    /// Jitter buffer bounds out of order or too large.
    #[error(
        "jitter buffer delay bounds min {min_ms} ms / max {max_ms} ms are invalid (need min <= max <= {limit_ms} ms)"
    )]
    JitterBounds {
        /// Minimum delay given.
        min_ms: u64,
        /// Maximum delay given.
        max_ms: u64,
        /// Largest maximum supported.
        limit_ms: u64,
    },
    /// A quantile outside (0, 1].
    #[error("jitter quantile {permille}/1000 is outside 1..=1000")]
    Quantile {
        /// Value given, per mille.
        permille: u16,
    },
    /// RTP clock rate of zero.
    #[error("RTP clock rate must be non-zero")]
    ClockRate,
    /// More unmixed speaker streams than a call can receive.
    #[error("{requested} unmixed streams requested; a call receives at most {max}")]
    UnmixedStreams {
        /// Value given.
        requested: u8,
        /// The maximum, [`crate::MAX_UNMIXED_STREAMS`].
        max: usize,
    },
}

/// Opus encoder settings for a call's outbound direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    /// Target bitrate in bits per second (6 000..=510 000).
    pub bitrate_bps: u32,
    /// Encoder complexity 0..=10 (CPU against quality).
    pub complexity: u8,
    /// In-band forward error correction (LBRR).
    pub inband_fec: bool,
    /// Discontinuous transmission: near-silent frames are not sent.
    pub dtx: bool,
    /// Loss percentage assumed until the first receiver report arrives.
    pub initial_loss_percent: u8,
    /// Follow the receiver's loss reports with the bitrate: as loss rises, in-band FEC
    /// takes a larger share of each packet, so the bitrate rises with it (up to 1.5 x
    /// `bitrate_bps` at 10 % loss and above) to keep the primary encoding's quality; it
    /// returns to `bitrate_bps` when the loss clears. FEC itself always follows the reports.
    pub adapt_bitrate_to_loss: bool,
}

impl Default for OpusConfig {
    /// 64 kb/s, complexity 5, in-band FEC on (5 % loss assumed until reports come), DTX
    /// off, bitrate following reported loss: the least encoder CPU that reaches PESQ-WB
    /// 4.0 clean and 3.6 at 10 % random loss in the codec table (README, "Audio quality").
    /// DTX moves the receiver's delay at every pause, and lower complexities or bitrates
    /// lose more than 0.4 PESQ.
    fn default() -> Self {
        OpusConfig {
            bitrate_bps: 64_000,
            complexity: 5,
            inband_fec: true,
            dtx: false,
            initial_loss_percent: 5,
            adapt_bitrate_to_loss: true,
        }
    }
}

impl OpusConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !(6_000..=510_000).contains(&self.bitrate_bps) {
            return Err(ConfigError::Bitrate {
                bps: self.bitrate_bps,
            });
        }
        if self.complexity > 10 {
            return Err(ConfigError::Complexity {
                value: self.complexity,
            });
        }
        Ok(())
    }
}

/// Largest jitter buffer delay supported (the slot ring is sized for it).
pub const MAX_JITTER_DELAY: Ticks = Ticks::from_millis(1_000);

/// Jitter buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Lowest target delay.
    pub min_delay: Ticks,
    /// Highest target delay (at most [`MAX_JITTER_DELAY`]).
    pub max_delay: Ticks,
    /// Delay the first packet waits for, and the prior of the delay statistics: the
    /// target follows the measured arrival delays within the first second.
    pub initial_delay: Ticks,
    /// Quantile of the observed delay spread the target covers, per mille (950 = 95 %).
    pub quantile_permille: u16,
    /// How fast the target may shrink, per second of media time.
    pub shrink_per_second: Ticks,
    /// RTP clock rate of the stream (48 000 for Opus).
    pub rtp_clock_hz: u32,
    /// A timestamp jump larger than this (with no matching sequence jump) resyncs.
    pub resync_jump: Ticks,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_delay: Ticks::from_millis(20),
            max_delay: Ticks::from_millis(400),
            initial_delay: Ticks::from_millis(40),
            quantile_permille: 950,
            shrink_per_second: Ticks::from_millis(10),
            rtp_clock_hz: 48_000,
            resync_jump: Ticks::from_millis(10_000),
        }
    }
}

impl JitterConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.min_delay > self.max_delay || self.max_delay > MAX_JITTER_DELAY {
            return Err(ConfigError::JitterBounds {
                min_ms: self.min_delay.as_millis(),
                max_ms: self.max_delay.as_millis(),
                limit_ms: MAX_JITTER_DELAY.as_millis(),
            });
        }
        if self.quantile_permille == 0 || self.quantile_permille > 1000 {
            return Err(ConfigError::Quantile {
                permille: self.quantile_permille,
            });
        }
        if self.rtp_clock_hz == 0 {
            return Err(ConfigError::ClockRate);
        }
        Ok(())
    }
}

/// Called on the pipeline thread with each received frame. It must return quickly and
/// must not allocate, lock or block: it runs inside every call's 20 ms deadline.
pub type FrameCallback = Box<dyn FnMut(&ReceivedFrame) + Send + 'static>;

/// One call's settings. Everything the call needs is allocated when it is added. The
/// packets the pipeline produces carry no SSRC, sequence number or payload type: the
/// network side sends them under its own.
pub struct CallConfig {
    /// Encoder settings.
    pub opus: OpusConfig,
    /// Jitter buffer settings.
    pub jitter: JitterConfig,
    /// Capacity of the network-to-pipeline packet queue, per received stream: the queue
    /// holds `inbound_queue_packets * (1 + unmixed_streams)` packets, so speaker streams
    /// do not eat into the mix's room.
    pub inbound_queue_packets: usize,
    /// Capacity of the pipeline-to-network packet queue.
    pub outbound_queue_packets: usize,
    /// Capacity of the bot-to-pipeline frame queue.
    pub send_queue_frames: usize,
    /// Send-side queueing the pipeline lets stand: when the bot's queue has not drained
    /// below this (plus a frame) for half a second, the excess is absorbed within about a
    /// second, by dropping quiet frames and cutting pitch periods out of speech, so a bot
    /// that fell behind does not delay the rest of the call. Zero never absorbs (for a
    /// bot that paces a long prompt into the queue itself).
    pub send_queue_target: Ticks,
    /// Capacity of the pipeline-to-bot received frame queue; 0 disables the queue
    /// (use a callback instead).
    pub receive_queue_frames: usize,
    /// Called with every received frame on the pipeline thread.
    pub on_frame: Option<FrameCallback>,
    /// Whether outbound media is sent from the start; otherwise frames are discarded
    /// until the network side calls [`crate::NetworkHalf::set_send_active`].
    pub send_active: bool,
    /// Unmixed speaker streams received beside the mix, 0 (off) to
    /// [`crate::MAX_UNMIXED_STREAMS`]. Each gets its own receive path (jitter buffer,
    /// decoder, time-scale modification, with the `jitter` settings), allocated with the
    /// call and pulled on the mix's tick; packets name their stream in
    /// [`crate::RtpMeta::stream`] and the frames carry the speakers in
    /// [`ReceivedFrame::unmixed`]. The mix is processed exactly as without them.
    pub unmixed_streams: u8,
}

impl Default for CallConfig {
    /// Opus 64 kb/s, complexity 5, FEC on, DTX off (chosen by measurement:
    /// `scripts/codec_table.sh`); queues of 1 s (50 packets or frames);
    /// a received-frame queue and no callback; sending active; no unmixed streams.
    fn default() -> CallConfig {
        CallConfig {
            opus: OpusConfig::default(),
            jitter: JitterConfig::default(),
            inbound_queue_packets: 64,
            outbound_queue_packets: 50,
            send_queue_frames: 50,
            send_queue_target: Ticks::from_millis(40),
            receive_queue_frames: 50,
            on_frame: None,
            send_active: true,
            unmixed_streams: 0,
        }
    }
}

impl CallConfig {
    /// Sets the received-frame callback.
    pub fn with_frame_callback(
        mut self,
        callback: impl FnMut(&ReceivedFrame) + Send + 'static,
    ) -> CallConfig {
        self.on_frame = Some(Box::new(callback));
        self
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.opus.validate()?;
        self.jitter.validate()?;
        for (which, n) in [
            ("inbound_queue_packets", self.inbound_queue_packets),
            ("outbound_queue_packets", self.outbound_queue_packets),
            ("send_queue_frames", self.send_queue_frames),
        ] {
            if n == 0 {
                return Err(ConfigError::ZeroCapacity { which });
            }
        }
        if usize::from(self.unmixed_streams) > crate::unmixed::MAX_UNMIXED_STREAMS {
            return Err(ConfigError::UnmixedStreams {
                requested: self.unmixed_streams,
                max: crate::unmixed::MAX_UNMIXED_STREAMS,
            });
        }
        Ok(())
    }
}

impl fmt::Debug for CallConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallConfig")
            .field("opus", &self.opus)
            .field("jitter", &self.jitter)
            .field("inbound_queue_packets", &self.inbound_queue_packets)
            .field("outbound_queue_packets", &self.outbound_queue_packets)
            .field("send_queue_frames", &self.send_queue_frames)
            .field("send_queue_target", &self.send_queue_target)
            .field("receive_queue_frames", &self.receive_queue_frames)
            .field("on_frame", &self.on_frame.as_ref().map(|_| "callback"))
            .field("send_active", &self.send_active)
            .field("unmixed_streams", &self.unmixed_streams)
            .finish()
    }
}

/// Whether pipeline threads ask for real-time scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    /// Try SCHED_FIFO at this priority (1..=99) and pin each thread to a core; if the
    /// process may not, warn once and run at normal priority.
    Try {
        /// SCHED_FIFO priority.
        priority: u8,
        /// Pin thread `i` to core `i % cores`.
        pin_cores: bool,
    },
    /// Normal scheduling, no pinning.
    Off,
}

/// Load limits that define [`crate::PlatformHealth`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthThresholds {
    /// Share of the 20 ms tick spent working above which a thread is heavily loaded.
    pub heavy_busy_fraction: f32,
    /// Share of the tick spent working above which a thread is overloaded.
    pub overloaded_busy_fraction: f32,
    /// Tick lateness (wake-up after deadline) above which a thread is heavily loaded.
    pub heavy_lateness: Ticks,
    /// Tick lateness above which a thread is overloaded.
    pub overloaded_lateness: Ticks,
    /// Lateness from which a tick counts as late and its frames are flagged `late`.
    /// Lateness and busy limits are measured against the tick interval (20 ms).
    pub late_tick: Ticks,
    /// Share of the tick that the calls admitted to one thread may be projected to use.
    ///
    /// Admission projects a thread's work as its calls (running and queued, plus the new
    /// one) times the measured cost of one sending call per tick, and refuses the call
    /// when that exceeds this share: calls are refused *before* the running ones start
    /// missing deadlines, rather than after a health window has seen them miss.
    pub admission_busy_fraction: f32,
    /// Cost of one call per tick assumed until a thread has measured one.
    pub assumed_call_cost: Ticks,
}

impl Default for HealthThresholds {
    fn default() -> Self {
        HealthThresholds {
            heavy_busy_fraction: 0.6,
            overloaded_busy_fraction: 0.85,
            heavy_lateness: Ticks::from_millis(4),
            overloaded_lateness: Ticks::from_millis(10),
            late_tick: Ticks::from_millis(5),
            admission_busy_fraction: 0.7,
            assumed_call_cost: Ticks::from_micros(150),
        }
    }
}

/// Called once on each pipeline thread when it starts, before its first tick, with the
/// thread's index (tests use it to mark pipeline threads).
pub type ThreadStartHook = Arc<dyn Fn(usize) + Send + Sync + 'static>;

/// Platform settings.
#[derive(Clone)]
pub struct PipelineConfig {
    /// Number of pipeline threads (at least 1).
    pub threads: usize,
    /// Calls one thread can hold; the per-thread lists are allocated for this many.
    pub max_calls_per_thread: usize,
    /// Scheduling.
    pub realtime: Realtime,
    /// Load limits.
    pub health: HealthThresholds,
    /// Hook run at the start of each pipeline thread.
    pub on_thread_start: Option<ThreadStartHook>,
    /// Real time between two ticks. Media time always advances 20 ms per tick (frame
    /// timestamps and jitter buffer time are media time), so anything but 20 ms runs
    /// calls faster or slower than real time: for tests and load simulation only.
    pub tick_interval: Ticks,
    /// Whether load refuses calls: a measured Overloaded and the projected cost per call
    /// (see [`HealthThresholds::admission_busy_fraction`]). When false, health is still
    /// measured and reported, and only `max_calls_per_thread` limits admission: for a
    /// process whose capacity is set elsewhere (the emulator's calling service).
    pub admit_by_load: bool,
}

impl Default for PipelineConfig {
    /// One thread per core, less one when there are more than two (for the network and
    /// the bot), 256 calls per thread, real-time priority 10 with pinning.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PipelineConfig {
            threads: if cores > 2 { cores - 1 } else { cores },
            max_calls_per_thread: 256,
            realtime: Realtime::Try {
                priority: 10,
                pin_cores: true,
            },
            health: HealthThresholds::default(),
            on_thread_start: None,
            tick_interval: crate::time::FRAME_DURATION,
            admit_by_load: true,
        }
    }
}

impl fmt::Debug for PipelineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineConfig")
            .field("threads", &self.threads)
            .field("max_calls_per_thread", &self.max_calls_per_thread)
            .field("realtime", &self.realtime)
            .field("health", &self.health)
            .field("on_thread_start", &self.on_thread_start.is_some())
            .field("tick_interval", &self.tick_interval)
            .field("admit_by_load", &self.admit_by_load)
            .finish()
    }
}
