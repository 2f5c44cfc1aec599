//! The receive path of one call, in the manner of libwebrtc's NetEQ: the jitter buffer
//! decides what plays next, the decoder turns it into 16 kHz PCM, and a sync buffer of
//! decoded samples lets the delay change smoothly.
//!
//! The operations, per packet:
//! - *normal*: decode and play;
//! - *accelerate*: the delay is above the target: remove audio. In a pause (quiet audio
//!   for 100 ms or more, so not the short gaps inside a phrase) up to 17.5 ms at once with
//!   a 2.5 ms cross-fade; in speech only when
//!   the smoothed delay has been well above the target, one pitch period where two periods
//!   correlate (WSOLA), which is inaudible;
//! - *preemptive expand*: the delay is below the target: repeat audio, the same way;
//! - *expand*: the packet due is not here: Opus concealment (PLC), waiting for it;
//! - *merge*: decoded audio after concealment starts with a cross-fade from a pitch-period
//!   continuation of the concealed audio, so it joins without a jump.
//!
//! Lost packets are rebuilt from the next packet's in-band FEC when it carries it, and
//! concealed otherwise. No whole packet of speech is ever discarded or inserted to move
//! the delay. Sans-IO (time passed in), fixed memory: nothing allocates after
//! [`Receiver::new`].

use crate::codec::{Decoder, MAX_DECODED};
use crate::config::JitterConfig;
use crate::error::AdmissionError;
use crate::frame::{FrameSource, Pcm16K, SAMPLES_PER_FRAME};
use crate::jitter::{InsertOutcome, JitterBuffer, JitterStats, Playout};
use crate::packet::{Csrcs, EncodedPacket};
use crate::time::Ticks;
use crate::tsm;

/// Samples of played audio kept before the play position (for merges).
const HISTORY: usize = 2 * tsm::MAX_LAG;
/// Capacity of the sync buffer: history, the longest packet, a frame left over and a
/// frame of expansion.
const SYNC_CAPACITY: usize = HISTORY + MAX_DECODED + 3 * SAMPLES_PER_FRAME;
/// Segments tracked in the sync buffer (each decoded packet or concealment is one).
const SEGMENTS: usize = 16;
/// 100 ns ticks per sample at 16 kHz.
const TICKS_PER_SAMPLE: u64 = Ticks::PER_SECOND / 16_000;
/// Pulls from the jitter buffer per frame at most (a flood of 10 ms packets, losses).
const MAX_PULLS: usize = 8;

/// Below this power audio is quiet whatever the speech level: -60 dBFS.
const QUIET_FLOOR: f32 = 1_074.0;
/// Above this power audio is never quiet: -35 dBFS.
const QUIET_CEILING: f32 = 339_000.0;
/// Quiet relative to the speech level: 30 dB below it.
const QUIET_RELATIVE: f32 = 1.0e-3;
/// Per-frame decay of the tracked speech level (about 1 dB a second).
const LEVEL_DECAY: f32 = 0.9954;

/// Quiet audio is cut when the delay is above the target by more than this (and
/// repeated as soon as it is below).
const QUIET_TOLERANCE: Ticks = Ticks::from_millis(5);
/// Speech is accelerated when the smoothed delay is above the target by more than this.
const SPEECH_ACCELERATE: Ticks = Ticks::from_millis(30);
/// Speech is accelerated whatever the smoothed delay when the delay is this far above.
const SPEECH_FAST: Ticks = Ticks::from_millis(80);
/// Speech is expanded when the smoothed delay is below the target by more than this.
const SPEECH_EXPAND: Ticks = Ticks::from_millis(15);
/// Two pitch periods must correlate this well for speech to be stretched.
const MIN_CORRELATION: f32 = 0.85;
/// Quiet audio this long (100 ms) makes a pause that may be cut: shorter gaps belong to
/// the phrase around them, and moving the delay there would be a step inside speech.
const PAUSE_SAMPLES: usize = 1_600;
/// Largest cut or repeat of quiet audio at once.
const MAX_QUIET_CHANGE: usize = SAMPLES_PER_FRAME - tsm::QUIET_FADE;

