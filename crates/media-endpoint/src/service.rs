//! The calling service's side of a leg: the WebRTC offerer that opens media at a session's
//! `{mpUri}/sessions/{mpMediaSessionId}` (WHIP-style), then runs the same sans-IO leg as the
//! endpoint's answerer, on the same network pumps: RTP between the peer and a
//! [`NetworkPort`], tones, receiver reports, connect and media watchdogs. A conference
//! server (the emulator) uses it to reach a bot.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use media_session::ContextId;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot};

use crate::bridge::NetworkPort;
use crate::dtmf::Tone;
use crate::error::ToneError;
use crate::events::{EndReason, EndpointEvent};
use crate::leg::pump::LegSockets;
use crate::leg::{self, Leg, LegControl, LegSettings, Negotiation, SetupError};
use crate::path::PathInterceptor;
pub use crate::path::{PathPacket, SendPath};
use crate::sdp::read_answer;

/// Payload types the service offers (the answerer echoes them).
const OFFER_OPUS_PT: u8 = 111;
const OFFER_TELEPHONE_EVENT_PT: u8 = 126;
/// Tones that may wait while one plays.
const TONE_QUEUE: usize = 16;

/// How a service leg connects and when it counts as failed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ServiceLegConfig {
    /// Local addresses ICE gathers host candidates on.
    pub ice_addresses: Vec<IpAddr>,
    /// How long the HTTP exchange with the endpoint (offer, answer; the `DELETE`) may take.
    pub request_timeout: Duration,
    /// How long the leg may take to connect after the answer before it counts as failed.
    pub connect_timeout: Duration,
    /// How long a connected leg may receive neither RTP nor RTCP before it counts as dead.
    pub media_timeout: Duration,
    /// The unmixed speaker streams to offer beside the mix, one sendonly audio m-line each,
    /// named (`a=msid` track id) by the session's unmixed render contexts in stream order:
    /// what the port yields with [`crate::OutboundAudio::stream`] k goes on the k-th.
    /// Empty: the mix only, as a service without unmixed audio offers.
    pub speaker_streams: Vec<ContextId>,
}

impl Default for ServiceLegConfig {
    /// ICE on 127.0.0.1; 10 s per request, 10 s to connect, 10 s media timeout.
    fn default() -> Self {
        Self {
            ice_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
            speaker_streams: Vec::new(),
        }
    }
}

impl ServiceLegConfig {
    /// Gather ICE host candidates on these addresses only.
    pub fn with_ice_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.ice_addresses = addresses;
        self
    }

    /// Sets the dead-peer timeout of the connected leg.
    pub fn with_media_timeout(mut self, timeout: Duration) -> Self {
        self.media_timeout = timeout;
        self
    }

    /// Sets how long the leg may take to connect.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Offers these unmixed speaker streams beside the mix (see
    /// [`ServiceLegConfig::speaker_streams`]).
    pub fn with_speaker_streams(mut self, contexts: Vec<ContextId>) -> Self {
        self.speaker_streams = contexts;
        self
    }
}

/// Why a service leg could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The session URL is not an absolute `http(s)` URL.
    #[error("the session URL is not an absolute http(s) URL")]
    BadUrl,
    /// No ICE address is configured.
    #[error("no ICE address configured: host candidates need at least one")]
    NoIceAddress,
    /// The WebRTC stack failed while building the offer or applying the answer.
    #[error("the WebRTC stack failed while {step}")]
    Stack {
        /// What was being done.
        step: &'static str,
        /// The stack's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ICE gathering produced no candidate on the configured addresses.
    #[error("no ICE candidate could be gathered on the configured addresses")]
    NoCandidates,
    /// The endpoint could not be reached, or did not answer in time.
    #[error("the media endpoint could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// The endpoint refused the offer.
    #[error("the media endpoint refused the offer with HTTP {status}")]
    Refused {
        /// The HTTP status (404 unknown session, 409 a leg exists, 400 bad SDP, ...).
        status: u16,
    },
    /// The endpoint's `201 Created` is not a usable answer.
    #[error("the media endpoint's answer is unusable: {problem}")]
    BadAnswer {
        /// What is wrong with it.
        problem: &'static str,
    },
}

