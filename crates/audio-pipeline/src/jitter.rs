//! The packet side of the receive path: a jitter buffer and delay manager in the manner of
//! libwebrtc's NetEQ. Sans-IO (time passed in), fixed memory.
//!
//! Packets are held in a ring of slots indexed by extended RTP sequence number. Playout
//! follows a cursor (next sequence number, next RTP timestamp). The delay of the audio about
//! to play is measured against the earliest possible arrival of its packet: media time plus
//! the smallest one-way transit seen over the last two seconds. So it needs no clock
//! synchronisation, tracks sender clock skew, and does not wobble with each packet's own
//! jitter: it changes only when the receive path changes it.
//!
//! The target delay is a quantile of the packets' relative arrival delay (their transit
//! above that smallest one), read from a histogram with exponential forgetting, plus one
//! frame; it rises at once and falls slowly. The buffer never discards or inserts a whole
//! packet of audio to follow it: it tells the caller the delay, and the caller's
//! time-scale modification (see `receive.rs`) removes or repeats pitch periods, preferring
//! quiet audio. When the packet due is missing the buffer says why: lost (later packets are
//! here: conceal it or rebuild it from FEC), or not here yet (expand, waiting for it
//! without consuming anything, so a late packet is still played, and the delay grows).

use crate::config::JitterConfig;
use crate::packet::EncodedPacket;
use crate::time::{FRAME_DURATION, Ticks};

/// Slots in the ring: 1.28 s of 20 ms packets, above the largest supported delay.
const SLOTS: usize = 64;
/// Recent one-way transits kept for their minimum (2 s of 20 ms packets).
const WINDOW: usize = 100;
/// Packets this far behind the highest one are "late", further ones are a jump.
const MAX_MISORDER: i64 = 100;
/// Frames expanded while waiting for a packet before the stream counts as paused.
const MAX_EXPAND_FRAMES: u32 = 5;
/// Largest Opus packet duration (120 ms) in 48 kHz samples.
const MAX_OPUS_SAMPLES_48K: usize = 5760;
/// Width of a relative-delay histogram bucket.
const BUCKET: Ticks = Ticks::from_millis(2);
/// Buckets of the histogram: relative delays up to the largest supported delay.
const BUCKETS: usize = 500;
/// Forgetting factor of the histogram per packet once it has settled (memory of about
/// 500 packets, 10 s): the quantile follows a network that calms down.
const FORGET: f32 = 0.998;
/// Smoothing of the filtered delay per packet played (about 16 packets, 320 ms).
const FILTER_SHIFT: f64 = 1.0 / 16.0;
/// Weight of one packet in the loss rate estimate (memory of about 50 packets, 1 s).
const LOSS_WEIGHT: f32 = 0.02;
/// Above this estimated loss rate the target keeps one more frame, so that the packet
/// after a lost one is here in time to rebuild it from its in-band FEC.
const LOSSY: f32 = 0.02;

/// What [`JitterBuffer::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Stored for playout.
    Accepted,
    /// Stored, after a resync (new SSRC or a confirmed jump): the caller resets its decoder.
    Resynced,
    /// Same sequence number already held or played; dropped.
    Duplicate,
    /// Its playout time has passed; dropped.
    Late,
    /// Out of the expected range or from a new SSRC; held until the next packet confirms
    /// the new sequence (one stray packet never resyncs the stream).
    Probation,
    /// Empty payload or not a valid Opus packet; dropped.
    Invalid,
}

/// What to play next, from [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy)]
pub enum Playout<'a> {
    /// Decode this packet.
    Packet {
        /// The packet.
        packet: &'a EncodedPacket,
        /// Packets lost since the previous packet played.
        gap: u16,
        /// Its playout delay: from the earliest its packet could have arrived to when
        /// its audio starts playing. Compare with [`JitterBuffer::target_delay`].
        delay: Ticks,
    },
    /// The packet due is lost (later ones are here): conceal 20 ms, or rebuild it from
    /// `fec` (the next packet, whose in-band FEC may carry it) when present.
    Lost {
        /// The next packet, in sequence and time, if already here.
        fec: Option<&'a EncodedPacket>,
    },
    /// The packet due has not arrived and nothing after it has: conceal 20 ms without
    /// consuming it (NetEQ's expand). If it arrives it is still played, later.
    Expand,
    /// Nothing to play: not started, a pause in the stream, or a stream that stopped.
    NoSignal,
}

