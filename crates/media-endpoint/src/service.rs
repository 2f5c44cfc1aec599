//! The calling service's side of a leg: the WebRTC offerer that opens media at a session's
//! `{mpUri}/sessions/{mpMediaSessionId}` (WHIP-style), then runs the same leg task as the
//! endpoint's answerer: RTP between the peer and a [`NetworkPort`], tones, receiver reports,
//! connect and media watchdogs. A conference server (the emulator) uses it to reach a bot.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::peer_connection::{PeerConnection, RTCSessionDescription};

use crate::bridge::NetworkPort;
use crate::dtmf::Tone;
use crate::error::ToneError;
use crate::events::{EndReason, EndpointEvent};
use crate::leg::{
    self, Leg, LegControl, LegOutcome, LegSettings, Negotiation, PcEvent, SetupError,
};
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
    /// How long ICE gathering may take before the offer is sent with what was gathered.
    pub gathering_timeout: Duration,
    /// How long the HTTP exchange with the endpoint (offer, answer; the `DELETE`) may take.
    pub request_timeout: Duration,
    /// How long the leg may take to connect after the answer before it counts as failed.
    pub connect_timeout: Duration,
    /// How long a connected leg may receive neither RTP nor RTCP before it counts as dead.
    pub media_timeout: Duration,
}

impl Default for ServiceLegConfig {
    /// ICE on 127.0.0.1; 3 s gathering, 10 s per request, 10 s to connect, 10 s media timeout.
    fn default() -> Self {
        Self {
            ice_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            gathering_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(10),
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
    stack(e.step())(e.into_source())
}

/// An open leg from the service to a bot's media endpoint. Dropping it ends the leg locally
/// (without telling the endpoint); [`ServiceLeg::close`] also deletes it there.
pub struct ServiceLeg {
    location: reqwest::Url,
    http: reqwest::Client,
    stop: mpsc::Sender<EndReason>,
    control: LegControl,
    task: Option<tokio::task::JoinHandle<LegOutcome>>,
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
    /// answer and starts the leg task on the current Tokio runtime. Received audio goes to
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
        let (pc, track, ssrc, mut pc_events) = build(&config, path).await?;
        let result = offer_and_answer(&pc, &http, &url, &config, &mut pc_events).await;
        let (location, answer, early) = match result {
            Ok(r) => r,
            Err(e) => {
                let _ = pc.close().await;
                return Err(e);
            }
        };
        let negotiated = match read_answer(&answer) {
            Some(n) => n,
            None => {
                let _ = pc.close().await;
                return Err(ConnectError::BadAnswer {
                    problem: "no audio section with Opus",
                });
            }
        };
        let (control, tones) = LegControl::new(TONE_QUEUE);
        let (stop_tx, stop) = mpsc::channel(1);
        let negotiation = Negotiation {
            pc,
            track,
            events: pc_events,
            early,
            negotiated,
            ssrc,
            answer,
            // The service side binds ephemeral ports.
            ports: leg::ports::PortLease::default(),
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
                gathering_timeout: config.gathering_timeout,
                connect_timeout: config.connect_timeout,
                media_timeout: config.media_timeout,
            },
            label: format!("service {}", redacted(&location)),
            on_end: None,
        };
        let task = tokio::spawn(leg::run(negotiation, leg));
        Ok(ServiceLeg {
            location,
            http,
            stop: stop_tx,
            control,
            task: Some(task),
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

    /// Ends the leg: stops its task (the events channel gets `LegEnded(Closed)` unless the
    /// leg had already ended) and deletes the leg's resource at the endpoint.
    pub async fn close(mut self) -> Result<(), CloseError> {
        let _ = self.stop.try_send(EndReason::Closed);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let response = self
            .http
            .delete(self.location.clone())
            .send()
            .await
            .map_err(CloseError::Unreachable)?;
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
        // Dropping the stop sender also ends the task; the explicit reason says why.
        let _ = self.stop.try_send(EndReason::Closed);
    }
}

type Built = (
    Arc<dyn PeerConnection>,
    Arc<TrackLocalStaticRTP>,
    u32,
    mpsc::Receiver<PcEvent>,
);

async fn build(
    config: &ServiceLegConfig,
    path: Option<PathInterceptor>,
) -> Result<Built, ConnectError> {
    let addrs: Vec<SocketAddr> = config
        .ice_addresses
        .iter()
        .map(|ip| SocketAddr::new(*ip, 0))
        .collect();
    let (pc, events) = leg::build_peer_connection(addrs, path)
        .await
        .map_err(setup_failed)?;
    let (track, ssrc) = leg::opus_track(
        "service-stream".to_owned(),
        "service-audio".to_owned(),
        "service".to_owned(),
    );
    let added = async {
        let transceiver = pc
            .add_transceiver_from_track(
                Arc::clone(&track) as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    streams: vec![],
                    send_encodings: vec![],
                }),
            )
            .await
            .map_err(stack("adding the audio transceiver"))?;
        // The track narrows the transceiver to Opus; telephone-event goes back beside it.
        transceiver
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
            .await
            .map_err(stack("setting codec preferences"))
    };
    if let Err(e) = added.await {
        let _ = pc.close().await;
        return Err(e);
    }
    Ok((pc, track, ssrc, events))
}

async fn offer_and_answer(
    pc: &Arc<dyn PeerConnection>,
    http: &reqwest::Client,
    url: &reqwest::Url,
    config: &ServiceLegConfig,
    events: &mut mpsc::Receiver<PcEvent>,
) -> Result<(reqwest::Url, String, Vec<PcEvent>), ConnectError> {
    let offer = pc
        .create_offer(None)
        .await
        .map_err(stack("creating the offer"))?;
    pc.set_local_description(offer)
        .await
        .map_err(stack("applying the offer"))?;
    let early = leg::await_gathering(events, config.gathering_timeout, "offering").await;
    let local = pc
        .local_description()
        .await
        .ok_or(ConnectError::NoCandidates)?;
    if !local.sdp.contains("a=candidate:") {
        return Err(ConnectError::NoCandidates);
    }
    let response = http
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(local.sdp)
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
    pc.set_remote_description(desc)
        .await
        .map_err(|_| ConnectError::BadAnswer {
            problem: "the WebRTC stack refused the answer",
        })?;
    Ok((location, answer, early))
}
