//! The RTP sequence and timestamp space of the stream a leg sends.

use std::time::{Duration, Instant};

use super::{OPUS_CLOCK, rand_u32};

/// A pause in outbound audio longer than this restarts the RTP timeline from the clock.
const TALKSPURT_GAP: Duration = Duration::from_millis(100);

/// The RTP sequence and timestamp space of the sent stream, shared by audio and tones.
#[derive(Debug)]
pub(super) struct RtpTimeline {
    origin: Instant,
    ts_base: u32,
    next_seq: u16,
    /// The timestamp the next packet starts at (a tone starts here).
    pub(super) next_ts: u32,
    last_audio: Option<Instant>,
    /// Set to restart the timeline from the clock at the next packet, as a new talkspurt.
    pub(super) resync: bool,
    /// Producer timestamp to timeline offset, set at each talkspurt start.
    offset: Option<u32>,
}

impl RtpTimeline {
    pub(super) fn new(origin: Instant) -> Self {
        let r = rand_u32();
        Self {
            origin,
            ts_base: r,
            next_seq: (r >> 16) as u16 & 0x7fff,
            next_ts: r,
            last_audio: None,
            resync: true,
            offset: None,
        }
    }

    fn wall_ts(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.origin);
        let units = elapsed.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000;
        self.ts_base.wrapping_add(units as u32)
    }

    /// Whether audio at `now` follows a pause long enough to start a new talkspurt.
    fn after_pause(&self, now: Instant) -> bool {
        self.last_audio
            .is_some_and(|t| now.saturating_duration_since(t) > TALKSPURT_GAP)
    }

    /// Moves the timeline to the clock, never backwards.
    pub(super) fn catch_up(&mut self, now: Instant) {
        let wall = self.wall_ts(now);
        if (wall.wrapping_sub(self.next_ts) as i32) > 0 {
            self.next_ts = wall;
        }
    }

    pub(super) fn seq(&mut self) -> u16 {
        let s = self.next_seq;
        self.next_seq = s.wrapping_add(1);
        s
    }

    /// Sequence number, timestamp and marker of the next audio packet of `samples`. With
    /// the producer's timestamp, the packet keeps the producer's spacing (its gaps too);
    /// without, packets are taken as contiguous.
    pub(super) fn audio(
        &mut self,
        samples: u32,
        source_ts: Option<u32>,
        source_marker: bool,
        now: Instant,
    ) -> (u16, u32, bool) {
        let gap = self.after_pause(now);
        let marker = self.resync || gap || source_marker;
        if self.resync || gap {
            self.catch_up(now);
            self.resync = false;
            self.offset = None;
        }
        self.last_audio = Some(now);
        let ts = match source_ts {
            Some(src) => match self.offset.map(|o| src.wrapping_add(o)) {
                // Never behind the timeline: a producer jumping back is re-anchored.
                Some(ts) if (ts.wrapping_sub(self.next_ts) as i32) >= 0 => ts,
                _ => {
                    self.offset = Some(self.next_ts.wrapping_sub(src));
                    self.next_ts
                }
            },
            None => self.next_ts,
        };
        self.next_ts = ts.wrapping_add(samples);
        (self.seq(), ts, marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_counts_samples_and_resyncs_after_gaps() {
        let t0 = Instant::now();
        let mut tl = RtpTimeline::new(t0);
        let (s0, ts0, m0) = tl.audio(960, None, false, t0);
        assert!(m0, "first packet starts a talkspurt");
        let (s1, ts1, m1) = tl.audio(960, None, false, t0 + Duration::from_millis(23));
        assert!(!m1);
        assert_eq!(s1, s0.wrapping_add(1));
        assert_eq!(
            ts1,
            ts0.wrapping_add(960),
            "jittered drain keeps regular timestamps"
        );
        // A 1 s pause: the timeline follows the clock and marks the new talkspurt.
        let later = t0 + Duration::from_millis(1023);
        let (_, ts2, m2) = tl.audio(960, None, false, later);
        assert!(m2);
        assert_eq!(ts2, tl.wall_ts(later));
        assert_eq!(ts2.wrapping_sub(ts0), 1023 * 48);
    }

    #[test]
    fn timeline_keeps_the_producers_spacing() {
        let t0 = Instant::now();
        let mut tl = RtpTimeline::new(t0);
        let (_, a, m) = tl.audio(960, Some(5_000), true, t0);
        assert!(m);
        let (_, b, m) = tl.audio(960, Some(5_960), false, t0 + Duration::from_millis(20));
        assert!(!m);
        assert_eq!(b.wrapping_sub(a), 960);
        // The producer skipped two frames (DTX): the gap is kept, the marker passed on.
        let (_, c, m) = tl.audio(960, Some(8_840), true, t0 + Duration::from_millis(40));
        assert!(m);
        assert_eq!(c.wrapping_sub(a), 3_840);
        // A producer going backwards is re-anchored right after the last packet.
        let (_, d, _) = tl.audio(960, Some(100), false, t0 + Duration::from_millis(60));
        assert_eq!(d.wrapping_sub(c), 960);
    }
}
