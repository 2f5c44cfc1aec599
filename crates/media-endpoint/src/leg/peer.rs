//! The peer connection both ends of a leg build: codecs, header extensions, interceptors
//! and ICE settings, the leg's sockets and their host candidates, and the local Opus track.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use rtc::crypto::{RTCCryptoProvider, SignatureScheme};
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::certificate::{CertificateParams, RTCCertificate};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{Registry, configure_rtcp_reports};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_TELEPHONE_EVENT, MediaEngine,
};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio;
use rtc::shared::error::Error as RtcError;

use super::ports::{NoFreePort, PortLease};
use super::{OPUS_CLOCK, rand_u32};
use crate::config::IceAddress;
use crate::path::PathInterceptor;
use crate::sdp::{CSRC_AUDIO_LEVEL_URI, SDES_MID_URI, SSRC_AUDIO_LEVEL_URI};

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
    // Sender and receiver reports only: the stack's defaults add NACK (Opus repairs loss
    // with in-band FEC, not retransmission), transport-wide congestion control feedback (a
    // 64 kb/s audio stream has no bandwidth to estimate) and simulcast header extensions,
    // each on every packet's path.
    let registry = configure_rtcp_reports(Registry::new());
    // Last in the chain, so every interceptor has seen the RTCP before it is delivered.
    let registry = registry.with(Slot::from(14_000), DeliverRtcp::default());
    let registry = match path {
        Some(path) => registry.with(Slot::from(PATH_SLOT), path),
        None => registry,
    };
    Ok((engine, registry))
}

/// Why [`build_peer_connection`] or [`bind_sockets`] failed.
#[derive(Debug)]
pub(crate) enum SetupError {
    /// Registering codecs, header extensions or interceptors failed.
    MediaEngine(RtcError),
    /// Building the peer connection failed.
    Build(RtcError),
    /// Binding a socket of the leg failed.
    Bind(std::io::Error),
    /// The stack refused a host candidate of the leg's sockets.
    Candidate(RtcError),
}

impl SetupError {
    /// What was being done, for the error message.
    pub(crate) fn step(&self) -> &'static str {
        match self {
            SetupError::MediaEngine(_) => "configuring the media engine",
            SetupError::Build(_) => "building the peer connection",
            SetupError::Bind(_) => "binding the leg's UDP sockets",
            SetupError::Candidate(_) => "adding the leg's host candidates",
        }
    }

    pub(crate) fn into_source(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            SetupError::MediaEngine(e) | SetupError::Build(e) | SetupError::Candidate(e) => {
                Box::new(e)
            }
            SetupError::Bind(e) => Box::new(e),
        }
    }
}

/// A sans-IO peer connection with [`media_engine`]'s codecs and interceptors, no mDNS; RTP it
/// sends goes through `path` when there is one. It has no candidate until
/// [`add_host_candidates`] gives it the leg's sockets.
pub(crate) fn build_peer_connection(
    now: Instant,
    path: Option<PathInterceptor>,
) -> Result<RTCPeerConnection, SetupError> {
    build_with(now, path, None)
}

/// [`build_peer_connection`] with `lean`'s certificate and as the DTLS server when
/// answering: the answer it writes is then one the lean path
/// ([`super::lean`]) can keep.
fn build_with(
    now: Instant,
    path: Option<PathInterceptor>,
    lean: Option<&RTCCertificate>,
) -> Result<RTCPeerConnection, SetupError> {
    let (engine, registry) = media_engine(path).map_err(SetupError::MediaEngine)?;
    let mut setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true);
    let mut builder = RTCPeerConnectionBuilder::new();
    if let Some(certificate) = lean {
        setting_engine = setting_engine.with_answering_dtls_role(RTCDtlsRole::Server);
        builder = builder.with_configuration(
            RTCConfigurationBuilder::new()
                .with_certificates(vec![certificate.clone()])
                .build(),
        );
    }
    builder
        .with_media_engine(engine)
        .with_setting_engine(setting_engine.build())
        .with_interceptor_registry(registry)
        .build(now)
        .map_err(SetupError::Build)
}

/// A peer connection that only writes the answer for a leg on the lean media path, with a
/// fresh certificate the lean path then runs DTLS with (returned beside it).
pub(crate) fn build_lean_answerer(
    now: Instant,
    crypto: &Arc<dyn RTCCryptoProvider>,
) -> Result<(RTCPeerConnection, RTCCertificate), SetupError> {
    let params = CertificateParams::new(vec![format!("botmedia-{:08x}", rand_u32())])
        .map_err(|e| SetupError::Build(RtcError::Other(e.to_string())))?;
    let certificate =
        RTCCertificate::generate(crypto.crypto(), SignatureScheme::EcdsaP256Sha256, params)
            .map_err(SetupError::Build)?;
    let pc = build_with(now, None, Some(&certificate))?;
    Ok((pc, certificate))
}