/// Why closing a leg's resource at the endpoint failed (the local side is closed anyway).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The `DELETE` could not be sent or got no response in time.
    #[error("the leg's DELETE could not be sent")]
    Unreachable(#[source] reqwest::Error),
    /// The endpoint answered the `DELETE` with an error status.
    #[error("the leg's DELETE got HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
}

fn stack<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> ConnectError {
    move |source| ConnectError::Stack {
        step,
        source: Box::new(source),
    }
}

fn setup_failed(e: SetupError) -> ConnectError {
    ConnectError::Stack {
        step: e.step(),
        source: e.into_source(),
    }
}

/// An open leg from the service to a bot's media endpoint. Dropping it ends the leg locally
/// (without telling the endpoint); [`ServiceLeg::close`] also deletes it there.
pub struct ServiceLeg {
    location: reqwest::Url,
    http: reqwest::Client,
    stop: mpsc::Sender<EndReason>,
    control: LegControl,
    /// Fires when the leg has ended on its pump.
    ended: Option<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for ServiceLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The location names the session, a capability: not shown.
        f.debug_struct("ServiceLeg")
            .field("active", &self.is_active())
            .field("ended", &self.has_ended())
            .finish_non_exhaustive()
    }
}

/// The last path segment, shortened: enough to tell legs apart in logs.
fn redacted(url: &reqwest::Url) -> String {
    let last = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    format!("{}…", last.chars().take(8).collect::<String>())
}

impl ServiceLeg {
    /// Offers audio to `session_url` (`{mpUri}/sessions/{mpMediaSessionId}`), applies the
    /// answer and starts the leg on the service side's network pumps. Received audio goes to
    /// `link`, what `link` yields is sent; `events` hears of the send status, tones, quality
    /// and the leg's end (`StreamFailure` when the bot's side fails or goes silent).
    pub async fn connect(
        session_url: &str,
        config: ServiceLegConfig,
        link: impl NetworkPort,
        events: mpsc::Sender<EndpointEvent>,
    ) -> Result<ServiceLeg, ConnectError> {
        Self::open(session_url, config, link, None, events).await
    }

    /// Like [`ServiceLeg::connect`], with the RTP the leg sends going through `path` (a
    /// modelled network: loss, delay, reordering, duplicates) on its way to the endpoint.
    pub async fn connect_over(
        session_url: &str,
        config: ServiceLegConfig,
        link: impl NetworkPort,
        path: impl SendPath,
        events: mpsc::Sender<EndpointEvent>,
    ) -> Result<ServiceLeg, ConnectError> {
        let path = PathInterceptor::new(Box::new(path));
        Self::open(session_url, config, link, Some(path), events).await
    }

