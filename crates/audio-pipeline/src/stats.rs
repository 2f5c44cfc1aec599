//! Per-call counters (written by the pipeline thread, read from anywhere) and platform health.

use crate::time::Ticks;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    (
        counters { $( $(#[$cdoc:meta])* $counter:ident ),* $(,)? }
        gauges { $( $(#[$gdoc:meta])* $gauge:ident ),* $(,)? }
    ) => {
        /// Atomic counters of one call. Relaxed ordering: each is a standalone statistic.
        #[derive(Debug, Default)]
        pub(crate) struct CallCounters {
            $( pub(crate) $counter: AtomicU64, )*
            $( pub(crate) $gauge: AtomicU64, )*
        }

        /// A snapshot of one call's counters (which only grow) and gauges (values now).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct CallStats {
            $( $(#[$cdoc])* pub $counter: u64, )*
            $( $(#[$gdoc])* pub $gauge: u64, )*
        }

        impl CallCounters {
            pub(crate) fn snapshot(&self) -> CallStats {
                CallStats {
                    $( $counter: self.$counter.load(Ordering::Relaxed), )*
                    $( $gauge: self.$gauge.load(Ordering::Relaxed), )*
                }
            }
        }

        impl CallStats {
            /// Adds the counters of `other` to these (the gauges are left as they are): the
            /// totals of several calls.
            pub fn add_counters(&mut self, other: &CallStats) {
                $( self.$counter += other.$counter; )*
            }
        }
    };
}

counters! {
    counters {
        /// Packets taken from the inbound queue for the main (mixed) stream, or for a stream
        /// the call does not have (those are also counted in `invalid_packets`). Packets of
        /// the unmixed speaker streams are counted in `unmixed_packets_received`.
        packets_received,
        /// Frames handed to the bot (frames in).
        frames_received,
        /// Packets encoded and queued for the network (frames out).
        frames_sent,
        /// Frames mostly concealed by the decoder (lost, late or invalid packets).
        concealed,
        /// Lost packets rebuilt from in-band FEC.
        fec_recovered,
        /// Packets that arrived after their playout time.
        late_packets,
        /// Duplicate packets.
        duplicate_packets,
        /// Packets dropped: inbound queue full, unusable payload, or too far ahead. (The
        /// receive path never drops a packet to shrink its delay.)
        dropped_packets,
        /// Of `dropped_packets`: the network side found the inbound queue full.
        inbound_queue_full,
        /// Of `dropped_packets`: payloads the decoder rejected, empty payloads, and packets
        /// for a stream the call does not have ([`crate::RtpMeta::stream`] above
        /// [`crate::CallConfig::unmixed_streams`]).
        invalid_packets,
        /// Packets never received in time to play (sequence numbers concealed or rebuilt).
        lost_packets,
        /// Jitter buffer resyncs (SSRC change, large jump).
        resyncs,
        /// Ticks where the bot had no frame queued; silence was sent.
        underruns,
        /// Frames the bot sent while sending was inactive (discarded).
        discarded_inactive,
        /// Encoded packets dropped because the network side did not drain the outbound queue.
        outbound_queue_full,
        /// Received frames dropped because the bot did not drain its queue.
        receive_queue_full,
        /// Ticks of this call that ran later than the late-tick threshold.
        late_ticks,
        /// Received samples (16 kHz) removed by time-scale modification to shrink the delay.
        accelerated_samples,
        /// Received samples inserted by time-scale modification to grow the delay.
        expanded_samples,
        /// Received samples concealed by the decoder (loss, waiting for late packets).
        concealed_samples,
        /// Received samples cross-faded from concealment back into decoded audio.
        merged_samples,
        /// Samples the bot sent that were cut to absorb a standing send queue.
        send_absorbed_samples,
        /// Quiet frames the bot sent that were dropped whole to absorb a standing send queue.
        send_dropped_frames,
        /// Packets taken from the inbound queue for the unmixed speaker streams (all
        /// streams together; none of the mix's counters above include them).
        unmixed_packets_received,
        /// Unmixed speaker frames handed to the bot ([`crate::UnmixedFrame`] entries, at
        /// most one per stream and tick).
        unmixed_frames,
        /// Of `unmixed_frames`: entries mostly concealed by the decoder.
        unmixed_concealed,
        /// Unmixed stream packets never received in time to play (concealed or rebuilt).
        unmixed_lost_packets,
        /// Unmixed stream packets their receivers refused: unusable payloads, or stray
        /// packets too far ahead that were never confirmed.
        unmixed_dropped_packets,
        /// Times an unmixed stream's speaker changed from its previous entry: the service
        /// moving dominant speakers between streams.
        unmixed_speaker_changes,
    }
    gauges {
        /// Inter-arrival jitter estimate (RFC 3550), in 100 ns ticks.
        jitter_ticks,
        /// Current jitter buffer playout delay, in 100 ns ticks.
        buffer_delay_ticks,
        /// Jitter buffer playout delay smoothed over about 16 packets, in 100 ns ticks.
        filtered_delay_ticks,
        /// Current jitter buffer target delay, in 100 ns ticks.
        target_delay_ticks,
        /// The bot's standing send queue (the least depth over the last half second), in
        /// 100 ns ticks: send-side queueing delay that does not drain by itself.
        send_standing_ticks,
        /// The encoder's current bitrate (it follows the receiver's loss reports), b/s.
        encoder_bitrate_bps,
        /// Loss percentage last reported by the receiver.
        remote_loss_percent,
    }
}

impl CallStats {
    /// Jitter estimate.
    pub fn jitter(&self) -> Ticks {
        Ticks(self.jitter_ticks)
    }

    /// Current buffer delay.
    pub fn buffer_delay(&self) -> Ticks {
        Ticks(self.buffer_delay_ticks)
    }
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

pub(crate) fn set(c: &AtomicU64, v: u64) {
    c.store(v, Ordering::Relaxed);
}

/// Load of the platform, from tick lateness and the share of each tick spent working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PlatformHealth {
    /// Within limits.
    Normal,
    /// Above the heavy-load limits; calls are still admitted.
    HeavilyLoaded,
    /// Above the overload limits; new calls are refused.
    Overloaded,
}

/// Load figures of one pipeline thread over its last second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadLoad {
    /// Calls on the thread.
    pub calls: u64,
    /// Ticks run since start.
    pub ticks: u64,
    /// Worst lateness of a tick (wake-up after deadline) over the last second.
    pub max_lateness: Ticks,
    /// Worst time spent working in one tick over the last second.
    pub max_busy: Ticks,
    /// Mean time spent working per tick over the last second.
    pub mean_busy: Ticks,
    /// Ticks that started later than the late-tick threshold, since start.
    pub late_ticks: u64,
    /// Deadlines skipped after falling more than 100 ms behind, since start.
    pub skipped_ticks: u64,
    /// Whether the thread got real-time scheduling.
    pub realtime: bool,
    /// This thread's health.
    pub health: PlatformHealth,
    /// Measured work of one sending call per tick: busy time over call-ticks, held at
    /// its peak and decaying slowly (zero until a window with sending calls closed).
    pub call_cost: Ticks,
}

/// What admission sees: the cost of a call, the budget of a thread and the room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capacity {
    /// Cost of one call per tick used for the projection: the highest a thread has
    /// measured, or the assumed cost before any has.
    pub call_cost: Ticks,
    /// Whether `call_cost` was measured (false: the configured assumption).
    pub measured: bool,
    /// Work per tick that one thread may be given.
    pub budget_per_thread: Ticks,
    /// Calls on the platform, including ones queued for their thread.
    pub calls: usize,
    /// Calls that can still be admitted at that cost.
    pub room: usize,
}

#[derive(Debug, Default)]
pub(crate) struct ThreadLoadCell {
    pub(crate) calls: AtomicU64,
    pub(crate) ticks: AtomicU64,
    pub(crate) max_lateness: AtomicU64,
    pub(crate) max_busy: AtomicU64,
    pub(crate) mean_busy: AtomicU64,
    pub(crate) late_ticks: AtomicU64,
    pub(crate) skipped_ticks: AtomicU64,
    pub(crate) realtime: AtomicU64,
    pub(crate) health: AtomicU64,
    pub(crate) call_cost: AtomicU64,
}

impl ThreadLoadCell {
    pub(crate) fn snapshot(&self) -> ThreadLoad {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ThreadLoad {
            calls: r(&self.calls),
            ticks: r(&self.ticks),
            max_lateness: Ticks(r(&self.max_lateness)),
            max_busy: Ticks(r(&self.max_busy)),
            mean_busy: Ticks(r(&self.mean_busy)),
            late_ticks: r(&self.late_ticks),
            skipped_ticks: r(&self.skipped_ticks),
            realtime: r(&self.realtime) != 0,
            health: health_from_u64(r(&self.health)),
            call_cost: Ticks(r(&self.call_cost)),
        }
    }
}

pub(crate) fn health_to_u64(h: PlatformHealth) -> u64 {
    match h {
        PlatformHealth::Normal => 0,
        PlatformHealth::HeavilyLoaded => 1,
        PlatformHealth::Overloaded => 2,
    }
}

fn health_from_u64(v: u64) -> PlatformHealth {
    match v {
        0 => PlatformHealth::Normal,
        1 => PlatformHealth::HeavilyLoaded,
        _ => PlatformHealth::Overloaded,
    }
}

#[cfg(test)]
mod add_tests {
    use super::*;

    #[test]
    fn counters_add_up_and_gauges_stay() {
        let mut total = CallStats {
            frames_received: 10,
            jitter_ticks: 7,
            ..CallStats::default()
        };
        let other = CallStats {
            frames_received: 5,
            merged_samples: 3,
            jitter_ticks: 900,
            encoder_bitrate_bps: 64_000,
            ..CallStats::default()
        };
        total.add_counters(&other);
        assert_eq!((total.frames_received, total.merged_samples), (15, 3));
        assert_eq!((total.jitter_ticks, total.encoder_bitrate_bps), (7, 0));
    }
}
