//! Faults on the way from a participant to the bot, each where it happens in the world.
//!
//! - The network's ([`FaultPath`]): loss (independent or in bursts), jitter, reordering and
//!   duplicates act on the RTP packets the participant's leg sends, after the leg numbered
//!   them and before SRTP, as a [`SendPath`] under the leg. A lost packet is a gap in the
//!   sequence, a reordered one arrives after its successor and a duplicate repeats its
//!   number (SRTP's replay check at the bot drops it), as from a real network.
//! - The participant's ([`FaultPort`]): one that goes silent sends nothing for a while (the
//!   leg starts a new talkspurt after), one that vanishes stops sending and its leg ends
//!   without a goodbye. A [`NetworkPort`] wrapper around the participant's side of the leg.
//!
//! Both follow the roster: a change of faults reaches the path through a [`FaultSwitch`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audio_pipeline::Ticks;
use media_endpoint::service::{PathPacket, SendPath};
use media_endpoint::{InboundRtp, NetworkPort, OutboundAudio, PushError};

use crate::scenario::Faults;

/// Packets that may wait for their release time.
const QUEUE: usize = 128;
/// A packet held for reordering is sent anyway after this long without a successor.
const HOLD_MAX: Duration = Duration::from_millis(60);

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

/// Whether `faults` asks anything of the network (as opposed to the participant).
fn network_faults(faults: &Faults) -> bool {
    faults.loss_percent > 0.0
        || faults.jitter_ms > 0
        || faults.reorder_percent > 0.0
        || faults.duplicate_percent > 0.0
}

/// Faults the roster named since the path last looked, handed from the leg's port (which
/// hears the roster) to the path (which runs in the peer connection's driver).
#[derive(Debug, Default)]
pub(crate) struct FaultSwitch(Mutex<Option<Faults>>);

impl FaultSwitch {
    pub(crate) fn set(&self, faults: &Faults) {
        *crate::state::lock(&self.0) = Some(faults.clone());
    }

    /// The faults named since the last call, if any (never blocks the driver).
    fn take(&self) -> Option<Faults> {
        self.0.try_lock().ok().and_then(|mut f| f.take())
    }
}

/// The network's faults on a stream of packets, sans-IO: packets go in with the time they
/// were sent and come out at the time they arrive.
#[derive(Debug)]
struct Network<T> {
    faults: Faults,
    rng: Rng,
    /// Gilbert model: the path is in a loss burst.
    in_burst: bool,
    last_release: Option<Instant>,
    queue: VecDeque<(Instant, T)>,
    held: Option<(Instant, T)>,
    /// No network faults configured.
    passthrough: bool,
    counters: Arc<FaultCounters>,
}

impl<T: Clone> Network<T> {
    fn new(faults: &Faults, counters: Arc<FaultCounters>) -> Self {
        Self {
            faults: faults.clone(),
            rng: Rng::new(faults.seed),
            in_burst: false,
            last_release: None,
            queue: VecDeque::with_capacity(QUEUE),
            held: None,
            passthrough: !network_faults(faults),
            counters,
        }
    }