/// Counters of a receive path since it was created, in 16 kHz samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceiverStats {
    /// Samples removed to shrink the delay (accelerate; quiet cuts included).
    pub accelerated_samples: u64,
    /// Samples inserted to grow the delay (preemptive expand; quiet repeats included).
    pub expanded_samples: u64,
    /// Samples the decoder concealed: lost packets, waiting for late ones, invalid ones.
    pub concealed_samples: u64,
    /// Samples cross-faded from concealment back into decoded audio.
    pub merged_samples: u64,
    /// Samples rebuilt from in-band FEC.
    pub fec_samples: u64,
    /// Packets libopus rejected.
    pub invalid_packets: u64,
}

/// What one 20 ms frame from [`Receiver::pull`] is made of.
#[derive(Debug, Clone, Copy)]
pub struct PulledFrame {
    /// Where most of its audio came from.
    pub source: FrameSource,
    /// Packets lost just before the packet it was decoded from.
    pub gap: u16,
    /// RTP sequence number of the latest packet decoded into it, if any.
    pub seq: Option<u16>,
    /// Arrival of the packet most of it was decoded from (decoded or FEC audio only).
    pub arrival: Option<Ticks>,
    /// Contributing sources of the latest packet decoded.
    pub speakers: Csrcs,
    /// `ssrc-audio-level` of the latest packet decoded.
    pub audio_level: Option<u8>,
}

#[derive(Clone, Copy)]
struct Segment {
    len: usize,
    source: FrameSource,
    gap: u16,
    arrival: Option<Ticks>,
}

const NO_SEGMENT: Segment = Segment {
    len: 0,
    source: FrameSource::NoSignal,
    gap: 0,
    arrival: None,
};

/// One stream's receive path: jitter buffer, decoder, sync buffer, time-scale
/// modification. Sans-IO: [`Receiver::insert`] packets as they arrive and
/// [`Receiver::pull`] one frame per 20 ms.
pub struct Receiver {
    jitter: JitterBuffer,
    decoder: Decoder,
    /// Played history, then unplayed samples `[play..end)`.
    sync: Box<[i16; SYNC_CAPACITY]>,
    play: usize,
    end: usize,
    segments: [Segment; SEGMENTS],
    seg_first: usize,
    seg_count: usize,
    /// Whether the audio last appended was concealment (the next decode merges).
    after_concealment: bool,
    speech_power: f32,
    /// Quiet audio decoded in a row, in samples.
    quiet_run: usize,
    /// Audio decoded since speech was last stretched or compressed, in samples.
    since_speech_change: usize,
    last_speakers: Csrcs,
    last_level: Option<u8>,
    last_seq: Option<u16>,
    stats: ReceiverStats,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("jitter", &self.jitter)
            .field("unplayed", &(self.end - self.play))
            .field("stats", &self.stats)
            .finish()
    }
}

impl Receiver {
    /// Allocates everything the stream needs.
    pub fn new(cfg: JitterConfig) -> Result<Receiver, AdmissionError> {
        Ok(Receiver {
            jitter: JitterBuffer::new(cfg),
            decoder: Decoder::new()?,
            sync: Box::new([0; SYNC_CAPACITY]),
            play: HISTORY,
            end: HISTORY,
            segments: [NO_SEGMENT; SEGMENTS],
            seg_first: 0,
            seg_count: 0,
            after_concealment: false,
            speech_power: 0.0,
            quiet_run: 0,
            since_speech_change: usize::MAX,
            last_speakers: Csrcs::new(),
            last_level: None,
            last_seq: None,
            stats: ReceiverStats::default(),
        })
    }