/// Counters of a jitter buffer since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets stored.
    pub accepted: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    /// Empty or non-Opus payloads dropped.
    pub invalid: u64,
    /// Packets held on probation that were never confirmed.
    pub unconfirmed: u64,
    /// Packets declared lost (sequence numbers never played).
    pub lost: u64,
    /// Of `lost`: packets whose time was not concealed again because what played while
    /// waiting for them (expanded frames, then silence) had covered it.
    pub lost_skipped: u64,
    /// Frames expanded while waiting for a packet that had not arrived.
    pub expanded: u64,
    /// Resyncs.
    pub resyncs: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    /// Extended sequence number held, or `i64::MIN` when empty.
    ext_seq: i64,
    /// Extended RTP timestamp relative to the sync base.
    ts: i64,
    /// Duration in RTP clock units.
    duration: i64,
    packet: EncodedPacket,
}

const EMPTY_SLOT: Slot = Slot {
    ext_seq: i64::MIN,
    ts: 0,
    duration: 0,
    packet: EncodedPacket::empty(),
};

/// An adaptive jitter buffer for one RTP audio stream. Sans-IO: every call takes `now`.
/// All memory is allocated in [`JitterBuffer::new`]; nothing allocates afterwards.
pub struct JitterBuffer {
    cfg: JitterConfig,
    slots: Box<[Slot]>,
    synced: bool,
    ssrc: u32,
    /// Sequence number and RTP timestamp (unwrapped) of the sync base.
    base_seq: u16,
    base_ts: u32,
    highest_seq: i64,
    highest_ts: i64,
    started: bool,
    cursor_seq: i64,
    cursor_ts: i64,
    losses_since_played: u32,
    expand_run: u32,
    /// While waiting for a packet that has not arrived: when its audio was due to start
    /// playing. Everything played since (concealment, then silence) stands in for its time.
    waiting_since: Option<Ticks>,
    /// A packet held until the next one confirms a new SSRC or sequence.
    probation: Option<EncodedPacket>,
    /// Recent transits (arrival minus media time, in ticks) for their minimum.
    transits: Box<[i64; WINDOW]>,
    transits_len: usize,
    transits_next: usize,
    min_transit: i64,
    /// Relative arrival delays: weight per [`BUCKET`]. Forgetting is done by making each
    /// new packet weigh more than the last (`histogram_weight`), not by scaling every
    /// bucket per packet; the buckets are rescaled when the weight grows large.
    histogram: Box<[f32; BUCKETS]>,
    histogram_weight: f32,
    histogram_total: f32,
    /// Packets counted into the histogram (its forgetting starts as a plain average).
    histogram_packets: u64,
    histogram_dirty: bool,
    /// The quantile of the relative delay plus a frame, from the histogram.
    quantile_target: Ticks,
    /// Estimated share of packets lost (late ones that arrive after all are taken back).
    loss_rate: f32,
    target: Ticks,
    last_target_update: Ticks,
    delay: Ticks,
    filtered_delay: f64,
    jitter: f64,
    last_transit: Option<(i64, i64)>,
    frame_ts: i64,
    stats: JitterStats,
}

impl std::fmt::Debug for JitterBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitterBuffer")
            .field("started", &self.started)
            .field("cursor_seq", &self.cursor_seq)
            .field("target", &self.target)
            .field("delay", &self.delay)
            .field("stats", &self.stats)
            .finish()
    }
}