    /// Changes the faults from the next packet on.
    fn set_faults(&mut self, faults: &Faults) {
        if &self.faults != faults {
            self.faults = faults.clone();
            self.rng = Rng::new(faults.seed);
            self.in_burst = false;
            self.passthrough = !network_faults(faults);
        }
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

    fn enqueue(&mut self, release: Instant, packet: T) {
        if self.queue.len() < QUEUE {
            self.queue.push_back((release, packet));
        } else {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A packet sent at `now`.
    fn send(&mut self, now: Instant, packet: T) {
        if self.passthrough && self.queue.is_empty() && self.held.is_none() {
            // No faults: the packet arrives as it was sent.
            self.queue.push_back((now, packet));
            return;
        }
        if self.lose() {
            self.counters.lost.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let delay = if self.faults.jitter_ms > 0 {
            Duration::from_secs_f64(self.rng.next() * f64::from(self.faults.jitter_ms) / 1e3)
        } else {
            Duration::ZERO
        };
        // In order: a packet never overtakes the one before it (that is reordering's job).
        let release = self
            .last_release
            .map_or(now + delay, |last| (now + delay).max(last));
        self.last_release = Some(release);
        self.counters.passed.fetch_add(1, Ordering::Relaxed);
        let duplicate = self
            .rng
            .chance(self.faults.duplicate_percent)
            .then(|| packet.clone());
        if self.held.is_none() && self.rng.chance(self.faults.reorder_percent) {
            self.counters.reordered.fetch_add(1, Ordering::Relaxed);
            self.held = Some((release, packet));
        } else {
            self.enqueue(release, packet);
            if let Some((_, held)) = self.held.take() {
                self.enqueue(release, held);
            }
        }
        if let Some(d) = duplicate {
            self.counters.duplicated.fetch_add(1, Ordering::Relaxed);
            self.enqueue(release, d);
        }
    }

    /// The next packet that has arrived by `now`.
    fn poll_receive(&mut self, now: Instant) -> Option<T> {
        if let Some((at, _)) = &self.held
            && now.saturating_duration_since(*at) >= HOLD_MAX
            && let Some((at, packet)) = self.held.take()
        {
            self.enqueue(at, packet);
        }
        match self.queue.front() {
            Some((release, _)) if *release <= now => self.queue.pop_front().map(|(_, p)| p),
            _ => None,
        }
    }

    /// When the next packet arrives, or a held one is given up on.
    fn poll_timeout(&self) -> Option<Instant> {
        let front = self.queue.front().map(|(at, _)| *at);
        let held = self.held.as_ref().map(|(at, _)| *at + HOLD_MAX);
        match (front, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The network between a participant's leg and the bot, under the leg (see the module
/// documentation).
#[derive(Debug)]
pub(crate) struct FaultPath {
    network: Network<PathPacket>,
    switch: Arc<FaultSwitch>,
}

impl FaultPath {
    pub(crate) fn new(faults: &Faults, counters: Arc<FaultCounters>) -> (Self, Arc<FaultSwitch>) {
        let switch = Arc::new(FaultSwitch::default());
        let path = Self {
            network: Network::new(faults, counters),
            switch: Arc::clone(&switch),
        };
        (path, switch)
    }
}

impl SendPath for FaultPath {
    fn send(&mut self, now: Instant, packet: PathPacket) {
        if let Some(faults) = self.switch.take() {
            self.network.set_faults(&faults);
        }
        self.network.send(now, packet);
    }

    fn poll_receive(&mut self, now: Instant) -> Option<PathPacket> {
        self.network.poll_receive(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.network.poll_timeout()
    }
}

/// A participant's side of the leg, for a participant that goes silent or vanishes.
pub(crate) struct FaultPort<P> {
    inner: P,
    faults: Faults,
    started: Option<Ticks>,
    vanished: bool,
    counters: Arc<FaultCounters>,
}

impl<P> std::fmt::Debug for FaultPort<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultPort")
            .field("faults", &self.faults)
            .field("vanished", &self.vanished)
            .finish_non_exhaustive()
    }
}

impl<P: NetworkPort> FaultPort<P> {
    /// The participant behind `inner`; `counters` are shared with its [`FaultPath`], and
    /// logged when the port goes.
    pub(crate) fn new(inner: P, faults: &Faults, counters: Arc<FaultCounters>) -> Self {
        Self {
            inner,
            faults: faults.clone(),
            started: None,
            vanished: false,
            counters,
        }
    }

    /// Changes the faults from the next packet on (a roster change named them).
    pub(crate) fn set_faults(&mut self, faults: &Faults) {
        self.faults = faults.clone();
    }

    pub(crate) fn inner_mut(&mut self) -> &mut P {
        &mut self.inner
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

    /// The participant's next packet at `now`, unless it is silent or gone.
    fn pop_at(&mut self, now: Ticks) -> Option<OutboundAudio> {
        if self.faults.silent_after_ms.is_none() && self.faults.vanish_after_ms.is_none() {
            return self.inner.pop();
        }
        let started = *self.started.get_or_insert(now);
        let elapsed = now.saturating_sub(started);
        if let Some(ms) = self.faults.vanish_after_ms
            && elapsed >= Ticks::from_millis(ms)
        {
            self.vanished = true;
        }
        while let Some(audio) = self.inner.pop() {
            if self.vanished {
                continue;
            }
            if self.silent(elapsed) {
                self.counters.silenced.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            return Some(audio);
        }
        None
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

    /// Sends `n` packets numbered 0.. one per 20 ms, polled every 5 ms as a driver would,
    /// plus time to drain; returns the numbers that arrived, in arrival order.
    fn run(faults: &Faults, n: u64) -> (Vec<u16>, Arc<FaultCounters>) {
        let counters = Arc::new(FaultCounters::default());
        let mut net = Network::new(faults, Arc::clone(&counters));
        let mut out = Vec::new();
        let t0 = Instant::now();
        for step in 0..(n + 100) * 4 {
            let now = t0 + Duration::from_millis(5 * step);
            if step % 4 == 0 && step < n * 4 {
                net.send(now, (step / 4) as u16);
            }
            while let Some(seq) = net.poll_receive(now) {
                out.push(seq);
            }
            if let Some(due) = net.poll_timeout() {
                assert!(
                    due <= now + HOLD_MAX + Duration::from_millis(100),
                    "a due time"
                );
            }
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
    fn a_held_packet_goes_alone_when_nothing_follows() {
        let f = Faults {
            reorder_percent: 100.0,
            ..faults()
        };
        let mut net = Network::new(&f, Arc::default());
        let t0 = Instant::now();
        net.send(t0, 7u16);
        assert_eq!(net.poll_receive(t0), None, "held for a successor");
        assert_eq!(net.poll_timeout(), Some(t0 + HOLD_MAX));
        assert_eq!(net.poll_receive(t0 + HOLD_MAX), Some(7));
    }

    #[test]
    fn jitter_delays_in_order() {
        let f = Faults {
            jitter_ms: 40,
            ..faults()
        };
        let (out, _) = run(&f, 300);
        assert_eq!(out.len(), 300);
        assert!(
            out.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "in order"
        );
    }

    #[test]
    fn the_path_follows_the_switch() {
        let counters = Arc::new(FaultCounters::default());
        let (mut path, switch) = FaultPath::new(&faults(), Arc::clone(&counters));
        assert!(path.network.passthrough);
        switch.set(&Faults {
            loss_percent: 50.0,
            ..faults()
        });
        assert!(switch.take().is_some());
        assert!(switch.take().is_none(), "taken once");
        switch.set(&Faults {
            loss_percent: 50.0,
            ..faults()
        });
        if let Some(f) = path.switch.take() {
            path.network.set_faults(&f);
        }
        assert!(!path.network.passthrough);
    }

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

    fn source(ready: u64) -> Source {
        Source {
            next: 0,
            ready: Arc::new(AtomicU64::new(ready)),
        }
    }

    #[test]
    fn silence_and_vanishing_stop_the_flow() {
        let counters = Arc::new(FaultCounters::default());
        let silent = Faults {
            silent_after_ms: Some(0),
            ..faults()
        };
        let mut port = FaultPort::new(source(100), &silent, Arc::clone(&counters));
        assert!(port.pop_at(Ticks::from_millis(1_000)).is_none());
        assert_eq!(counters.silenced.load(Ordering::Relaxed), 100);

        let vanish = Faults {
            vanish_after_ms: Some(100),
            ..faults()
        };
        let mut port = FaultPort::new(source(1_000), &vanish, Arc::default());
        let t0 = Ticks::from_millis(5_000);
        assert!(port.pop_at(t0).is_some());
        assert!(
            port.pop_at(Ticks(t0.0 + Ticks::from_millis(200).0))
                .is_none()
        );
        assert!(port.vanished);

        // No participant faults: packets pass as they come.
        let mut port = FaultPort::new(source(3), &faults(), Arc::default());
        assert_eq!(std::iter::from_fn(|| port.pop_at(Ticks::ZERO)).count(), 3);
    }
}
