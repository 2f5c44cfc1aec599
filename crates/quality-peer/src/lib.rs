//! An independent far end for speech-quality measurements of a WebRTC echo engine.
//!
//! [`run`] opens a leg WHIP-style (`POST` an SDP offer with ICE gathering complete to a
//! session URL, `201 Created` with the answer and a `Location`), sends a 48 kHz mono WAV as
//! Opus (48 kHz, 96 kb/s by default, in-band FEC on, 20 ms packets paced in real time on
//! absolute deadlines) with seeded impairments on the way to the engine ([`Impairment`]:
//! random or bursty loss, jitter that reorders), records the echo it gets back into a
//! 16 kHz mono WAV on the engine's own output clock ([`recorder`] explains the placement),
//! `DELETE`s the leg and reports what happened ([`PeerReport`]).
//!
//! It shares no code with the engine under test: its own libopus encoder and decoder, no
//! jitter buffer (the recording is rebuilt from timestamps after the call), only the WebRTC
//! stack (webrtc-rs) in common with the engine's endpoint. The `speech-peer` binary is the
//! command-line form; `scripts/quality.sh` drives it against each engine.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState, RTCSessionDescription,
};

pub mod impair;
pub mod recorder;
pub mod wav;

pub use impair::Impairment;
pub use recorder::EchoStats;
pub use wav::Wav;

/// Sample rate of the input and of the Opus encoder.
pub const INPUT_RATE: u32 = 48_000;
/// Samples per 20 ms packet at 48 kHz.
const FRAME: usize = 960;
const PACKET: Duration = Duration::from_millis(20);
/// The payload type offered for Opus (the answer may keep it or not; its own is used).
const OFFER_OPUS_PT: u8 = 111;

/// What one run of the far end does.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// `{mpUri}/sessions/{mpMediaSessionId}` of the engine.
    pub session_url: String,
    /// The sound to send: a mono 16-bit WAV at 48 kHz.
    pub input: PathBuf,
    /// Send only the first this-many seconds of the input.
    pub max_input_seconds: Option<f64>,
    /// Where the echo is written (mono 16-bit, 16 kHz, from the send start; input length
    /// plus the tail).
    pub output: PathBuf,
    /// Silence sent after the input, while the last of the echo comes back.
    pub tail: Duration,
    /// Opus bitrate in bits per second.
    pub bitrate: i32,
    /// In-band FEC (the encoder is also told to expect at least 5 % loss, else it adds none).
    pub fec: bool,
    /// What happens to the packets on their way to the engine.
    pub impairment: Impairment,
    /// Address ICE gathers its host candidate on.
    pub ice_address: IpAddr,
    /// How long connecting (gathering, the HTTP exchange, ICE and DTLS) may take.
    pub connect_timeout: Duration,
}

