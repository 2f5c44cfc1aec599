//! The leg without I/O: a peer connection of the sans-IO `rtc` stack and everything the leg
//! does around it (the RTP timeline, tones both ways, RTCP reports, the connect and media
//! watchdogs, the leg's end), driven by the caller with datagrams and the time.
//!
//! [`LegCore::handle_input`] takes a datagram read from one of the leg's sockets,
//! [`LegCore::handle_timeout`] lets time pass (and moves what the pipeline encoded since the
//! last call onto the wire), [`LegCore::poll_transmit`] gives the datagrams to send, and
//! [`LegCore::poll_timeout`] says when the leg wants to be called next. There is no clock,
//! socket or task inside: the [`pump`](super::pump) drives legs on real sockets, tests drive
//! them in simulated time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::rtcp::goodbye::Goodbye;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use rtc::{rtcp, rtp};

use super::flight::FlightRepeat;
use super::lean::{LeanEvent, LeanLink, LeanRead};
use super::pump::LegSockets;
use super::timeline::RtpTimeline;
use super::{Leg, LegOutcome, OPUS_CLOCK, ToneRequest};
use crate::bridge::{InboundRtp, OutboundAudio, PushError, opus_packet_samples_48k};
use crate::dtmf::{EventReceiver, EventSender};
use crate::events::{EndReason, EndpointEvent, FailureReason, SendStatus};
use crate::quality::{InboundStats, QualityData, ntp_mid32, ntp64, round_trip};
use crate::sdp::Negotiated;

/// Queues a flight the watch sends again behind what the stack has for the wire.
fn queue_again(out: &mut VecDeque<Transmit>, again: &[Transmit], label: &str) {
    if again.is_empty() {
        return;
    }
    tracing::debug!(leg = %label, datagrams = again.len(), "DTLS flight sent again");
    out.extend(again.iter().map(|t| Transmit {
        from: t.from,
        to: t.to,
        data: t.data.clone(),
    }));
}

/// How often a leg whose port cannot wake its driver is asked for outbound packets: a
/// quarter of a packet.
pub(crate) const OUTBOUND_POLL: Duration = Duration::from_millis(5);
/// How often the owner's requests (tones, stop) and the watchdogs are looked at.
pub(crate) const HOUSEKEEPING: Duration = Duration::from_millis(20);
const TONE_PACKET_INTERVAL: Duration = Duration::from_millis(20);
/// Room reserved ahead for received datagrams.
const RX_BLOCK: usize = 2048;
/// The next instant after `now` on a grid of `step` shared by every leg of the process:
/// legs whose housekeeping falls due together are called in one wake-up of their pump,
/// not one each at phases of their own.
fn next_on_grid(now: Instant, step: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let step_ns = step.as_nanos().max(1);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let steps = since / step_ns + 1;
    epoch + Duration::from_nanos((steps * step_ns) as u64)
}

/// How often a leg on the lean path sends its sender or receiver report (the full stack's
/// report interceptors use the same interval).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Every one-byte `ssrc-audio-level` value (V bit and level), for header extensions that
/// borrow a static byte instead of allocating one per packet.
static LEVEL_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

struct PlayingTone {
    sender: EventSender,
    timestamp: u32,
    next_at: Instant,
}

/// A datagram for the wire: from which of the leg's local addresses, to where.
#[derive(Debug)]
pub(crate) struct Transmit {
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) data: BytesMut,
}

/// What the peer connection was set up with, for [`LegCore::new`].
pub(crate) struct Negotiation {
    pub(crate) pc: RTCPeerConnection,
    pub(crate) negotiated: Negotiated,
    pub(crate) ssrc: u32,
    /// The SDP sent to the peer (the answer, or the offer on the service side).
    pub(crate) local_sdp: String,
    /// Where the leg's datagrams go in and out: its own bound, non-blocking sockets (one
    /// per ICE address) and the ports they hold, or its pump's shared sockets.
    pub(crate) sockets: LegSockets,
    /// Receiving end: the track ids of the peer's speaker streams taken, with the unmixed
    /// stream index (1..) each one's packets carry to the port.
    pub(crate) speaker_tracks: Vec<(String, u8)>,
    /// Receiving end: the track id of the peer's main stream, when its offer named one.
    pub(crate) main_track: Option<String>,
    /// Sending end: the SSRCs of the speaker streams this leg sends, for unmixed streams
    /// 1, 2, ... in order.
    pub(crate) speaker_ssrcs: Vec<u32>,
    /// The lean media path, when the endpoint runs legs on it: `pc` then only wrote the
    /// answer, and is dropped when the leg starts.
    pub(crate) lean: Option<Box<LeanLink>>,
}

/// The transport under a leg: the `rtc` stack's whole peer connection, or the lean path
/// (see [`super::lean`]).
enum Link {
    Stack(Box<RTCPeerConnection>),
    Lean(Box<LeanLink>),
}

