//! The seam between the network tasks and the pipeline threads: the endpoint pushes received
//! RTP payloads into one wait-free queue and pops encoded packets from another, never
//! blocking and never running DSP.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

/// An RTP audio packet received from the peer, as the endpoint hands it to the pipeline.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct InboundRtp<'a> {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (48 kHz for Opus).
    pub rtp_timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload type.
    pub payload_type: u8,
    /// Marker bit.
    pub marker: bool,
    /// `ssrc-audio-level`, -dBov 0..=127, when the peer sent it.
    pub audio_level: Option<u8>,
    /// Contributing sources: a mixing peer's active speakers.
    pub csrcs: &'a [u32],
    /// `csrc-audio-level` levels parallel to `csrcs`, when the peer sent them.
    pub csrc_levels: Option<&'a [u8]>,
    /// When the packet arrived, since the leg started.
    pub arrival: Duration,
    /// The Opus payload.
    pub payload: &'a [u8],
}

impl fmt::Debug for InboundRtp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundRtp")
            .field("seq", &self.seq)
            .field("rtp_timestamp", &self.rtp_timestamp)
            .field("ssrc", &self.ssrc)
            .field("payload_type", &self.payload_type)
            .field("csrcs", &self.csrcs)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// An encoded audio packet the pipeline produced for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboundAudio {
    /// The Opus payload.
    pub payload: bytes::Bytes,
    /// Level of the encoded audio, -dBov 0..=127, for `ssrc-audio-level`.
    pub audio_level: Option<u8>,
}

impl OutboundAudio {
    /// A packet with no level information.
    pub fn new(payload: bytes::Bytes, audio_level: Option<u8>) -> Self {
        Self {
            payload,
            audio_level,
        }
    }
}

/// Why an inbound packet was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The queue is full: the pipeline is behind; the packet is dropped and counted.
    #[error("the inbound queue is full")]
    Full,
    /// The packet cannot be carried (too large, too many CSRCs, bad level).
    #[error("the packet cannot be carried by the pipeline")]
    Unfit,
}

/// The producer side of a call's inbound queue. Implementations must not block.
pub trait InboundSink: Send + 'static {
    /// Queues one packet, or says why not.
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError>;
}

/// The consumer side of a call's outbound queue. Implementations must not block.
pub trait OutboundSource: Send + 'static {
    /// The next encoded packet, if one is ready.
    fn pop(&mut self) -> Option<OutboundAudio>;
}

/// What the endpoint tells the pipeline about the transport: whether media can flow (sent
/// media is discarded while inactive) and the loss the peer reports (for the encoder's FEC).
pub trait TransportStatus: Send + Sync + 'static {
    /// Connected (`true`) or not.
    fn set_active(&self, active: bool);
    /// Loss on the way to the peer, in percent (0..=100).
    fn set_loss_percent(&self, percent: u8);
}

/// The network half of one call, as the endpoint uses it.
pub struct NetworkLink {
    /// Received packets go here.
    pub inbound: Box<dyn InboundSink>,
    /// Packets to send come from here.
    pub outbound: Box<dyn OutboundSource>,
    /// Transport status for the pipeline.
    pub status: Arc<dyn TransportStatus>,
}

impl fmt::Debug for NetworkLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkLink").finish_non_exhaustive()
    }
}

/// A plain implementation of [`TransportStatus`]: two atomics anyone can read.
#[derive(Debug, Default)]
pub struct SharedStatus {
    active: AtomicBool,
    loss_percent: AtomicU8,
}

impl SharedStatus {
    /// Whether the transport is connected.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The last loss the peer reported, percent.
    pub fn loss_percent(&self) -> u8 {
        self.loss_percent.load(Ordering::Relaxed)
    }
}

impl TransportStatus for SharedStatus {
    fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    fn set_loss_percent(&self, percent: u8) {
        self.loss_percent.store(percent.min(100), Ordering::Relaxed);
    }
}

/// A received packet copied out of the network buffers, as [`QueueLink`] carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedPacket {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub rtp_timestamp: u32,
    /// Payload type.
    pub payload_type: u8,
    /// `ssrc-audio-level`.
    pub audio_level: Option<u8>,
    /// Contributing sources.
    pub csrcs: Vec<u32>,
    /// `csrc-audio-level` levels.
    pub csrc_levels: Option<Vec<u8>>,
    /// The payload.
    pub payload: bytes::Bytes,
}

/// A [`NetworkLink`] over plain wait-free rings, with the far ends returned to the caller:
/// a stand-in for the pipeline in tests and tools, and a reference for what a pipeline
/// implementation must do.
#[derive(Debug)]
pub struct QueueLink {
    /// Received packets, in arrival order.
    pub received: rtrb::Consumer<ReceivedPacket>,
    /// Packets pushed here are sent to the peer.
    pub to_send: rtrb::Producer<OutboundAudio>,
    /// The transport status the endpoint sets.
    pub status: Arc<SharedStatus>,
    /// Inbound packets dropped because `received` was full.
    pub dropped: Arc<AtomicU64>,
}

