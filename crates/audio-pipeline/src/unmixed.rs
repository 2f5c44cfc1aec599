//! Unmixed speaker streams: beside the mix, a meeting service may send up to
//! [`MAX_UNMIXED_STREAMS`] streams that each carry one dominant speaker, named by the one
//! CSRC of each packet. Each stream has its own [`Receiver`] (jitter buffer, decoder,
//! time-scale modification) pulled on the mix's tick, and every received frame lists the
//! streams that carried a speaker in [`UnmixedFrames`].

use crate::config::JitterConfig;
use crate::error::AdmissionError;
use crate::frame::{FrameSource, Pcm16K};
use crate::jitter::JitterStats;
use crate::packet::EncodedPacket;
use crate::receive::{Receiver, ReceiverStats};
use crate::stats::{CallCounters, add, bump};
use crate::time::Ticks;
use std::fmt;

/// Most unmixed speaker streams a call can receive beside the mix (the anchor platform
/// sends up to four dominant speakers).
pub const MAX_UNMIXED_STREAMS: usize = 4;

/// One speaker's 20 ms on one unmixed stream, aligned to the same tick as the mix it
/// travels with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnmixedFrame {
    /// The stream it came from, 1..=[`crate::CallConfig::unmixed_streams`] (the
    /// [`crate::RtpMeta::stream`] of its packets). Which speaker a stream carries changes
    /// as the dominant speakers change; `source_id` says who it is now.
    pub stream: u8,
    /// The speaker: the first CSRC of the latest packet played on the stream (the
    /// `sourceId` of the roster's media streams). Concealment keeps the last speaker.
    pub source_id: u32,
    /// The speaker's audio, 16 kHz mono.
    pub pcm: Pcm16K,
    /// The speaker's level (-dBov, 0 loudest to 127 silent): the `csrc-audio-level` of
    /// `source_id` when the packet carried one, else its `ssrc-audio-level`, else `None`.
    pub level: Option<u8>,
    /// Where the audio came from: decoded, rebuilt from FEC, or concealed (never
    /// [`FrameSource::NoSignal`]: a stream with nothing to play has no entry).
    pub source: FrameSource,
}

impl UnmixedFrame {
    const EMPTY: UnmixedFrame = UnmixedFrame {
        stream: 0,
        source_id: 0,
        pcm: Pcm16K::SILENCE,
        level: None,
        source: FrameSource::NoSignal,
    };
}

/// The unmixed speaker frames of one tick, in stream order: at most one per stream, and
/// only for streams that played audio with a speaker. Fixed capacity
/// ([`MAX_UNMIXED_STREAMS`]), `Copy`, never allocates. Empty when the call receives no
/// unmixed streams.
#[derive(Clone, Copy)]
pub struct UnmixedFrames {
    entries: [UnmixedFrame; MAX_UNMIXED_STREAMS],
    len: u8,
}

impl UnmixedFrames {
    /// No entries.
    pub const fn new() -> UnmixedFrames {
        UnmixedFrames {
            entries: [UnmixedFrame::EMPTY; MAX_UNMIXED_STREAMS],
            len: 0,
        }
    }

    /// Number of entries (streams that carried a speaker this tick).
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when no stream carried a speaker this tick.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entries, in stream order.
    pub fn as_slice(&self) -> &[UnmixedFrame] {
        &self.entries[..self.len()]
    }