/// What a leg on the lean path counts for its own RTCP (the stack's interceptors do it on
/// the full one).
#[derive(Debug, Default)]
struct Reports {
    next: Option<Instant>,
    /// Packets and payload octets sent on the leg's SSRC.
    packets: u32,
    octets: u32,
    /// Whether RTP went out since the last report (a sender report then, else a receiver
    /// report).
    sent_since: bool,
    /// The timestamp of the last packet sent on the leg's SSRC, and when: a sender report
    /// states the RTP time of its NTP time on that timeline.
    last_rtp: Option<(u32, Instant)>,
    /// The peer's last sender report: the middle of its NTP time, and when it came.
    last_sr: Option<(u32, Instant)>,
}

/// One unmixed speaker stream the leg sends (the service side of a meeting).
#[derive(Debug)]
struct SpeakerSend {
    ssrc: u32,
    timeline: RtpTimeline,
}

/// One leg, sans-IO. See the module documentation.
pub(crate) struct LegCore {
    link: Link,
    reports: Reports,
    negotiated: Negotiated,
    send_level_id: Option<u8>,
    send_csrc_level_id: Option<u8>,
    ssrc: u32,
    /// The peer's SSRC, once a packet arrived.
    remote_ssrc: Option<u32>,
    /// The peer's speaker streams this leg takes: track id and unmixed stream index.
    speaker_tracks: Vec<(String, u8)>,
    /// The peer's main stream's track id, when known.
    main_track: Option<String>,
    /// The speaker streams this leg sends, stream 1 first.
    speaker_sends: Vec<SpeakerSend>,
    /// Packets of speaker streams nobody asked for, or for a stream this leg does not send.
    unrouted_speaker_packets: u64,
    /// The CSRC and extension lists of the last RTP packet the lean path protected,
    /// emptied: the next packet's header reuses them instead of allocating its own.
    spare_lists: (Vec<u32>, Vec<rtp::header::Extension>),
    leg: Leg,
    started: Instant,
    connected_once: bool,
    active: bool,
    last_heard: Instant,
    timeline: RtpTimeline,
    tone: Option<PlayingTone>,
    dtmf_in: EventReceiver,
    stats: InboundStats,
    quality: QualityData,
    unknown_pt: u64,
    /// When the peer connection asked to be called back.
    pc_timeout: Option<Instant>,
    next_housekeeping: Instant,
    /// When to ask a port that cannot wake the driver for packets; `None`: it wakes it.
    next_outbound_poll: Option<Instant>,
    outcome: Option<LegOutcome>,
    /// Datagrams the peer connection refused (not STUN, DTLS, SRTP or SRTCP of this leg).
    refused_datagrams: u64,
    /// Packets handed to the peer connection to send, ever (wrapping).
    writes: u64,
    /// When the datagram being handled reached the host, if known.
    arrival: Option<audio_pipeline::Ticks>,
    /// Where datagrams are copied for the stack, which takes each as an owned buffer: once
    /// the stack let go of the last one, the next reuses its memory instead of allocating.
    rx: BytesMut,
    /// Where the port copies outbound payloads ([`crate::NetworkPort::pop_reusing`]): one block
    /// reused while the lean path copies each payload on into its packet at once.
    tx_payload: BytesMut,
    /// The whole stack's handshake, watched for a lost last flight ([`FlightRepeat`]).
    flight: FlightRepeat,
    /// What the stack sent in reply to a datagram while [`Self::flight`] watched, and the
    /// flight it sends again, before anything else the stack has.
    stack_out: VecDeque<Transmit>,
}

impl LegCore {
    /// A negotiated leg, starting at `now`. `port_wakes` says whether the leg's port wakes
    /// its driver when it has packets to send; otherwise the leg polls it every
    /// [`OUTBOUND_POLL`].
    pub(crate) fn new(now: Instant, mut neg: Negotiation, leg: Leg, port_wakes: bool) -> LegCore {
        let (send_level_id, send_csrc_level_id) = super::peer::send_level_ids(&mut neg.pc);
        leg.shared
            .telephone_event
            .store(neg.negotiated.telephone_event.is_some(), Ordering::Release);
        let link = match neg.lean.take() {
            Some(lean) => {
                // It wrote the answer; it never touched the network.
                let _ = neg.pc.close();
                Link::Lean(lean)
            }
            None => Link::Stack(Box::new(neg.pc)),
        };
        let mut core = LegCore {
            link,
            reports: Reports::default(),
            negotiated: neg.negotiated,
            send_level_id,
            send_csrc_level_id,
            ssrc: neg.ssrc,
            remote_ssrc: None,
            speaker_tracks: std::mem::take(&mut neg.speaker_tracks),
            main_track: neg.main_track.take(),
            speaker_sends: neg
                .speaker_ssrcs
                .iter()
                .map(|&ssrc| SpeakerSend {
                    ssrc,
                    timeline: RtpTimeline::new(now),
                })
                .collect(),
            unrouted_speaker_packets: 0,
            spare_lists: (Vec::new(), Vec::new()),
            leg,
            started: now,
            connected_once: false,
            active: false,
            last_heard: now,
            timeline: RtpTimeline::new(now),
            tone: None,
            dtmf_in: EventReceiver::default(),
            stats: InboundStats::default(),
            quality: QualityData::default(),
            unknown_pt: 0,
            pc_timeout: None,
            next_housekeeping: now,
            next_outbound_poll: (!port_wakes).then_some(now),
            outcome: None,
            refused_datagrams: 0,
            writes: 0,
            arrival: None,
            rx: BytesMut::new(),
            tx_payload: BytesMut::new(),
            flight: FlightRepeat::default(),
            stack_out: VecDeque::new(),
        };
        core.drain(now);
        core
    }

