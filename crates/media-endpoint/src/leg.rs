//! One WebRTC leg: negotiating the answer, then one task that moves RTP between the peer
//! connection and the pipeline's queues, sends tones, watches the transport and reports.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    Registry, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtcp::goodbye::Goodbye;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::shared::error::Error as RtcError;
use rtc::{rtcp, rtp, sansio};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription,
};

use crate::bridge::{InboundRtp, NetworkPort, OutboundAudio, PushError, opus_packet_samples_48k};
use crate::config::IceAddress;
use crate::dtmf::{EventReceiver, EventSender, Tone};
use crate::error::ToneError;
use crate::events::{EndReason, EndpointEvent, FailureReason, SendStatus};
use crate::quality::{InboundStats, QualityData, ntp_mid32, round_trip};
use crate::sdp::{
    CSRC_AUDIO_LEVEL_URI, Direction, Negotiated, Offer, OfferError, SDES_MID_URI,
    SSRC_AUDIO_LEVEL_URI, drop_rtcp_candidates, ensure_opus_fec, read_answer,
};

const OPUS_CLOCK: u32 = 48_000;
/// How often the task drains the outbound queue: a quarter of a packet.
const OUTBOUND_TICK: Duration = Duration::from_millis(5);
/// A pause in outbound audio longer than this restarts the RTP timeline from the clock.
const TALKSPURT_GAP: Duration = Duration::from_millis(100);
const TONE_PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// How many times a leg binds anew on other ports when another program took one of the
/// ports it leased between the check and the bind.
const BIND_ATTEMPTS: usize = 3;

/// Per-leg settings taken from the endpoint configuration.
#[derive(Clone, Debug)]
pub(crate) struct LegSettings {
    pub(crate) ice_addresses: Vec<IceAddress>,
    pub(crate) gathering_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) media_timeout: Duration,
}

/// What the session's owner sees of its leg, shared with the leg task.
#[derive(Debug, Default)]
pub(crate) struct LegShared {
    pub(crate) active: AtomicBool,
    pub(crate) telephone_event: AtomicBool,
    pub(crate) ended: AtomicBool,
    /// Inbound packets dropped because the pipeline's queue was full.
    pub(crate) inbound_dropped: AtomicU64,
}

/// A tone the bot asked to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToneRequest {
    pub(crate) tone: Tone,
    pub(crate) duration: Duration,
}

/// The owner's side of a leg, whichever end opened it: the state its task publishes and
/// the queue tones reach it through. The bot's [`SessionHandle`](crate::SessionHandle) and
/// the service's [`ServiceLeg`](crate::service::ServiceLeg) both wrap one.
#[derive(Debug)]
pub(crate) struct LegControl {
    shared: Arc<LegShared>,
    tones: mpsc::Sender<ToneRequest>,
}

impl LegControl {
    /// A control for a leg not started yet, and the receiving end of its tone queue, which
    /// holds `tone_queue` tones waiting while one plays.
    pub(crate) fn new(tone_queue: usize) -> (LegControl, mpsc::Receiver<ToneRequest>) {
        let (tones, rx) = mpsc::channel(tone_queue);
        let shared = Arc::new(LegShared::default());
        (LegControl { shared, tones }, rx)
    }

    /// The state the leg task publishes (it gets a clone of this).
    pub(crate) fn shared(&self) -> &Arc<LegShared> {
        &self.shared
    }

    pub(crate) fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    pub(crate) fn inbound_dropped(&self) -> u64 {
        self.shared.inbound_dropped.load(Ordering::Relaxed)
    }

    /// Queues a tone for the leg task; refused when the leg ended, is not connected, did
    /// not negotiate telephone-event, or has a full queue.
    pub(crate) fn send_tone(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        if self.has_ended() {
            return Err(ToneError::Ended);
        }
        if !self.is_active() {
            return Err(ToneError::NotActive);
        }
        if !self.shared.telephone_event.load(Ordering::Acquire) {
            return Err(ToneError::NotNegotiated);
        }
        self.tones
            .try_send(ToneRequest { tone, duration })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ToneError::Busy,
                mpsc::error::TrySendError::Closed(_) => ToneError::Ended,
            })
    }
}

/// Why negotiating a leg failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NegotiateError {
    /// The offer was refused (HTTP 400).
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The WebRTC stack failed for a reason unrelated to the offer (HTTP 500).
    #[error("the WebRTC stack failed while {step}")]
    Stack {
        step: &'static str,
        #[source]
        source: RtcError,
    },
    /// ICE gathering produced no candidate on the configured addresses (HTTP 500).
    #[error("no ICE candidate could be gathered on the configured addresses")]
    NoCandidates,
    /// Every port of an ICE address's range is taken: the leg is refused before anything
    /// is built (HTTP 503 with this message and `Retry-After: 1`: ports free up as legs end).
    #[error(
        "no free UDP port for ICE on {address} in {}-{}: every port of the range is in use \
         (by other legs or other programs)",
        ports.start(),
        ports.end()
    )]
    NoIcePort {
        address: IpAddr,
        ports: RangeInclusive<u16>,
    },
}