    /// The entries, in stream order.
    pub fn iter(&self) -> std::slice::Iter<'_, UnmixedFrame> {
        self.as_slice().iter()
    }

    /// The entry of speaker `source_id`, if one of the streams carried them this tick.
    pub fn get(&self, source_id: u32) -> Option<&UnmixedFrame> {
        self.iter().find(|e| e.source_id == source_id)
    }

    /// Appends an entry, as the pipeline does for each stream in order; hands it back when
    /// all [`MAX_UNMIXED_STREAMS`] places are taken. For a bot's own tests of code that
    /// reads frames (a [`crate::ReceivedFrame`] can be built with any entries).
    #[expect(
        clippy::result_large_err,
        reason = "the entry is handed back by value, as the send queues do"
    )]
    pub fn push(&mut self, entry: UnmixedFrame) -> Result<(), UnmixedFrame> {
        let len = self.len();
        let Some(slot) = self.entries.get_mut(len) else {
            return Err(entry);
        };
        *slot = entry;
        self.len += 1;
        Ok(())
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for UnmixedFrames {
    fn default() -> Self {
        UnmixedFrames::new()
    }
}

impl PartialEq for UnmixedFrames {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for UnmixedFrames {}

impl fmt::Debug for UnmixedFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a UnmixedFrames {
    type Item = &'a UnmixedFrame;
    type IntoIter = std::slice::Iter<'a, UnmixedFrame>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// One unmixed stream's receive path and what the call's counters already hold of it.
struct Stream {
    receiver: Receiver,
    seen_jitter: JitterStats,
    seen_receiver: ReceiverStats,
    /// The speaker of the stream's last entry, to count switches.
    last_speaker: Option<u32>,
}

/// A call's unmixed streams, all allocated when the call is created.
pub(crate) struct UnmixedStreams {
    streams: Vec<Stream>,
}

impl UnmixedStreams {
    /// `count` receivers (at most [`MAX_UNMIXED_STREAMS`]; checked by the config).
    pub(crate) fn new(count: u8, cfg: JitterConfig) -> Result<UnmixedStreams, AdmissionError> {
        let count = usize::from(count).min(MAX_UNMIXED_STREAMS);
        let mut streams = Vec::with_capacity(count);
        for _ in 0..count {
            streams.push(Stream {
                receiver: Receiver::new(cfg)?,
                seen_jitter: JitterStats::default(),
                seen_receiver: ReceiverStats::default(),
                last_speaker: None,
            });
        }
        Ok(UnmixedStreams { streams })
    }

    /// Number of unmixed streams.
    pub(crate) fn count(&self) -> usize {
        self.streams.len()
    }

    /// Offers a packet of stream `stream` (1-based); false when the call has no such
    /// stream (the caller counts it invalid).
    pub(crate) fn insert(&mut self, stream: u8, packet: &EncodedPacket, now: Ticks) -> bool {
        let Some(s) = usize::from(stream)
            .checked_sub(1)
            .and_then(|i| self.streams.get_mut(i))
        else {
            return false;
        };
        s.receiver.insert(packet, now);
        true
    }

    /// Pulls every stream for the tick at `now` into `out`, in stream order, and adds
    /// their figures to `c`.
    pub(crate) fn pull(&mut self, now: Ticks, out: &mut UnmixedFrames, c: &CallCounters) {
        out.clear();
        for (i, s) in self.streams.iter_mut().enumerate() {
            // Decode straight into the next free entry; it only counts if it has a speaker.
            let entry = &mut out.entries[out.len()];
            let pulled = s.receiver.pull(now, &mut entry.pcm);
            let speaker = pulled.speakers.iter().next();
            if let Some((source_id, csrc_level)) = speaker
                && pulled.source != FrameSource::NoSignal
            {
                entry.stream = (i + 1) as u8;
                entry.source_id = source_id;
                entry.level = csrc_level.or(pulled.audio_level);
                entry.source = pulled.source;
                out.len += 1;
                bump(&c.unmixed_frames);
                if pulled.source == FrameSource::Concealed {
                    bump(&c.unmixed_concealed);
                }
                if s.last_speaker.is_some_and(|last| last != source_id) {
                    bump(&c.unmixed_speaker_changes);
                }
                s.last_speaker = Some(source_id);
            }
            let js = s.receiver.jitter_stats();
            let rs = s.receiver.stats();
            add(&c.unmixed_lost_packets, js.lost - s.seen_jitter.lost);
            add(
                &c.unmixed_dropped_packets,
                (js.invalid - s.seen_jitter.invalid)
                    + (js.unconfirmed - s.seen_jitter.unconfirmed)
                    + (rs.invalid_packets - s.seen_receiver.invalid_packets),
            );
            s.seen_jitter = js;
            s.seen_receiver = rs;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_kept_in_order_up_to_the_capacity() {
        let entry = |stream: u8| UnmixedFrame {
            stream,
            source_id: 100 + u32::from(stream),
            ..UnmixedFrame::EMPTY
        };
        let mut frames = UnmixedFrames::new();
        for stream in 1..=MAX_UNMIXED_STREAMS as u8 {
            frames.push(entry(stream)).expect("room");
        }
        assert_eq!(frames.push(entry(9)), Err(entry(9)), "full: handed back");
        assert_eq!(frames.len(), MAX_UNMIXED_STREAMS);
        let streams: Vec<u8> = frames.iter().map(|e| e.stream).collect();
        assert_eq!(streams, [1, 2, 3, 4]);
        assert_eq!(frames.get(103).map(|e| e.stream), Some(3));
        assert!(frames.get(9).is_none());
        frames.clear();
        assert!(frames.is_empty() && frames.get(101).is_none());
    }
}