impl JitterBuffer {
    /// A buffer with `cfg` (validate it with the call config; out-of-range values are
    /// clamped here rather than rejected).
    pub fn new(cfg: JitterConfig) -> JitterBuffer {
        let mut cfg = cfg;
        cfg.rtp_clock_hz = cfg.rtp_clock_hz.max(1);
        cfg.max_delay = cfg.max_delay.min(crate::config::MAX_JITTER_DELAY);
        cfg.min_delay = cfg.min_delay.min(cfg.max_delay);
        cfg.quantile_permille = cfg.quantile_permille.clamp(1, 1000);
        let frame_ts = i64::from(cfg.rtp_clock_hz) / 50;
        let mut jb = JitterBuffer {
            slots: vec![EMPTY_SLOT; SLOTS].into_boxed_slice(),
            synced: false,
            ssrc: 0,
            base_seq: 0,
            base_ts: 0,
            highest_seq: 0,
            highest_ts: 0,
            started: false,
            cursor_seq: 0,
            cursor_ts: 0,
            losses_since_played: 0,
            expand_run: 0,
            waiting_since: None,
            probation: None,
            transits: Box::new([0; WINDOW]),
            transits_len: 0,
            transits_next: 0,
            min_transit: 0,
            histogram: Box::new([0.0; BUCKETS]),
            histogram_weight: 1.0,
            histogram_total: 0.0,
            histogram_packets: 0,
            histogram_dirty: false,
            quantile_target: Ticks::ZERO,
            loss_rate: 0.0,
            target: Ticks::ZERO,
            last_target_update: Ticks::ZERO,
            delay: Ticks::ZERO,
            filtered_delay: 0.0,
            jitter: 0.0,
            last_transit: None,
            frame_ts,
            stats: JitterStats::default(),
            cfg,
        };
        jb.reset_delay_statistics(Ticks::ZERO);
        jb
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The target playout delay: the configured quantile of the relative arrival delay
    /// plus one frame (and one more while the stream loses packets, so that in-band FEC
    /// can rebuild them), within the configured bounds.
    pub fn target_delay(&self) -> Ticks {
        self.target
    }

    /// The part of the target the arrival statistics require (the quantile plus a
    /// frame, within bounds), without the frame kept for FEC while packets are lost:
    /// below it packets start missing their turn.
    pub fn required_delay(&self) -> Ticks {
        clamp(self.quantile_target, self.cfg.min_delay, self.cfg.max_delay).min(self.target)
    }

    /// The playout delay of the last packet played (see [`Playout::Packet::delay`]).
    pub fn current_delay(&self) -> Ticks {
        self.delay
    }

    /// The playout delay smoothed over about 16 packets: what a sustained excess over the
    /// target is judged on.
    pub fn filtered_delay(&self) -> Ticks {
        Ticks(self.filtered_delay.max(0.0) as u64)
    }

    /// Interarrival jitter (RFC 3550 estimator).
    pub fn jitter(&self) -> Ticks {
        Ticks(self.jitter as u64)
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        if !self.synced {
            return 0;
        }
        self.slots
            .iter()
            .filter(|s| s.ext_seq >= self.cursor_seq && s.ext_seq != i64::MIN)
            .count()
    }

    /// True when no packet waits for playout.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn ts_to_ticks(&self, ts: i64) -> i64 {
        ((i128::from(ts) * i128::from(Ticks::PER_SECOND)) / i128::from(self.cfg.rtp_clock_hz))
            as i64
    }

    fn ext_seq(&self, seq: u16) -> i64 {
        let rel = i64::from(seq.wrapping_sub(self.base_seq));
        // Pick the unwrapping of `rel` closest to the highest sequence seen.
        let cycle = (self.highest_seq - rel + 0x8000).div_euclid(0x1_0000);
        rel + cycle * 0x1_0000
    }

    fn ext_ts(&self, ts: u32) -> i64 {
        let rel = i64::from(ts.wrapping_sub(self.base_ts));
        let cycle = (self.highest_ts - rel + 0x8000_0000).div_euclid(0x1_0000_0000);
        rel + cycle * 0x1_0000_0000
    }

    fn duration_of(&self, packet: &EncodedPacket) -> Option<i64> {
        let payload = packet.payload();
        if payload.is_empty() {
            return None;
        }
        let samples = opus::packet::get_nb_samples(payload, 48_000).ok()?;
        if samples == 0 || samples > MAX_OPUS_SAMPLES_48K {
            return None;
        }
        Some(samples as i64 * i64::from(self.cfg.rtp_clock_hz) / 48_000)
    }