/// Binds one non-blocking UDP socket on each address (port 0: the system's pick).
pub(crate) fn bind_sockets(addrs: &[SocketAddr]) -> Result<Vec<UdpSocket>, SetupError> {
    addrs
        .iter()
        .map(|a| {
            let s = UdpSocket::bind(a).map_err(SetupError::Bind)?;
            s.set_nonblocking(true).map_err(SetupError::Bind)?;
            Ok(s)
        })
        .collect()
}

/// How many times sockets bind anew on other ports when another program took one of the
/// ports leased between the check and the bind.
const BIND_ATTEMPTS: usize = 3;

/// Why [`bind_leased`] failed.
#[derive(Debug)]
pub(crate) enum LeasedBindError {
    /// Every port of an address's range is taken.
    NoPort(NoFreePort),
    /// Binding failed (not for a port another program took meanwhile: that is retried).
    Setup(SetupError),
}

/// One bound, non-blocking socket per address, on ports leased from their ranges (port 0,
/// the system's pick, without one); all or nothing, bound anew on other ports when another
/// program took a leased one between the check and the bind.
pub(crate) fn bind_leased(
    addresses: &[IceAddress],
) -> Result<(Vec<UdpSocket>, PortLease), LeasedBindError> {
    let mut failed = None;
    for attempt in 1..=BIND_ATTEMPTS {
        // Leased before the failed lease is released: a retry takes other ports.
        let lease = PortLease::take(addresses).map_err(LeasedBindError::NoPort)?;
        drop(failed.take());
        match bind_sockets(lease.bind_addrs()) {
            Ok(sockets) => return Ok((sockets, lease)),
            Err(SetupError::Bind(e)) if lease.is_ranged() && attempt < BIND_ATTEMPTS => {
                tracing::debug!(error = %e, "binding leased ICE ports failed; trying others");
                failed = Some(lease);
            }
            Err(e) => return Err(LeasedBindError::Setup(e)),
        }
    }
    unreachable!("the last attempt returns")
}

/// The local addresses of bound sockets.
pub(crate) fn local_addrs(sockets: &[UdpSocket]) -> Result<Vec<SocketAddr>, SetupError> {
    sockets
        .iter()
        .map(|s| s.local_addr().map_err(SetupError::Bind))
        .collect()
}

/// Gives `pc` one host candidate per socket address: the leg's whole gathering, done at
/// once (the addresses are configured, nothing is discovered).
pub(crate) fn add_host_candidates(
    pc: &mut RTCPeerConnection,
    addrs: &[SocketAddr],
) -> Result<(), SetupError> {
    for addr in addrs {
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: addr.ip().to_string(),
                port: addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .map_err(SetupError::Candidate)?;
        let init = RTCIceCandidate::from(&candidate)
            .to_json()
            .map_err(SetupError::Candidate)?;
        pc.add_local_candidate(init)
            .map_err(SetupError::Candidate)?;
    }
    Ok(())
}

/// The local Opus track a leg sends on, with a fresh random SSRC (returned beside it).
pub(crate) fn opus_track(
    stream_id: String,
    track_id: String,
    label: String,
) -> (MediaStreamTrack, u32) {
    let ssrc = rand_u32();
    let track = MediaStreamTrack::new(
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
    );
    (track, ssrc)
}

/// The ids the leg's sender applies `ssrc-audio-level` and `csrc-audio-level` with, once
/// both descriptions are applied (a leg has one sender: its Opus track).
pub(crate) fn send_level_ids(pc: &mut RTCPeerConnection) -> (Option<u8>, Option<u8>) {
    let Some(sender) = pc.get_senders().next() else {
        return (None, None);
    };
    let Some(mut s) = pc.rtp_sender(sender) else {
        return (None, None);
    };
    let extensions = &s.get_parameters().rtp_parameters.header_extensions;
    let id = |uri: &str| {
        extensions
            .iter()
            .find(|e| e.uri == uri)
            .and_then(|e| u8::try_from(e.id).ok())
    };
    (id(SSRC_AUDIO_LEVEL_URI), id(CSRC_AUDIO_LEVEL_URI))
}
