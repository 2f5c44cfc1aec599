//! The jitter buffer: sans-IO (time passed in), fixed memory, one decision per 20 ms.
//!
//! Packets are held in a ring of slots indexed by extended RTP sequence number. Playout
//! follows a cursor (next sequence number, next RTP timestamp). The playout delay is
//! measured against the smallest recent one-way delay (arrival time minus media time), so
//! it needs no clock synchronisation and tracks sender clock skew: when the delay drifts
//! one frame above the target a packet is skipped, one frame below it a concealment frame
//! is inserted. The target is a quantile of the recent delay spread plus one frame,
//! bounded, raised at once and lowered slowly.

use crate::config::JitterConfig;
use crate::packet::EncodedPacket;
use crate::time::{FRAME_DURATION, Ticks};

/// Slots in the ring: 1.28 s of 20 ms packets, above the largest supported delay.
const SLOTS: usize = 64;
/// Recent one-way delays kept for the quantile (4 s of 20 ms packets).
const WINDOW: usize = 200;
/// Delays needed before the target adapts; until then `initial_delay` holds.
const MIN_SAMPLES: usize = 25;
/// Packets this far behind the highest one are "late", further ones are a jump.
const MAX_MISORDER: i64 = 100;
/// Consecutive concealed frames before an empty buffer counts as a paused stream.
const MAX_PLC_FRAMES: u32 = 5;
/// Largest Opus packet duration (120 ms) in 48 kHz samples.
const MAX_OPUS_SAMPLES_48K: usize = 5760;
/// Shortest interval between two skipped packets.
const SKIP_INTERVAL: Ticks = Ticks::from_millis(200);

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

