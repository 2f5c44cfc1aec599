//! The receive path (jitter buffer, Opus, time-scale modification) in simulated time,
//! with speech-like audio: voiced stretches (a pitched, harmonic signal with a syllable
//! envelope) and pauses. What a listener would notice is asserted: the delay moves in
//! pauses rather than inside speech, skew and jitter are absorbed without dropping a
//! packet, late packets are played, and concealment joins decoded audio smoothly.

mod common;

use audio_pipeline::{
    EncodedPacket, FRAME_DURATION, JitterConfig, Pcm16K, Receiver, RtpMeta, Ticks,
};
use common::Rng;

/// A talker: 1.2 s of voiced speech, 0.4 s of pause, pitch drifting 110-190 Hz.
struct Talker {
    n: u64,
    phase: f64,
}

impl Talker {
    fn frame(&mut self) -> (Pcm16K, bool) {
        let mut f = Pcm16K::SILENCE;
        let cycle = 16_000 * 16 / 10; // 1.6 s
        let talking = (self.n % cycle) < 16_000 * 12 / 10;
        for s in f.samples.iter_mut() {
            let t = self.n as f64 / 16_000.0;
            let pos = (self.n % cycle) as f64 / 16_000.0;
            let envelope = if (self.n % cycle) < 16_000 * 12 / 10 {
                // Syllables: 4 per second, never fully closing.
                0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * pos).sin().abs()
            } else {
                0.0
            };
            let pitch = 150.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.3 * t).sin();
            self.phase += 2.0 * std::f64::consts::PI * pitch / 16_000.0;
            let v =
                self.phase.sin() + 0.5 * (2.0 * self.phase).sin() + 0.3 * (3.0 * self.phase).sin();
            *s = (6000.0 * envelope * v) as i16;
            self.n += 1;
        }
        (f, talking)
    }
}

/// Sender (own clock, skew in ppm), network (base delay, jitter, loss, extra delays) and
/// a receiver ticking every 20 ms.
struct Sim {
    rx: Receiver,
    enc: opus::Encoder,
    talker: Talker,
    rng: Rng,
    skew_ppm: f64,
    jitter: Ticks,
    loss: f64,
    drop: Vec<u64>,
    extra_delay: Vec<(u64, Ticks)>,
    sent: u64,
    in_flight: Vec<(Ticks, EncodedPacket)>,
    t0: Ticks,
    now: Ticks,
    /// Per tick: whether the output frame is inside speech, and the samples changed
    /// (accelerated + expanded) while producing it.
    ticks: Vec<(bool, u64)>,
    output: Vec<i16>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut enc =
            opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(10).unwrap();
        let t0 = Ticks::from_millis(10_000);
        Sim {
            rx: Receiver::new(JitterConfig::default()).unwrap(),
            enc,
            talker: Talker { n: 0, phase: 0.0 },
            rng: Rng(seed),
            skew_ppm: 0.0,
            jitter: Ticks::ZERO,
            loss: 0.0,
            drop: Vec::new(),
            extra_delay: Vec::new(),
            sent: 0,
            in_flight: Vec::new(),
            t0,
            // The receiver's ticks fall 7 ms after the sender's (any phase works).
            now: t0 + Ticks::from_millis(7),
            ticks: Vec::new(),
            output: Vec::new(),
        }
    }

    fn send_time(&self, index: u64) -> Ticks {
        let period = FRAME_DURATION.0 as f64 * (1.0 - self.skew_ppm * 1e-6);
        Ticks(self.t0.0 + (index as f64 * period) as u64)
    }

    fn send_due(&mut self) {
        while self.send_time(self.sent) <= self.now {
            let at = self.send_time(self.sent);
            let index = self.sent;
            self.sent += 1;
            let (pcm, _) = self.talker.frame();
            let mut buf = [0u8; 1276];
            let n = self.enc.encode(&pcm.samples, &mut buf).unwrap();
            if self.drop.contains(&index) || self.rng.unit() < self.loss {
                continue;
            }
            let extra = self
                .extra_delay
                .iter()
                .find(|(i, _)| *i == index)
                .map_or(Ticks::ZERO, |(_, d)| *d);
            let arrival =
                at + Ticks::from_millis(30) + Ticks(self.rng.below(self.jitter.0 + 1)) + extra;
            let meta = RtpMeta {
                seq: (index as u16).wrapping_add(500),
                rtp_timestamp: (index as u32).wrapping_mul(960).wrapping_add(77),
                ssrc: 9,
                arrival,
                ..RtpMeta::default()
            };
            self.in_flight
                .push((arrival, EncodedPacket::new(meta, &buf[..n]).unwrap()));
        }
    }

    fn tick(&mut self) {
        self.send_due();
        self.in_flight.sort_by_key(|(t, _)| std::cmp::Reverse(*t));
        while let Some((t, _)) = self.in_flight.last() {
            if *t > self.now {
                break;
            }
            let (_, p) = self.in_flight.pop().unwrap();
            self.rx.insert(&p, self.now);
        }
        let before = self.rx.stats();
        let mut out = Pcm16K::SILENCE;
        self.rx.pull(self.now, &mut out);
        let after = self.rx.stats();
        let changed = (after.accelerated_samples - before.accelerated_samples)
            + (after.expanded_samples - before.expanded_samples);
        let power: f64 = out
            .samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>()
            / 320.0;
        // Speech: above -30 dBFS (the talker's pauses are digital silence).
        self.ticks.push((power > 1.07e6, changed));
        self.output.extend_from_slice(&out.samples);
        self.now += FRAME_DURATION;
    }

    fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            self.tick();
        }
    }

    /// Samples changed by time-scale modification in frames inside speech (a frame of
    /// speech with speech on both sides), from tick `from` on.
    fn changed_inside_speech(&self, from: usize) -> u64 {
        self.ticks
            .windows(3)
            .skip(from)
            .filter(|w| w[0].0 && w[1].0 && w[2].0)
            .map(|w| w[1].1)
            .sum()
    }
}