impl From<SetupError> for NegotiateError {
    fn from(e: SetupError) -> Self {
        NegotiateError::Stack {
            step: e.step(),
            source: e.into_source(),
        }
    }
}

impl From<ports::NoFreePort> for NegotiateError {
    fn from(e: ports::NoFreePort) -> Self {
        NegotiateError::NoIcePort {
            address: e.address,
            ports: e.ports,
        }
    }
}

/// Events from the peer connection's driver, forwarded to the leg task.
pub(crate) enum PcEvent {
    Gathering(RTCIceGatheringState),
    Connection(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

pub(crate) struct Handler {
    pub(crate) tx: mpsc::Sender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        // The driver must never wait on the leg task; the channel is sized for every event
        // a leg can produce before its task runs.
        let _ = self.tx.try_send(PcEvent::Gathering(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.try_send(PcEvent::Connection(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.try_send(PcEvent::Track(track));
    }
}

/// Hands inbound RTCP to the application: receiver reports carry the loss, jitter and round
/// trip of the stream the endpoint sends, and any RTCP proves the peer is alive. Without this
/// the report interceptors consume it.
#[derive(Default)]
struct DeliverRtcp {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl sansio::Protocol<TaggedPacket, TaggedPacket, ()> for DeliverRtcp {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = RtcError;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if matches!(msg.message.packet, Packet::Rtcp(_)) {
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for DeliverRtcp {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: OPUS_CLOCK,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn telephone_event_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
        clock_rate: OPUS_CLOCK,
        channels: 1,
        sdp_fmtp_line: "0-16".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn media_engine() -> Result<(MediaEngine, Registry), RtcError> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: 111,
        },
        RtpCodecKind::Audio,
    )?;
    // One telephone-event rate only: the codec matcher ignores clock rates, so a second one
    // would duplicate a payload type.
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: telephone_event_codec(),
            payload_type: 126,
        },
        RtpCodecKind::Audio,
    )?;
    for uri in [SSRC_AUDIO_LEVEL_URI, CSRC_AUDIO_LEVEL_URI, SDES_MID_URI] {
        engine.register_header_extension(
            RTCRtpHeaderExtensionCapability {
                uri: uri.to_owned(),
            },
            RtpCodecKind::Audio,
            None,
        )?;
    }
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    // Last in the chain, so every interceptor has seen the RTCP before it is delivered.
    let registry = registry.with(Slot::from(14_000), DeliverRtcp::default());
    Ok((engine, registry))
}

/// Why [`build_peer_connection`] failed.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// Registering codecs, header extensions or interceptors failed.
    MediaEngine(RtcError),
    /// Building the peer connection failed, binding its sockets among others.
    Build(RtcError),
}

impl SetupError {
    /// What was being done, for the error message.
    pub(crate) fn step(&self) -> &'static str {
        match self {
            SetupError::MediaEngine(_) => "configuring the media engine",
            SetupError::Build(_) => "building the peer connection",
        }
    }

    pub(crate) fn into_source(self) -> RtcError {
        match self {
            SetupError::MediaEngine(e) | SetupError::Build(e) => e,
        }
    }
}

/// A peer connection with [`media_engine`]'s codecs and interceptors, gathering host
/// candidates on `addrs` only (loopback included, no mDNS). Its driver's events arrive on
/// the receiver, sized for every event a leg produces before its task runs.
pub(crate) async fn build_peer_connection(
    addrs: Vec<SocketAddr>,
) -> Result<(Arc<dyn PeerConnection>, mpsc::Receiver<PcEvent>), SetupError> {
    let (engine, registry) = media_engine().map_err(SetupError::MediaEngine)?;
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    let (tx, events) = mpsc::channel(64);
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { tx }))
        .with_udp_addrs(addrs)
        .build()
        .await
        .map_err(SetupError::Build)?;
    Ok((Arc::new(pc), events))
}

/// Waits for ICE gathering to complete (or the driver to go away), at most `timeout`;
/// returns the other events that came meanwhile, in order, for the leg task. On timeout
/// the description goes out with what was gathered: `then` says how, in the warning.
pub(crate) async fn await_gathering(
    events: &mut mpsc::Receiver<PcEvent>,
    timeout: Duration,
    then: &str,
) -> Vec<PcEvent> {
    let mut early = Vec::new();
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(PcEvent::Gathering(RTCIceGatheringState::Complete)) | None => break,
                Some(other) => early.push(other),
            },
            () = &mut deadline => {
                tracing::warn!("ICE gathering did not complete in time; {then} what was gathered");
                break;
            }
        }
    }
    early
}

/// The local Opus track a leg sends on, with a fresh random SSRC (returned beside it).
pub(crate) fn opus_track(
    stream_id: String,
    track_id: String,
    label: String,
) -> (Arc<TrackLocalStaticRTP>, u32) {
    let ssrc = rand_u32();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id,
        track_id,
        label,
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )));
    (track, ssrc)
}

