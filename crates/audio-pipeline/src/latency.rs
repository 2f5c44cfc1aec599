//! Latency the pipeline adds, in lock-free histograms: from a packet's arrival to its
//! frame reaching the bot, and from the bot's send to the packet being taken by the
//! network side. Recording is one clock read and one relaxed atomic add: no allocation,
//! no lock, safe on the pipeline thread.

use crate::time::Ticks;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Width of a fine bucket: 0.1 ms.
const FINE: u64 = Ticks::PER_MILLI / 10;
/// Fine buckets cover 0..100 ms.
const FINE_BUCKETS: usize = 1_000;
/// Width of a coarse bucket: 1 ms.
const COARSE: u64 = Ticks::PER_MILLI;
/// Coarse buckets cover 100 ms..1.1 s; above that, the last bucket.
const COARSE_BUCKETS: usize = 1_000;
/// Buckets in a histogram.
const BUCKETS: usize = FINE_BUCKETS + COARSE_BUCKETS + 1;
const FINE_END: u64 = FINE * FINE_BUCKETS as u64;

fn bucket_of(span: Ticks) -> usize {
    let v = span.0;
    if v < FINE_END {
        (v / FINE) as usize
    } else {
        (FINE_BUCKETS + ((v - FINE_END) / COARSE) as usize).min(BUCKETS - 1)
    }
}

/// The upper bound of a bucket (a quantile read from the histogram is at most one
/// bucket width above the true value: 0.1 ms below 100 ms, 1 ms above).
fn bucket_upper(index: usize) -> Ticks {
    if index < FINE_BUCKETS {
        Ticks((index as u64 + 1) * FINE)
    } else {
        Ticks(FINE_END + (index - FINE_BUCKETS + 1) as u64 * COARSE)
    }
}

/// A histogram written by one thread and read by any: fixed buckets of atomics.
pub(crate) struct LatencyCell {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl LatencyCell {
    pub(crate) fn new() -> LatencyCell {
        LatencyCell {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    /// Records one span. Wait-free.
    pub(crate) fn record(&self, span: Ticks) {
        self.buckets[bucket_of(span)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(span.0, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        LatencyHistogram {
            counts: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            max: Ticks(self.max.load(Ordering::Relaxed)),
        }
    }
}

impl fmt::Debug for LatencyCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyCell").finish_non_exhaustive()
    }
}

/// One non-empty bucket of a [`LatencyHistogram`]: `count` spans in `lower..upper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencyBucket {
    /// The bucket's lower bound.
    pub lower: Ticks,
    /// Its upper bound, no more than the largest span recorded (what
    /// [`LatencyHistogram::quantile`] reports for a rank in it).
    pub upper: Ticks,
    /// Spans in it.
    pub count: u64,
}

/// A snapshot of a latency histogram: 0.1 ms buckets up to 100 ms, 1 ms buckets up to
/// 1.1 s, one bucket above. Snapshots of several calls merge into one.
#[derive(Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    max: Ticks,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: vec![0; BUCKETS],
            max: Ticks::ZERO,
        }
    }
}

impl LatencyHistogram {
    /// The upper bound of bucket `index`, no more than the max (the last bucket, open
    /// above, is bounded by the max alone).
    fn bound(&self, index: usize) -> Ticks {
        if index == BUCKETS - 1 {
            self.max
        } else {
            bucket_upper(index).min(self.max.max(Ticks(1)))
        }
    }

    /// Spans recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The largest span recorded.
    pub fn max(&self) -> Ticks {
        self.max
    }

    /// The non-empty buckets, in increasing order (for exporting the histogram whole).
    pub fn buckets(&self) -> impl Iterator<Item = LatencyBucket> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &count)| count > 0)
            .map(|(i, &count)| LatencyBucket {
                lower: if i == 0 {
                    Ticks::ZERO
                } else {
                    bucket_upper(i - 1)
                },
                upper: self.bound(i),
                count,
            })
    }

    /// The `q` quantile (`q` in 0..=1, clamped), as the upper bound of its bucket;
    /// `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Ticks> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(self.bound(i));
            }
        }
        Some(self.max)
    }

    /// What was recorded after `earlier` (an older snapshot of the same histogram): the
    /// counts' difference. The max is the largest bucket bound left, capped by this max.
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .zip(&earlier.counts)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let max = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(Ticks::ZERO, |i| self.bound(i));
        LatencyHistogram { counts, max }
    }

    /// Adds another histogram's counts to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .field("p50", &self.quantile(0.5))
            .field("p99", &self.quantile(0.99))
            .field("max", &self.max)
            .finish()
    }
}