    /// Whether its port may have packets to send (see [`crate::NetworkPort::has_outbound`]).
    pub(crate) fn has_outbound(&self) -> bool {
        self.leg.link.has_outbound()
    }

    /// Whether the leg runs on the lean media path.
    pub(crate) fn is_lean(&self) -> bool {
        matches!(self.link, Link::Lean(_))
    }

    /// The leg's label, for logs.
    pub(crate) fn label(&self) -> &str {
        &self.leg.label
    }

    /// How the leg ended, once it has: it then has nothing more to do than hand out its last
    /// datagrams (DTLS close_notify).
    pub(crate) fn outcome(&self) -> Option<LegOutcome> {
        self.outcome
    }

    /// The peer connection, for the simulation harness to write packets through it as
    /// this leg's stack would (a goodbye, arbitrary RTP for the fuzz target); `None` on the
    /// lean path.
    pub(crate) fn peer_connection(&mut self) -> Option<&mut RTCPeerConnection> {
        match &mut self.link {
            Link::Stack(pc) => Some(pc.as_mut()),
            Link::Lean(_) => None,
        }
    }

    /// Gives the port a way to wake the leg's driver when it has packets to send; says
    /// whether it took it (a port that cannot is polled every [`OUTBOUND_POLL`]).
    pub(crate) fn set_outbound_waker(&mut self, waker: &std::task::Waker, now: Instant) -> bool {
        let wakes = self.leg.link.set_outbound_waker(waker);
        self.next_outbound_poll = (!wakes).then_some(now);
        wakes
    }

    /// A datagram read at `now` on the leg's socket bound to `local`, sent by `peer`.
    /// `arrival` is when the host received it on the media clock (the kernel's stamp), if
    /// known: the RTP it carries is stamped with it for the jitter buffer and the reports,
    /// however late the driver got to read it.
    pub(crate) fn handle_input(
        &mut self,
        now: Instant,
        arrival: Option<audio_pipeline::Ticks>,
        local: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
    ) {
        if self.outcome.is_some() {
            return;
        }
        self.arrival = arrival;
        if let Link::Lean(lean) = &mut self.link {
            if let Err(e) = lean.handle_read(now, local, peer, data) {
                self.refused_datagrams += 1;
                tracing::trace!(leg = %self.leg.label, error = %e, "datagram refused");
            }
        } else {
            let msg = TaggedBytesMut {
                now,
                transport: TransportContext {
                    local_addr: local,
                    peer_addr: peer,
                    ecn: None,
                    transport_protocol: TransportProtocol::UDP,
                },
                message: self.read_buffer(data),
            };
            self.flight.peer_sent(now, data);
            let Link::Stack(pc) = &mut self.link else {
                unreachable!("the lean path returned above")
            };
            if let Err(e) = pc.handle_read(msg) {
                self.refused_datagrams += 1;
                tracing::trace!(leg = %self.leg.label, error = %e, "datagram refused");
            }
            if self.flight.watching() {
                let answered = self.take_stack_writes(now);
                let again = self.flight.repeat(now, data, answered);
                queue_again(&mut self.stack_out, again, &self.leg.label);
            }
        }
        self.drain(now);
        self.arrival = None;
    }

    /// `data` as an owned buffer for the stack, from [`Self::rx`].
    fn read_buffer(&mut self, data: &[u8]) -> BytesMut {
        // Reclaims the block when nothing else holds it; else a fresh one, with room for
        // a few more datagrams.
        self.rx.reserve(data.len().max(RX_BLOCK));
        self.rx.extend_from_slice(data);
        self.rx.split()
    }

