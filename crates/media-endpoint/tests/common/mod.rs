//! Shared harness: a raw HTTP/1.1 client and a webrtc-rs peer playing the calling service.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription,
};

pub const PEER_OPUS_PT: u8 = 109;
pub const PEER_TE_PT: u8 = 101;
pub const SSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const CSRC_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:csrc-audio-level";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,media_endpoint=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request over a fresh connection (`Connection: close`), bounded by 20 s.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.expect("write head");
        s.write_all(body).await.expect("write body");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        parse_response(&raw)
    };
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("HTTP request timed out")
}

/// POSTs `offer` to the session's URL on `endpoint` (`/MediaProcessor/sessions/{id}`).
pub async fn post_offer(
    endpoint: &media_endpoint::MediaEndpoint,
    session: media_session::MediaSessionId,
    offer: &str,
) -> HttpResponse {
    let path = format!("/MediaProcessor/sessions/{}", session.expose());
    http(
        endpoint.local_addr(),
        "POST",
        &path,
        Some("application/sdp"),
        offer.as_bytes(),
    )
    .await
}

/// The address and port of each host candidate of an SDP.
pub fn host_candidates(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a=candidate:"))
        .map(|c| c.split(' ').collect::<Vec<_>>())
        .filter(|f| f.get(7) == Some(&"host"))
        .map(|f| SocketAddr::new(f[4].parse().unwrap(), f[5].parse().unwrap()))
        .collect()
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// What the peer received from the endpoint.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub packet: rtc::rtp::packet::Packet,
}

struct PeerHandler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: mpsc::Sender<()>,
    received: Arc<Mutex<VecDeque<Received>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for PeerHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = Arc::clone(&self.received);
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(packet) => {
                        let mut q = received.lock().expect("received lock");
                        if q.len() < 100_000 {
                            q.push_back(Received {
                                at: Instant::now(),
                                packet,
                            });
                        }
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

fn telephone_event() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_TELEPHONE_EVENT.to_owned(),
        clock_rate: 48_000,
        channels: 1,
        sdp_fmtp_line: "0-16".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The calling service's side of a leg: a webrtc-rs peer connection that offers audio.
pub struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    pub received: Arc<Mutex<VecDeque<Received>>>,
    gathered: mpsc::Receiver<()>,
    seq: u16,
    pub level_id: Option<u8>,
    pub csrc_level_id: Option<u8>,
}

impl Peer {
    pub async fn new() -> Peer {
        Self::with_direction(RTCRtpTransceiverDirection::Sendrecv).await
    }

