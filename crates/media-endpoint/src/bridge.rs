//! The seam between the network pumps and the pipeline threads: the endpoint pushes received
//! RTP payloads into one wait-free queue and pops encoded packets from another, never
//! blocking and never running DSP.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

/// An RTP audio packet received from the peer, as the endpoint hands it to the pipeline:
/// what the jitter buffer, decoder and the bot's frame need of it. Only packets of the
/// negotiated Opus payload type come this way, with the time the host received them when
/// the socket told it.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct InboundRtp<'a> {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp (48 kHz for Opus).
    pub rtp_timestamp: u32,
    /// Synchronisation source (a new one restarts the jitter buffer).
    pub ssrc: u32,
    /// `ssrc-audio-level`, -dBov 0..=127, when the peer sent it.
    pub audio_level: Option<u8>,
    /// Contributing sources (a mixing peer's active speakers) with their
    /// `csrc-audio-level` levels when the peer sent them.
    pub csrcs: audio_pipeline::Csrcs,
    /// The Opus payload.
    pub payload: &'a [u8],
    /// When the host received the packet, on the media clock (the kernel's stamp);
    /// `None`: when it is pushed.
    pub arrival: Option<audio_pipeline::Ticks>,
    /// Which received stream it belongs to: 0 the main (mixed) stream, k = 1.. the unmixed
    /// speaker stream named by the session's k-th unmixed render context
    /// ([`crate::SessionHooks::unmixed_contexts`]). Its CSRC is the speaker's source id.
    pub stream: u8,
}

impl fmt::Debug for InboundRtp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundRtp")
            .field("seq", &self.seq)
            .field("rtp_timestamp", &self.rtp_timestamp)
            .field("ssrc", &self.ssrc)
            .field("csrcs", &self.csrcs)
            .field("payload_len", &self.payload.len())
            .field("arrival", &self.arrival)
            .field("stream", &self.stream)
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
    /// The producer's RTP timestamp (48 kHz): the endpoint keeps its spacing (gaps included)
    /// while renumbering into the leg's own timeline. `None`: packets are taken as contiguous.
    pub rtp_timestamp: Option<u32>,
    /// The producer marks the first packet of a talkspurt.
    pub marker: bool,
    /// Contributing sources (a mixer's active speakers) and their `csrc-audio-level`
    /// levels, sent as the packet's CSRC list.
    pub csrcs: audio_pipeline::Csrcs,
    /// Which stream it goes on: 0 the main one; k = 1.. the k-th unmixed speaker stream
    /// of a service leg that offers them (its CSRC names the speaker). A leg drops packets
    /// for a stream it does not send.
    pub stream: u8,
}

impl OutboundAudio {
    /// A packet with no timing of its own.
    pub fn new(payload: bytes::Bytes, audio_level: Option<u8>) -> Self {
        Self {
            payload,
            audio_level,
            rtp_timestamp: None,
            marker: false,
            csrcs: audio_pipeline::Csrcs::new(),
            stream: 0,
        }
    }

    /// Puts the packet on unmixed speaker stream `stream` (0: the main stream).
    pub fn on_stream(mut self, stream: u8) -> Self {
        self.stream = stream;
        self
    }

    /// Sets the contributing sources the packet lists.
    pub fn with_csrcs(mut self, csrcs: audio_pipeline::Csrcs) -> Self {
        self.csrcs = csrcs;
        self
    }