/// What to play for the next 20 ms, from [`JitterBuffer::pop`].
#[derive(Debug, Clone, Copy)]
pub enum Playout<'a> {
    /// Decode this packet.
    Packet {
        /// The packet.
        packet: &'a EncodedPacket,
        /// Packets lost since the previous packet played.
        gap: u16,
    },
    /// A packet is lost: conceal it, or rebuild it from `fec` (the next packet, whose
    /// in-band FEC may carry it) when present.
    Lost {
        /// The next packet, in sequence and time, if already here.
        fec: Option<&'a EncodedPacket>,
    },
    /// The delay must grow: conceal one frame without consuming a packet.
    Stretch,
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
    /// Packets skipped to shrink the delay.
    pub compressed: u64,
    /// Packets declared lost (sequence numbers never played).
    pub lost: u64,
    /// Concealment frames inserted to grow the delay.
    pub stretched: u64,
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
    first_arrival: Ticks,
    cursor_seq: i64,
    cursor_ts: i64,
    last_duration: i64,
    losses_since_played: u32,
    plc_run: u32,
    /// A packet held until the next one confirms a new SSRC or sequence.
    probation: Option<EncodedPacket>,
    delays: Box<[i64; WINDOW]>,
    scratch: Box<[i64; WINDOW]>,
    delays_len: usize,
    delays_next: usize,
    delays_dirty: bool,
    min_delay: i64,
    target: Ticks,
    last_target_update: Ticks,
    last_skip: Ticks,
    current_delay: Ticks,
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
            .field("current_delay", &self.current_delay)
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
        JitterBuffer {
            slots: vec![EMPTY_SLOT; SLOTS].into_boxed_slice(),
            synced: false,
            ssrc: 0,
            base_seq: 0,
            base_ts: 0,
            highest_seq: 0,
            highest_ts: 0,
            started: false,
            first_arrival: Ticks::ZERO,
            cursor_seq: 0,
            cursor_ts: 0,
            last_duration: frame_ts,
            losses_since_played: 0,
            plc_run: 0,
            probation: None,
            delays: Box::new([0; WINDOW]),
            scratch: Box::new([0; WINDOW]),
            delays_len: 0,
            delays_next: 0,
            delays_dirty: false,
            min_delay: 0,
            target: clamp(cfg.initial_delay, cfg.min_delay, cfg.max_delay),
            last_target_update: Ticks::ZERO,
            last_skip: Ticks::ZERO,
            current_delay: Ticks::ZERO,
            jitter: 0.0,
            last_transit: None,
            frame_ts,
            stats: JitterStats::default(),
            cfg,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The target playout delay.
    pub fn target_delay(&self) -> Ticks {
        self.target
    }

    /// The playout delay at the last [`JitterBuffer::pop`]: how long after its earliest
    /// possible arrival the packet at the cursor is played.
    pub fn current_delay(&self) -> Ticks {
        self.current_delay
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
        self.first_arrival = now;
        self.cursor_seq = 0;
        self.cursor_ts = 0;
        self.losses_since_played = 0;
        self.plc_run = 0;
        self.delays_len = 0;
        self.delays_next = 0;
        self.delays_dirty = false;
        self.last_transit = None;
        self.target = clamp(
            self.cfg.initial_delay,
            self.cfg.min_delay,
            self.cfg.max_delay,
        );
        self.last_target_update = now;
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
        if self.delays_len == 0 && !self.started {
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
        let transit = arrival.0 as i64 - self.ts_to_ticks(ts);
        self.delays[self.delays_next] = transit;
        self.delays_next = (self.delays_next + 1) % WINDOW;
        self.delays_len = (self.delays_len + 1).min(WINDOW);
        self.delays_dirty = true;
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
        if self.delays_dirty {
            self.delays_dirty = false;
            let n = self.delays_len;
            self.scratch[..n].copy_from_slice(&self.delays[..n]);
            let window = &mut self.scratch[..n];
            let min = *window.iter().min().unwrap_or(&0);
            self.min_delay = min;
            if n >= MIN_SAMPLES {
                let q = (n * usize::from(self.cfg.quantile_permille)).div_ceil(1000);
                let idx = q.clamp(1, n) - 1;
                let (_, &mut at_q, _) = window.select_nth_unstable(idx);
                let wanted = Ticks((at_q - min).max(0) as u64) + FRAME_DURATION;
                let wanted = clamp(wanted, self.cfg.min_delay, self.cfg.max_delay);
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
            }
        }
        self.last_target_update = now;
    }

    /// Decides what plays for the 20 ms starting at `now`.
    pub fn pop(&mut self, now: Ticks) -> Playout<'_> {
        if !self.synced {
            return Playout::NoSignal;
        }
        self.update_target(now);
        if !self.started {
            if now.saturating_sub(self.first_arrival) < self.target {
                return Playout::NoSignal;
            }
            self.started = true;
        }
        let cursor_time = self.ts_to_ticks(self.cursor_ts) + self.min_delay;
        self.current_delay = Ticks((now.0 as i64 - cursor_time).max(0) as u64);

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

        // Grow when more than half a frame short; shrink (below) when a whole frame over:
        // the delay stays within [target - 10 ms, target + 20 ms].
        if self.current_delay + Ticks(FRAME_DURATION.0 / 2) < self.target {
            self.stats.stretched += 1;
            return Playout::Stretch;
        }

        let Some(&Slot { ts, duration, .. }) = self.slot(self.cursor_seq) else {
            return self.missing();
        };
        if ts > self.cursor_ts + self.frame_ts / 2 {
            // A pause (DTX) in the sender's timeline: play silence until it resumes.
            self.cursor_ts += self.frame_ts;
            self.plc_run = 0;
            return Playout::NoSignal;
        }
        if self.current_delay > self.target + FRAME_DURATION
            && now.saturating_sub(self.last_skip) >= SKIP_INTERVAL
            && self.slot(self.cursor_seq + 1).is_some()
        {
            self.last_skip = now;
            self.stats.compressed += 1;
            self.cursor_seq += 1;
            self.cursor_ts = ts + duration;
            return match self.slot(self.cursor_seq) {
                Some(&Slot { ts, duration, .. }) if ts <= self.cursor_ts + self.frame_ts / 2 => {
                    self.play(ts, duration)
                }
                _ => self.missing(),
            };
        }
        self.play(ts, duration)
    }

    fn play(&mut self, ts: i64, duration: i64) -> Playout<'_> {
        let ext = self.cursor_seq;
        self.cursor_seq += 1;
        self.cursor_ts = ts + duration;
        self.last_duration = duration;
        self.plc_run = 0;
        let gap = self.losses_since_played.min(u32::from(u16::MAX)) as u16;
        self.losses_since_played = 0;
        match self.slot(ext) {
            Some(slot) => Playout::Packet {
                packet: &slot.packet,
                gap,
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

    fn missing(&mut self) -> Playout<'_> {
        if let Some((next_seq, next_ts)) = self.earliest_later() {
            if next_ts <= self.cursor_ts + self.frame_ts / 2 {
                // The missing packets' time was already concealed while waiting: they
                // are lost, and the next one is due now.
                let skipped = (next_seq - self.cursor_seq) as u64;
                self.stats.lost += skipped;
                self.losses_since_played += skipped as u32;
                self.cursor_seq = next_seq;
                return match self.slot(next_seq) {
                    Some(&Slot { ts, duration, .. }) => self.play(ts, duration),
                    None => Playout::NoSignal,
                };
            }
            // The packet due now is lost. Re-align the cursor on the next packet's
            // timeline first: packets whose time passed while waiting were concealed.
            let frames_to_next =
                ((next_ts - self.cursor_ts + self.frame_ts / 2) / self.frame_ts.max(1)).max(1);
            let due_seq = (next_seq - frames_to_next).max(self.cursor_seq);
            let lost = (due_seq - self.cursor_seq + 1) as u64;
            self.stats.lost += lost;
            self.losses_since_played += lost as u32;
            self.cursor_seq = due_seq + 1;
            self.cursor_ts += self.last_duration;
            let next_ts = self.cursor_ts;
            let frame_ts = self.frame_ts;
            return match self.slot(self.cursor_seq) {
                // The next packet may carry the lost one as in-band FEC.
                Some(slot) if (slot.ts - next_ts).abs() < frame_ts / 2 => Playout::Lost {
                    fec: Some(&slot.packet),
                },
                _ => Playout::Lost { fec: None },
            };
        }
        // Nothing later is here: lost, late or a paused stream. Conceal a little while,
        // keeping the cursor on the sequence number so a paused stream resumes cleanly.
        self.cursor_ts += self.frame_ts;
        if self.plc_run < MAX_PLC_FRAMES {
            self.plc_run += 1;
            return Playout::Lost { fec: None };
        }
        Playout::NoSignal
    }
}

fn clamp(v: Ticks, lo: Ticks, hi: Ticks) -> Ticks {
    v.max(lo).min(hi)
}
