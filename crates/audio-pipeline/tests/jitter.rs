//! The jitter buffer alone in simulated time: order, loss, duplicates, late packets, SSRC
//! change, wrap, pauses. (Delay adaptation needs decoded audio: tests/receive.rs.)

mod common;

use audio_pipeline::{
    EncodedPacket, FRAME_DURATION, InsertOutcome, JitterBuffer, JitterConfig, Playout, Ticks,
};
use common::{Rng, fake_packet, fake_seq};

/// What one receiver tick played.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Played {
    Packet(u16, u16),
    Lost(bool),
    Expand,
    NoSignal,
}

/// A sender with its own clock (skew in ppm), a network (base delay, uniform jitter,
/// loss, duplicates), and a receiver ticking every 20 ms of its own clock.
struct Sim {
    jb: JitterBuffer,
    rng: Rng,
    ssrc: u32,
    seq: u16,
    ts: u32,
    skew_ppm: f64,
    base_delay: Ticks,
    jitter: Ticks,
    loss: f64,
    dup: f64,
    /// Sender packet index, and (arrival, packet) in flight.
    sent: u64,
    in_flight: Vec<(Ticks, EncodedPacket)>,
    now: Ticks,
    played: Vec<Played>,
    outcomes: Vec<InsertOutcome>,
    /// Packets to drop by sender index.
    drop: Vec<u64>,
    /// Extra network delay for some packets, by sender index.
    extra_delay: Vec<(u64, Ticks)>,
    t0: Ticks,
}

impl Sim {
    fn new(seed: u64, cfg: JitterConfig) -> Sim {
        Sim {
            jb: JitterBuffer::new(cfg),
            rng: Rng(seed),
            ssrc: 0xABCD,
            seq: 1000,
            ts: 123_456,
            skew_ppm: 0.0,
            base_delay: Ticks::from_millis(30),
            jitter: Ticks::ZERO,
            loss: 0.0,
            dup: 0.0,
            sent: 0,
            in_flight: Vec::new(),
            now: Ticks::from_millis(1_000),
            played: Vec::new(),
            outcomes: Vec::new(),
            drop: Vec::new(),
            extra_delay: Vec::new(),
            t0: Ticks::from_millis(1_000),
        }
    }

    fn send_time(&self, index: u64) -> Ticks {
        // The sender's 20 ms measured on the receiver's clock.
        let period = FRAME_DURATION.0 as f64 * (1.0 - self.skew_ppm * 1e-6);
        Ticks(self.t0.0 + (index as f64 * period) as u64)
    }

    fn send_due(&mut self) {
        while self.send_time(self.sent) <= self.now {
            let at = self.send_time(self.sent);
            let index = self.sent;
            self.sent += 1;
            let seq = self.seq;
            let ts = self.ts;
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(960);
            if self.drop.contains(&index) || self.rng.unit() < self.loss {
                continue;
            }
            let copies = if self.rng.unit() < self.dup { 2 } else { 1 };
            for _ in 0..copies {
                let j = Ticks(self.rng.below(self.jitter.0 + 1));
                let extra = self
                    .extra_delay
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map_or(Ticks::ZERO, |(_, d)| *d);
                let arrival = at + self.base_delay + j + extra;
                self.in_flight
                    .push((arrival, fake_packet(self.ssrc, seq, ts, arrival)));
            }
        }
    }

    /// One receiver tick.
    fn tick(&mut self) {
        self.send_due();
        // Deliver in arrival order everything that has arrived.
        self.in_flight.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        while let Some((t, _)) = self.in_flight.last() {
            if *t > self.now {
                break;
            }
            let (_, p) = self.in_flight.pop().unwrap();
            let outcome = self.jb.insert(&p, self.now);
            self.outcomes.push(outcome);
        }
        // Each packet's 20 ms plays in its tick: nothing stays buffered.
        let played = match self.jb.pop(self.now, Ticks::ZERO) {
            Playout::Packet { packet, gap, .. } => Played::Packet(fake_seq(packet), gap),
            Playout::Lost { fec } => Played::Lost(fec.is_some()),
            Playout::Expand => Played::Expand,
            Playout::NoSignal => Played::NoSignal,
        };
        self.played.push(played);
        self.now += FRAME_DURATION;
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    fn seqs(&self) -> Vec<u16> {
        self.played
            .iter()
            .filter_map(|p| match p {
                Played::Packet(s, _) => Some(*s),
                _ => None,
            })
            .collect()
    }

    fn count(&self, f: impl Fn(&Played) -> bool) -> usize {
        self.played.iter().filter(|p| f(p)).count()
    }
}

fn assert_in_order(seqs: &[u16]) {
    for w in seqs.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) >= 1 && w[1].wrapping_sub(w[0]) < 100,
            "out of order: {} then {}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn clean_stream_plays_every_packet_once_in_order() {
    let mut sim = Sim::new(1, JitterConfig::default());
    sim.run(500);
    let seqs = sim.seqs();
    assert_in_order(&seqs);
    assert!(seqs.len() >= 490, "played {}", seqs.len());
    assert_eq!(sim.count(|p| matches!(p, Played::Lost(_))), 0);
    assert_eq!(seqs[0], 1000);
    // Delay settles near the lower bound: no jitter to cover.
    assert!(
        sim.jb.target_delay() <= Ticks::from_millis(40),
        "{:?}",
        sim.jb
    );
}