    /// Offers a packet that arrived at `packet.meta.arrival` (`now` if zero).
    pub fn insert(&mut self, packet: &EncodedPacket, now: Ticks) -> InsertOutcome {
        let outcome = self.jitter.insert(packet, now);
        if outcome == InsertOutcome::Resynced {
            self.decoder.reset();
        }
        outcome
    }

    /// The jitter buffer (its delay, target and counters).
    pub fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }

    /// The jitter buffer's counters.
    pub fn jitter_stats(&self) -> JitterStats {
        self.jitter.stats()
    }

    /// The receive path's own counters.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Decoded audio waiting to play.
    pub fn buffered(&self) -> Ticks {
        Ticks((self.end - self.play) as u64 * TICKS_PER_SAMPLE)
    }

    /// Produces the 20 ms that play from `now` into `out`.
    pub fn pull(&mut self, now: Ticks, out: &mut Pcm16K) -> PulledFrame {
        for _ in 0..MAX_PULLS {
            if self.end - self.play >= SAMPLES_PER_FRAME {
                break;
            }
            if !self.fill(now) {
                break;
            }
        }
        // Whatever is still missing is silence (not started, or a pause).
        let unplayed = self.end - self.play;
        if unplayed < SAMPLES_PER_FRAME {
            self.make_room(SAMPLES_PER_FRAME);
            let missing = SAMPLES_PER_FRAME - unplayed;
            self.sync[self.end..self.end + missing].fill(0);
            self.end += missing;
            self.push_segment(Segment {
                len: missing,
                ..NO_SEGMENT
            });
            self.after_concealment = false;
        }
        out.samples
            .copy_from_slice(&self.sync[self.play..self.play + SAMPLES_PER_FRAME]);
        self.play += SAMPLES_PER_FRAME;
        self.take_segments(SAMPLES_PER_FRAME)
    }

    /// Appends the next piece of audio; false when there is nothing to play.
    fn fill(&mut self, now: Ticks) -> bool {
        self.make_room(MAX_DECODED + SAMPLES_PER_FRAME);
        let buffered = self.buffered();
        let start = self.end;
        // What was appended: its source, the loss before it, its packet's arrival (decoded
        // audio only) and its playout delay (a packet decoded in time only).
        let concealed_piece = (FrameSource::Concealed, 0, None, None);
        let (source, gap, arrival, delay) = match self.jitter.pop(now, buffered) {
            Playout::NoSignal => return false,
            Playout::Packet { packet, gap, delay } => {
                let meta = packet.meta;
                self.last_seq = Some(meta.seq);
                self.last_speakers = meta.csrcs;
                self.last_level = meta.audio_level;
                match self
                    .decoder
                    .decode(packet.payload(), &mut self.sync[start..])
                {
                    Some(n) => {
                        self.end += n;
                        (FrameSource::Decoded, gap, Some(meta.arrival), Some(delay))
                    }
                    None => {
                        self.stats.invalid_packets += 1;
                        self.conceal();
                        (FrameSource::Concealed, gap, None, None)
                    }
                }
            }
            Playout::Lost { fec } => {
                let recovered = fec.and_then(|next| {
                    let n = self
                        .decoder
                        .recover_fec(next.payload(), &mut self.sync[start..])?;
                    Some((n, next.meta.arrival))
                });
                match recovered {
                    Some((n, arrival)) => {
                        self.end += n;
                        self.stats.fec_samples += n as u64;
                        (FrameSource::FecRecovered, 0, Some(arrival), None)
                    }
                    None => {
                        self.conceal();
                        concealed_piece
                    }
                }
            }
            Playout::Expand => {
                self.conceal();
                concealed_piece
            }
        };
        let concealed = source == FrameSource::Concealed;
        if !concealed && self.after_concealment {
            self.merge(start);
        }
        self.after_concealment = concealed;
        let appended = self.end - start;
        let power = tsm::power(&self.sync[start..self.end]);
        let quiet = self.is_quiet(power);
        self.since_speech_change = self.since_speech_change.saturating_add(appended);
        self.quiet_run = if quiet {
            self.quiet_run.saturating_add(appended)
        } else {
            0
        };
        self.speech_power = (self.speech_power * LEVEL_DECAY).max(power);
        self.push_segment(Segment {
            len: appended,
            source,
            gap,
            arrival,
        });
        if let Some(delay) = delay {
            self.adjust(delay, quiet);
        }
        true
    }

    fn conceal(&mut self) {
        let n = self.decoder.conceal(&mut self.sync[self.end..]);
        // A decoder that cannot conceal still owes 20 ms: silence.
        let n = if n == 0 {
            self.sync[self.end..self.end + SAMPLES_PER_FRAME].fill(0);
            SAMPLES_PER_FRAME
        } else {
            n
        };
        self.end += n;
        self.stats.concealed_samples += n as u64;
    }

    fn is_quiet(&self, power: f32) -> bool {
        power < QUIET_FLOOR || (power < QUIET_CEILING && power < self.speech_power * QUIET_RELATIVE)
    }

    /// Cross-fades the start of the audio decoded at `start` from a pitch-period
    /// continuation of the concealment before it.
    fn merge(&mut self, start: usize) {
        let decoded = self.end - start;
        if start < 2 * tsm::MAX_LAG {
            return;
        }
        let tail = &self.sync[start - 2 * tsm::MAX_LAG..start];
        if tsm::power(tail) < QUIET_FLOOR {
            return;
        }
        let (lag, _) = tsm::best_period(tail, tsm::MIN_LAG, tsm::MAX_LAG);
        let len = lag.min(decoded);
        for n in 0..len {
            let continuation = f32::from(self.sync[start - lag + (n % lag)]);
            let new = f32::from(self.sync[start + n]);
            let w = (n as f32 + 0.5) / len as f32;
            self.sync[start + n] = (continuation * (1.0 - w) + new * w)
                .round()
                .clamp(-32768.0, 32767.0) as i16;
        }
        self.stats.merged_samples += len as u64;
    }

    /// Moves the delay towards the target by changing the last 20 ms of unplayed audio.
    fn adjust(&mut self, delay: Ticks, quiet: bool) {
        let unplayed = self.end - self.play;
        if unplayed < SAMPLES_PER_FRAME {
            return;
        }
        let target = self.jitter.target_delay();
        let required = self.jitter.required_delay();
        let at = self.end - SAMPLES_PER_FRAME;
        let samples = |t: Ticks| (t.0 / TICKS_PER_SAMPLE) as usize;
        if quiet {
            if delay > target + QUIET_TOLERANCE && self.quiet_run >= PAUSE_SAMPLES {
                let amount = samples(delay - target).min(MAX_QUIET_CHANGE);
                let new_end = tsm::cut(&mut self.sync[..], self.end, at, amount, tsm::QUIET_FADE);
                self.resize_last(new_end);
            } else if delay < required || (delay < target && self.quiet_run >= PAUSE_SAMPLES) {
                // Below what arrivals require a packet may miss its turn: repeat in any
                // quiet audio (at least the fade's length), so the delay rests in
                // [target, target + 5 ms]. The frame kept for FEC is added in pauses.
                let amount = samples(target - delay).clamp(tsm::QUIET_FADE, MAX_QUIET_CHANGE);
                let new_end =
                    tsm::repeat(&mut self.sync[..], self.end, at, amount, tsm::QUIET_FADE);
                self.resize_last(new_end);
            }
            return;
        }
        let filtered = self.jitter.filtered_delay();
        // At most one period per 100 ms, unless the delay is far off: each change inside
        // speech is a small step a listener could notice in aggregate.
        let fast = delay > target + SPEECH_FAST;
        if !fast && self.since_speech_change < PAUSE_SAMPLES {
            return;
        }
        let accelerate = filtered > target + SPEECH_ACCELERATE || fast;
        let expand = filtered + SPEECH_EXPAND < required && delay + SPEECH_EXPAND < required;
        if !accelerate && !expand {
            return;
        }
        let (lag, corr) = tsm::best_period(&self.sync[at..self.end], tsm::MIN_LAG, tsm::MAX_LAG);
        if corr < MIN_CORRELATION {
            return;
        }
        let new_end = if accelerate {
            tsm::cut(&mut self.sync[..], self.end, at, lag, lag)
        } else {
            tsm::repeat(&mut self.sync[..], self.end, at, lag, lag)
        };
        if new_end != self.end {
            self.since_speech_change = 0;
        }
        self.resize_last(new_end);
    }

    /// Books a time-scale change that left the sync buffer ending at `new_end`.
    fn resize_last(&mut self, new_end: usize) {
        if new_end == self.end {
            return;
        }
        if new_end > self.end {
            let added = new_end - self.end;
            self.stats.expanded_samples += added as u64;
            if let Some(last) = self.last_segment_mut() {
                last.len += added;
            }
        } else {
            let mut removed = self.end - new_end;
            self.stats.accelerated_samples += removed as u64;
            // Take it from the newest segments (the change was in the last 20 ms).
            for i in (0..self.seg_count).rev() {
                let seg = &mut self.segments[(self.seg_first + i) % SEGMENTS];
                let take = removed.min(seg.len);
                seg.len -= take;
                removed -= take;
                if removed == 0 {
                    break;
                }
            }
        }
        self.end = new_end;
    }

    fn last_segment_mut(&mut self) -> Option<&mut Segment> {
        if self.seg_count == 0 {
            return None;
        }
        Some(&mut self.segments[(self.seg_first + self.seg_count - 1) % SEGMENTS])
    }

    fn push_segment(&mut self, segment: Segment) {
        if segment.len == 0 {
            return;
        }
        if self.seg_count == SEGMENTS {
            // Cannot happen with MAX_PULLS per frame; merge into the last to stay bounded.
            if let Some(last) = self.last_segment_mut() {
                last.len += segment.len;
            }
            return;
        }
        self.segments[(self.seg_first + self.seg_count) % SEGMENTS] = segment;
        self.seg_count += 1;
    }

    /// Consumes `n` samples of segments: the frame's facts come from the segment that
    /// covered most of it; speakers and level from the latest packet in it.
    fn take_segments(&mut self, mut n: usize) -> PulledFrame {
        let mut main: Option<(usize, Segment)> = None;
        let mut gap = 0u16;
        while n > 0 && self.seg_count > 0 {
            let seg = &mut self.segments[self.seg_first];
            let take = n.min(seg.len);
            if main.is_none_or(|(most, _)| take > most) {
                main = Some((take, *seg));
            }
            gap = gap.saturating_add(seg.gap);
            seg.gap = 0;
            seg.len -= take;
            n -= take;
            if seg.len == 0 {
                self.seg_first = (self.seg_first + 1) % SEGMENTS;
                self.seg_count -= 1;
            }
        }
        let main = main.map_or(NO_SEGMENT, |(_, s)| s);
        let source = main.source;
        PulledFrame {
            source,
            gap,
            seq: self.last_seq,
            arrival: match source {
                FrameSource::Decoded | FrameSource::FecRecovered => main.arrival,
                _ => None,
            },
            speakers: if source == FrameSource::NoSignal {
                Csrcs::new()
            } else {
                self.last_speakers
            },
            audio_level: if source == FrameSource::NoSignal {
                None
            } else {
                self.last_level
            },
        }
    }

    /// Makes room for `extra` samples after `end`, keeping [`HISTORY`] played samples.
    fn make_room(&mut self, extra: usize) {
        if self.end + extra <= SYNC_CAPACITY {
            return;
        }
        let keep_from = self.play.saturating_sub(HISTORY);
        self.sync.copy_within(keep_from..self.end, 0);
        self.play -= keep_from;
        self.end -= keep_from;
    }
}