    /// A peer whose audio m-line has `direction`.
    pub async fn with_direction(direction: RTCRtpTransceiverDirection) -> Peer {
        let mut engine = MediaEngine::default();
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: PEER_OPUS_PT,
                },
                RtpCodecKind::Audio,
            )
            .expect("opus");
        engine
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: telephone_event(),
                    payload_type: PEER_TE_PT,
                },
                RtpCodecKind::Audio,
            )
            .expect("telephone-event");
        for uri in [SSRC_AUDIO_LEVEL, CSRC_AUDIO_LEVEL] {
            engine
                .register_header_extension(
                    RTCRtpHeaderExtensionCapability {
                        uri: uri.to_owned(),
                    },
                    RtpCodecKind::Audio,
                    None,
                )
                .expect("extension");
        }
        let registry =
            register_default_interceptors(Registry::new(), &mut engine).expect("interceptors");
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(true)
            .build();
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = mpsc::channel(4);
        let received = Arc::new(Mutex::new(VecDeque::new()));
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(engine)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(PeerHandler {
                state: state_tx,
                gathered: gathered_tx,
                received: Arc::clone(&received),
            }))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("peer connection");
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let ssrc = 0x5eed_0001;
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            "service-stream".to_owned(),
            "service-audio".to_owned(),
            "service".to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: opus(),
                ..Default::default()
            }],
        )));
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .expect("transceiver");
        transceiver
            .set_codec_preferences(vec![
                RTCRtpCodecParameters {
                    rtp_codec: opus(),
                    payload_type: PEER_OPUS_PT,
                },
                RTCRtpCodecParameters {
                    rtp_codec: telephone_event(),
                    payload_type: PEER_TE_PT,
                },
            ])
            .await
            .expect("codec preferences");
        Peer {
            pc,
            track,
            ssrc,
            state,
            received,
            gathered,
            seq: 1000,
            level_id: None,
            csrc_level_id: None,
        }
    }

    /// Creates the offer and waits for ICE gathering to complete.
    pub async fn offer(&mut self) -> String {
        let offer = self.pc.create_offer(None).await.expect("offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("set local");
        tokio::time::timeout(Duration::from_secs(5), self.gathered.recv())
            .await
            .expect("gathering timed out");
        self.pc.local_description().await.expect("local").sdp
    }

    pub async fn accept(&mut self, answer: String) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(answer).expect("answer"))
            .await
            .expect("set remote");
        for s in self.pc.get_senders().await {
            if let Ok(p) = s.get_parameters().await {
                for e in &p.rtp_parameters.header_extensions {
                    if e.uri == SSRC_AUDIO_LEVEL {
                        self.level_id = Some(e.id as u8);
                    }
                    if e.uri == CSRC_AUDIO_LEVEL {
                        self.csrc_level_id = Some(e.id as u8);
                    }
                }
            }
        }
    }

    pub async fn wait_connected(&mut self) {
        tokio::time::timeout(
            Duration::from_secs(10),
            self.state
                .wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("peer did not connect in 10 s")
        .expect("state channel");
    }

    /// Sends one RTP packet on the peer's SSRC.
    pub async fn send(
        &mut self,
        payload_type: u8,
        timestamp: u32,
        marker: bool,
        csrcs: &[u32],
        level: Option<u8>,
        payload: &[u8],
    ) {
        let mut header = rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.ssrc,
            csrc: csrcs.to_vec(),
            ..Default::default()
        };
        self.seq = self.seq.wrapping_add(1);
        if let (Some(id), Some(level)) = (self.level_id, level) {
            header
                .set_extension(id, Bytes::copy_from_slice(&[0x80 | level]))
                .expect("level extension");
        }
        if let Some(id) = self.csrc_level_id
            && !csrcs.is_empty()
        {
            let levels: Vec<u8> = (0..csrcs.len() as u8).map(|i| 10 + i).collect();
            header
                .set_extension(id, Bytes::from(levels))
                .expect("csrc level extension");
        }
        self.track
            .write_rtp(rtc::rtp::packet::Packet {
                header,
                payload: Bytes::copy_from_slice(payload),
            })
            .await
            .expect("write rtp");
    }

    /// Skips a sequence number, as a lost packet would.
    pub fn lose_one(&mut self) {
        self.seq = self.seq.wrapping_add(1);
    }

    pub fn take_received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").drain(..).collect()
    }
}

/// A linear chirp from `f0` to `f1` Hz over `n` samples at 48 kHz, amplitude 0.5.
pub fn chirp(n: usize, f0: f64, f1: f64) -> Vec<f32> {
    let sr = 48_000.0;
    let t_total = n as f64 / sr;
    (0..n)
        .map(|i| {
            let t = i as f64 / sr;
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * t_total));
            (0.5 * phase.sin()) as f32
        })
        .collect()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        xy += f64::from(*x) * f64::from(*y);
        xx += f64::from(*x) * f64::from(*x);
        yy += f64::from(*y) * f64::from(*y);
    }
    xy / (xx.sqrt() * yy.sqrt()).max(1e-12)
}

/// The lag in `lags` (in samples, `received[i] ~ sent[i + lag]`; negative when `received`
/// starts as `sent` does and the path delays it) found on a 100 ms window, and the
/// normalised correlation at that lag over up to 1 s of `received`.
pub fn best_alignment(sent: &[f32], received: &[f32], lags: std::ops::Range<i64>) -> (i64, f64) {
    alignment_at(sent, received, lags, received.len() / 4, 48_000)
}

/// [`best_alignment`] for the segment of `received` starting at `start`, correlating over
/// up to `long` samples.
pub fn alignment_at(
    sent: &[f32],
    received: &[f32],
    lags: std::ops::Range<i64>,
    start: usize,
    long: usize,
) -> (i64, f64) {
    let short = 4_800.min(received.len() - start);
    let win = &received[start..start + short];
    let slice = |lag: i64, len: usize| -> Option<&[f32]> {
        let from = usize::try_from(start as i64 + lag).ok()?;
        sent.get(from..from + len)
    };
    let mut best = (0, f64::MIN);
    for lag in lags {
        let Some(s) = slice(lag, short) else {
            continue;
        };
        let c = correlation(win, s);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let lag = best.0;
    let mut long = long.min(received.len() - start);
    while long > short && slice(lag, long).is_none() {
        long -= 960;
    }
    let c = slice(lag, long).map_or(best.1, |s| correlation(&received[start..start + long], s));
    (lag, c)
}