/// A negotiated leg whose task has not started yet.
pub(crate) struct Negotiation {
    pub(crate) pc: Arc<dyn PeerConnection>,
    pub(crate) track: Arc<TrackLocalStaticRTP>,
    pub(crate) events: mpsc::Receiver<PcEvent>,
    pub(crate) early: Vec<PcEvent>,
    pub(crate) negotiated: Negotiated,
    pub(crate) ssrc: u32,
    /// The answer, with the gathered candidates.
    pub(crate) answer: String,
    /// The ports the leg's sockets hold, released when the leg ends.
    pub(crate) ports: ports::PortLease,
}

/// Builds a peer connection for `offer` and returns its non-trickle answer.
pub(crate) async fn negotiate(
    offer: Offer,
    track_id: String,
    settings: &LegSettings,
) -> Result<Negotiation, NegotiateError> {
    let mut attempt = 0;
    let mut failed = None;
    let (pc, mut events, ports) = loop {
        attempt += 1;
        // Leased before the failed lease is released: a retry takes other ports.
        let ports = ports::PortLease::take(&settings.ice_addresses)?;
        drop(failed.take());
        match build_peer_connection(ports.bind_addrs().to_vec()).await {
            Ok((pc, events)) => break (pc, events, ports),
            // Another program bound a leased port between the check and the bind.
            Err(SetupError::Build(e)) if ports.is_ranged() && attempt < BIND_ATTEMPTS => {
                tracing::debug!(error = %e, "binding the leg's ICE ports failed; trying others");
                failed = Some(ports);
            }
            Err(e) => return Err(e.into()),
        }
    };
    match answer_offer(&pc, offer, track_id, settings, &mut events).await {
        Ok((track, negotiated, ssrc, answer, early)) => Ok(Negotiation {
            pc,
            track,
            events,
            early,
            negotiated,
            ssrc,
            answer,
            ports,
        }),
        Err(e) => {
            let _ = pc.close().await;
            Err(e)
        }
    }
}

type Answered = (
    Arc<TrackLocalStaticRTP>,
    Negotiated,
    u32,
    String,
    Vec<PcEvent>,
);

async fn answer_offer(
    pc: &Arc<dyn PeerConnection>,
    offer: Offer,
    track_id: String,
    settings: &LegSettings,
    events: &mut mpsc::Receiver<PcEvent>,
) -> Result<Answered, NegotiateError> {
    let refused = |e: RtcError| OfferError::Rejected {
        detail: e.to_string(),
    };
    let desc = RTCSessionDescription::offer(offer.sdp.clone()).map_err(refused)?;
    pc.set_remote_description(desc).await.map_err(refused)?;

    let (track, ssrc) = opus_track(
        format!("botmedia-{track_id}"),
        track_id,
        "botmedia-audio".to_owned(),
    );
    // From here on the stack works on what the offer set up: a failure is the offer's
    // (the sdp_offer fuzz target found offers that failed here with 500).
    pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
        .await
        .map_err(refused)?;
    // add_track narrows the transceiver to the track's one codec; widen it again so the
    // answer keeps telephone-event beside Opus.
    for t in pc.get_transceivers().await {
        let is_audio_sender = match t.sender().await {
            Ok(Some(s)) => {
                webrtc::media_stream::Track::kind(&**s.track()).await == RtpCodecKind::Audio
            }
            _ => false,
        };
        if is_audio_sender {
            // With the offer's payload types: the receiver looks a stream's first packet up
            // by payload type in these preferences, and opens no track if it is missing.
            let mut prefs = vec![RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    sdp_fmtp_line: offer.opus.fmtp.clone(),
                    ..opus_codec()
                },
                payload_type: offer.opus.payload_type,
            }];
            if let Some(te) = &offer.telephone_event {
                prefs.push(RTCRtpCodecParameters {
                    rtp_codec: RTCRtpCodec {
                        clock_rate: te.clock_rate,
                        sdp_fmtp_line: te.fmtp.clone(),
                        ..telephone_event_codec()
                    },
                    payload_type: te.payload_type,
                });
            }
            t.set_codec_preferences(prefs).await.map_err(refused)?;
            // RFC 3264 §6.1: the answer mirrors the offer (webrtc-rs keeps what it is told).
            let direction = match offer.direction.answer() {
                Direction::SendRecv => RTCRtpTransceiverDirection::Sendrecv,
                Direction::SendOnly => RTCRtpTransceiverDirection::Sendonly,
                Direction::RecvOnly => RTCRtpTransceiverDirection::Recvonly,
                Direction::Inactive => RTCRtpTransceiverDirection::Inactive,
            };
            t.set_direction(direction).await.map_err(refused)?;
        }
    }
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|e| OfferError::Rejected {
            detail: e.to_string(),
        })?;
    pc.set_local_description(answer).await.map_err(refused)?;

    let early = await_gathering(events, settings.gathering_timeout, "answering with").await;
    let local = pc
        .local_description()
        .await
        .ok_or(NegotiateError::NoCandidates)?;
    // webrtc-rs echoes the offer's Opus parameters and refuses an edited local description,
    // so the declaration of in-band FEC goes into the text sent only; it tells the peer's
    // encoder what this endpoint's decoder uses and changes nothing in the stack.
    let sdp = drop_rtcp_candidates(&ensure_opus_fec(&local.sdp, offer.opus.payload_type));
    let sdp = announce(&sdp, &settings.ice_addresses);
    // An offer the stack answers with no usable audio gathers nothing either: that is the
    // offer's fault (400), checked before the missing candidates (500) it also causes.
    let negotiated = read_answer(&sdp).ok_or_else(|| OfferError::Rejected {
        detail: "no audio section could be answered with Opus".to_owned(),
    })?;
    if !local.sdp.contains("a=candidate:") {
        return Err(NegotiateError::NoCandidates);
    }
    Ok((track, negotiated, ssrc, sdp, early))
}