    /// Sets the producer's RTP timestamp and marker.
    pub fn with_timing(mut self, rtp_timestamp: u32, marker: bool) -> Self {
        self.rtp_timestamp = Some(rtp_timestamp);
        self.marker = marker;
        self
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
    /// The call is gone from the pipeline.
    #[error("the call was removed from the pipeline")]
    Removed,
}

/// The network half of one call, as the endpoint uses it: one leg owns it, on a pump thread. Every
/// method must return at once (wait-free queues, atomics).
pub trait NetworkPort: Send + 'static {
    /// Queues one received packet, or says why not.
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError>;
    /// The next encoded packet to send, if one is ready.
    fn pop(&mut self) -> Option<OutboundAudio>;
    /// [`pop`](Self::pop) for a caller that keeps `spare` between calls: a port that has
    /// to copy the payload out of its own storage writes it into `spare` and hands it out
    /// split from there, so that once the caller dropped the previous payload its
    /// allocation is reused and a packet costs no allocation. Ports that hold their
    /// payloads as [`Bytes`](bytes::Bytes) already need not override it.
    fn pop_reusing(&mut self, spare: &mut bytes::BytesMut) -> Option<OutboundAudio> {
        let _ = spare;
        self.pop()
    }
    /// Whether a packet may be ready to [`pop`](Self::pop): a driver woken by a tick asks
    /// first, and skips the legs whose calls queued nothing (a pump's legs belong to
    /// several pipeline threads, each waking it after its own tick). A port that cannot
    /// tell cheaply says `true`.
    fn has_outbound(&self) -> bool {
        true
    }
    /// Send status: while inactive the pipeline discards what the bot sends.
    fn set_send_active(&self, active: bool);
    /// Loss the peer reports on the endpoint's stream (RTCP fraction lost, loss × 256), for
    /// the encoder's FEC.
    fn set_remote_fraction_lost(&self, fraction: u8);
    /// Asks the port to wake `waker` whenever packets become ready to [`pop`](Self::pop)
    /// (at most once per producer tick); says whether it will. A port that cannot is polled
    /// every 5 ms instead, so its packets leave up to 5 ms late.
    fn set_outbound_waker(&mut self, waker: &std::task::Waker) -> bool {
        let _ = waker;
        false
    }
}

fn to_encoded(p: &InboundRtp<'_>) -> Result<audio_pipeline::EncodedPacket, PushError> {
    let meta = audio_pipeline::RtpMeta {
        seq: p.seq,
        rtp_timestamp: p.rtp_timestamp,
        ssrc: p.ssrc,
        audio_level: p.audio_level,
        csrcs: p.csrcs,
        arrival: p.arrival.unwrap_or_else(audio_pipeline::now),
        stream: p.stream,
        ..audio_pipeline::RtpMeta::default()
    };
    audio_pipeline::EncodedPacket::new(meta, p.payload).map_err(|_| PushError::Unfit)
}

/// The packet the pipeline encoded, with its payload copied out as `payload`.
fn outbound(p: &audio_pipeline::EncodedPacket, payload: bytes::Bytes) -> OutboundAudio {
    OutboundAudio {
        payload,
        audio_level: p.meta.audio_level,
        rtp_timestamp: Some(p.meta.rtp_timestamp),
        marker: p.meta.marker,
        csrcs: p.meta.csrcs,
        stream: 0,
    }
}

/// What [`NetworkPort::pop_reusing`] reserves in a spare buffer that must grow: room for
/// several payloads, so that one block serves a run of packets before it is taken back.
const SPARE_BLOCK: usize = 2048;

impl NetworkPort for audio_pipeline::NetworkHalf {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        let encoded = to_encoded(&packet)?;
        self.push_packet(encoded).map_err(|e| match e {
            audio_pipeline::PushPacketError::Full(_) => PushError::Full,
            _ => PushError::Removed,
        })
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        // Read where it waits: only the payload's bytes cross from the pipeline's core.
        self.pop_packet_with(|p| outbound(p, bytes::Bytes::copy_from_slice(p.payload())))
    }

    fn pop_reusing(&mut self, spare: &mut bytes::BytesMut) -> Option<OutboundAudio> {
        // Into `spare`'s block, taken back whole once nothing holds the earlier payloads.
        self.pop_packet_with(|p| {
            let payload = p.payload();
            if spare.capacity() < payload.len() {
                spare.reserve(payload.len().max(SPARE_BLOCK));
            }
            spare.extend_from_slice(payload);
            outbound(p, spare.split().freeze())
        })
    }

    fn has_outbound(&self) -> bool {
        self.packets_ready() > 0
    }

    fn set_send_active(&self, active: bool) {
        audio_pipeline::NetworkHalf::set_send_active(self, active);
    }

    fn set_remote_fraction_lost(&self, fraction: u8) {
        audio_pipeline::NetworkHalf::set_remote_fraction_lost(self, fraction);
    }

    fn set_outbound_waker(&mut self, waker: &std::task::Waker) -> bool {
        audio_pipeline::NetworkHalf::set_outbound_waker(self, waker.clone())
    }
}