    /// Forgets every delay statistic: the target starts again from the configured
    /// initial delay, which also seeds the histogram as one prior observation.
    fn reset_delay_statistics(&mut self, now: Ticks) {
        self.transits_len = 0;
        self.transits_next = 0;
        self.min_transit = 0;
        self.histogram.fill(0.0);
        let prior = self.cfg.initial_delay.saturating_sub(FRAME_DURATION);
        self.histogram[bucket_of(prior)] = 1.0;
        self.histogram_weight = 1.0;
        self.histogram_total = 1.0;
        self.histogram_packets = 1;
        self.histogram_dirty = false;
        self.target = clamp(
            self.cfg.initial_delay,
            self.cfg.min_delay,
            self.cfg.max_delay,
        );
        self.quantile_target = self.target;
        self.loss_rate = 0.0;
        self.last_target_update = now;
        self.last_transit = None;
    }

    fn resync(&mut self, packet: &EncodedPacket, now: Ticks) {
        for slot in self.slots.iter_mut() {
            slot.ext_seq = i64::MIN;
        }
        self.synced = true;
        self.ssrc = packet.meta.ssrc;
        self.base_seq = packet.meta.seq;
        self.base_ts = packet.meta.rtp_timestamp;
        self.highest_seq = 0;
        self.highest_ts = 0;
        self.started = false;
        self.cursor_seq = 0;
        self.cursor_ts = 0;
        self.losses_since_played = 0;
        self.expand_run = 0;
        self.waiting_since = None;
        self.reset_delay_statistics(now);
    }