/// `sdp` with each host candidate (and connection line) of an ICE address that has an
/// announced address naming that address instead: the 1:1 NAT mapping, in the text sent
/// only (the ICE agent keeps knowing its candidates by their sockets).
fn announce(sdp: &str, addresses: &[IceAddress]) -> String {
    let public_of = |text: &str| -> Option<IpAddr> {
        let ip: IpAddr = text.parse().ok()?;
        addresses
            .iter()
            .find(|a| a.ip == ip)
            .and_then(|a| a.announced)
    };
    if addresses.iter().all(|a| a.announced.is_none()) {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ type ...
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let is_host = fields.get(6) == Some(&"typ") && fields.get(7) == Some(&"host");
            if let (true, Some(public)) = (is_host, fields.get(4).and_then(|a| public_of(a))) {
                let public = public.to_string();
                fields[4] = &public;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(end);
                continue;
            }
        } else if let Some(addr) = body
            .strip_prefix("c=IN IP4 ")
            .or_else(|| body.strip_prefix("c=IN IP6 "))
            && let Some(public) = public_of(addr)
        {
            let family = if public.is_ipv4() { "IP4" } else { "IP6" };
            out.push_str(&format!("c=IN {family} {public}{end}"));
            continue;
        }
        out.push_str(line);
    }
    out
}

/// The UDP ports of the legs' ICE sockets, for ICE addresses with a port range.
///
/// The table of leased ports is the process's: ports are a resource of the host, and two
/// endpoints of one process with overlapping ranges must not hand the same port to two
/// legs. A port is leased only after a test bind shows no other program holds it.
pub(crate) mod ports {
    use std::collections::HashSet;
    use std::net::{IpAddr, SocketAddr, UdpSocket};
    use std::ops::RangeInclusive;
    use std::sync::{LazyLock, Mutex, MutexGuard};

    use crate::config::IceAddress;

    #[derive(Default)]
    struct Table {
        leased: HashSet<SocketAddr>,
        /// Where the next search starts: after the port handed out last.
        cursor: u16,
    }

    static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

    fn table() -> MutexGuard<'static, Table> {
        // Every update is one insert, remove or assignment: a poisoned table is consistent.
        TABLE.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every port of the range is leased or bound by another program.
    #[derive(Debug)]
    pub(crate) struct NoFreePort {
        pub(crate) address: IpAddr,
        pub(crate) ports: RangeInclusive<u16>,
    }

    /// The addresses one leg's sockets bind; its ranged ports stay leased until it drops.
    #[derive(Debug, Default)]
    pub(crate) struct PortLease {
        bind: Vec<SocketAddr>,
        /// The ports taken from the table (the ranged ones).
        leased: Vec<SocketAddr>,
    }

    impl PortLease {
        /// A free port of each ranged address (port 0, the system's pick, for the others),
        /// all or nothing.
        pub(crate) fn take(addresses: &[IceAddress]) -> Result<PortLease, NoFreePort> {
            let mut lease = PortLease::default();
            let mut table = table();
            for a in addresses {
                let Some(range) = &a.ports else {
                    lease.bind.push(SocketAddr::new(a.ip, 0));
                    continue;
                };
                let Some(port) = free_port(&mut table, a.ip, range) else {
                    for addr in lease.leased.drain(..) {
                        table.leased.remove(&addr);
                    }
                    return Err(NoFreePort {
                        address: a.ip,
                        ports: range.clone(),
                    });
                };
                let addr = SocketAddr::new(a.ip, port);
                table.leased.insert(addr);
                lease.leased.push(addr);
                lease.bind.push(addr);
            }
            Ok(lease)
        }

        /// What the peer connection binds, one per ICE address.
        pub(crate) fn bind_addrs(&self) -> &[SocketAddr] {
            &self.bind
        }

        /// Whether a port of a range was leased (a bind can then fail, and be tried anew).
        pub(crate) fn is_ranged(&self) -> bool {
            !self.leased.is_empty()
        }
    }

    impl Drop for PortLease {
        fn drop(&mut self) {
            if self.leased.is_empty() {
                return;
            }
            let mut table = table();
            for addr in &self.leased {
                table.leased.remove(addr);
            }
        }
    }