#[test]
fn reordered_packets_within_the_delay_play_in_order_and_raise_the_target() {
    // A 100 ms floor keeps the delay above the 60 ms of jitter: nothing is late.
    let cfg = JitterConfig {
        min_delay: Ticks::from_millis(100),
        ..JitterConfig::default()
    };
    let mut sim = Sim::new(2, cfg);
    sim.jitter = Ticks::from_millis(60);
    sim.run(3_000);
    let seqs = sim.seqs();
    assert_in_order(&seqs);
    assert!(seqs.len() >= 2_980, "played {}", seqs.len());
    assert_eq!(sim.jb.stats().late, 0, "{:?}", sim.jb.stats());
    assert!(
        sim.jb.jitter() > Ticks::from_millis(5),
        "{:?}",
        sim.jb.jitter()
    );
}

#[test]
fn the_target_is_a_quantile_of_the_relative_arrival_delay() {
    let mut sim = Sim::new(12, JitterConfig::default());
    // Uniform 0..80 ms: the 95th percentile is 76 ms, plus a frame.
    sim.jitter = Ticks::from_millis(80);
    sim.run(1_000);
    let target = sim.jb.target_delay();
    assert!(
        target >= Ticks::from_millis(85) && target <= Ticks::from_millis(110),
        "target {target:?} for 80 ms of jitter"
    );
    // The network calms down: the target follows, slowly (10 ms a second at most).
    sim.jitter = Ticks::from_millis(2);
    sim.run(200);
    let after_4s = sim.jb.target_delay();
    assert!(after_4s < target && after_4s + Ticks::from_millis(45) >= target);
    sim.run(2_000);
    assert!(
        sim.jb.target_delay() <= Ticks::from_millis(30),
        "{:?}",
        sim.jb.target_delay()
    );
}

#[test]
fn a_late_packet_is_waited_for_and_played_not_lost() {
    let mut sim = Sim::new(13, JitterConfig::default());
    sim.run(100);
    // A 60 ms stall: the next three packets are held and arrive together, behind the
    // first one's turn, with nothing newer here meanwhile.
    let k = sim.sent;
    sim.extra_delay = vec![
        (k, Ticks::from_millis(60)),
        (k + 1, Ticks::from_millis(40)),
        (k + 2, Ticks::from_millis(20)),
    ];
    sim.run(100);
    let st = sim.jb.stats();
    assert_eq!((st.lost, st.late), (0, 0), "{st:?}");
    assert!(st.expanded >= 1, "{st:?}");
    assert!(sim.played.contains(&Played::Expand));
    assert_in_order(&sim.seqs());
    // Everything was played: the delay grew by what was expanded instead.
    assert_eq!(
        sim.seqs().len(),
        sim.count(|p| matches!(p, Played::Packet(..)))
    );
    assert!(sim.jb.current_delay() >= Ticks::from_millis(40));
}

#[test]
fn burst_loss_is_reported_as_lost_with_the_gap_on_the_next_packet() {
    // A 60 ms floor keeps the packet after the burst in the buffer before its turn.
    let cfg = JitterConfig {
        min_delay: Ticks::from_millis(60),
        ..JitterConfig::default()
    };
    let mut sim = Sim::new(3, cfg);
    sim.drop = (100..106).collect();
    sim.run(300);
    let seqs = sim.seqs();
    assert_in_order(&seqs);
    // The burst's 120 ms were concealed: expanding while nothing newer was here, then
    // as lost packets once the next one arrived. Waiting may have grown the delay by up
    // to one frame more (for the receive path's time-scale modification to take back).
    let concealed = sim.count(|p| matches!(p, Played::Lost(_) | Played::Expand));
    assert!(
        (6..=7).contains(&concealed),
        "{concealed}: {:?}",
        &sim.played[95..120]
    );
    assert_eq!(sim.jb.stats().lost, 6);
    let after = sim
        .played
        .iter()
        .find(|p| matches!(p, Played::Packet(1106, _)))
        .copied();
    assert_eq!(after, Some(Played::Packet(1106, 6)));
    // The packet after the burst was offered for FEC of the last lost one.
    assert!(
        sim.played.contains(&Played::Lost(true)),
        "{:?} {:?}",
        &sim.played[95..120],
        sim.jb
    );
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut sim = Sim::new(4, JitterConfig::default());
    sim.dup = 0.2;
    sim.jitter = Ticks::from_millis(10);
    sim.run(500);
    let seqs = sim.seqs();
    assert_in_order(&seqs);
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), seqs.len(), "a packet played twice");
    let dups = sim.jb.stats().duplicates;
    assert!(dups > 50, "duplicates counted: {dups}");
}