    /// Offers a packet that arrived at `packet.meta.arrival` (`now` if that is zero).
    pub fn insert(&mut self, packet: &EncodedPacket, now: Ticks) -> InsertOutcome {
        let Some(duration) = self.duration_of(packet) else {
            self.stats.invalid += 1;
            return InsertOutcome::Invalid;
        };
        let arrival = if packet.meta.arrival == Ticks::ZERO {
            now
        } else {
            packet.meta.arrival
        };
        if !self.synced {
            self.resync(packet, arrival);
            self.store(packet, duration, arrival);
            return InsertOutcome::Accepted;
        }
        if packet.meta.ssrc != self.ssrc {
            return self.probation_or_resync(packet, arrival);
        }
        let ext = self.ext_seq(packet.meta.seq);
        let ts = self.ext_ts(packet.meta.rtp_timestamp);
        let late_floor = self.cursor_seq.min(self.highest_seq - MAX_MISORDER);
        if self.started && ext < self.cursor_seq && ext >= late_floor - MAX_MISORDER {
            if self.slot(ext).is_some() {
                self.stats.duplicates += 1;
                return InsertOutcome::Duplicate;
            }
            self.stats.late += 1;
            // Not lost after all, only late; its arrival still tells how late packets
            // come: the target must cover it.
            self.loss_rate = (self.loss_rate - LOSS_WEIGHT).max(0.0);
            self.observe_transit(ext, ts, arrival);
            return InsertOutcome::Late;
        }
        // Where this packet's timestamp should be, given its sequence number and the
        // highest packet's, assuming 20 ms packets; DTX pauses keep it within the bound.
        let expected_ts = self.highest_ts + (ext - self.highest_seq) * self.frame_ts;
        let jump_ts = (self.ts_to_ticks(ts) - self.ts_to_ticks(expected_ts)).unsigned_abs();
        let seq_window_ok = if self.started {
            ext >= self.cursor_seq && ext < self.cursor_seq + SLOTS as i64
        } else {
            ext > self.highest_seq - SLOTS as i64 / 2 && ext < self.cursor_seq + SLOTS as i64
        };
        if !seq_window_ok || jump_ts > self.cfg.resync_jump.0 {
            return self.probation_or_resync(packet, arrival);
        }
        if self.slot(ext).is_some() {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        // Before playout starts, a reordered earlier packet moves the start back.
        if !self.started && ext < self.cursor_seq {
            self.cursor_seq = ext;
            self.cursor_ts = ts;
        }
        if self.probation.take().is_some() {
            self.stats.unconfirmed += 1;
        }
        self.store_at(packet, ext, ts, duration, arrival);
        InsertOutcome::Accepted
    }

    fn probation_or_resync(&mut self, packet: &EncodedPacket, arrival: Ticks) -> InsertOutcome {
        if let Some(held) = self.probation.take() {
            let follows = held.meta.ssrc == packet.meta.ssrc
                && packet.meta.seq.wrapping_sub(held.meta.seq) == 1;
            if follows {
                self.stats.resyncs += 1;
                self.resync(&held, held.meta.arrival.max(Ticks(1)).min(arrival));
                if let Some(d) = self.duration_of(&held) {
                    self.store(&held, d, held.meta.arrival);
                }
                if let Some(d) = self.duration_of(packet) {
                    let ext = self.ext_seq(packet.meta.seq);
                    let ts = self.ext_ts(packet.meta.rtp_timestamp);
                    self.store_at(packet, ext, ts, d, arrival);
                }
                return InsertOutcome::Resynced;
            }
            self.stats.unconfirmed += 1;
        }
        let mut held = *packet;
        held.meta.arrival = arrival;
        self.probation = Some(held);
        InsertOutcome::Probation
    }

    fn store(&mut self, packet: &EncodedPacket, duration: i64, arrival: Ticks) {
        let ext = self.ext_seq(packet.meta.seq);
        let ts = self.ext_ts(packet.meta.rtp_timestamp);
        if self.transits_len == 0 && !self.started {
            self.cursor_seq = ext;
            self.cursor_ts = ts;
        }
        self.store_at(packet, ext, ts, duration, arrival);
    }

    fn store_at(
        &mut self,
        packet: &EncodedPacket,
        ext: i64,
        ts: i64,
        duration: i64,
        arrival: Ticks,
    ) {
        let slot = &mut self.slots[ext.rem_euclid(SLOTS as i64) as usize];
        slot.ext_seq = ext;
        slot.ts = ts;
        slot.duration = duration;
        slot.packet = *packet;
        self.stats.accepted += 1;
        if ext > self.highest_seq {
            self.highest_seq = ext;
            self.highest_ts = ts;
        }
        self.observe_transit(ext, ts, arrival);
    }

    /// Counts one packet's arrival into the delay statistics: the transit window (for
    /// the smallest transit), the relative-delay histogram and the RFC 3550 jitter.
    fn observe_transit(&mut self, ext: i64, ts: i64, arrival: Ticks) {
        let transit = arrival.0 as i64 - self.ts_to_ticks(ts);
        self.transits[self.transits_next] = transit;
        self.transits_next = (self.transits_next + 1) % WINDOW;
        self.transits_len = (self.transits_len + 1).min(WINDOW);
        self.min_transit = self.transits[..self.transits_len]
            .iter()
            .copied()
            .min()
            .unwrap_or(transit);
        let relative = Ticks((transit - self.min_transit).max(0) as u64);
        // Forgetting: a plain average over the first packets (until 1 / n reaches the
        // forgetting rate), then exponential: each packet weighs 1 / FORGET times the
        // previous one.
        self.histogram_packets += 1;
        let averaging = (self.histogram_packets as f32) < 1.0 / (1.0 - FORGET);
        let weight = if averaging {
            self.histogram_weight
        } else {
            self.histogram_weight / FORGET
        };
        self.histogram_weight = weight;
        self.histogram[bucket_of(relative)] += weight;
        self.histogram_total += weight;
        if weight > 1.0e20 {
            let scale = 1.0 / weight;
            for p in self.histogram.iter_mut() {
                *p *= scale;
            }
            self.histogram_total *= scale;
            self.histogram_weight = 1.0;
        }
        self.histogram_dirty = true;
        if let Some((prev_ext, prev_transit)) = self.last_transit
            && ext == prev_ext + 1
        {
            let d = (transit - prev_transit).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some((ext, transit));
    }

    fn slot(&self, ext: i64) -> Option<&Slot> {
        let slot = &self.slots[ext.rem_euclid(SLOTS as i64) as usize];
        (slot.ext_seq == ext).then_some(slot)
    }

    fn update_target(&mut self, now: Ticks) {
        if self.histogram_dirty {
            self.histogram_dirty = false;
            let wanted_mass = self.histogram_total * f32::from(self.cfg.quantile_permille) / 1000.0;
            let mut mass = 0.0;
            let mut bucket = BUCKETS - 1;
            for (i, p) in self.histogram.iter().enumerate() {
                mass += p;
                if mass >= wanted_mass {
                    bucket = i;
                    break;
                }
            }
            self.quantile_target = Ticks((bucket as u64 + 1) * BUCKET.0) + FRAME_DURATION;
        }
        let fec_margin = if self.loss_rate > LOSSY {
            FRAME_DURATION
        } else {
            Ticks::ZERO
        };
        let wanted = clamp(
            self.quantile_target + fec_margin,
            self.cfg.min_delay,
            self.cfg.max_delay,
        );
        if wanted > self.target {
            self.target = wanted;
        } else {
            let elapsed = now.saturating_sub(self.last_target_update);
            let step = Ticks(
                (u128::from(self.cfg.shrink_per_second.0) * u128::from(elapsed.0)
                    / u128::from(Ticks::PER_SECOND)) as u64,
            );
            self.target = (self.target.saturating_sub(step)).max(wanted);
        }
        self.last_target_update = now;
    }

    /// The playout delay of audio with timestamp `ts` starting to play at `at`.
    fn delay_of(&self, ts: i64, at: Ticks) -> Ticks {
        let earliest = self.ts_to_ticks(ts) + self.min_transit;
        Ticks((at.0 as i64 - earliest).max(0) as u64)
    }

    /// Decides what plays next. `now` is the tick's media time and `buffered` the audio
    /// already decoded and not yet played: the next audio starts playing at
    /// `now + buffered`.
    pub fn pop(&mut self, now: Ticks, buffered: Ticks) -> Playout<'_> {
        if !self.synced {
            return Playout::NoSignal;
        }
        self.update_target(now);
        let at = now + buffered;

        // Packets whose whole duration has already been played out are late.
        for _ in 0..SLOTS {
            match self.slot(self.cursor_seq) {
                Some(s) if s.ts + s.duration <= self.cursor_ts => {
                    self.stats.late += 1;
                    self.cursor_seq += 1;
                }
                _ => break,
            }
        }

        let Some(&Slot { ts, .. }) = self.slot(self.cursor_seq) else {
            return self.missing(at);
        };
        let delay = self.delay_of(ts, at);
        // The first packet, and the first after a pause in the sender's timeline (DTX,
        // or a stream that stopped), wait until their delay reaches the target.
        let resuming = !self.started || ts > self.cursor_ts + self.frame_ts / 2;
        if resuming && delay + Ticks(FRAME_DURATION.0 / 2) < self.target {
            return Playout::NoSignal;
        }
        if !self.started {
            self.started = true;
            self.filtered_delay = delay.0 as f64;
        }
        self.play(delay)
    }

    fn play(&mut self, delay: Ticks) -> Playout<'_> {
        let ext = self.cursor_seq;
        let Some(&Slot { ts, duration, .. }) = self.slot(ext) else {
            return Playout::NoSignal;
        };
        self.cursor_seq += 1;
        self.cursor_ts = ts + duration;
        self.expand_run = 0;
        self.waiting_since = None;
        self.delay = delay;
        self.loss_rate *= 1.0 - LOSS_WEIGHT;
        self.filtered_delay += (delay.0 as f64 - self.filtered_delay) * FILTER_SHIFT;
        let gap = self.losses_since_played.min(u32::from(u16::MAX)) as u16;
        self.losses_since_played = 0;
        match self.slot(ext) {
            Some(slot) => Playout::Packet {
                packet: &slot.packet,
                gap,
                delay,
            },
            None => Playout::NoSignal,
        }
    }