/// Send status and reported loss as two atomics, shared by a [`QueuePort`] and its
/// [`QueueLink`].
#[derive(Debug, Default)]
pub struct SharedStatus {
    active: AtomicBool,
    fraction_lost: AtomicU8,
}

impl SharedStatus {
    /// Whether the transport is connected.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The last fraction lost the peer reported (loss × 256).
    pub fn fraction_lost(&self) -> u8 {
        self.fraction_lost.load(Ordering::Relaxed)
    }
}

/// A received packet copied out of the network buffers, as [`QueueLink`] carries it: an
/// owned [`InboundRtp`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReceivedPacket {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub rtp_timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// `ssrc-audio-level`.
    pub audio_level: Option<u8>,
    /// Contributing sources and their `csrc-audio-level` levels.
    pub csrcs: audio_pipeline::Csrcs,
    /// The payload.
    pub payload: bytes::Bytes,
    /// The received stream: 0 main, 1.. an unmixed speaker stream ([`InboundRtp::stream`]).
    pub stream: u8,
}

/// The far ends of a [`QueuePort`]: a stand-in for the pipeline in tests and tools (it
/// lets a test see exactly what the endpoint received and send exactly what it chooses).
#[derive(Debug)]
pub struct QueueLink {
    /// Received packets, in arrival order.
    pub received: rtrb::Consumer<ReceivedPacket>,
    /// Packets pushed here are sent to the peer.
    pub to_send: rtrb::Producer<OutboundAudio>,
    /// The send status and loss the endpoint reports.
    pub status: Arc<SharedStatus>,
    /// Inbound packets dropped because `received` was full.
    pub dropped: Arc<AtomicU64>,
}

/// A [`NetworkPort`] over two plain wait-free rings; see [`QueueLink`].
#[derive(Debug)]
pub struct QueuePort {
    tx: rtrb::Producer<ReceivedPacket>,
    rx: rtrb::Consumer<OutboundAudio>,
    status: Arc<SharedStatus>,
    dropped: Arc<AtomicU64>,
}

impl NetworkPort for QueuePort {
    fn push(&mut self, p: InboundRtp<'_>) -> Result<(), PushError> {
        let packet = ReceivedPacket {
            seq: p.seq,
            rtp_timestamp: p.rtp_timestamp,
            ssrc: p.ssrc,
            audio_level: p.audio_level,
            csrcs: p.csrcs,
            payload: bytes::Bytes::copy_from_slice(p.payload),
            stream: p.stream,
        };
        self.tx.push(packet).map_err(|_| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            PushError::Full
        })
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        self.rx.pop().ok()
    }

    fn set_send_active(&self, active: bool) {
        self.status.active.store(active, Ordering::Release);
    }

    fn set_remote_fraction_lost(&self, fraction: u8) {
        self.status.fraction_lost.store(fraction, Ordering::Relaxed);
    }
}