    async fn open(
        session_url: &str,
        config: ServiceLegConfig,
        link: impl NetworkPort,
        path: Option<PathInterceptor>,
        events: mpsc::Sender<EndpointEvent>,
    ) -> Result<ServiceLeg, ConnectError> {
        let url = reqwest::Url::parse(session_url).map_err(|_| ConnectError::BadUrl)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(ConnectError::BadUrl);
        }
        if config.ice_addresses.is_empty() {
            return Err(ConnectError::NoIceAddress);
        }
        // A build where some crate turns on reqwest's rustls without a provider (the facade
        // does, for HTTPS to Graph) panics building a client unless a process-wide provider
        // is installed: install ring, the provider this workspace uses, unless one is there.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.request_timeout)
            .build()
            .map_err(ConnectError::Unreachable)?;
        let (mut built, sockets) = build(Instant::now(), &config, path)?;
        let (location, answer) = match offer_and_answer(&mut built, &http, &url).await {
            Ok(r) => r,
            Err(e) => {
                let _ = rtc::sansio::Protocol::close(&mut built.pc);
                return Err(e);
            }
        };
        let Some(negotiated) = read_answer(&answer) else {
            let _ = rtc::sansio::Protocol::close(&mut built.pc);
            return Err(ConnectError::BadAnswer {
                problem: "no audio section with Opus",
            });
        };
        let (control, tones) = LegControl::new(TONE_QUEUE);
        let (stop_tx, stop) = mpsc::channel(1);
        let (ended_tx, ended) = oneshot::channel();
        let negotiation = Negotiation {
            pc: built.pc,
            negotiated,
            ssrc: built.ssrc,
            local_sdp: built.offer,
            // The service side binds ephemeral ports.
            sockets: LegSockets::Own(sockets, leg::ports::PortLease::default()),
            speaker_tracks: Vec::new(),
            main_track: None,
            speaker_ssrcs: built.speaker_ssrcs,
            lean: None,
        };
        let leg = Leg {
            link: Box::new(link),
            events,
            tones,
            stop,
            shared: Arc::clone(control.shared()),
            settings: LegSettings {
                ice_addresses: config
                    .ice_addresses
                    .into_iter()
                    .map(crate::IceAddress::new)
                    .collect(),
                connect_timeout: config.connect_timeout,
                media_timeout: config.media_timeout,
                shared_udp: false,
                lean_media: false,
            },
            label: format!("service {}", redacted(&location)),
            on_end: Some(Box::new(move || {
                let _ = ended_tx.send(());
            })),
        };
        leg::start(
            Instant::now(),
            leg::pump::PoolKind::Service,
            negotiation,
            leg,
        );
        Ok(ServiceLeg {
            location,
            http,
            stop: stop_tx,
            control,
            ended: Some(ended),
        })
    }

    /// Whether the transport is connected (send status Active).
    pub fn is_active(&self) -> bool {
        self.control.is_active()
    }

    /// Whether the leg has ended (failed, closed, or the bot's side went away).
    pub fn has_ended(&self) -> bool {
        self.control.has_ended()
    }

    /// Received packets dropped because the port's queue was full.
    pub fn inbound_dropped(&self) -> u64 {
        self.control.inbound_dropped()
    }

    /// Sends a DTMF tone (RFC 4733) of `duration` (clamped to 40 ms..5 s) towards the bot;
    /// the audio it overlaps is not sent.
    pub fn send_tone(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        self.control.send_tone(tone, duration)
    }

    /// Ends the leg: deletes the leg's resource at the endpoint, then stops it on its pump (the
    /// events channel gets `LegEnded(Closed)` unless the leg had already ended). The DELETE
    /// goes first so that the endpoint ends its side as deleted: stopping first sends the
    /// peer connection's close (DTLS `close_notify`), which a lean leg takes as the peer
    /// leaving. The leg is stopped also when the DELETE fails.
    pub async fn close(mut self) -> Result<(), CloseError> {
        let response = self.http.delete(self.location.clone()).send().await;
        let _ = self.stop.try_send(EndReason::Closed);
        if let Some(ended) = self.ended.take() {
            let _ = ended.await;
        }
        let response = response.map_err(CloseError::Unreachable)?;
        let status = response.status();
        // 404: the endpoint had already forgotten the leg (it ended on its side first).
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(CloseError::Status {
                status: status.as_u16(),
            })
        }
    }
}

impl Drop for ServiceLeg {
    fn drop(&mut self) {
        // Dropping the stop sender also ends the leg; the explicit reason says why.
        let _ = self.stop.try_send(EndReason::Closed);
    }
}

/// A peer connection with the service's audio transceiver and its offer, not sent yet.
pub(crate) struct Built {
    pub(crate) pc: RTCPeerConnection,
    pub(crate) ssrc: u32,
    /// The SSRCs of the speaker streams offered, stream 1 first.
    pub(crate) speaker_ssrcs: Vec<u32>,
    pub(crate) offer: String,
}

/// The service's peer connection and offer on sockets bound on `config`'s ICE addresses
/// (also the offering side of the leg simulation, [`crate::leg::sim`]).
pub(crate) fn build(
    now: Instant,
    config: &ServiceLegConfig,
    path: Option<PathInterceptor>,
) -> Result<(Built, Vec<std::net::UdpSocket>), ConnectError> {
    let addrs: Vec<SocketAddr> = config
        .ice_addresses
        .iter()
        .map(|ip| SocketAddr::new(*ip, 0))
        .collect();
    let sockets = leg::bind_sockets(&addrs).map_err(setup_failed)?;
    let mut pc = leg::build_peer_connection(now, path).map_err(setup_failed)?;
    let built = offer(now, &mut pc, &sockets, &config.speaker_streams);
    match built {
        Ok((ssrc, speaker_ssrcs, offer)) => Ok((
            Built {
                pc,
                ssrc,
                speaker_ssrcs,
                offer,
            },
            sockets,
        )),
        Err(e) => {
            let _ = rtc::sansio::Protocol::close(&mut pc);
            Err(e)
        }
    }
}