#[test]
fn clean_speech_settles_in_pauses_and_is_never_stretched_inside_speech() {
    let mut sim = Sim::new(1);
    sim.jitter = Ticks::from_millis(2);
    sim.run(1_500); // 30 s
    let st = sim.rx.stats();
    let js = sim.rx.jitter_stats();
    assert_eq!((js.lost, js.late), (0, 0), "{js:?}");
    assert_eq!(st.concealed_samples, 0, "{st:?}");
    // The start delay (40 ms) comes down to the measured need within the first pauses.
    let target = sim.rx.jitter().target_delay();
    assert!(target <= Ticks::from_millis(30), "target {target:?}");
    let delay = sim.rx.jitter().current_delay();
    assert!(
        delay <= target + Ticks::from_millis(8),
        "delay {delay:?} target {target:?}"
    );
    assert!(st.accelerated_samples > 0, "{st:?}");
    // After the first three seconds nothing is cut or repeated inside speech.
    assert_eq!(sim.changed_inside_speech(150), 0, "{st:?}");
}

fn skew(ppm: f64) -> Sim {
    let mut sim = Sim::new(5);
    sim.skew_ppm = ppm;
    sim.jitter = Ticks::from_millis(3);
    sim.run(6_000); // 2 minutes: 500 ppm is 60 ms
    sim
}

#[test]
fn a_fast_sender_clock_is_absorbed_by_accelerating_in_pauses() {
    let sim = skew(500.0);
    let st = sim.rx.stats();
    let js = sim.rx.jitter_stats();
    assert_eq!((js.lost, js.late), (0, 0), "{js:?}");
    let net = st.accelerated_samples as i64 - st.expanded_samples as i64;
    // 60 ms of extra audio arrived (960 samples), plus the start delay's excess.
    assert!((800..=1_800).contains(&net), "net removed {net}: {st:?}");
    assert_eq!(sim.changed_inside_speech(150), 0, "{st:?}");
    let delay = sim.rx.jitter().current_delay();
    let target = sim.rx.jitter().target_delay();
    assert!(
        delay <= target + Ticks::from_millis(10),
        "{delay:?} {target:?}"
    );
}

#[test]
fn a_slow_sender_clock_is_absorbed_by_expanding_in_pauses() {
    let sim = skew(-500.0);
    let st = sim.rx.stats();
    let js = sim.rx.jitter_stats();
    assert_eq!((js.lost, js.late), (0, 0), "{js:?}");
    assert_eq!(st.concealed_samples, 0, "{st:?}");
    assert!(st.expanded_samples >= 700, "{st:?}");
    assert_eq!(sim.changed_inside_speech(150), 0, "{st:?}");
}

#[test]
fn jitter_of_40_ms_is_covered_without_dropping_packets() {
    let mut sim = Sim::new(7);
    sim.jitter = Ticks::from_millis(40);
    sim.run(1_500);
    let js = sim.rx.jitter_stats();
    let target = sim.rx.jitter().target_delay();
    assert!(
        target >= Ticks::from_millis(50) && target <= Ticks::from_millis(75),
        "target {target:?}"
    );
    // Packets behind the 95th percentile are concealed or rebuilt, never skipped to
    // move the delay.
    let late_or_lost = js.late + js.lost;
    assert!(late_or_lost < 1_500 * 6 / 100, "{js:?}");
    let st = sim.rx.stats();
    assert!(
        st.concealed_samples < 1_500 * 320 * 6 / 100,
        "{st:?} {js:?}"
    );
}

