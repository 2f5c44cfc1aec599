//! The peer connection both ends of a leg build: codecs, header extensions, interceptors
//! and ICE settings, the local Opus track, and the wait for ICE gathering.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    Registry, register_default_interceptors,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio;
use rtc::shared::error::Error as RtcError;
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};

use super::{OPUS_CLOCK, rand_u32};
use crate::path::PathInterceptor;
use crate::sdp::{CSRC_AUDIO_LEVEL_URI, SDES_MID_URI, SSRC_AUDIO_LEVEL_URI};

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

/// Where a [`SendPath`](crate::service::SendPath) sits in the chain: nearest the wire, so it
/// sees packets as they go out, after every interceptor that counts or keeps them.
const PATH_SLOT: usize = 100;

pub(crate) fn media_engine(
    path: Option<PathInterceptor>,
) -> Result<(MediaEngine, Registry), RtcError> {
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
    let registry = match path {
        Some(path) => registry.with(Slot::from(PATH_SLOT), path),
        None => registry,
    };
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
/// candidates on `addrs` only (loopback included, no mDNS); RTP it sends goes through `path`
/// when there is one. Its driver's events arrive on the receiver, sized for every event a
/// leg produces before its task runs.
pub(crate) async fn build_peer_connection(
    addrs: Vec<SocketAddr>,
    path: Option<PathInterceptor>,
) -> Result<(Arc<dyn PeerConnection>, mpsc::Receiver<PcEvent>), SetupError> {
    let (engine, registry) = media_engine(path).map_err(SetupError::MediaEngine)?;
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
