//! Network faults on the way from a participant to the bot: a [`NetworkPort`] wrapped
//! around the participant's side of the leg. It numbers the packets itself
//! ([`OutboundAudio::with_sequence`]), so a lost packet is a gap in the sequence, a
//! duplicate repeats its number and a reordered one arrives after its successor, exactly
//! as the bot's jitter buffer would see them from a real network.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use audio_pipeline::Ticks;
use media_endpoint::{InboundRtp, NetworkPort, OutboundAudio, PushError};

use crate::scenario::Faults;

/// Packets that may wait for their release time.
const QUEUE: usize = 128;
/// A packet held for reordering is sent anyway after this long without a successor.
const HOLD_MAX: Ticks = Ticks::from_millis(60);
/// 48 kHz RTP timestamp units per 20 ms, for packets that come without a timestamp.
const RTP_PER_FRAME: u32 = 960;

/// What the faults did, for logs and tests.
#[derive(Debug, Default)]
pub(crate) struct FaultCounters {
    pub passed: AtomicU64,
    pub lost: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
    pub silenced: AtomicU64,
}

/// xorshift64*: small, fast and reproducible; statistical quality is plenty for faults.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, percent: f64) -> bool {
        percent > 0.0 && self.next() * 100.0 < percent
    }
}

/// A participant's side of the leg, seen through a faulty network.
pub(crate) struct FaultPort<P> {
    inner: P,
    faults: Faults,
    rng: Rng,
    /// Gilbert model: the path is in a loss burst.
    in_burst: bool,
    next_seq: u16,
    next_ts: Option<u32>,
    started: Option<Ticks>,
    last_release: Ticks,
    queue: VecDeque<(Ticks, OutboundAudio)>,
    held: Option<(Ticks, OutboundAudio)>,
    vanished: bool,
    /// No faults configured.
    passthrough: bool,
    counters: Arc<FaultCounters>,
}