    /// Lets time pass until `now`: the peer connection's timers, packets the pipeline
    /// encoded, tones, the owner's requests and the watchdogs. Cheap when nothing is due:
    /// a pump calls it when the leg's timer is due and, after a pipeline tick, when its
    /// port has packets ([`Self::has_outbound`]).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        let writes = self.writes;
        let mut changed = false;
        if self.pc_timeout.is_some_and(|t| t <= now) {
            self.pc_timeout = None;
            changed = true;
            match &mut self.link {
                Link::Stack(pc) => {
                    if let Err(e) = pc.handle_timeout(now) {
                        tracing::debug!(leg = %self.leg.label, error = %e, "peer connection timer");
                    }
                }
                Link::Lean(lean) => lean.handle_timeout(now),
            }
        }
        if self.flight.watching() && matches!(self.link, Link::Stack(_)) {
            // What the stack sends on its own timer is its flight again (it replaces the
            // one kept); then the watch's timer.
            self.flight.stack_timer();
            self.take_stack_writes(now);
            let again = self.flight.on_timeout(now);
            queue_again(&mut self.stack_out, again, &self.leg.label);
        }
        self.send_outbound(now);
        if now >= self.next_housekeeping {
            self.next_housekeeping = next_on_grid(now, HOUSEKEEPING);
            changed = true;
            self.housekeeping(now);
        }
        // The peer connection has news only after something was given to it.
        if changed || self.writes != writes {
            self.drain(now);
        }
    }

    /// While the handshake is watched ([`FlightRepeat`]): moves what the stack has for
    /// the wire into [`Self::stack_out`], showing it to the watch; whether any was DTLS.
    fn take_stack_writes(&mut self, now: Instant) -> bool {
        let Link::Stack(pc) = &mut self.link else {
            return false;
        };
        let mut dtls = false;
        while let Some(msg) = pc.poll_write() {
            let t = Transmit {
                from: msg.transport.local_addr,
                to: msg.transport.peer_addr,
                data: msg.message,
            };
            dtls |= self.flight.sent(now, &t);
            self.stack_out.push_back(t);
        }
        dtls
    }

    /// The next datagram to send, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        match &mut self.link {
            Link::Stack(pc) => {
                if let Some(t) = self.stack_out.pop_front() {
                    return Some(t);
                }
                let msg = pc.poll_write()?;
                Some(Transmit {
                    from: msg.transport.local_addr,
                    to: msg.transport.peer_addr,
                    data: msg.message,
                })
            }
            Link::Lean(lean) => lean.poll_transmit(),
        }
    }

    /// When [`Self::handle_timeout`] must be called next at the latest (the driver also calls
    /// it when the port wakes it). `None` once the leg ended.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let mut next = self.next_housekeeping;
        if let Some(t) = self.pc_timeout {
            next = next.min(t);
        }
        if let Some(t) = self.next_outbound_poll {
            next = next.min(t);
        }
        if let Some(t) = self.flight.poll_timeout() {
            next = next.min(t);
        }
        if let Some(t) = &self.tone {
            next = next.min(t.next_at);
        }
        Some(next)
    }

    /// Ends the leg at `now` (the owner stopped it, or its driver is going away).
    pub(crate) fn close(&mut self, now: Instant, reason: EndReason) {
        if self.outcome.is_none() {
            self.finish(now, LegOutcome::Ended(reason));
        }
    }

    /// Events, read RTP and RTCP, and the leg's end, after anything changed the peer
    /// connection.
    fn drain(&mut self, now: Instant) {
        if matches!(self.link, Link::Lean(_)) {
            return self.drain_lean(now);
        }
        while self.outcome.is_none() {
            let Link::Stack(pc) = &mut self.link else {
                return;
            };
            if let Some(ev) = pc.poll_event() {
                let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = ev else {
                    continue;
                };
                if let Some(outcome) = self.on_state(now, state) {
                    self.finish(now, outcome);
                    return;
                }
                continue;
            }
            let Some(TaggedRTCMessage { message, .. }) = pc.poll_read() else {
                break;
            };
            {
                let outcome = match message {
                    RTCMessage::RtpPacket(track, p) => {
                        self.on_stream_rtp(now, self.stream_of(&track), &p)
                    }
                    RTCMessage::RtcpPacket(_, p) => self.on_rtcp(now, &p),
                    _ => None,
                };
                if let Some(outcome) = outcome {
                    self.finish(now, outcome);
                    return;
                }
            }
        }
        if let (None, Link::Stack(pc)) = (self.outcome, &mut self.link) {
            self.pc_timeout = pc.poll_timeout();
        }
    }

    /// [`Self::drain`] on the lean path.
    fn drain_lean(&mut self, now: Instant) {
        while self.outcome.is_none() {
            let Link::Lean(lean) = &mut self.link else {
                return;
            };
            if let Some(ev) = lean.poll_event() {
                let state = match ev {
                    LeanEvent::Connected => {
                        self.reports.next = Some(now + REPORT_INTERVAL);
                        RTCPeerConnectionState::Connected
                    }
                    LeanEvent::Failed => RTCPeerConnectionState::Failed,
                    LeanEvent::Closed => RTCPeerConnectionState::Closed,
                };
                if let Some(outcome) = self.on_state(now, state) {
                    self.finish(now, outcome);
                    return;
                }
                continue;
            }
            let Some(read) = lean.poll_read() else {
                break;
            };
            let outcome = match read {
                LeanRead::Rtp(p, track) => {
                    let stream = match &self.link {
                        Link::Lean(lean) => self.stream_of(lean.track(track)),
                        Link::Stack(_) => None,
                    };
                    let outcome = self.on_stream_rtp(now, stream, &p);
                    // Back to the lean path: the next packet is parsed into it.
                    if let Link::Lean(lean) = &mut self.link {
                        lean.recycle(p);
                    }
                    outcome
                }
                LeanRead::Rtcp(p) => self.on_rtcp(now, &p),
            };
            if let Some(outcome) = outcome {
                self.finish(now, outcome);
                return;
            }
        }
        if let (None, Link::Lean(lean)) = (self.outcome, &self.link) {
            self.pc_timeout = lean.poll_timeout();
        }
    }

    /// An RTP packet of `stream` (see [`Self::stream_of`]): to the main stream, a speaker
    /// stream, or counted as unrouted.
    fn on_stream_rtp(
        &mut self,
        now: Instant,
        stream: Option<u8>,
        p: &rtp::Packet,
    ) -> Option<LegOutcome> {
        // The peer's media: its handshake is over too.
        self.flight.finish();
        match stream {
            Some(0) => self.on_rtp(now, p),
            Some(stream) => self.on_speaker_rtp(now, p, stream),
            None => {
                self.unrouted_speaker_packets += 1;
                None
            }
        }
    }

    fn emit(&self, ev: EndpointEvent) {
        if self.leg.events.try_send(ev).is_err() {
            tracing::debug!(leg = %self.leg.label, "event dropped: the session's event queue is full or closed");
        }
    }

    fn set_active(&mut self, active: bool) {
        if self.active == active {
            return;
        }
        self.active = active;
        self.leg.shared.active.store(active, Ordering::Release);
        self.leg.link.set_send_active(active);
        if active {
            self.timeline.resync = true;
        } else {
            self.tone = None;
        }
        self.emit(EndpointEvent::SendStatus(if active {
            SendStatus::Active
        } else {
            SendStatus::Inactive
        }));
    }

    fn on_state(&mut self, now: Instant, state: RTCPeerConnectionState) -> Option<LegOutcome> {
        tracing::debug!(leg = %self.leg.label, ?state, "connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                self.connected_once = true;
                self.flight.complete();
                self.last_heard = now;
                self.set_active(true);
                None
            }
            RTCPeerConnectionState::Disconnected => {
                self.set_active(false);
                None
            }
            RTCPeerConnectionState::Failed => {
                self.set_active(false);
                Some(LegOutcome::Failed(FailureReason::TransportFailed))
            }
            RTCPeerConnectionState::Closed => {
                self.set_active(false);
                Some(self.peer_left())
            }
            _ => None,
        }
    }

    /// Which stream a track's packets belong to: 0 the main one, 1.. a speaker stream this
    /// leg takes, `None` a speaker stream it does not.
    fn stream_of(&self, track: &str) -> Option<u8> {
        if let Some(&(_, stream)) = self.speaker_tracks.iter().find(|(t, _)| t == track) {
            return Some(stream);
        }
        // Without a named main track (a peer that sends no `a=msid`), all else is main.
        match self.main_track.as_deref() {
            Some(main) if main != track => None,
            _ => Some(0),
        }
    }

    /// Handles one RTP packet of a speaker stream: to the port, tagged with its stream.
    fn on_speaker_rtp(&mut self, now: Instant, p: &rtp::Packet, stream: u8) -> Option<LegOutcome> {
        self.last_heard = now;
        let h = &p.header;
        if h.payload_type != self.negotiated.opus_pt {
            self.unknown_pt += 1;
            return None;
        }
        let packet = self.inbound(p, stream);
        self.push_inbound(packet, p.payload.len())
    }

    /// What the port gets of an RTP packet of the negotiated Opus type.
    fn inbound<'p>(&self, p: &'p rtp::Packet, stream: u8) -> InboundRtp<'p> {
        let h = &p.header;
        let audio_level = self
            .negotiated
            .ssrc_audio_level_id
            .and_then(|id| h.get_extension(id))
            .and_then(|b| b.first().map(|v| v & 0x7f));
        let levels = self
            .negotiated
            .csrc_audio_level_id
            .and_then(|id| h.get_extension(id))
            .filter(|l| l.len() >= h.csrc.len());
        let mut csrcs = audio_pipeline::Csrcs::new();
        for (i, id) in h.csrc.iter().enumerate() {
            let level = levels.as_ref().and_then(|l| l.get(i)).map(|v| v & 0x7f);
            // RTP carries at most 15 CSRCs, as many as the list holds.
            let _ = csrcs.push(*id, level);
        }
        InboundRtp {
            seq: h.sequence_number,
            rtp_timestamp: h.timestamp,
            ssrc: h.ssrc,
            audio_level,
            csrcs,
            payload: &p.payload,
            arrival: self.arrival,
            stream,
        }
    }

    /// Queues a received packet for the pipeline; an outcome when the bot removed the call.
    fn push_inbound(&mut self, packet: InboundRtp<'_>, len: usize) -> Option<LegOutcome> {
        match self.leg.link.push(packet) {
            Ok(()) => {}
            Err(PushError::Full) => {
                self.leg
                    .shared
                    .inbound_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(PushError::Removed) => {
                // The bot removed the call: nothing is left to carry media for.
                return Some(LegOutcome::Ended(EndReason::Closed));
            }
            Err(_) => {
                tracing::debug!(leg = %self.leg.label, len, "inbound packet the pipeline cannot carry");
            }
        }
        None
    }

    /// Handles one RTP packet from the peer; returns an outcome when the leg must end.
    fn on_rtp(&mut self, now: Instant, p: &rtp::Packet) -> Option<LegOutcome> {
        self.last_heard = now;
        let h = &p.header;
        self.remote_ssrc = Some(h.ssrc);
        if h.payload_type == self.negotiated.opus_pt {
            // Arrival for the reports' jitter: the kernel's stamp when there is one.
            let received = self
                .arrival
                .map(|a| audio_pipeline::now().saturating_sub(a))
                .and_then(|age| now.checked_sub(Duration::from_nanos(age.as_nanos())))
                .unwrap_or(now);
            let since = received.saturating_duration_since(self.started);
            let arrival_units =
                (since.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000) as i64;
            self.stats
                .on_packet(h.sequence_number, h.timestamp, arrival_units);
            let packet = self.inbound(p, 0);
            return self.push_inbound(packet, p.payload.len());
        } else if self
            .negotiated
            .telephone_event
            .is_some_and(|(pt, _)| pt == h.payload_type)
        {
            self.stats.on_sequence(h.sequence_number);
            if let Some(tone) = self.dtmf_in.on_packet(h.timestamp, &p.payload) {
                tracing::debug!(leg = %self.leg.label, %tone, "tone received");
                self.emit(EndpointEvent::ToneReceived(tone));
            }
        } else {
            self.unknown_pt += 1;
        }
        None
    }

    /// Handles RTCP from the peer; returns an outcome when the peer said goodbye.
    fn on_rtcp(&mut self, now: Instant, packets: &[Box<dyn rtcp::Packet>]) -> Option<LegOutcome> {
        self.flight.finish();
        self.last_heard = now;
        let mut bye = false;
        for p in packets {
            let any = p.as_any();
            if let Some(b) = any.downcast_ref::<Goodbye>() {
                // A BYE for the peer's own stream ends the leg; one for a CSRC is a speaker
                // leaving a mix.
                bye |= self
                    .remote_ssrc
                    .is_some_and(|ssrc| b.sources.contains(&ssrc));
                continue;
            }
            let reports: &[ReceptionReport] = if let Some(rr) = any.downcast_ref::<ReceiverReport>()
            {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                if self.remote_ssrc == Some(sr.ssrc) {
                    // For the LSR and DLSR of this leg's own reports (the lean path's).
                    self.reports.last_sr = Some(((sr.ntp_time >> 16) as u32, now));
                }
                &sr.reports
            } else {
                continue;
            };
            let ssrc = self.ssrc;
            for r in reports.iter().filter(|r| r.ssrc == ssrc) {
                self.on_report(r);
            }
        }
        bye.then(|| self.peer_left())
    }

    /// How the leg ends when the peer leaves (a BYE, a DTLS close): as the peer leaving,
    /// unless its owner's stop came first and is not read yet (stops are read with the
    /// housekeeping): a service that hangs up DELETEs the leg, then closes its connection.
    fn peer_left(&mut self) -> LegOutcome {
        match self.leg.stop.try_recv() {
            Ok(reason) => LegOutcome::Ended(reason),
            Err(_) => LegOutcome::Ended(EndReason::PeerLeft),
        }
    }

    fn on_report(&mut self, r: &ReceptionReport) {
        let q = &mut self.quality;
        q.outbound_fraction_lost = f32::from(r.fraction_lost) / 256.0;
        q.outbound_total_lost = r.total_lost;
        q.outbound_jitter =
            Duration::from_nanos(u64::from(r.jitter) * 1_000_000_000 / u64::from(OPUS_CLOCK));
        if let Some(rtt) = round_trip(ntp_mid32(SystemTime::now()), r.last_sender_report, r.delay) {
            q.round_trip = Some(rtt);
        }
        q.inbound_packets = self.stats.received();
        q.inbound_lost = self.stats.lost();
        q.inbound_jitter = self.stats.jitter(OPUS_CLOCK);
        self.leg.link.set_remote_fraction_lost(r.fraction_lost);
        let snapshot = *q;
        self.emit(EndpointEvent::Quality(snapshot));
    }

    /// The owner's requests and the watchdogs.
    fn housekeeping(&mut self, now: Instant) {
        match self.leg.stop.try_recv() {
            Ok(reason) => return self.finish(now, LegOutcome::Ended(reason)),
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                return self.finish(now, LegOutcome::Ended(EndReason::Closed));
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {}
        }
        // Tones wait in the queue while one plays, so a sequence plays in order.
        if self.tone.is_none()
            && let Ok(req) = self.leg.tones.try_recv()
        {
            self.on_tone_request(now, req);
        }
        if let Some(outcome) = self.watchdog(now) {
            return self.finish(now, outcome);
        }
        // The lean path's reports go out with the housekeeping when due: no wake-up of
        // their own.
        if self.reports.next.is_some_and(|t| t <= now) {
            self.send_reports(now);
        }
    }

    fn on_tone_request(&mut self, now: Instant, req: ToneRequest) {
        let Some((_, rate)) = self.negotiated.telephone_event else {
            return;
        };
        if !self.active {
            // The handle refuses tones while inactive; this one raced a disconnect.
            tracing::debug!(leg = %self.leg.label, "tone dropped: transport inactive");
            return;
        }
        self.timeline.catch_up(now);
        let ms = u32::try_from(req.duration.as_millis()).unwrap_or(u32::MAX);
        self.tone = Some(PlayingTone {
            sender: EventSender::new(req.tone, ms, rate),
            timestamp: self.timeline.next_ts,
            next_at: now,
        });
        self.send_tone_packets(now);
    }

    /// What the pipeline encoded since the last call, and the next tone packet when due.
    fn send_outbound(&mut self, now: Instant) {
        if self.next_outbound_poll.is_some_and(|t| t > now) {
            // Polled, and not due: the tone timer may still be.
            self.send_tone_packets(now);
            return;
        }
        if let Some(t) = &mut self.next_outbound_poll {
            *t = now + OUTBOUND_POLL;
        }
        while let Some(audio) = self.leg.link.pop_reusing(&mut self.tx_payload) {
            // Media before Active is discarded, and a tone replaces the main stream's audio
            // it overlaps.
            if !self.active {
                continue;
            }
            if audio.stream != 0 {
                self.send_speaker_audio(audio, now);
            } else if self.tone.is_none() {
                self.send_audio(audio, now);
            }
        }
        self.send_tone_packets(now);
    }

    fn write_rtp(&mut self, now: Instant, packet: rtp::Packet) {
        let pc = match &mut self.link {
            Link::Stack(pc) => pc,
            Link::Lean(lean) => {
                // Protected and queued at once; nothing for the leg to read back.
                if lean.write_rtp(&packet.header, &packet.payload) {
                    if packet.header.ssrc == self.ssrc {
                        let r = &mut self.reports;
                        r.packets = r.packets.wrapping_add(1);
                        r.octets = r.octets.wrapping_add(packet.payload.len() as u32);
                        r.sent_since = true;
                        r.last_rtp = Some((packet.header.timestamp, now));
                    }
                } else {
                    tracing::trace!(leg = %self.leg.label, "RTP not sent: no keys or path yet");
                }
                let mut header = packet.header;
                header.csrc.clear();
                header.extensions.clear();
                self.spare_lists = (header.csrc, header.extensions);
                return;
            }
        };
        // Straight into the stack's write path: the sender's own `write_rtp` checks the SSRC,
        // payload type and extension ids against its parameters, built anew (allocating) for
        // every packet; this leg set all three up itself at negotiation.
        let msg = TaggedRTCMessage {
            now,
            message: RTCMessage::RtpPacket(String::new(), packet),
        };
        self.writes = self.writes.wrapping_add(1);
        if let Err(e) = pc.handle_write(msg) {
            tracing::debug!(leg = %self.leg.label, error = %e, "RTP write failed");
        }
    }

    /// On the lean path: a sender report when the leg sent RTP since the last one, else a
    /// receiver report, each with a reception report of the peer's stream once it sent
    /// (RFC 3550 §6.4).
    fn send_reports(&mut self, now: Instant) {
        self.reports.next = Some(now + REPORT_INTERVAL);
        let block = self.remote_ssrc.map(|ssrc| {
            let (lsr, dlsr) = match self.reports.last_sr {
                // DLSR in 1/65536 s since that report came.
                Some((mid, at)) => {
                    let since = now.saturating_duration_since(at);
                    (
                        mid,
                        ((since.as_micros() as u64 * 65_536) / 1_000_000) as u32,
                    )
                }
                None => (0, 0),
            };
            self.stats.report_block(ssrc, lsr, dlsr)
        });
        let reports: Vec<ReceptionReport> = block.into_iter().collect();
        let sent = std::mem::take(&mut self.reports.sent_since);
        let packet: Box<dyn rtcp::Packet> =
            if let (true, Some((ts, at))) = (sent, self.reports.last_rtp) {
                // The last packet's timestamp moved on by the time since it left.
                let since = now.saturating_duration_since(at);
                let units = since.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000;
                Box::new(SenderReport {
                    ssrc: self.ssrc,
                    ntp_time: ntp64(SystemTime::now()),
                    rtp_time: ts.wrapping_add(units as u32),
                    packet_count: self.reports.packets,
                    octet_count: self.reports.octets,
                    reports,
                    profile_extensions: Bytes::new(),
                })
            } else {
                Box::new(ReceiverReport {
                    ssrc: self.ssrc,
                    reports,
                    profile_extensions: Bytes::new(),
                })
            };
        if let Link::Lean(lean) = &mut self.link
            && !lean.write_rtcp(&[packet])
        {
            tracing::trace!(leg = %self.leg.label, "RTCP not sent: no keys or path yet");
        }
    }

    fn send_audio(&mut self, audio: OutboundAudio, now: Instant) {
        let samples = opus_packet_samples_48k(&audio.payload).unwrap_or(960);
        let (seq, ts, marker) =
            self.timeline
                .audio(samples, audio.rtp_timestamp, audio.marker, now);
        let packet = self.audio_packet(audio, self.ssrc, (seq, ts, marker));
        self.write_rtp(now, packet);
    }

    /// A packet of unmixed speaker stream `audio.stream`, on that stream's own SSRC and
    /// timeline.
    fn send_speaker_audio(&mut self, audio: OutboundAudio, now: Instant) {
        let Some(send) = self.speaker_sends.get_mut(usize::from(audio.stream) - 1) else {
            self.unrouted_speaker_packets += 1;
            return;
        };
        let samples = opus_packet_samples_48k(&audio.payload).unwrap_or(960);
        let position = send
            .timeline
            .audio(samples, audio.rtp_timestamp, audio.marker, now);
        let ssrc = send.ssrc;
        let packet = self.audio_packet(audio, ssrc, position);
        self.write_rtp(now, packet);
    }

    /// The RTP packet of `audio` at `(seq, timestamp, marker)` of stream `ssrc`, with its
    /// level extensions and CSRCs.
    fn audio_packet(
        &mut self,
        audio: OutboundAudio,
        ssrc: u32,
        (seq, ts, marker): (u16, u32, bool),
    ) -> rtp::packet::Packet {
        let (csrc, extensions) = std::mem::take(&mut self.spare_lists);
        let mut header = rtp::header::Header {
            version: 2,
            marker,
            payload_type: self.negotiated.opus_pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            csrc,
            extensions,
            ..Default::default()
        };
        if let (Some(id), Some(level)) = (self.send_level_id, audio.audio_level) {
            // V bit set when the level is above silence: the pipeline has no separate VAD.
            let v = if level < 127 { 0x80 } else { 0 };
            let b = usize::from(v | (level & 0x7f));
            let _ = header.set_extension(id, Bytes::from_static(&LEVEL_BYTES[b..=b]));
        }
        if !audio.csrcs.is_empty() {
            header.csrc.extend_from_slice(audio.csrcs.ids());
            // RFC 6465: one level per CSRC, in order; only when every level is known.
            let mut levels = [0u8; audio_pipeline::MAX_CSRCS];
            let known = audio.csrcs.levels().iter().all(Option::is_some);
            if let (Some(id), true) = (self.send_csrc_level_id, known) {
                for (d, l) in levels.iter_mut().zip(audio.csrcs.levels()) {
                    *d = l.unwrap_or(127) & 0x7f;
                }
                let n = audio.csrcs.len();
                let _ = header.set_extension(id, Bytes::copy_from_slice(&levels[..n]));
            }
        }
        rtp::packet::Packet {
            header,
            payload: audio.payload,
        }
    }

    fn send_tone_packets(&mut self, now: Instant) {
        let Some(pt) = self.negotiated.telephone_event.map(|(pt, _)| pt) else {
            return;
        };
        let Some(tone) = self.tone.as_mut() else {
            return;
        };
        if now < tone.next_at {
            return;
        }
        tone.next_at += TONE_PACKET_INTERVAL;
        let Some(ev) = tone.sender.next_packet() else {
            return;
        };
        let timestamp = tone.timestamp;
        if tone.sender.is_done() {
            self.tone = None;
            // Audio resumes on the clock's timeline, as a new talkspurt.
            self.timeline.resync = true;
        }
        let header = rtp::header::Header {
            version: 2,
            marker: ev.marker,
            payload_type: pt,
            sequence_number: self.timeline.seq(),
            timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        let packet = rtp::packet::Packet {
            header,
            payload: Bytes::copy_from_slice(&ev.payload),
        };
        self.write_rtp(now, packet);
    }

    fn watchdog(&self, now: Instant) -> Option<LegOutcome> {
        if !self.connected_once {
            return (now.saturating_duration_since(self.started)
                > self.leg.settings.connect_timeout)
                .then_some(LegOutcome::Failed(FailureReason::ConnectTimeout));
        }
        (now.saturating_duration_since(self.last_heard) > self.leg.settings.media_timeout)
            .then_some(LegOutcome::Failed(FailureReason::PeerSilent))
    }

    fn finish(&mut self, now: Instant, outcome: LegOutcome) {
        self.outcome = Some(outcome);
        self.set_active(false);
        self.leg.shared.ended.store(true, Ordering::Release);
        // Queues DTLS close_notify for the driver's last poll_transmit.
        match &mut self.link {
            Link::Stack(pc) => {
                if let Err(e) = pc.close() {
                    tracing::debug!(leg = %self.leg.label, error = %e, "closing the peer connection");
                }
            }
            Link::Lean(lean) => lean.close(now),
        }
        tracing::info!(
            leg = %self.leg.label,
            ?outcome,
            received = self.stats.received(),
            lost = self.stats.lost(),
            unknown_payload_types = self.unknown_pt,
            refused_datagrams = self.refused_datagrams,
            unrouted_speaker_packets = self.unrouted_speaker_packets,
            "leg ended"
        );
        if let Some(on_end) = self.leg.on_end.take() {
            on_end();
        }
        self.emit(match outcome {
            LegOutcome::Ended(r) => EndpointEvent::LegEnded(r),
            LegOutcome::Failed(r) => EndpointEvent::StreamFailure(r),
        });
    }
}