/// Latency one call's pipeline added, from [`crate::CallHandle::latency`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallLatency {
    /// From a packet's arrival (its [`crate::RtpMeta::arrival`] stamp) to the frame
    /// decoded from it reaching the bot: [`crate::BotHalf::try_recv`] taking it, or the
    /// frame callback being called. Concealed and silent frames are not counted.
    pub receive: LatencyHistogram,
    /// From the bot queueing a frame ([`crate::BotHalf::try_send`]) to the network side
    /// taking its packet ([`crate::NetworkHalf::pop_packet`]). Silence the pacer filled
    /// in is not counted.
    pub send: LatencyHistogram,
    /// Of `send`: how long each frame waited in the bot's queue before the pacer took
    /// it. A bot that keeps a standing queue shows here (and the pipeline absorbs it,
    /// see [`crate::CallConfig::send_queue_target`]).
    pub send_queue: LatencyHistogram,
}

impl CallLatency {
    /// What was recorded after `earlier` (an older snapshot of the same call).
    pub fn since(&self, earlier: &CallLatency) -> CallLatency {
        CallLatency {
            receive: self.receive.since(&earlier.receive),
            send: self.send.since(&earlier.send),
            send_queue: self.send_queue.since(&earlier.send_queue),
        }
    }

    /// Adds another call's histograms to these.
    pub fn merge(&mut self, other: &CallLatency) {
        self.receive.merge(&other.receive);
        self.send.merge(&other.send);
        self.send_queue.merge(&other.send_queue);
    }
}

/// The two cells of one call, shared by its handles and its pipeline thread.
#[derive(Debug)]
pub(crate) struct LatencyCells {
    pub(crate) receive: LatencyCell,
    pub(crate) send: LatencyCell,
    pub(crate) send_queue: LatencyCell,
}

impl LatencyCells {
    pub(crate) fn new() -> LatencyCells {
        LatencyCells {
            receive: LatencyCell::new(),
            send: LatencyCell::new(),
            send_queue: LatencyCell::new(),
        }
    }

    pub(crate) fn snapshot(&self) -> CallLatency {
        CallLatency {
            receive: self.receive.snapshot(),
            send: self.send.snapshot(),
            send_queue: self.send_queue.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_land_in_the_right_bucket() {
        let cell = LatencyCell::new();
        for ms in 1..=100u64 {
            cell.record(Ticks::from_millis(ms) - Ticks(1));
        }
        cell.record(Ticks::from_millis(250));
        let h = cell.snapshot();
        assert_eq!(h.count(), 101);
        assert_eq!(h.quantile(0.5), Some(Ticks::from_millis(51)));
        assert_eq!(h.quantile(0.0), Some(Ticks::from_millis(1)));
        // 1 ms buckets above 100 ms; the max caps the bucket bound.
        assert_eq!(h.quantile(1.0), Some(Ticks::from_millis(250)));
        assert_eq!(h.max(), Ticks::from_millis(250));
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn buckets_list_the_non_empty_ones_with_their_bounds() {
        let cell = LatencyCell::new();
        cell.record(Ticks(FINE / 2));
        cell.record(Ticks(FINE / 2));
        cell.record(Ticks::from_millis(150) + Ticks(7));
        let h = cell.snapshot();
        let b: Vec<LatencyBucket> = h.buckets().collect();
        assert_eq!(b.len(), 2);
        assert_eq!(
            (b[0].lower, b[0].upper, b[0].count),
            (Ticks::ZERO, Ticks(FINE), 2)
        );
        // The top bucket's upper bound is the largest span, as quantiles report it.
        assert_eq!(b[1].lower, Ticks::from_millis(150));
        assert_eq!(b[1].upper, Ticks::from_millis(150) + Ticks(7));
        assert_eq!(b[1].upper, h.quantile(1.0).unwrap());
        assert_eq!(b.iter().map(|b| b.count).sum::<u64>(), h.count());
    }

    #[test]
    fn huge_spans_go_to_the_last_bucket_merge_adds_and_since_subtracts() {
        let cell = LatencyCell::new();
        cell.record(Ticks::from_millis(60_000));
        cell.record(Ticks::ZERO);
        let first = cell.snapshot();
        assert_eq!(first.quantile(1.0), Some(Ticks::from_millis(60_000)));
        assert_eq!(first.quantile(0.5), Some(Ticks(FINE)));
        let mut merged = first.clone();
        merged.merge(&first);
        assert_eq!(merged.count(), 4);
        cell.record(Ticks::from_millis(3));
        let later = cell.snapshot().since(&first);
        assert_eq!(later.count(), 1);
        assert_eq!(later.quantile(0.5), Some(Ticks::from_micros(3_100)));
        assert_eq!(later.max(), Ticks::from_micros(3_100));
    }
}