    /// The earliest packet held after the cursor: (extended sequence, timestamp).
    fn earliest_later(&self) -> Option<(i64, i64)> {
        if self.highest_seq <= self.cursor_seq {
            return None;
        }
        self.slots
            .iter()
            .filter(|s| s.ext_seq > self.cursor_seq && s.ext_seq != i64::MIN)
            .min_by_key(|s| s.ext_seq)
            .map(|s| (s.ext_seq, s.ts))
    }

    fn declare_lost(&mut self, count: i64) {
        let count = count.max(0) as u64;
        self.stats.lost += count;
        for _ in 0..count.min(SLOTS as u64) {
            self.loss_rate = self.loss_rate * (1.0 - LOSS_WEIGHT) + LOSS_WEIGHT;
        }
        self.losses_since_played = self
            .losses_since_played
            .saturating_add(count.min(u64::from(u32::MAX)) as u32);
    }

    fn missing(&mut self, at: Ticks) -> Playout<'_> {
        if !self.started {
            return Playout::NoSignal;
        }
        let Some((mut next_seq, mut next_ts)) = self.earliest_later() else {
            // Nothing later is here: the packet is late, lost in a burst, or the stream
            // paused. Expand a little while without consuming it, so a late packet still
            // plays; then silence. The wait is timed from when the packet was due.
            if self.waiting_since.is_none() {
                self.waiting_since = Some(at);
            }
            if self.expand_run < MAX_EXPAND_FRAMES {
                self.expand_run += 1;
                self.stats.expanded += 1;
                return Playout::Expand;
            }
            return Playout::NoSignal;
        };
        // Later packets are here: the one due is lost. What played while waiting for it
        // (expanded frames, and the silence after them in a long burst) already stands in
        // for its time: drop that time rather than conceal it again, as NetEQ's expand
        // moves the playout timestamp on. Concealing it again would add the whole wait to
        // the delay, to be cut out of the speech that follows. Stop at a packet that is
        // here.
        let waited = self.waiting_since.take().map_or(0, |since| {
            let elapsed = at.saturating_sub(since);
            (elapsed.0 + FRAME_DURATION.0 / 2) / FRAME_DURATION.0
        });
        let mut covered = waited.min(SLOTS as u64);
        for _ in 0..SLOTS {
            if next_ts <= self.cursor_ts + self.frame_ts / 2 {
                // The missing packets' time was already played: jump to the next one.
                self.declare_lost(next_seq - self.cursor_seq);
                self.cursor_seq = next_seq;
                let delay = self.delay_of(next_ts, at);
                return self.play(delay);
            }
            if covered == 0 {
                break;
            }
            covered -= 1;
            self.declare_lost(1);
            self.stats.lost_skipped += 1;
            self.cursor_seq += 1;
            self.cursor_ts += self.frame_ts;
            if let Some(&Slot { ts, .. }) = self.slot(self.cursor_seq) {
                let delay = self.delay_of(ts, at);
                return self.play(delay);
            }
            match self.earliest_later() {
                Some((s, t)) => (next_seq, next_ts) = (s, t),
                None => return Playout::NoSignal,
            }
        }
        // Conceal the packet due (20 ms), or rebuild it from the next one's FEC.
        self.declare_lost(1);
        self.cursor_seq += 1;
        self.cursor_ts += self.frame_ts;
        self.expand_run = 0;
        self.waiting_since = None;
        let due_ts = self.cursor_ts;
        let frame_ts = self.frame_ts;
        match self.slot(self.cursor_seq) {
            Some(slot) if (slot.ts - due_ts).abs() < frame_ts / 2 => Playout::Lost {
                fec: Some(&slot.packet),
            },
            _ => Playout::Lost { fec: None },
        }
    }
}

fn bucket_of(delay: Ticks) -> usize {
    ((delay.0 / BUCKET.0) as usize).min(BUCKETS - 1)
}

fn clamp(v: Ticks, lo: Ticks, hi: Ticks) -> Ticks {
    v.max(lo).min(hi)
}
