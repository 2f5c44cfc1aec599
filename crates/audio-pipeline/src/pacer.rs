//! The outbound pacer: sans-IO, one frame per 20 ms of media time.

use crate::frame::Pcm16K;
use crate::packet::RtpMeta;
use crate::time::{FRAME_DURATION, Ticks};

/// Most frames sent back to back to catch up after a stall; beyond that, time is skipped.
const MAX_BURST: u64 = 5;

/// One frame the pacer releases.
#[derive(Debug, Clone, Copy)]
pub struct PacedFrame {
    /// The audio: the bot's frame, or silence on an underrun.
    pub pcm: Pcm16K,
    /// True when the bot had no frame ready and silence was used.
    pub underrun: bool,
    /// RTP timestamp of the frame.
    pub rtp_timestamp: u32,
    /// Media time the frame was due.
    pub due: Ticks,
}

/// Counters of a pacer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PacerStats {
    /// Frames released.
    pub frames: u64,
    /// Of those, silence because the bot had nothing.
    pub underruns: u64,
    /// Frame slots skipped after a stall longer than the catch-up burst.
    pub skipped: u64,
    /// Packets stamped (sent).
    pub packets: u64,
}

/// Releases one frame per 20 ms, timestamps the packets that are sent, and fills gaps with
/// silence. Time is passed in; the first call to [`Pacer::frames_due`] anchors it.
#[derive(Debug, Clone)]
pub struct Pacer {
    anchor: Option<Ticks>,
    released: u64,
    rtp_ts: u32,
    ts_per_frame: u32,
    marker_next: bool,
    stats: PacerStats,
}

impl Pacer {
    /// A pacer whose first packet has timestamp `first_rtp_ts`, with an RTP clock of
    /// `rtp_clock_hz` (48 000 for Opus).
    pub fn new(first_rtp_ts: u32, rtp_clock_hz: u32) -> Pacer {
        Pacer {
            anchor: None,
            released: 0,
            rtp_ts: first_rtp_ts,
            ts_per_frame: rtp_clock_hz / 50,
            marker_next: true,
            stats: PacerStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> PacerStats {
        self.stats
    }

    /// How many frames are due at `now` (normally 1 per 20 ms). After a stall at most
    /// 5 are due at once; older slots are skipped (their timestamps too, so the receiver
    /// sees a gap rather than a time shift).
    pub fn frames_due(&mut self, now: Ticks) -> u32 {
        let anchor = *self.anchor.get_or_insert(now);
        let elapsed = now.saturating_sub(anchor);
        let should = elapsed.0 / FRAME_DURATION.0 + 1;
        let due = should.saturating_sub(self.released);
        if due > MAX_BURST {
            let skip = due - MAX_BURST;
            self.released += skip;
            self.stats.skipped += skip;
            self.rtp_ts = self
                .rtp_ts
                .wrapping_add(self.ts_per_frame.wrapping_mul(skip as u32));
            self.marker_next = true;
            return MAX_BURST as u32;
        }
        due as u32
    }

    /// Releases the next frame: `frame` if the bot had one, else silence.
    pub fn next_frame(&mut self, frame: Option<&Pcm16K>) -> PacedFrame {
        let due = Ticks(self.anchor.unwrap_or(Ticks::ZERO).0 + self.released * FRAME_DURATION.0);
        let out = PacedFrame {
            pcm: frame.copied().unwrap_or(Pcm16K::SILENCE),
            underrun: frame.is_none(),
            rtp_timestamp: self.rtp_ts,
            due,
        };
        self.released += 1;
        self.rtp_ts = self.rtp_ts.wrapping_add(self.ts_per_frame);
        self.stats.frames += 1;
        if frame.is_none() {
            self.stats.underruns += 1;
        }
        out
    }

    /// Stamps a packet about to be sent for `frame` with its timestamp and marker (the
    /// network side gives it a sequence number).
    pub fn stamp(&mut self, frame: &PacedFrame, meta: &mut RtpMeta) {
        meta.rtp_timestamp = frame.rtp_timestamp;
        meta.marker = self.marker_next;
        self.marker_next = false;
        self.stats.packets += 1;
    }

    /// Records that a released frame was not sent (DTX, or sending inactive): the next
    /// packet sent starts a talkspurt and carries the marker bit.
    pub fn not_sent(&mut self) {
        self.marker_next = true;
    }
}
