//! The encoded packet exchanged with the network side: fixed size, no allocation.

use crate::time::Ticks;
use std::fmt;

/// Largest Opus payload the pipeline carries (RFC 6716: 1275 bytes per frame, plus one).
pub const MAX_PAYLOAD: usize = 1276;
/// Most contributing sources an RTP header can list.
pub const MAX_CSRCS: usize = 15;
/// Loudest to quietest: RFC 6464 levels are -dBov, 0 (loudest) to 127 (silence).
pub const AUDIO_LEVEL_SILENT: u8 = 127;

/// Why a packet could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// The payload is longer than [`MAX_PAYLOAD`].
    #[error("payload of {len} bytes exceeds the maximum of {max} bytes")]
    PayloadTooLarge {
        /// Length offered.
        len: usize,
        /// The maximum, [`MAX_PAYLOAD`].
        max: usize,
    },
    /// More than [`MAX_CSRCS`] contributing sources.
    #[error("more than {max} contributing sources")]
    TooManyCsrcs {
        /// The maximum, [`MAX_CSRCS`].
        max: usize,
    },
    /// An audio level above 127 (levels are 0..=127 -dBov).
    #[error("audio level {level} is outside 0..=127")]
    AudioLevelOutOfRange {
        /// Level offered.
        level: u8,
    },
}

fn check_level(level: Option<u8>) -> Result<Option<u8>, PacketError> {
    match level {
        Some(level) if level > AUDIO_LEVEL_SILENT => {
            Err(PacketError::AudioLevelOutOfRange { level })
        }
        other => Ok(other),
    }
}

/// Contributing sources of a packet (CSRCs, the active speakers of a mixer) with their
/// `csrc-audio-level` levels when present. Fixed capacity, `Copy`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Csrcs {
    ids: [u32; MAX_CSRCS],
    levels: [Option<u8>; MAX_CSRCS],
    len: u8,
}

impl Csrcs {
    /// No contributing sources.
    pub const fn new() -> Csrcs {
        Csrcs {
            ids: [0; MAX_CSRCS],
            levels: [None; MAX_CSRCS],
            len: 0,
        }
    }

    /// Appends a source and its level (-dBov, 0..=127) if known.
    pub fn push(&mut self, csrc: u32, level: Option<u8>) -> Result<(), PacketError> {
        let level = check_level(level)?;
        let i = usize::from(self.len);
        if i >= MAX_CSRCS {
            return Err(PacketError::TooManyCsrcs { max: MAX_CSRCS });
        }
        self.ids[i] = csrc;
        self.levels[i] = level;
        self.len += 1;
        Ok(())
    }

    /// Builds the list from ids, with no levels.
    pub fn from_ids(ids: &[u32]) -> Result<Csrcs, PacketError> {
        let mut out = Csrcs::new();
        for &id in ids {
            out.push(id, None)?;
        }
        Ok(out)
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The source ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids[..self.len()]
    }

    /// The levels, parallel to [`Csrcs::ids`].
    pub fn levels(&self) -> &[Option<u8>] {
        &self.levels[..self.len()]
    }

    /// Pairs of (id, level).
    pub fn iter(&self) -> impl Iterator<Item = (u32, Option<u8>)> + '_ {
        self.ids()
            .iter()
            .copied()
            .zip(self.levels().iter().copied())
    }
}

impl fmt::Debug for Csrcs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The header fields of an RTP audio packet that the pipeline uses. The payload type is
/// not among them: only the negotiated Opus type reaches the pipeline, and the network side
/// writes its own on the packets it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpMeta {
    /// Inbound: RTP sequence number (wraps), which the jitter buffer orders by. Outbound:
    /// 0, as the network side numbers the packets it sends itself.
    pub seq: u16,
    /// RTP timestamp (48 kHz clock for Opus; wraps). Outbound, the network side keeps its
    /// spacing (gaps included) while moving it into its own timeline.
    pub rtp_timestamp: u32,
    /// Inbound: synchronisation source (a new one restarts the jitter buffer). Outbound: 0,
    /// as the network side sends under its own SSRC.
    pub ssrc: u32,
    /// Outbound: RTP marker bit (first packet of a talkspurt). Inbound: unused.
    pub marker: bool,
    /// `ssrc-audio-level` (-dBov, 0..=127) if the extension was present.
    pub audio_level: Option<u8>,
    /// Contributing sources with their `csrc-audio-level` levels.
    pub csrcs: Csrcs,
    /// Inbound: when the packet arrived (the network side stamps it as it receives the
    /// packet; the jitter buffer and the receive latency figures count from it).
    /// Outbound: the media time of the tick that encoded it.
    pub arrival: Ticks,
    /// Inbound: which of the call's received streams the packet belongs to, as the network
    /// side tells them apart: 0 is the main (mixed) stream, 1..=N an unmixed speaker
    /// stream ([`crate::CallConfig::unmixed_streams`] = N). A packet for a stream the call
    /// does not have is dropped and counted invalid. Outbound: always 0.
    pub stream: u8,
}

