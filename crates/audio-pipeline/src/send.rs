//! The send path's latency bound: what the bot queued beyond a small target depth is
//! absorbed, so a bot that fell behind and then sent a burst does not add that delay to
//! the rest of the call.
//!
//! The standing depth is the smallest depth of the bot's queue (plus samples held here)
//! seen at the ticks of the last half second: a queue that never drained below it holds
//! that much delay for good. Above the target (plus a frame of hysteresis), the excess is
//! absorbed as frames go out: quiet frames are dropped whole or cut with a cross-fade,
//! speech loses one pitch period per frame where two periods correlate (WSOLA, the same
//! operation as the receive path's accelerate); speech is never discarded wholesale.
//! Fixed memory, no allocation.

use crate::frame::{Pcm16K, SAMPLES_PER_FRAME};
use crate::packet::Csrcs;
use crate::time::Ticks;
use crate::tsm;

/// Ticks in one depth window (0.5 s).
const WINDOW_TICKS: u32 = 25;
/// Samples held: a frame being assembled, one more, and room for a frame appended.
const CAPACITY: usize = 4 * SAMPLES_PER_FRAME;
/// 100 ns ticks per sample at 16 kHz.
const TICKS_PER_SAMPLE: u64 = Ticks::PER_SECOND / 16_000;
/// Quiet: below -50 dBFS mean power.
const QUIET_POWER: f32 = 10_700.0;
/// Speech is cut only where two periods correlate at least this well.
const MIN_CORRELATION: f32 = 0.7;

/// Counters of the send path's absorption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AbsorbStats {
    /// Samples removed by cutting (speech periods and quiet stretches).
    pub(crate) cut_samples: u64,
    /// Quiet frames dropped whole.
    pub(crate) dropped_frames: u64,
    /// The last standing depth measured.
    pub(crate) standing: Ticks,
}

/// One frame ready to encode, with the facts of the bot frame it mostly came from.
#[derive(Clone, Copy)]
pub(crate) struct Assembled {
    pub(crate) pcm: Pcm16K,
    pub(crate) csrcs: Csrcs,
    pub(crate) queued: Ticks,
}

/// The bot's frames between its queue and the encoder.
pub(crate) struct SendBuffer {
    samples: Box<[i16; CAPACITY]>,
    len: usize,
    /// Facts of the oldest bot frame still (partly) held, and of the newest.
    head: Option<(Csrcs, Ticks)>,
    tail: Option<(Csrcs, Ticks)>,
    target: usize,
    window_min: usize,
    window_ticks: u32,
    excess: usize,
    stats: AbsorbStats,
}

impl SendBuffer {
    /// A buffer that keeps the standing depth near `target` (zero: never absorbs).
    pub(crate) fn new(target: Ticks) -> SendBuffer {
        SendBuffer {
            samples: Box::new([0; CAPACITY]),
            len: 0,
            head: None,
            tail: None,
            target: (target.0 / TICKS_PER_SAMPLE) as usize,
            window_min: usize::MAX,
            window_ticks: 0,
            excess: 0,
            stats: AbsorbStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> AbsorbStats {
        self.stats
    }

    /// Samples held here.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.len
    }

    /// Forgets what is held (sending went inactive).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.head = None;
        self.tail = None;
        self.excess = 0;
    }

    /// Once per tick, before frames are taken: `queued_frames` wait in the bot's queue.
    pub(crate) fn observe(&mut self, queued_frames: usize) {
        let depth = queued_frames * SAMPLES_PER_FRAME + self.len;
        self.window_min = self.window_min.min(depth);
        self.window_ticks += 1;
        if self.window_ticks < WINDOW_TICKS {
            return;
        }
        let standing = self.window_min;
        self.stats.standing = Ticks(standing as u64 * TICKS_PER_SAMPLE);
        self.window_min = usize::MAX;
        self.window_ticks = 0;
        if self.target > 0 && standing > self.target + SAMPLES_PER_FRAME {
            self.excess = standing - self.target;
        } else {
            self.excess = 0;
        }
    }