    /// The first port of `range` from the cursor on (wrapping) that no leg holds and that
    /// binds; the cursor moves past it.
    fn free_port(table: &mut Table, ip: IpAddr, range: &RangeInclusive<u16>) -> Option<u16> {
        let (low, high) = (u32::from((*range.start()).max(1)), u32::from(*range.end()));
        if low > high {
            return None;
        }
        let len = high - low + 1;
        let cursor = u32::from(table.cursor);
        let start = if (low..=high).contains(&cursor) {
            cursor - low
        } else {
            0
        };
        for i in 0..len {
            let port = u16::try_from(low + (start + i) % len).ok()?;
            let addr = SocketAddr::new(ip, port);
            if table.leased.contains(&addr) {
                continue;
            }
            // A test bind: another program may hold the port. Released at once; the
            // peer connection binds it next (a program taking it meanwhile makes the leg
            // try other ports).
            if UdpSocket::bind(addr).is_err() {
                continue;
            }
            table.cursor = port.wrapping_add(1);
            return Some(port);
        }
        None
    }
}

pub(crate) fn rand_u32() -> u32 {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The RTP sequence and timestamp space of the sent stream, shared by audio and tones.
#[derive(Debug)]
struct RtpTimeline {
    origin: Instant,
    ts_base: u32,
    next_seq: u16,
    next_ts: u32,
    last_audio: Option<Instant>,
    resync: bool,
    /// Producer timestamp to timeline offset, set at each talkspurt start.
    offset: Option<u32>,
    /// Producer sequence number to timeline offset, for producers that number packets.
    seq_offset: Option<u16>,
}

impl RtpTimeline {
    fn new(origin: Instant) -> Self {
        let r = rand_u32();
        Self {
            origin,
            ts_base: r,
            next_seq: (r >> 16) as u16 & 0x7fff,
            next_ts: r,
            last_audio: None,
            resync: true,
            offset: None,
            seq_offset: None,
        }
    }

    fn wall_ts(&self, now: Instant) -> u32 {
        let elapsed = now.saturating_duration_since(self.origin);
        let units = elapsed.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000;
        self.ts_base.wrapping_add(units as u32)
    }

    /// Moves the timeline to the clock, never backwards.
    fn catch_up(&mut self, now: Instant) {
        let wall = self.wall_ts(now);
        if (wall.wrapping_sub(self.next_ts) as i32) > 0 {
            self.next_ts = wall;
        }
    }

    fn seq(&mut self) -> u16 {
        let s = self.next_seq;
        self.next_seq = s.wrapping_add(1);
        s
    }

    /// Sequence number, timestamp and marker of the next audio packet of `samples`. With
    /// the producer's timestamp, the packet keeps the producer's spacing (its gaps too);
    /// without, packets are taken as contiguous.
    fn audio(
        &mut self,
        samples: u32,
        source_ts: Option<u32>,
        source_marker: bool,
        now: Instant,
    ) -> (u16, u32, bool) {
        let gap = self
            .last_audio
            .is_some_and(|t| now.saturating_duration_since(t) > TALKSPURT_GAP);
        let marker = self.resync || gap || source_marker;
        if self.resync || gap {
            self.catch_up(now);
            self.resync = false;
            self.offset = None;
            self.seq_offset = None;
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

    /// Like [`RtpTimeline::audio`] for a producer that numbers its packets: its sequence
    /// numbers and timestamps are kept, offset into the timeline, so the gaps, repeats and
    /// reordering it makes reach the wire. Offsets are set at each talkspurt start.
    fn audio_numbered(
        &mut self,
        samples: u32,
        source_seq: u16,
        source_ts: u32,
        source_marker: bool,
        now: Instant,
    ) -> (u16, u32, bool) {
        let gap = self
            .last_audio
            .is_some_and(|t| now.saturating_duration_since(t) > TALKSPURT_GAP);
        let restart = self.resync || gap || self.seq_offset.is_none() || self.offset.is_none();
        if restart {
            self.catch_up(now);
            self.resync = false;
            self.offset = Some(self.next_ts.wrapping_sub(source_ts));
            self.seq_offset = Some(self.next_seq.wrapping_sub(source_seq));
        }
        self.last_audio = Some(now);
        let seq = source_seq.wrapping_add(self.seq_offset.unwrap_or(0));
        let ts = source_ts.wrapping_add(self.offset.unwrap_or(0));
        // The timeline moves on only forwards: a repeated or reordered packet keeps its own
        // numbers without pulling the next ones back.
        if (seq.wrapping_sub(self.next_seq) as i16) >= 0 {
            self.next_seq = seq.wrapping_add(1);
        }
        let end = ts.wrapping_add(samples);
        if (end.wrapping_sub(self.next_ts) as i32) > 0 {
            self.next_ts = end;
        }
        (seq, ts, restart || source_marker)
    }
}

struct PlayingTone {
    sender: EventSender,
    timestamp: u32,
    next_at: Instant,
}

/// Everything the leg task owns.
pub(crate) struct Leg {
    pub(crate) link: Box<dyn NetworkPort>,
    pub(crate) events: mpsc::Sender<EndpointEvent>,
    pub(crate) tones: mpsc::Receiver<ToneRequest>,
    pub(crate) stop: mpsc::Receiver<EndReason>,
    pub(crate) shared: Arc<LegShared>,
    pub(crate) settings: LegSettings,
    pub(crate) label: String,
    /// Marks the session finished; runs before the final event so that whoever sees the
    /// event also sees the session refuse new legs.
    pub(crate) on_end: Option<Box<dyn FnOnce() + Send>>,
}

/// How a leg ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LegOutcome {
    Ended(EndReason),
    Failed(FailureReason),
}

struct Runner {
    pc: Arc<dyn PeerConnection>,
    /// Held until the leg ends (after its peer connection closed).
    _ports: ports::PortLease,
    track: Arc<TrackLocalStaticRTP>,
    remote: Option<Arc<dyn TrackRemote>>,
    negotiated: Negotiated,
    /// Header extension id for `ssrc-audio-level` as the sender applies it.
    send_level_id: Option<u8>,
    /// Same for `csrc-audio-level` (levels of the CSRCs a mixing producer lists).
    send_csrc_level_id: Option<u8>,
    ssrc: u32,
    /// The peer's SSRC, once a packet arrived.
    remote_ssrc: Option<u32>,
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
}

/// Runs the leg until it ends; returns how.
pub(crate) async fn run(neg: Negotiation, leg: Leg) -> LegOutcome {
    let now = Instant::now();
    let send_level_id = send_extension_id(&neg.pc, SSRC_AUDIO_LEVEL_URI).await;
    let send_csrc_level_id = send_extension_id(&neg.pc, CSRC_AUDIO_LEVEL_URI).await;
    leg.shared
        .telephone_event
        .store(neg.negotiated.telephone_event.is_some(), Ordering::Release);
    let mut r = Runner {
        pc: neg.pc,
        _ports: neg.ports,
        track: neg.track,
        remote: None,
        negotiated: neg.negotiated,
        send_level_id,
        send_csrc_level_id,
        ssrc: neg.ssrc,
        remote_ssrc: None,
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
    };
    let mut pc_events = neg.events;
    let mut outcome = None;
    for ev in neg.early {
        outcome = outcome.or(r.on_pc_event(ev));
    }
    let mut tick = tokio::time::interval(OUTBOUND_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut local_rtcp = true;
    while outcome.is_none() {
        let remote = r.remote.clone();
        let track = Arc::clone(&r.track);
        tokio::select! {
            ev = pc_events.recv() => {
                outcome = match ev {
                    Some(ev) => r.on_pc_event(ev),
                    None => Some(LegOutcome::Failed(FailureReason::TransportFailed)),
                };
            }
            ev = async { match &remote { Some(t) => t.poll().await, None => std::future::pending().await } } => {
                match ev {
                    Some(TrackRemoteEvent::OnRtpPacket(p)) => outcome = r.on_rtp(p),
                    Some(TrackRemoteEvent::OnRtcpPacket(p)) => outcome = r.on_rtcp(&p),
                    Some(TrackRemoteEvent::OnEnded) | None => r.remote = None,
                    Some(_) => {}
                }
            }
            ev = async { if local_rtcp { track.poll().await } else { std::future::pending().await } } => {
                match ev {
                    Some(TrackLocalEvent::OnRtcpPacket(p)) => outcome = r.on_rtcp(&p),
                    Some(_) => {}
                    None => local_rtcp = false,
                }
            }
            // Tones wait in the channel while one plays, so a sequence plays in order.
            req = r.leg.tones.recv(), if r.tone.is_none() => {
                if let Some(req) = req { r.on_tone_request(req); }
            }
            reason = r.leg.stop.recv() => {
                outcome = Some(LegOutcome::Ended(reason.unwrap_or(EndReason::Closed)));
            }
            _ = tick.tick() => {
                r.on_tick().await;
                outcome = r.watchdog();
            }
        }
    }
    let outcome = outcome.unwrap_or(LegOutcome::Ended(EndReason::Closed));
    r.finish(outcome).await;
    outcome
}

async fn send_extension_id(pc: &Arc<dyn PeerConnection>, uri: &str) -> Option<u8> {
    for s in pc.get_senders().await {
        if let Ok(params) = s.get_parameters().await
            && let Some(ext) = params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
        {
            return u8::try_from(ext.id).ok();
        }
    }
    None
}

impl Runner {
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

    fn on_pc_event(&mut self, ev: PcEvent) -> Option<LegOutcome> {
        match ev {
            PcEvent::Track(t) => {
                self.remote = Some(t);
                None
            }
            PcEvent::Gathering(_) => None,
            PcEvent::Connection(state) => {
                tracing::debug!(leg = %self.leg.label, ?state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.connected_once = true;
                        self.last_heard = Instant::now();
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
                        Some(LegOutcome::Ended(EndReason::PeerLeft))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Handles one RTP packet from the peer; returns an outcome when the leg must end.
    fn on_rtp(&mut self, p: rtp::Packet) -> Option<LegOutcome> {
        let now = Instant::now();
        self.last_heard = now;
        let h = &p.header;
        self.remote_ssrc = Some(h.ssrc);
        if h.payload_type == self.negotiated.opus_pt {
            let since = now.saturating_duration_since(self.started);
            let arrival_units =
                (since.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000) as i64;
            self.stats
                .on_packet(h.sequence_number, h.timestamp, arrival_units);
            let audio_level = self
                .negotiated
                .ssrc_audio_level_id
                .and_then(|id| h.get_extension(id))
                .and_then(|b| b.first().map(|v| v & 0x7f));
            let csrc_levels = self
                .negotiated
                .csrc_audio_level_id
                .and_then(|id| h.get_extension(id));
            let csrc_levels = csrc_levels
                .as_deref()
                .filter(|l| l.len() >= h.csrc.len() && !h.csrc.is_empty())
                .map(|l| &l[..h.csrc.len()]);
            let mut levels_buf = [0u8; 15];
            let csrc_levels = csrc_levels.map(|l| {
                let n = l.len().min(levels_buf.len());
                for (d, s) in levels_buf.iter_mut().zip(l) {
                    *d = s & 0x7f;
                }
                &levels_buf[..n]
            });
            let packet = InboundRtp {
                seq: h.sequence_number,
                rtp_timestamp: h.timestamp,
                ssrc: h.ssrc,
                payload_type: h.payload_type,
                marker: h.marker,
                audio_level,
                csrcs: &h.csrc,
                csrc_levels,
                arrival: since,
                payload: &p.payload,
            };
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
                    tracing::debug!(leg = %self.leg.label, len = p.payload.len(), "inbound packet the pipeline cannot carry");
                }
            }
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
    fn on_rtcp(&mut self, packets: &[Box<dyn rtcp::Packet>]) -> Option<LegOutcome> {
        self.last_heard = Instant::now();
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
                &sr.reports
            } else {
                continue;
            };
            let ssrc = self.ssrc;
            for r in reports.iter().filter(|r| r.ssrc == ssrc) {
                self.on_report(r);
            }
        }
        bye.then_some(LegOutcome::Ended(EndReason::PeerLeft))
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

    fn on_tone_request(&mut self, req: ToneRequest) {
        let Some((_, rate)) = self.negotiated.telephone_event else {
            return;
        };
        if !self.active {
            // The handle refuses tones while inactive; this one raced a disconnect.
            tracing::debug!(leg = %self.leg.label, "tone dropped: transport inactive");
            return;
        }
        let now = Instant::now();
        self.timeline.catch_up(now);
        let ms = u32::try_from(req.duration.as_millis()).unwrap_or(u32::MAX);
        self.tone = Some(PlayingTone {
            sender: EventSender::new(req.tone, ms, rate),
            timestamp: self.timeline.next_ts,
            next_at: now,
        });
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        while let Some(audio) = self.leg.link.pop() {
            // Media before Active is discarded, and a tone replaces the audio it overlaps.
            if self.active && self.tone.is_none() {
                self.send_audio(audio, now).await;
            }
        }
        self.send_tone_packets(now).await;
    }

    async fn send_audio(&mut self, audio: OutboundAudio, now: Instant) {
        let samples = opus_packet_samples_48k(&audio.payload).unwrap_or(960);
        let (seq, ts, marker) = match (audio.sequence, audio.rtp_timestamp) {
            (Some(seq), Some(ts)) => {
                self.timeline
                    .audio_numbered(samples, seq, ts, audio.marker, now)
            }
            _ => self
                .timeline
                .audio(samples, audio.rtp_timestamp, audio.marker, now),
        };
        let mut header = rtp::header::Header {
            version: 2,
            marker,
            payload_type: self.negotiated.opus_pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if let (Some(id), Some(level)) = (self.send_level_id, audio.audio_level) {
            // V bit set when the level is above silence: the pipeline has no separate VAD.
            let v = if level < 127 { 0x80 } else { 0 };
            let _ = header.set_extension(id, Bytes::copy_from_slice(&[v | (level & 0x7f)]));
        }
        if !audio.csrcs.is_empty() {
            header.csrc = audio.csrcs.ids().to_vec();
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
        let packet = rtp::packet::Packet {
            header,
            payload: audio.payload,
        };
        if let Err(e) = self.track.write_rtp(packet).await {
            tracing::debug!(leg = %self.leg.label, error = %e, "RTP write failed");
        }
    }

    async fn send_tone_packets(&mut self, now: Instant) {
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
        let header = rtp::header::Header {
            version: 2,
            marker: ev.marker,
            payload_type: pt,
            sequence_number: self.timeline.seq(),
            timestamp: tone.timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if tone.sender.is_done() {
            self.tone = None;
            // Audio resumes on the clock's timeline, as a new talkspurt.
            self.timeline.resync = true;
        }
        let packet = rtp::packet::Packet {
            header,
            payload: Bytes::copy_from_slice(&ev.payload),
        };
        if let Err(e) = self.track.write_rtp(packet).await {
            tracing::debug!(leg = %self.leg.label, error = %e, "tone write failed");
        }
    }

    fn watchdog(&self) -> Option<LegOutcome> {
        let now = Instant::now();
        if !self.connected_once {
            return (now.saturating_duration_since(self.started)
                > self.leg.settings.connect_timeout)
                .then_some(LegOutcome::Failed(FailureReason::ConnectTimeout));
        }
        (now.saturating_duration_since(self.last_heard) > self.leg.settings.media_timeout)
            .then_some(LegOutcome::Failed(FailureReason::PeerSilent))
    }

    async fn finish(&mut self, outcome: LegOutcome) {
        self.set_active(false);
        self.leg.shared.ended.store(true, Ordering::Release);
        if let Err(e) = self.pc.close().await {
            tracing::debug!(leg = %self.leg.label, error = %e, "closing the peer connection");
        }
        tracing::info!(
            leg = %self.leg.label,
            ?outcome,
            received = self.stats.received(),
            lost = self.stats.lost(),
            unknown_payload_types = self.unknown_pt,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_replace_their_local_ones_in_host_candidates() {
        let local: IpAddr = "10.0.0.4".parse().unwrap();
        let sdp = "v=0\r\nc=IN IP4 10.0.0.4\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.0.4 40000 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 10.0.0.9 40001 typ host\r\n\
                   a=candidate:3 1 udp 1694498815 10.0.0.4 40002 typ srflx raddr 0.0.0.0 rport 0\r\n";
        let v4 = [IceAddress::new(local).announced_as("52.1.2.3".parse().unwrap())];
        assert_eq!(
            announce(sdp, &v4),
            "v=0\r\nc=IN IP4 52.1.2.3\r\n\
             a=candidate:1 1 udp 2130706431 52.1.2.3 40000 typ host\r\n\
             a=candidate:2 1 udp 2130706431 10.0.0.9 40001 typ host\r\n\
             a=candidate:3 1 udp 1694498815 10.0.0.4 40002 typ srflx raddr 0.0.0.0 rport 0\r\n"
        );
        let v6 = [IceAddress::new(local).announced_as("2001:db8::1".parse().unwrap())];
        let out = announce(sdp, &v6);
        assert!(out.contains("c=IN IP6 2001:db8::1\r\n"), "{out}");
        assert!(out.contains(" 2001:db8::1 40000 typ host"), "{out}");
        // Nothing announced: the text is left as it is.
        assert_eq!(announce(sdp, &[IceAddress::new(local)]), sdp);
    }

    /// Two ports free now on 127.0.0.1, next to each other.
    fn two_free_ports() -> RangeInclusive<u16> {
        loop {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let low = probe.local_addr().unwrap().port();
            drop(probe);
            if low < u16::MAX && std::net::UdpSocket::bind(("127.0.0.1", low + 1)).is_ok() {
                return low..=low + 1;
            }
        }
    }

    #[test]
    fn leases_take_distinct_free_ports_and_give_them_back() {
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let range = two_free_ports();
        let ranged = [IceAddress::new(ip).with_ports(range.clone())];
        let a = ports::PortLease::take(&ranged).unwrap();
        let b = ports::PortLease::take(&ranged).unwrap();
        assert!(a.is_ranged());
        let (pa, pb) = (a.bind_addrs()[0].port(), b.bind_addrs()[0].port());
        assert_ne!(pa, pb);
        assert!(range.contains(&pa) && range.contains(&pb));
        let full = ports::PortLease::take(&ranged).unwrap_err();
        assert_eq!((full.address, full.ports), (ip, range.clone()));
        drop(a);
        let c = ports::PortLease::take(&ranged).unwrap();
        assert_eq!(c.bind_addrs()[0].port(), pa);
        // All or nothing: a second, full address gives back the first one's port.
        drop(c);
        let both = [ranged[0].clone(), ranged[0].clone(), ranged[0].clone()];
        assert!(ports::PortLease::take(&both).is_err());
        assert!(ports::PortLease::take(&ranged).is_ok());
        // Without a range: the system's pick, nothing leased. Port 0 is never leased.
        let free = ports::PortLease::take(&[IceAddress::new(ip)]).unwrap();
        assert_eq!(free.bind_addrs()[0].port(), 0);
        assert!(!free.is_ranged());
        let zero = [IceAddress::new(ip).with_ports(0..=0)];
        assert!(ports::PortLease::take(&zero).is_err());
    }

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
    fn a_numbering_producer_keeps_its_gaps_repeats_and_order() {
        let t0 = Instant::now();
        let mut tl = RtpTimeline::new(t0);
        let ms = |n| t0 + Duration::from_millis(n);
        let (s0, ts0, m0) = tl.audio_numbered(960, 100, 96_000, false, ms(0));
        assert!(m0, "first packet starts a talkspurt");
        // 101 lost, 103 before 102, 102 twice.
        let sent: Vec<(u16, u32, bool)> = [(102, 20), (103, 40), (102, 45), (102, 50)]
            .into_iter()
            .map(|(seq, at)| {
                let ts = 96_000 + u32::from(seq - 100) * 960;
                tl.audio_numbered(960, seq, ts, false, ms(at))
            })
            .collect();
        let rel: Vec<(u16, u32)> = sent
            .iter()
            .map(|(s, t, _)| (s.wrapping_sub(s0), t.wrapping_sub(ts0)))
            .collect();
        assert_eq!(rel, vec![(2, 1920), (3, 2880), (2, 1920), (2, 1920)]);
        assert!(sent.iter().all(|(_, _, m)| !m));
        // The plain path continues after the highest number sent.
        let (s5, _, _) = tl.audio(960, None, false, ms(60));
        assert_eq!(s5.wrapping_sub(s0), 4);
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