impl<P> std::fmt::Debug for FaultPort<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultPort")
            .field("faults", &self.faults)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl<P: NetworkPort> FaultPort<P> {
    pub(crate) fn new(inner: P, faults: &Faults) -> Self {
        Self {
            inner,
            faults: faults.clone(),
            rng: Rng::new(faults.seed),
            in_burst: false,
            next_seq: 0,
            next_ts: None,
            started: None,
            last_release: Ticks::ZERO,
            queue: VecDeque::with_capacity(QUEUE),
            held: None,
            vanished: false,
            passthrough: *faults == Faults::default(),
            counters: Arc::default(),
        }
    }

    /// Changes the faults from the next packet on (a roster change named them).
    pub(crate) fn set_faults(&mut self, faults: &Faults) {
        if &self.faults != faults {
            self.faults = faults.clone();
            self.rng = Rng::new(faults.seed);
            self.in_burst = false;
            self.passthrough = *faults == Faults::default();
        }
    }

    pub(crate) fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
    }

    #[cfg(test)]
    fn counters(&self) -> Arc<FaultCounters> {
        Arc::clone(&self.counters)
    }

    /// Whether the next packet is lost: independent losses, or a two-state (Gilbert)
    /// channel whose bursts last `burst_length` packets on average.
    fn lose(&mut self) -> bool {
        let loss = self.faults.loss_percent / 100.0;
        if loss <= 0.0 {
            return false;
        }
        if self.faults.burst_length <= 1.0 {
            return self.rng.next() < loss;
        }
        let leave = 1.0 / self.faults.burst_length;
        let enter = (loss * leave / (1.0 - loss)).min(1.0);
        self.in_burst = if self.in_burst {
            self.rng.next() >= leave
        } else {
            self.rng.next() < enter
        };
        self.in_burst
    }

    fn silent(&self, elapsed: Ticks) -> bool {
        let Some(after) = self.faults.silent_after_ms else {
            return false;
        };
        let from = Ticks::from_millis(after);
        elapsed >= from
            && self
                .faults
                .silent_for_ms
                .is_none_or(|d| elapsed < Ticks(from.0 + Ticks::from_millis(d).0))
    }

    fn enqueue(&mut self, release: Ticks, audio: OutboundAudio) {
        if self.queue.len() < QUEUE {
            self.queue.push_back((release, audio));
        } else {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes what the participant produced, applies the faults, and returns the next
    /// packet whose release time has come.
    fn pop_at(&mut self, now: Ticks) -> Option<OutboundAudio> {
        if self.passthrough && self.queue.is_empty() && self.held.is_none() {
            // No faults: the packets go as they come, numbered by the leg as usual.
            return self.inner.pop();
        }
        let started = *self.started.get_or_insert(now);
        let elapsed = now.saturating_sub(started);
        if let Some(ms) = self.faults.vanish_after_ms
            && elapsed >= Ticks::from_millis(ms)
        {
            self.vanished = true;
        }
        while let Some(mut audio) = self.inner.pop() {
            let seq = self.next_seq;
            self.next_seq = seq.wrapping_add(1);
            let ts = audio.rtp_timestamp.unwrap_or_else(|| {
                let ts = self.next_ts.unwrap_or(0);
                self.next_ts = Some(ts.wrapping_add(RTP_PER_FRAME));
                ts
            });
            let marker = audio.marker;
            audio = audio.with_timing(ts, marker).with_sequence(seq);
            if self.vanished {
                continue;
            }
            if self.silent(elapsed) {
                self.counters.silenced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if self.lose() {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let delay = if self.faults.jitter_ms > 0 {
                let ms = self.rng.next() * f64::from(self.faults.jitter_ms);
                Ticks((ms * 10_000.0) as u64)
            } else {
                Ticks::ZERO
            };
            // In order: a packet never overtakes the one before it (that is reordering's job).
            let release = Ticks((now.0 + delay.0).max(self.last_release.0));
            self.last_release = release;
            self.counters.passed.fetch_add(1, Ordering::Relaxed);
            let duplicate = self
                .rng
                .chance(self.faults.duplicate_percent)
                .then(|| audio.clone());
            if self.held.is_none() && self.rng.chance(self.faults.reorder_percent) {
                self.counters.reordered.fetch_add(1, Ordering::Relaxed);
                self.held = Some((release, audio));
            } else {
                self.enqueue(release, audio);
                if let Some(held) = self.held.take() {
                    self.enqueue(release, held.1);
                }
            }
            if let Some(d) = duplicate {
                self.counters.duplicated.fetch_add(1, Ordering::Relaxed);
                self.enqueue(release, d);
            }
        }
        if let Some((at, _)) = &self.held
            && now.saturating_sub(*at) >= HOLD_MAX
            && let Some((at, audio)) = self.held.take()
        {
            self.enqueue(at, audio);
        }
        if self.vanished {
            self.queue.clear();
            return None;
        }
        match self.queue.front() {
            Some((release, _)) if *release <= now => self.queue.pop_front().map(|(_, a)| a),
            _ => None,
        }
    }
}

impl<P> Drop for FaultPort<P> {
    fn drop(&mut self) {
        let c = &self.counters;
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        tracing::info!(
            passed = r(&c.passed),
            lost = r(&c.lost),
            duplicated = r(&c.duplicated),
            reordered = r(&c.reordered),
            silenced = r(&c.silenced),
            "faulty path to the bot closed"
        );
    }
}

impl<P: NetworkPort> NetworkPort for FaultPort<P> {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        if self.vanished {
            // The leg ends: the participant is gone without hanging up.
            return Err(PushError::Removed);
        }
        self.inner.push(packet)
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        self.pop_at(audio_pipeline::now())
    }

    fn set_send_active(&self, active: bool) {
        self.inner.set_send_active(active);
    }

    fn set_remote_fraction_lost(&self, fraction: u8) {
        self.inner.set_remote_fraction_lost(fraction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Produces the packets `ready` allows, with a payload naming their index.
    struct Source {
        next: u32,
        ready: Arc<AtomicU64>,
    }

    impl NetworkPort for Source {
        fn push(&mut self, _: InboundRtp<'_>) -> Result<(), PushError> {
            Ok(())
        }
        fn pop(&mut self) -> Option<OutboundAudio> {
            self.ready
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .ok()?;
            let i = self.next;
            self.next += 1;
            Some(
                OutboundAudio::new(Bytes::copy_from_slice(&i.to_be_bytes()), None)
                    .with_timing(i * 960, false),
            )
        }
        fn set_send_active(&self, _: bool) {}
        fn set_remote_fraction_lost(&self, _: u8) {}
    }

    fn source() -> (Source, Arc<AtomicU64>) {
        let ready = Arc::new(AtomicU64::new(0));
        (
            Source {
                next: 0,
                ready: Arc::clone(&ready),
            },
            ready,
        )
    }

    /// Runs `n` 20 ms steps of one packet each, polled every 5 ms as the leg does, plus
    /// time to drain; returns the sequence numbers that came out.
    fn run(faults: &Faults, n: u64) -> (Vec<u16>, Arc<FaultCounters>) {
        let (src, ready) = source();
        let mut port = FaultPort::new(src, faults);
        let counters = port.counters();
        let mut out = Vec::new();
        let mut now = Ticks::from_millis(1_000);
        for step in 0..(n + 100) * 4 {
            if step % 4 == 0 && step < n * 4 {
                ready.fetch_add(1, Ordering::Relaxed);
            }
            while let Some(a) = port.pop_at(now) {
                let ts = a.rtp_timestamp.expect("timed");
                // Without faults the leg numbers the packets; with faults the port does.
                let seq = a.sequence.unwrap_or((ts / 960) as u16);
                assert_eq!(ts, u32::from(seq) * 960);
                out.push(seq);
            }
            now = Ticks(now.0 + Ticks::from_millis(5).0);
        }
        (out, counters)
    }

    fn faults() -> Faults {
        Faults::default()
    }

    #[test]
    fn no_faults_passes_everything_in_order() {
        let (out, c) = run(&faults(), 200);
        assert_eq!(out.len(), 200);
        assert!(out.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert_eq!(c.lost.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn loss_makes_sequence_gaps_at_about_the_rate() {
        let f = Faults {
            loss_percent: 15.0,
            ..faults()
        };
        let (out, c) = run(&f, 4_000);
        let lost = c.lost.load(Ordering::Relaxed) as f64;
        let passed = c.passed.load(Ordering::Relaxed) as f64;
        let rate = lost / (lost + passed);
        assert!((0.12..0.18).contains(&rate), "loss {rate}");
        assert!(out.windows(2).any(|w| w[1].wrapping_sub(w[0]) > 1), "gaps");
    }

    #[test]
    fn bursts_are_longer_than_independent_losses() {
        let mean_run = |burst: f64| {
            let f = Faults {
                loss_percent: 10.0,
                burst_length: burst,
                ..faults()
            };
            let (out, _) = run(&f, 6_000);
            let gaps: Vec<u16> = out
                .windows(2)
                .map(|w| w[1].wrapping_sub(w[0]) - 1)
                .filter(|&g| g > 0)
                .collect();
            gaps.iter().map(|&g| f64::from(g)).sum::<f64>() / gaps.len().max(1) as f64
        };
        let (single, burst) = (mean_run(1.0), mean_run(4.0));
        assert!(single < 1.3, "independent: {single}");
        assert!(burst > 2.5, "bursts: {burst}");
    }

    #[test]
    fn duplicates_and_reordering_reach_the_output() {
        let f = Faults {
            duplicate_percent: 10.0,
            reorder_percent: 10.0,
            ..faults()
        };
        let (out, c) = run(&f, 1_000);
        assert!(c.duplicated.load(Ordering::Relaxed) > 50);
        assert!(c.reordered.load(Ordering::Relaxed) > 50);
        assert!(out.windows(2).any(|w| w[0] == w[1]), "a repeat");
        assert!(
            out.windows(2).any(|w| w[1] == w[0].wrapping_sub(1)),
            "a swap"
        );
    }

    #[test]
    fn jitter_delays_in_order_and_silence_and_vanishing_stop_the_flow() {
        let f = Faults {
            jitter_ms: 40,
            ..faults()
        };
        let (out, _) = run(&f, 300);
        assert!(
            out.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "in order"
        );

        let f = Faults {
            silent_after_ms: Some(0),
            ..faults()
        };
        let (out, c) = run(&f, 100);
        assert!(out.is_empty());
        assert!(c.silenced.load(Ordering::Relaxed) > 0);

        let (src, ready) = source();
        ready.store(1_000, Ordering::Relaxed);
        let mut port = FaultPort::new(
            src,
            &Faults {
                vanish_after_ms: Some(100),
                ..faults()
            },
        );
        let t0 = Ticks::from_millis(5_000);
        assert!(port.pop_at(t0).is_some());
        assert!(
            port.pop_at(Ticks(t0.0 + Ticks::from_millis(200).0))
                .is_none()
        );
        assert!(port.vanished);
    }
}