#[test]
fn a_stalled_network_is_waited_for_and_the_delay_taken_back_in_pauses() {
    let mut sim = Sim::new(9);
    sim.run(300);
    // Packets 300-303 are held by a 70 ms stall and arrive together.
    sim.extra_delay = (0..4)
        .map(|i| (300 + i, Ticks::from_millis(70 - 20 * i)))
        .collect();
    sim.run(700);
    let js = sim.rx.jitter_stats();
    let st = sim.rx.stats();
    assert_eq!(
        (js.lost, js.late),
        (0, 0),
        "every packet still played: {js:?}"
    );
    assert!(js.expanded >= 2, "{js:?}");
    assert!(st.merged_samples > 0, "{st:?}");
    let delay = sim.rx.jitter().current_delay();
    let target = sim.rx.jitter().target_delay();
    assert!(
        delay <= target + Ticks::from_millis(10),
        "the stall's delay was taken back: {delay:?} {target:?}"
    );
}

#[test]
fn random_loss_is_rebuilt_from_fec_or_concealed_and_merged() {
    let mut sim = Sim::new(11);
    sim.loss = 0.1;
    sim.jitter = Ticks::from_millis(5);
    sim.run(1_000);
    let st = sim.rx.stats();
    let js = sim.rx.jitter_stats();
    assert!(js.lost >= 60, "{js:?}");
    assert!(st.fec_samples > 0, "{st:?}");
    assert!(st.merged_samples > 0, "{st:?}");
    // No sample jump bigger than the talker's own steepest slope plus margin.
    let steepest = sim
        .output
        .windows(2)
        .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
        .max()
        .unwrap_or(0);
    assert!(steepest < 12_000, "a click of {steepest}");
}

/// Packets lost by a Gilbert-Elliott channel (every packet in the bad state is lost) at
/// `loss` on average, in bursts of `burst` packets on average, seeded: the relay's model.
fn burst_losses(seed: u64, packets: u64, loss: f64, burst: f64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let to_good = 1.0 / burst;
    let to_bad = loss * to_good / (1.0 - loss);
    let mut bad = false;
    let mut lost = Vec::new();
    for i in 0..packets {
        bad = if bad {
            rng.unit() >= to_good
        } else {
            rng.unit() < to_bad
        };
        if bad {
            lost.push(i);
        }
    }
    lost
}

/// The longest run of consecutive indices in `lost`.
fn longest_burst(lost: &[u64]) -> usize {
    let (mut longest, mut run) = (0, 0);
    for (i, &p) in lost.iter().enumerate() {
        run = if i > 0 && lost[i - 1] + 1 == p {
            run + 1
        } else {
            1
        };
        longest = longest.max(run);
    }
    longest
}

#[test]
fn bursts_longer_than_the_expansion_do_not_add_their_wait_to_the_delay() {
    // 10 % loss in bursts of 3 on average: some bursts last 6-10 packets, longer than the
    // 5 frames of concealment the buffer expands while waiting. The time played while
    // waiting (concealment, then silence) stands for the lost packets' time, so the
    // packet after a burst plays at the delay the audio before it had; concealing the
    // lost packets again after it arrived added up to the whole burst to the delay (a
    // 10-packet burst: 100 ms), which was then cut out of the speech that followed in
    // pitch-period steps (the Chromium far end's "bursts of 3" cell, steps of 20 ms).
    let mut sim = Sim::new(17);
    sim.jitter = Ticks::from_millis(2);
    sim.drop = burst_losses(3, 3_000, 0.1, 3.0);
    assert!(longest_burst(&sim.drop) >= 8, "the pattern has long bursts");
    let mut delays = Vec::new();
    for _ in 0..3_000 {
        sim.tick();
        delays.push(sim.rx.jitter().current_delay());
    }
    let js = sim.rx.jitter_stats();
    let st = sim.rx.stats();
    assert!(js.lost >= 200 && js.lost_skipped > 100, "{js:?}");
    // After the first three seconds, inside speech no packet's delay differs from the
    // one played before it by more than half a frame (the wait is rounded to whole
    // packets), and speech is not cut to take back a wait.
    let largest_step = delays
        .windows(2)
        .zip(sim.ticks.windows(2))
        .skip(150)
        .filter(|(_, t)| t[0].0 && t[1].0)
        .map(|(d, _)| d[1].0.abs_diff(d[0].0))
        .max()
        .unwrap_or(0);
    assert!(
        largest_step <= Ticks::from_millis(10).0,
        "a delay step of {} ms: {js:?} {st:?}",
        largest_step / Ticks::PER_MILLI
    );
    let cut_in_speech = sim.changed_inside_speech(150);
    assert!(
        cut_in_speech <= 3 * 320,
        "{cut_in_speech} samples changed inside speech: {js:?} {st:?}"
    );
}