impl PeerConfig {
    /// Sends `input` to `session_url` and records to `output`: 96 kb/s with FEC, no
    /// impairment, a 1.5 s tail, ICE on 127.0.0.1.
    pub fn new(
        session_url: impl Into<String>,
        input: impl Into<PathBuf>,
        output: impl Into<PathBuf>,
    ) -> Self {
        PeerConfig {
            session_url: session_url.into(),
            input: input.into(),
            max_input_seconds: None,
            output: output.into(),
            tail: Duration::from_millis(1500),
            bitrate: 96_000,
            fec: true,
            impairment: Impairment::default(),
            ice_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// What a run did and what came back.
#[derive(Clone, Debug, Serialize)]
pub struct PeerReport {
    /// Seconds of input sent (before the tail).
    pub input_seconds: f64,
    /// Seconds of silence sent after it.
    pub tail_seconds: f64,
    /// Opus bitrate used, bits per second.
    pub bitrate: i32,
    /// The Opus payload type of the answer.
    pub opus_pt: u8,
    /// From the start of the run until the transport was connected, in ms.
    pub connect_ms: f64,
    /// Packets produced (one per 20 ms of input and tail).
    pub packets_total: u64,
    /// Packets put on the wire.
    pub packets_sent: u64,
    /// Packets the impairment dropped.
    pub packets_dropped: u64,
    /// Opus payload bitrate of what was produced (input and tail), kb/s.
    pub send_kbps: f64,
    /// Packets sent after a packet produced later than them (reordered by the jitter).
    pub packets_reordered: u64,
    /// Packets this process sent more than 5 ms after their due time (its own scheduling,
    /// beyond the jitter it was told to add): a loaded machine shows here.
    pub send_late: u64,
    /// The latest a packet was sent after its due time, in ms.
    pub send_late_max_ms: f64,
    /// The echo, as [`recorder::reconstruct`] found it.
    #[serde(flatten)]
    pub echo: EchoStats,
    /// The HTTP status of the `DELETE` (none when it could not be sent).
    pub delete_status: Option<u16>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The input or output WAV could not be used.
    #[error("{0}")]
    Wav(#[from] wav::WavError),
    /// The input WAV is not what is sent.
    #[error("the input must be 48 kHz mono 16-bit, it is {0} Hz")]
    InputRate(u32),
    /// The Opus encoder could not be set up.
    #[error("opus: {0}")]
    Opus(#[from] opus::Error),
    /// The session URL is not an absolute http(s) URL.
    #[error("the session URL is not an absolute http(s) URL")]
    BadUrl,
    /// The WebRTC stack failed.
    #[error("the WebRTC stack failed while {step}: {source}")]
    Stack {
        /// What was being done.
        step: &'static str,
        /// The stack's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No ICE candidate was gathered.
    #[error("no ICE candidate was gathered")]
    NoCandidates,
    /// The HTTP exchange with the engine failed.
    #[error("the engine could not be reached: {0}")]
    Http(#[from] reqwest::Error),
    /// The engine refused the offer.
    #[error("the engine answered the offer with HTTP {0}")]
    Refused(u16),
    /// The engine's answer is unusable.
    #[error("the engine's answer is unusable: {0}")]
    BadAnswer(&'static str),
    /// The transport did not connect in time or failed.
    #[error("the transport did not connect: {0}")]
    NotConnected(&'static str),
}

fn stack<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> PeerError {
    move |e| PeerError::Stack {
        step,
        source: Box::new(e),
    }
}

enum PcEvent {
    Gathering(RTCIceGatheringState),
    Connection(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
}

struct Handler {
    tx: mpsc::Sender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.tx.try_send(PcEvent::Gathering(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.try_send(PcEvent::Connection(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.try_send(PcEvent::Track(track));
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: INPUT_RATE,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The Opus payload type of an SDP (the first `a=rtpmap:PT opus/48000`).
fn opus_pt(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("a=rtpmap:")?;
        let (pt, codec) = rest.split_once(' ')?;
        codec
            .to_ascii_lowercase()
            .starts_with("opus/48000")
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// 64 random bits from the clock and the process, for SSRC and RTP starting points (not
/// the impairment's seed: those must not repeat between two peers on one machine).
fn entropy() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    impair::Rng::new(t ^ (u64::from(std::process::id()) << 32)).next_u64()
}

/// Opus packets of the input, then of silence for the tail, 20 ms each.
fn encode(config: &PeerConfig, input: &Wav) -> Result<Vec<bytes::Bytes>, PeerError> {
    let mut enc = opus::Encoder::new(INPUT_RATE, opus::Channels::Mono, opus::Application::Voip)?;
    enc.set_bitrate(opus::Bitrate::Bits(config.bitrate))?;
    enc.set_inband_fec(config.fec)?;
    if config.fec {
        let expected = config.impairment.loss_percent.round().clamp(5.0, 100.0) as i32;
        enc.set_packet_loss_perc(expected)?;
    }
    let tail = (config.tail.as_secs_f64() * f64::from(INPUT_RATE)) as usize;
    let mut samples = input.samples.clone();
    samples.resize(
        samples.len().div_ceil(FRAME) * FRAME + tail.div_ceil(FRAME) * FRAME,
        0,
    );
    let mut buf = vec![0u8; 1500];
    samples
        .chunks_exact(FRAME)
        .map(|f| {
            let n = enc.encode(f, &mut buf)?;
            Ok(bytes::Bytes::copy_from_slice(&buf[..n]))
        })
        .collect()
}

/// Runs one call: connect, send the input (and the tail) with the impairments, record the
/// echo to `config.output`, `DELETE` the leg. Needs a Tokio runtime with time enabled.
pub async fn run(config: PeerConfig) -> Result<PeerReport, PeerError> {
    let started = Instant::now();
    let mut input = Wav::read(&config.input)?;
    if input.sample_rate != INPUT_RATE {
        return Err(PeerError::InputRate(input.sample_rate));
    }
    if let Some(s) = config.max_input_seconds {
        input = input.truncated(s);
    }
    let packets = encode(&config, &input)?;
    let url = reqwest::Url::parse(&config.session_url).map_err(|_| PeerError::BadUrl)?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(PeerError::BadUrl);
    }
    // A build where another crate turns on reqwest's rustls panics building a client unless
    // a process-wide crypto provider is installed.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;

    let (pc, track, ssrc, events) = build(&config).await?;
    let mut location = None;
    let result = call(
        &config,
        &http,
        &url,
        &pc,
        &track,
        ssrc,
        events,
        &packets,
        started,
        &mut location,
    )
    .await;
    let _ = pc.close().await;
    // The leg is deleted whenever the engine created one, also when the call failed later.
    let delete_status = match location {
        Some(location) => http
            .delete(location)
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16()),
        None => None,
    };
    let mut report = result?;
    report.input_seconds = input.seconds();
    report.delete_status = delete_status;
    Ok(report)
}

type Built = (
    Arc<dyn PeerConnection>,
    Arc<TrackLocalStaticRTP>,
    u32,
    mpsc::Receiver<PcEvent>,
);

async fn build(config: &PeerConfig) -> Result<Built, PeerError> {
    let mut engine = MediaEngine::default();
    engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OFFER_OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(stack("registering Opus"))?;
    let registry = register_default_interceptors(rtc::interceptor::Registry::new(), &mut engine)
        .map_err(stack("registering interceptors"))?;
    let setting_engine = SettingEngineBuilder::new()
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_include_loopback_candidate(true)
        .build();
    // Sized for every event a call produces before the event task drains them.
    let (tx, events) = mpsc::channel(64);
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(engine)
        .with_setting_engine(setting_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler { tx }))
        .with_udp_addrs(vec![SocketAddr::new(config.ice_address, 0)])
        .build()
        .await
        .map_err(stack("building the peer connection"))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let ssrc = entropy() as u32;
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "speech-peer".to_owned(),
        "speech-peer-audio".to_owned(),
        "speech-peer".to_owned(),
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
    let added = pc
        .add_transceiver_from_track(
            Arc::clone(&track) as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .await;
    if let Err(e) = added {
        let _ = pc.close().await;
        return Err(stack("adding the audio transceiver")(e));
    }
    Ok((pc, track, ssrc, events))
}

/// Offer, answer, connect, send and record; hands back the report (without the input
/// length and the DELETE). The leg's Location is put in `location` as soon as it is known.
#[allow(clippy::too_many_arguments)]
async fn call(
    config: &PeerConfig,
    http: &reqwest::Client,
    url: &reqwest::Url,
    pc: &Arc<dyn PeerConnection>,
    track: &Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    mut events: mpsc::Receiver<PcEvent>,
    packets: &[bytes::Bytes],
    started: Instant,
    location: &mut Option<reqwest::Url>,
) -> Result<PeerReport, PeerError> {
    let deadline = tokio::time::Instant::from_std(started + config.connect_timeout);
    let offer = pc
        .create_offer(None)
        .await
        .map_err(stack("creating the offer"))?;
    pc.set_local_description(offer)
        .await
        .map_err(stack("applying the offer"))?;
    let mut early = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(PcEvent::Gathering(RTCIceGatheringState::Complete))) => break,
            Ok(Some(other)) => early.push(other),
            Ok(None) => return Err(PeerError::NotConnected("the stack went away")),
            Err(_) => return Err(PeerError::NotConnected("ICE gathering did not complete")),
        }
    }
    let local = pc
        .local_description()
        .await
        .ok_or(PeerError::NoCandidates)?;
    if !local.sdp.contains("a=candidate:") {
        return Err(PeerError::NoCandidates);
    }
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(local.sdp)
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        return Err(PeerError::Refused(response.status().as_u16()));
    }
    *location = Some(
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| url.join(v).ok())
            .ok_or(PeerError::BadAnswer("no usable Location"))?,
    );
    let answer = response.text().await?;
    let pt = opus_pt(&answer).ok_or(PeerError::BadAnswer("no Opus in the answer"))?;
    let desc = RTCSessionDescription::answer(answer)
        .map_err(|_| PeerError::BadAnswer("not an SDP answer"))?;
    pc.set_remote_description(desc)
        .await
        .map_err(|_| PeerError::BadAnswer("the WebRTC stack refused it"))?;

    // From here on, one task follows the stack's events: the connection state, and a
    // reader per remote track that timestamps each echo packet on arrival.
    let (state_tx, mut state) = watch::channel(RTCPeerConnectionState::New);
    let (stop_tx, stop) = watch::channel(false);
    let (rx_tx, mut rx) = mpsc::unbounded_channel::<(Instant, rtp::Packet)>();
    let follower = tokio::spawn(async move {
        let mut pending = early.into_iter();
        loop {
            let ev = match pending.next() {
                Some(ev) => ev,
                None => match events.recv().await {
                    Some(ev) => ev,
                    None => break,
                },
            };
            match ev {
                PcEvent::Connection(s) => {
                    let _ = state_tx.send(s);
                }
                PcEvent::Track(remote) => {
                    let tx = rx_tx.clone();
                    let mut stop = stop.clone();
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                ev = remote.poll() => match ev {
                                    Some(TrackRemoteEvent::OnRtpPacket(p)) => {
                                        let _ = tx.send((Instant::now(), p));
                                    }
                                    Some(TrackRemoteEvent::OnEnded) | None => break,
                                    Some(_) => {}
                                },
                                _ = stop.changed() => break,
                            }
                        }
                    });
                }
                PcEvent::Gathering(_) => {}
            }
        }
    });
    // The local track's RTCP is not needed; draining it keeps the stack's queue empty.
    let drain_track = Arc::clone(track);
    let drainer = tokio::spawn(async move { while drain_track.poll().await.is_some() {} });

    let connected = tokio::time::timeout_at(deadline, async {
        loop {
            match *state.borrow_and_update() {
                RTCPeerConnectionState::Connected => return Ok(()),
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                    return Err(PeerError::NotConnected("the transport failed"));
                }
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(PeerError::NotConnected("the stack went away"));
            }
        }
    })
    .await;
    let outcome = match connected {
        Ok(Ok(())) => {
            let connect_ms = started.elapsed().as_secs_f64() * 1e3;
            let t0 = Instant::now();
            let sent = send(track, ssrc, pt, packets, &config.impairment, t0).await;
            // Let the echo of the last packets arrive.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = stop_tx.send(true);
            let mut echo = Vec::new();
            while let Ok((at, p)) = rx.try_recv() {
                if p.header.payload_type != pt {
                    continue;
                }
                echo.push(recorder::EchoPacket {
                    arrival_s: at.saturating_duration_since(t0).as_secs_f64()
                        - t0.saturating_duration_since(at).as_secs_f64(),
                    sequence: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    payload: p.payload,
                });
            }
            let length = PACKET * packets.len() as u32;
            let (wav, echo_stats) = recorder::reconstruct(&echo, length);
            wav.write(&config.output)?;
            Ok(PeerReport {
                input_seconds: 0.0,
                tail_seconds: config.tail.as_secs_f64(),
                bitrate: config.bitrate,
                opus_pt: pt,
                connect_ms: (connect_ms * 10.0).round() / 10.0,
                packets_total: packets.len() as u64,
                packets_sent: sent.sent,
                packets_dropped: sent.dropped,
                send_kbps: kbps(packets),
                packets_reordered: sent.reordered,
                send_late: sent.late,
                send_late_max_ms: (sent.late_max.as_secs_f64() * 1e4).round() / 10.0,
                echo: echo_stats,
                delete_status: None,
            })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(PeerError::NotConnected("timed out")),
    };
    let _ = stop_tx.send(true);
    follower.abort();
    drainer.abort();
    outcome
}

/// The payload bitrate of 20 ms packets, kb/s, to 0.1.
fn kbps(packets: &[bytes::Bytes]) -> f64 {
    if packets.is_empty() {
        return 0.0;
    }
    let bytes: usize = packets.iter().map(bytes::Bytes::len).sum();
    let bits_per_s = bytes as f64 * 8.0 / (packets.len() as f64 * PACKET.as_secs_f64());
    (bits_per_s / 100.0).round() / 10.0
}

#[derive(Default)]
struct Sent {
    sent: u64,
    dropped: u64,
    reordered: u64,
    late: u64,
    late_max: Duration,
}

/// A packet held back by the jitter, released at `at`.
struct Held {
    at: Instant,
    index: usize,
}

/// Sends `packets` one per 20 ms from `t0` (absolute deadlines, so a late wake-up does not
/// shift the rest), dropping and delaying them as `imp` says.
async fn send(
    track: &TrackLocalStaticRTP,
    ssrc: u32,
    pt: u8,
    packets: &[bytes::Bytes],
    imp: &Impairment,
    t0: Instant,
) -> Sent {
    let mut impairer = impair::Impairer::new(imp);
    let start = entropy();
    let seq0 = start as u16;
    let ts0 = (start >> 32) as u32;
    let mut out = Sent::default();
    // Packets waiting for their release time, earliest first (few at a time: a Vec is enough).
    let mut held: Vec<Held> = Vec::new();
    let mut next = 0usize;
    let mut released_up_to = 0usize;
    while next < packets.len() || !held.is_empty() {
        let due = (next < packets.len()).then(|| t0 + PACKET * next as u32);
        let release = held.iter().map(|h| h.at).min();
        let wake = match (due, release) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => break,
        };
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        let now = Instant::now();
        while next < packets.len() && t0 + PACKET * next as u32 <= now {
            if impairer.lose() {
                out.dropped += 1;
            } else {
                let at = t0 + PACKET * next as u32 + impairer.delay();
                held.push(Held { at, index: next });
            }
            next += 1;
        }
        held.sort_by_key(|h| (h.at, h.index));
        let ready = held.iter().take_while(|h| h.at <= now).count();
        for h in held.drain(..ready).collect::<Vec<_>>() {
            let lateness = now.saturating_duration_since(h.at);
            if lateness > Duration::from_millis(5) {
                out.late += 1;
            }
            out.late_max = out.late_max.max(lateness);
            if h.index < released_up_to {
                out.reordered += 1;
            }
            released_up_to = released_up_to.max(h.index + 1);
            let header = rtp::header::Header {
                version: 2,
                marker: h.index == 0,
                payload_type: pt,
                sequence_number: seq0.wrapping_add(h.index as u16),
                timestamp: ts0.wrapping_add((h.index * FRAME) as u32),
                ssrc,
                ..Default::default()
            };
            let packet = rtp::packet::Packet {
                header,
                payload: packets[h.index].clone(),
            };
            if track.write_rtp(packet).await.is_ok() {
                out.sent += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opus_payload_type_is_read_from_the_answer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 109 101\r\na=rtpmap:101 telephone-event/48000\r\na=rtpmap:109 opus/48000/2\r\n";
        assert_eq!(opus_pt(sdp), Some(109));
        assert_eq!(opus_pt("a=rtpmap:0 PCMU/8000"), None);
    }
}