    /// Takes in one bot frame, absorbing part of the excess while there is one. Call
    /// while [`SendBuffer::has_frame`] is false and the bot has frames queued.
    pub(crate) fn push(&mut self, pcm: &Pcm16K, csrcs: Csrcs, queued: Ticks) {
        let power = tsm::power(&pcm.samples);
        let quiet = power < QUIET_POWER;
        if self.excess >= SAMPLES_PER_FRAME && quiet {
            self.excess -= SAMPLES_PER_FRAME;
            self.stats.dropped_frames += 1;
            return;
        }
        if self.len + SAMPLES_PER_FRAME > CAPACITY {
            // Cannot happen when frames are taken as they complete; stay bounded.
            return;
        }
        self.samples[self.len..self.len + SAMPLES_PER_FRAME].copy_from_slice(&pcm.samples);
        self.len += SAMPLES_PER_FRAME;
        if self.head.is_none() {
            self.head = Some((csrcs, queued));
        }
        self.tail = Some((csrcs, queued));
        if self.excess == 0 {
            return;
        }
        let at = self.len - SAMPLES_PER_FRAME;
        let removed = if quiet {
            let amount = self.excess.min(SAMPLES_PER_FRAME - tsm::QUIET_FADE);
            let new_len = tsm::cut(&mut self.samples[..], self.len, at, amount, tsm::QUIET_FADE);
            self.len - new_len
        } else {
            let (lag, corr) =
                tsm::best_period(&self.samples[at..self.len], tsm::MIN_LAG, tsm::MAX_LAG);
            if corr < MIN_CORRELATION || lag > self.excess + tsm::MIN_LAG {
                0
            } else {
                let new_len = tsm::cut(&mut self.samples[..], self.len, at, lag, lag);
                self.len - new_len
            }
        };
        self.len -= removed;
        self.excess = self.excess.saturating_sub(removed);
        self.stats.cut_samples += removed as u64;
    }

    /// Whether a whole frame is ready.
    pub(crate) fn has_frame(&self) -> bool {
        self.len >= SAMPLES_PER_FRAME
    }

    /// Takes the next frame: a whole one, or what is left padded with silence (the bot
    /// stopped mid-frame); `None` when nothing is held.
    pub(crate) fn take(&mut self) -> Option<Assembled> {
        if self.len == 0 {
            return None;
        }
        let (csrcs, queued) = self.head.or(self.tail)?;
        let n = self.len.min(SAMPLES_PER_FRAME);
        let mut pcm = Pcm16K::SILENCE;
        pcm.samples[..n].copy_from_slice(&self.samples[..n]);
        self.samples.copy_within(n..self.len, 0);
        self.len -= n;
        // What is left belongs to the newest frame pushed.
        self.head = if self.len > 0 { self.tail } else { None };
        if self.len == 0 {
            self.tail = None;
        }
        Some(Assembled { pcm, csrcs, queued })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiced(phase: &mut usize) -> Pcm16K {
        let mut f = Pcm16K::SILENCE;
        for s in f.samples.iter_mut() {
            let ph = 2.0 * std::f32::consts::PI * (*phase % 80) as f32 / 80.0;
            *s = (8000.0 * ph.sin() + 3000.0 * (2.0 * ph).sin()) as i16;
            *phase += 1;
        }
        f
    }

    #[test]
    fn a_steady_bot_is_left_alone() {
        let mut b = SendBuffer::new(Ticks::from_millis(40));
        let mut phase = 0;
        for _ in 0..200 {
            b.observe(1);
            b.push(&voiced(&mut phase), Csrcs::new(), Ticks::ZERO);
            assert!(b.take().is_some());
        }
        assert_eq!(b.stats().cut_samples, 0);
        assert_eq!(b.stats().dropped_frames, 0);
    }

    #[test]
    fn a_standing_queue_of_speech_is_absorbed_by_cutting_periods() {
        let mut b = SendBuffer::new(Ticks::from_millis(40));
        let mut phase = 0;
        // The bot's queue holds 10 frames for good: 200 ms standing.
        let mut queue = 10usize;
        let mut ticks = 0;
        while ticks < 500 {
            b.observe(queue);
            while !b.has_frame() && queue > 0 {
                b.push(&voiced(&mut phase), Csrcs::new(), Ticks::ZERO);
                queue -= 1;
            }
            b.take();
            queue += 1; // the bot sends one frame per tick
            ticks += 1;
        }
        let standing = queue * SAMPLES_PER_FRAME + b.held();
        assert!(
            standing <= 2 * SAMPLES_PER_FRAME + SAMPLES_PER_FRAME,
            "standing {standing} samples after 10 s"
        );
        assert!(b.stats().cut_samples >= 7 * SAMPLES_PER_FRAME as u64);
        assert_eq!(b.stats().dropped_frames, 0, "speech is never dropped whole");
    }

    #[test]
    fn quiet_frames_are_dropped_first() {
        let mut b = SendBuffer::new(Ticks::from_millis(40));
        let mut queue = 10usize;
        for _ in 0..100 {
            b.observe(queue);
            while !b.has_frame() && queue > 0 {
                b.push(&Pcm16K::SILENCE, Csrcs::new(), Ticks::ZERO);
                queue -= 1;
            }
            b.take();
            queue += 1;
        }
        assert!(queue <= 3, "queue {queue}");
        assert!(b.stats().dropped_frames >= 7);
    }

    #[test]
    fn a_zero_target_never_absorbs() {
        let mut b = SendBuffer::new(Ticks::ZERO);
        let mut phase = 0;
        for _ in 0..100 {
            b.observe(20);
            b.push(&voiced(&mut phase), Csrcs::new(), Ticks::ZERO);
            b.take();
        }
        assert_eq!(b.stats().cut_samples, 0);
    }
}
