//! 20 ms PCM frames: what the bot sends and what it receives.

use crate::packet::Csrcs;
use crate::time::Ticks;
use crate::unmixed::UnmixedFrames;
use std::fmt;

/// Samples in one `Pcm16K` frame: 20 ms at 16 kHz, mono.
pub const SAMPLES_PER_FRAME: usize = 320;
/// Bytes in one `Pcm16K` frame: 320 little-endian i16.
pub const BYTES_PER_FRAME: usize = SAMPLES_PER_FRAME * 2;
/// The PCM sample rate of frames, in Hz.
pub const SAMPLE_RATE_HZ: u32 = 16_000;

/// A byte slice that is not one frame long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Wrong length.
    #[error("a Pcm16K frame is {expected} bytes, got {len}")]
    WrongLength {
        /// Length offered.
        len: usize,
        /// [`BYTES_PER_FRAME`].
        expected: usize,
    },
}

/// One 20 ms frame of 16 kHz mono 16-bit PCM (the anchor platform's `Pcm16K`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pcm16K {
    /// The 320 samples.
    pub samples: [i16; SAMPLES_PER_FRAME],
}

impl Pcm16K {
    /// A frame of digital silence.
    pub const SILENCE: Pcm16K = Pcm16K {
        samples: [0; SAMPLES_PER_FRAME],
    };

    /// Reads 640 little-endian bytes.
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Pcm16K, FrameError> {
        if bytes.len() != BYTES_PER_FRAME {
            return Err(FrameError::WrongLength {
                len: bytes.len(),
                expected: BYTES_PER_FRAME,
            });
        }
        let mut frame = Pcm16K::SILENCE;
        for (s, b) in frame.samples.iter_mut().zip(bytes.chunks_exact(2)) {
            *s = i16::from_le_bytes([b[0], b[1]]);
        }
        Ok(frame)
    }

    /// The 640 little-endian bytes.
    pub fn to_le_bytes(&self) -> [u8; BYTES_PER_FRAME] {
        let mut out = [0u8; BYTES_PER_FRAME];
        for (b, s) in out.chunks_exact_mut(2).zip(self.samples.iter()) {
            b.copy_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// True when every sample is zero.
    pub fn is_digital_silence(&self) -> bool {
        self.samples.iter().all(|&s| s == 0)
    }

    /// Peak absolute sample value.
    pub fn peak(&self) -> u16 {
        self.samples
            .iter()
            .map(|s| s.unsigned_abs())
            .max()
            .unwrap_or(0)
    }
}

impl Default for Pcm16K {
    fn default() -> Self {
        Pcm16K::SILENCE
    }
}

impl fmt::Debug for Pcm16K {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pcm16K {{ peak: {} }}", self.peak())
    }
}

/// Where the audio of a received frame came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameSource {
    /// Decoded from a packet that arrived in time.
    Decoded,
    /// A lost packet rebuilt from the next packet's in-band FEC.
    FecRecovered,
    /// A lost, late or invalid packet concealed by the decoder (PLC).
    Concealed,
    /// No packet to play: before the first packet, a sender's DTX pause, or a stream
    /// that stopped. The samples are silence.
    NoSignal,
}

/// One 20 ms frame handed to the bot, with its timing and quality facts.
#[derive(Clone, Copy)]
pub struct ReceivedFrame {
    /// The media-clock time this frame is due to play (its tick's deadline).
    pub timestamp: Ticks,
    /// The audio.
    pub pcm: Pcm16K,
    /// True when the frame carries no speech: `NoSignal`, digital silence, or an
    /// `ssrc-audio-level` of 127 (-127 dBov).
    pub is_silence: bool,
    /// Where the audio came from; concealment travels with the frame.
    pub source: FrameSource,
    /// True when the pipeline tick producing it ran later than the platform's lateness
    /// threshold (an xrun).
    pub late: bool,
    /// Active speakers (the CSRCs of the packet played, with levels).
    pub active_speakers: Csrcs,
    /// `ssrc-audio-level` of the packet played (-dBov, 0..=127).
    pub audio_level: Option<u8>,
    /// RTP sequence number of the packet played, if any.
    pub seq: Option<u16>,
    /// Packets lost (concealed or FEC-recovered) since the previous decoded packet.
    pub gap: u16,
    /// When the packet this frame was decoded from arrived ([`crate::RtpMeta::arrival`]),
    /// for `Decoded` and `FecRecovered` frames; `None` for concealment and silence.
    /// `now() - arrival` when the bot gets the frame is the latency the receive path added.
    pub arrival: Option<Ticks>,
    /// The unmixed speaker streams' frames for the same tick, one per stream that played
    /// a speaker (empty unless [`crate::CallConfig::unmixed_streams`] is set). All the
    /// fields above describe the mix alone.
    pub unmixed: UnmixedFrames,
}

impl ReceivedFrame {
    /// A frame with no signal due at `timestamp`: silence, no speakers, no packet. What a
    /// call hands over before its first packet; a start for a bot's own tests to fill in.
    pub const fn no_signal(timestamp: Ticks) -> ReceivedFrame {
        ReceivedFrame {
            timestamp,
            pcm: Pcm16K::SILENCE,
            is_silence: true,
            source: FrameSource::NoSignal,
            late: false,
            active_speakers: Csrcs::new(),
            audio_level: None,
            seq: None,
            gap: 0,
            arrival: None,
            unmixed: UnmixedFrames::new(),
        }
    }

    /// True when the audio is the decoder's concealment rather than received audio.
    pub fn is_concealed(&self) -> bool {
        self.source == FrameSource::Concealed
    }
}

impl fmt::Debug for ReceivedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceivedFrame")
            .field("timestamp", &self.timestamp)
            .field("source", &self.source)
            .field("is_silence", &self.is_silence)
            .field("late", &self.late)
            .field("seq", &self.seq)
            .field("gap", &self.gap)
            .field("arrival", &self.arrival)
            .field("active_speakers", &self.active_speakers)
            .field("pcm", &self.pcm)
            .field("unmixed", &self.unmixed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_little_endian() {
        let mut f = Pcm16K::SILENCE;
        f.samples[0] = 0x0102;
        f.samples[319] = -2;
        let b = f.to_le_bytes();
        assert_eq!(&b[..2], &[0x02, 0x01]);
        assert_eq!(&b[638..], &[0xFE, 0xFF]);
        assert_eq!(Pcm16K::from_le_bytes(&b).unwrap(), f);
        assert_eq!(
            Pcm16K::from_le_bytes(&b[1..]),
            Err(FrameError::WrongLength {
                len: 639,
                expected: 640
            })
        );
    }
}