struct RingInbound {
    tx: rtrb::Producer<ReceivedPacket>,
    dropped: Arc<AtomicU64>,
}

impl InboundSink for RingInbound {
    fn push(&mut self, p: InboundRtp<'_>) -> Result<(), PushError> {
        let packet = ReceivedPacket {
            seq: p.seq,
            rtp_timestamp: p.rtp_timestamp,
            payload_type: p.payload_type,
            audio_level: p.audio_level,
            csrcs: p.csrcs.to_vec(),
            csrc_levels: p.csrc_levels.map(<[u8]>::to_vec),
            payload: bytes::Bytes::copy_from_slice(p.payload),
        };
        self.tx.push(packet).map_err(|_| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            PushError::Full
        })
    }
}

struct RingOutbound(rtrb::Consumer<OutboundAudio>);

impl OutboundSource for RingOutbound {
    fn pop(&mut self) -> Option<OutboundAudio> {
        self.0.pop().ok()
    }
}

impl QueueLink {
    /// Makes both rings with `capacity` packets each; returns the far ends and the link
    /// to register with the endpoint.
    pub fn new(capacity: usize) -> (QueueLink, NetworkLink) {
        let (in_tx, in_rx) = rtrb::RingBuffer::new(capacity);
        let (out_tx, out_rx) = rtrb::RingBuffer::new(capacity);
        let status = Arc::new(SharedStatus::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let link = NetworkLink {
            inbound: Box::new(RingInbound {
                tx: in_tx,
                dropped: Arc::clone(&dropped),
            }),
            outbound: Box::new(RingOutbound(out_rx)),
            status: Arc::clone(&status) as Arc<dyn TransportStatus>,
        };
        (
            QueueLink {
                received: in_rx,
                to_send: out_tx,
                status,
                dropped,
            },
            link,
        )
    }
}

/// Samples per channel at 48 kHz in an Opus packet, from its TOC byte (RFC 6716 §3.1);
/// `None` for a malformed packet.
pub(crate) fn opus_packet_samples_48k(payload: &[u8]) -> Option<u32> {
    let toc = *payload.first()?;
    let config = toc >> 3;
    // Frame duration in units of 2.5 ms (120 samples at 48 kHz).
    let frame_units: u32 = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(payload.get(1)? & 0x3f),
    };
    let samples = frame_units * 120 * frames;
    // RFC 6716: at most 120 ms per packet.
    (frames > 0 && samples <= 5760).then_some(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_durations_from_toc() {
        // SILK WB 20 ms (config 9), one frame.
        assert_eq!(opus_packet_samples_48k(&[9 << 3]), Some(960));
        // CELT FB 20 ms (config 31), code 1: two frames.
        assert_eq!(opus_packet_samples_48k(&[(31 << 3) | 1]), Some(1920));
        // Hybrid FB 10 ms (config 14).
        assert_eq!(opus_packet_samples_48k(&[14 << 3]), Some(480));
        // CELT 2.5 ms (config 16) code 3 with 4 frames.
        assert_eq!(opus_packet_samples_48k(&[(16 << 3) | 3, 4]), Some(480));
        assert_eq!(opus_packet_samples_48k(&[(16 << 3) | 3, 0]), None);
        assert_eq!(opus_packet_samples_48k(&[(11 << 3) | 3, 3]), None);
        assert_eq!(opus_packet_samples_48k(&[]), None);
    }

    #[test]
    fn queue_link_moves_packets_and_counts_drops() {
        let (mut far, mut link) = QueueLink::new(1);
        let p = InboundRtp {
            seq: 7,
            rtp_timestamp: 960,
            ssrc: 1,
            payload_type: 111,
            marker: false,
            audio_level: Some(30),
            csrcs: &[5, 6],
            csrc_levels: None,
            arrival: Duration::ZERO,
            payload: &[1, 2, 3],
        };
        assert_eq!(link.inbound.push(p), Ok(()));
        assert_eq!(link.inbound.push(p), Err(PushError::Full));
        assert_eq!(far.dropped.load(Ordering::Relaxed), 1);
        let got = far.received.pop().expect("queued");
        assert_eq!(got.csrcs, vec![5, 6]);
        assert_eq!(&got.payload[..], &[1, 2, 3]);
        far.to_send
            .push(OutboundAudio::new(bytes::Bytes::from_static(&[9]), None))
            .expect("room");
        assert_eq!(link.outbound.pop().map(|a| a.payload.len()), Some(1));
        link.status.set_active(true);
        link.status.set_loss_percent(250);
        assert!(far.status.is_active());
        assert_eq!(far.status.loss_percent(), 100);
    }
}