#[test]
fn sequence_wraparound_is_seamless() {
    let mut sim = Sim::new(6, JitterConfig::default());
    sim.seq = 65_500;
    sim.ts = u32::MAX - 960 * 20;
    sim.jitter = Ticks::from_millis(30);
    sim.run(400);
    let seqs = sim.seqs();
    assert_in_order(&seqs);
    assert!(seqs.contains(&65_535) && seqs.contains(&0) && seqs.contains(&200));
    assert!(seqs.len() >= 380, "played {}", seqs.len());
    assert_eq!(sim.jb.stats().resyncs, 0);
}

#[test]
fn ssrc_change_resyncs_and_plays_the_new_stream() {
    let mut sim = Sim::new(7, JitterConfig::default());
    sim.run(200);
    sim.ssrc = 0x5555;
    sim.seq = 40_000;
    sim.ts = 7;
    sim.run(200);
    assert!(sim.outcomes.contains(&InsertOutcome::Resynced));
    assert_eq!(sim.jb.stats().resyncs, 1);
    let seqs = sim.seqs();
    let new: Vec<u16> = seqs.iter().copied().filter(|s| *s >= 40_000).collect();
    assert!(new.len() >= 180, "new stream played {} packets", new.len());
    assert_in_order(&new);
}

#[test]
fn one_stray_packet_with_a_huge_jump_does_not_resync() {
    let mut sim = Sim::new(8, JitterConfig::default());
    sim.run(100);
    let stray = fake_packet(sim.ssrc, sim.seq.wrapping_add(30_000), 5, sim.now);
    assert_eq!(sim.jb.insert(&stray, sim.now), InsertOutcome::Probation);
    sim.run(100);
    assert_eq!(sim.jb.stats().resyncs, 0);
    assert_eq!(sim.jb.stats().unconfirmed, 1);
    assert_eq!(sim.count(|p| matches!(p, Played::Lost(_))), 0);
}

#[test]
fn a_confirmed_timestamp_jump_resyncs() {
    let mut sim = Sim::new(9, JitterConfig::default());
    sim.run(100);
    sim.ts = sim.ts.wrapping_add(48_000 * 60); // a minute ahead, sequence continuous
    sim.run(100);
    assert_eq!(sim.jb.stats().resyncs, 1);
    assert!(sim.seqs().len() >= 180);
}

#[test]
fn a_pause_in_the_stream_plays_no_signal_then_resumes_without_late_drops() {
    let mut sim = Sim::new(10, JitterConfig::default());
    sim.run(100);
    // The sender pauses 1 s (DTX): sequence continues, timestamp jumps with real time.
    let pause_packets = 50;
    sim.t0 += Ticks(FRAME_DURATION.0 * pause_packets);
    sim.ts = sim.ts.wrapping_add(960 * pause_packets as u32);
    sim.run(200);
    assert_eq!(sim.jb.stats().late, 0, "{:?}", sim.jb.stats());
    assert_in_order(&sim.seqs());
    assert!(sim.count(|p| *p == Played::NoSignal) >= 40);
    assert!(sim.seqs().len() >= 240);
}

#[test]
fn garbage_and_empty_payloads_are_refused() {
    let mut jb = JitterBuffer::new(JitterConfig::default());
    let now = Ticks::from_millis(5);
    let mut p = fake_packet(1, 1, 0, now);
    p.set_payload(&[]).unwrap();
    assert_eq!(jb.insert(&p, now), InsertOutcome::Invalid);
    // Code 3 with a frame count of 0 is not a valid Opus packet.
    p.set_payload(&[0x4B, 0x00]).unwrap();
    assert_eq!(jb.insert(&p, now), InsertOutcome::Invalid);
    assert_eq!(jb.stats().invalid, 2);
    assert!(matches!(jb.pop(now, Ticks::ZERO), Playout::NoSignal));
}

proptest::proptest! {
    /// Any sequence of packets, however hostile, is handled without a panic, and the
    /// buffer never holds more than its ring.
    #[test]
    fn arbitrary_packets_never_panic(
        ops in proptest::collection::vec(
            (proptest::prelude::any::<u16>(), proptest::prelude::any::<u32>(), 0u32..3,
             proptest::collection::vec(proptest::prelude::any::<u8>(), 0..8), 0u8..4),
            0..400,
        )
    ) {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut now = Ticks::from_millis(1);
        for (seq, ts, ssrc, payload, step) in ops {
            let mut p = fake_packet(ssrc, seq, ts, now);
            if !payload.is_empty() {
                p.set_payload(&payload).unwrap();
            }
            let _ = jb.insert(&p, now);
            if step > 0 {
                let _ = jb.pop(now, Ticks(u64::from(step) * 2_000));
                now += FRAME_DURATION;
            }
            proptest::prop_assert!(jb.len() <= 64);
        }
    }
}