/// One encoded audio packet (an Opus payload plus RTP metadata), fixed size so it moves
/// through the wait-free queues without allocation.
///
/// The payload is private so its length invariant (at most [`MAX_PAYLOAD`]) always holds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EncodedPacket {
    /// RTP metadata.
    pub meta: RtpMeta,
    payload: [u8; MAX_PAYLOAD],
    len: u16,
}

impl EncodedPacket {
    /// Builds a packet; rejects a payload longer than [`MAX_PAYLOAD`] or an audio level
    /// above 127. An empty payload is accepted (the jitter buffer counts it as invalid).
    pub fn new(meta: RtpMeta, payload: &[u8]) -> Result<EncodedPacket, PacketError> {
        check_level(meta.audio_level)?;
        let mut packet = EncodedPacket {
            meta,
            payload: [0; MAX_PAYLOAD],
            len: 0,
        };
        packet.set_payload(payload)?;
        Ok(packet)
    }

    /// An empty packet with default metadata (useful as a reusable buffer).
    pub const fn empty() -> EncodedPacket {
        EncodedPacket {
            meta: RtpMeta {
                seq: 0,
                rtp_timestamp: 0,
                ssrc: 0,
                marker: false,
                audio_level: None,
                csrcs: Csrcs::new(),
                arrival: Ticks::ZERO,
                stream: 0,
            },
            payload: [0; MAX_PAYLOAD],
            len: 0,
        }
    }

    /// Replaces the payload.
    pub fn set_payload(&mut self, payload: &[u8]) -> Result<(), PacketError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(PacketError::PayloadTooLarge {
                len: payload.len(),
                max: MAX_PAYLOAD,
            });
        }
        self.payload[..payload.len()].copy_from_slice(payload);
        self.len = payload.len() as u16;
        Ok(())
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload[..usize::from(self.len)]
    }

    /// The whole payload buffer, for an encoder to write into; follow with
    /// [`EncodedPacket::set_payload_len`].
    pub(crate) fn payload_buffer_mut(&mut self) -> &mut [u8; MAX_PAYLOAD] {
        &mut self.payload
    }

    pub(crate) fn set_payload_len(&mut self, len: usize) {
        self.len = len.min(MAX_PAYLOAD) as u16;
    }
}

impl Default for EncodedPacket {
    fn default() -> Self {
        EncodedPacket::empty()
    }
}

impl fmt::Debug for EncodedPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedPacket")
            .field("meta", &self.meta)
            .field("payload_len", &self.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_oversize_payload_and_bad_levels() {
        let meta = RtpMeta::default();
        assert!(EncodedPacket::new(meta, &[0; MAX_PAYLOAD]).is_ok());
        assert_eq!(
            EncodedPacket::new(meta, &[0; MAX_PAYLOAD + 1]).unwrap_err(),
            PacketError::PayloadTooLarge {
                len: MAX_PAYLOAD + 1,
                max: MAX_PAYLOAD
            }
        );
        let loud = RtpMeta {
            audio_level: Some(128),
            ..meta
        };
        assert!(matches!(
            EncodedPacket::new(loud, &[1]),
            Err(PacketError::AudioLevelOutOfRange { level: 128 })
        ));
        let mut c = Csrcs::new();
        for i in 0..MAX_CSRCS as u32 {
            c.push(i, Some(3)).unwrap();
        }
        assert_eq!(c.push(99, None), Err(PacketError::TooManyCsrcs { max: 15 }));
        assert_eq!(c.ids()[14], 14);
    }
}