/// The SSRC of the main stream, those of the speaker streams, and the offer.
type Offered = (u32, Vec<u32>, String);

fn offer(
    now: Instant,
    pc: &mut RTCPeerConnection,
    sockets: &[std::net::UdpSocket],
    speakers: &[ContextId],
) -> Result<Offered, ConnectError> {
    let addrs = leg::local_addrs(sockets).map_err(setup_failed)?;
    leg::add_host_candidates(pc, &addrs).map_err(setup_failed)?;
    let (track, ssrc) = leg::opus_track(
        "service-stream".to_owned(),
        "service-audio".to_owned(),
        "service".to_owned(),
    );
    let transceiver = pc
        .add_transceiver_from_track(
            track,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendrecv,
                streams: vec![],
                send_encodings: vec![],
            }),
        )
        .map_err(stack("adding the audio transceiver"))?;
    // The track narrows the transceiver to Opus; telephone-event goes back beside it.
    pc.rtp_transceiver(transceiver)
        .ok_or(ConnectError::NoCandidates)?
        .set_codec_preferences(vec![
            RTCRtpCodecParameters {
                rtp_codec: leg::opus_codec(),
                payload_type: OFFER_OPUS_PT,
            },
            RTCRtpCodecParameters {
                rtp_codec: leg::telephone_event_codec(),
                payload_type: OFFER_TELEPHONE_EVENT_PT,
            },
        ])
        .map_err(stack("setting codec preferences"))?;
    let mut speaker_ssrcs = Vec::with_capacity(speakers.len());
    for context in speakers {
        let (track, ssrc) = leg::opus_track(
            "service-speakers".to_owned(),
            context.to_string(),
            "service-speaker".to_owned(),
        );
        let transceiver = pc
            .add_transceiver_from_track(
                track,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendonly,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .map_err(stack("adding a speaker stream's transceiver"))?;
        pc.rtp_transceiver(transceiver)
            .ok_or(ConnectError::NoCandidates)?
            .set_codec_preferences(vec![RTCRtpCodecParameters {
                rtp_codec: leg::opus_codec(),
                payload_type: OFFER_OPUS_PT,
            }])
            .map_err(stack("setting a speaker stream's codec preferences"))?;
        speaker_ssrcs.push(ssrc);
    }
    let offer = pc.create_offer(None).map_err(stack("creating the offer"))?;
    pc.set_local_description(now, offer)
        .map_err(stack("applying the offer"))?;
    let local = pc.local_description().ok_or(ConnectError::NoCandidates)?;
    if !local.sdp.contains("a=candidate:") {
        return Err(ConnectError::NoCandidates);
    }
    Ok((ssrc, speaker_ssrcs, local.sdp))
}

async fn offer_and_answer(
    built: &mut Built,
    http: &reqwest::Client,
    url: &reqwest::Url,
) -> Result<(reqwest::Url, String), ConnectError> {
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(built.offer.clone())
        .send()
        .await
        .map_err(ConnectError::Unreachable)?;
    let status = response.status();
    if status != reqwest::StatusCode::CREATED {
        return Err(ConnectError::Refused {
            status: status.as_u16(),
        });
    }
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url.join(v).ok())
        .ok_or(ConnectError::BadAnswer {
            problem: "no usable Location header",
        })?;
    let is_sdp = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/sdp"));
    if !is_sdp {
        return Err(ConnectError::BadAnswer {
            problem: "the body is not application/sdp",
        });
    }
    let answer = response.text().await.map_err(ConnectError::Unreachable)?;
    let desc =
        RTCSessionDescription::answer(answer.clone()).map_err(|_| ConnectError::BadAnswer {
            problem: "the body is not an SDP answer",
        })?;
    built
        .pc
        .set_remote_description(Instant::now(), desc)
        .map_err(|_| ConnectError::BadAnswer {
            problem: "the WebRTC stack refused the answer",
        })?;
    Ok((location, answer))
}