impl QueueLink {
    /// Makes both rings with `capacity` packets each; returns the far ends and the port to
    /// register with the endpoint.
    pub fn new(capacity: usize) -> (QueueLink, QueuePort) {
        let (in_tx, in_rx) = rtrb::RingBuffer::new(capacity);
        let (out_tx, out_rx) = rtrb::RingBuffer::new(capacity);
        let status = Arc::new(SharedStatus::default());
        let dropped = Arc::new(AtomicU64::new(0));
        let port = QueuePort {
            tx: in_tx,
            rx: out_rx,
            status: Arc::clone(&status),
            dropped: Arc::clone(&dropped),
        };
        (
            QueueLink {
                received: in_rx,
                to_send: out_tx,
                status,
                dropped,
            },
            port,
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

    proptest::proptest! {
        #[test]
        fn opus_durations_are_bounded(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4)) {
            if let Some(n) = opus_packet_samples_48k(&bytes) {
                proptest::prop_assert!(n > 0 && n <= 5760 && n % 120 == 0);
            }
        }
    }

    #[test]
    fn queue_link_moves_packets_and_counts_drops() {
        let (mut far, mut link) = QueueLink::new(1);
        let link: &mut dyn NetworkPort = &mut link;
        let p = InboundRtp {
            seq: 7,
            rtp_timestamp: 960,
            ssrc: 1,
            audio_level: Some(30),
            csrcs: audio_pipeline::Csrcs::from_ids(&[5, 6]).expect("two"),
            payload: &[1, 2, 3],
            arrival: None,
            stream: 0,
        };
        assert_eq!(link.push(p), Ok(()));
        assert_eq!(link.push(p), Err(PushError::Full));
        assert_eq!(far.dropped.load(Ordering::Relaxed), 1);
        let got = far.received.pop().expect("queued");
        assert_eq!(got.csrcs.ids(), &[5, 6]);
        assert_eq!(&got.payload[..], &[1, 2, 3]);
        far.to_send
            .push(OutboundAudio::new(bytes::Bytes::from_static(&[9]), None))
            .expect("room");
        assert_eq!(link.pop().map(|a| a.payload.len()), Some(1));
        link.set_send_active(true);
        link.set_remote_fraction_lost(64);
        assert!(far.status.is_active());
        assert_eq!(far.status.fraction_lost(), 64);
    }

    #[test]
    fn the_pipelines_network_half_is_a_port() {
        let cfg = audio_pipeline::CallConfig {
            send_active: false,
            ..audio_pipeline::CallConfig::default()
        };
        let (mut call, halves) = audio_pipeline::ManualCall::new(cfg).expect("call");
        let (mut net, mut bot) = (halves.network, halves.bot);
        let port: &mut dyn NetworkPort = &mut net;
        let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
            .expect("enc");
        let mut buf = [0u8; 400];
        let tone: Vec<f32> = (0..960).map(|i| (i as f32 * 0.1).sin() * 0.3).collect();
        // The port stamps arrivals with the media clock, so the simulated ticks start there.
        let mut now = audio_pipeline::now();
        let mut speakers = None;
        let mut speakers_sent = audio_pipeline::Csrcs::new();
        speakers_sent.push(5, Some(40)).expect("room");
        speakers_sent.push(6, Some(50)).expect("room");
        for i in 0..30u16 {
            let n = enc.encode_float(&tone, &mut buf).expect("encode");
            let p = InboundRtp {
                seq: i,
                rtp_timestamp: u32::from(i) * 960,
                ssrc: 9,
                audio_level: Some(20),
                csrcs: speakers_sent,
                payload: &buf[..n],
                arrival: None,
                stream: 0,
            };
            port.push(p).expect("queued");
            call.tick(now, false);
            now += audio_pipeline::Ticks::from_millis(20);
            while let Some(f) = bot.try_recv() {
                if !f.active_speakers.is_empty() {
                    speakers = Some(f.active_speakers);
                }
            }
        }
        let speakers = speakers.expect("a decoded frame with speakers");
        assert_eq!(speakers.ids(), &[5, 6]);
        assert_eq!(speakers.levels(), &[Some(40), Some(50)]);
        let too_large = [0u8; audio_pipeline::MAX_PAYLOAD + 1];
        let unfit = InboundRtp {
            seq: 0,
            rtp_timestamp: 0,
            ssrc: 9,
            audio_level: None,
            csrcs: audio_pipeline::Csrcs::new(),
            payload: &too_large,
            arrival: None,
            stream: 0,
        };
        assert_eq!(port.push(unfit), Err(PushError::Unfit));

        // Outbound: nothing while inactive, timed packets once active.
        bot.try_send(audio_pipeline::Pcm16K::SILENCE).expect("room");
        call.tick(now, false);
        now += audio_pipeline::Ticks::from_millis(20);
        assert!(
            port.pop().is_none(),
            "inactive: the bot's frame is discarded"
        );
        port.set_send_active(true);
        port.set_remote_fraction_lost(26);
        for _ in 0..3 {
            bot.try_send(audio_pipeline::Pcm16K::SILENCE).expect("room");
            call.tick(now, false);
            now += audio_pipeline::Ticks::from_millis(20);
        }
        let a = port.pop().expect("a packet");
        let b = port.pop().expect("another");
        assert!(!a.payload.is_empty());
        let (ta, tb) = (
            a.rtp_timestamp.expect("timed"),
            b.rtp_timestamp.expect("timed"),
        );
        assert_eq!(tb.wrapping_sub(ta), 960);
        assert_eq!(net.stats().remote_loss_percent, 10);
    }
}
