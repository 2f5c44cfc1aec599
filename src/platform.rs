//! The media platform: the pipeline threads and the media endpoint, started once per
//! process, and the media sessions created on it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use audio_pipeline::{
    CallConfig, JitterConfig, OpusConfig, Pipeline, PipelineConfig, PlatformHealth, Ticks,
};
use media_endpoint::{EndpointConfig, IceAddress, MediaEndpoint, SessionHooks, TlsConfig};
use media_session::{AudioFormat, AudioSocketSettings, MediaPlatformSettings as SessionPlatform};
use tokio::sync::mpsc;

use crate::socket::{AudioSocket, FrameHandler};
use crate::{MediaSession, PlatformError, SessionError};

/// Events one session's endpoint leg may queue before its socket reads them.
const EVENT_QUEUE: usize = 256;

/// The media settings of one session: its encoder, its jitter buffer and how much
/// send-side queueing it lets stand. The defaults were chosen by measurement (README,
/// "Audio quality"); a session can be given others with
/// [`MediaPlatform::create_session_with_settings`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionMediaSettings {
    /// Opus encoder settings for what the bot sends.
    pub opus: OpusConfig,
    /// Jitter buffer settings for what the bot receives.
    pub jitter: JitterConfig,
    /// Send-side queueing the pipeline lets stand before absorbing it (zero: never; see
    /// [`crate::pipeline::CallConfig::send_queue_target`]).
    pub send_queue_target: Ticks,
}

impl Default for SessionMediaSettings {
    fn default() -> Self {
        let call = CallConfig::default();
        Self {
            opus: call.opus,
            jitter: call.jitter,
            send_queue_target: call.send_queue_target,
        }
    }
}

impl SessionMediaSettings {
    /// These settings with the encoder's bitrate set to `bps` (6 000..=510 000).
    pub fn with_bitrate(mut self, bps: u32) -> Self {
        self.opus.bitrate_bps = bps;
        self
    }

    /// These settings with the encoder's complexity set to `complexity` (0..=10).
    pub fn with_complexity(mut self, complexity: u8) -> Self {
        self.opus.complexity = complexity;
        self
    }
}

/// Settings of the media platform.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MediaPlatformSettings {
    /// Where the media endpoint's HTTP listener binds; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The `mpUri` to publish in blobs when the service reaches the endpoint through
    /// another address (a proxy, NAT); by default the listener's own.
    pub public_mp_uri: Option<String>,
    /// Addresses ICE gathers host candidates on (127.0.0.1 for local use): each leg binds
    /// one UDP socket on each.
    pub ice_addresses: Vec<IpAddr>,
    /// The UDP ports the legs' sockets bind, both ends included (`40000..=40999`): each
    /// leg takes free ones (ports held by other legs or bound by other programs are
    /// skipped, the search rotating through the range), and a leg for which the range has
    /// no free port is refused (the service gets HTTP 500 naming the range). Size it at
    /// the calls an instance takes times [`Self::ice_addresses`]. `None`: ephemeral ports.
    pub ice_ports: Option<RangeInclusive<u16>>,
    /// The public addresses of a 1:1 NAT in front of [`Self::ice_addresses`] (a cloud
    /// VM's elastic IP, a Kubernetes node's external address with `hostNetwork`): host
    /// candidates name them in place of the local ones, which the sockets still bind. One
    /// address stands for every ICE address; several pair with the ICE addresses in order.
    /// Empty: candidates name the local addresses.
    pub ice_public_addresses: Vec<IpAddr>,
    /// Shared-UDP mode: the legs share one UDP socket per network pump (one pump per two
    /// cores) and ICE address instead of binding sockets of their own, are told apart by
    /// their ICE username fragments and peers' addresses, and each tick's packets leave in
    /// batched system calls (see [`EndpointConfig::shared_udp`]). [`Self::ice_ports`] then
    /// needs one port per pump, taken for the life of the process. Off by default.
    pub shared_udp: bool,
    /// Lean media path: after the answer, legs run ICE lite, DTLS and SRTP themselves
    /// from the WebRTC stack's parts instead of its whole peer connection per packet (see
    /// [`EndpointConfig::lean_media`]). On by default; off runs the whole stack per leg.
    pub lean_media: bool,
    /// Serve the endpoint over https with this certificate.
    pub tls: Option<TlsConfig>,
    /// Pipeline threads, priority and load limits.
    pub pipeline: PipelineConfig,
    /// A connected leg that receives nothing for this long counts as dead.
    pub media_timeout: Duration,
    /// Media settings of sessions created without their own.
    pub session_defaults: SessionMediaSettings,
}

impl Default for MediaPlatformSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            public_mp_uri: None,
            ice_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            ice_ports: None,
            ice_public_addresses: Vec::new(),
            shared_udp: false,
            lean_media: true,
            tls: None,
            pipeline: PipelineConfig::default(),
            media_timeout: Duration::from_secs(10),
            session_defaults: SessionMediaSettings::default(),
        }
    }
}

impl MediaPlatformSettings {
    /// What is wrong with the ICE settings, if anything: a port range that is empty or
    /// includes port 0, or public addresses that pair with no ICE address.
    pub fn ice_problem(&self) -> Option<String> {
        if let Some(ports) = &self.ice_ports
            && (ports.is_empty() || *ports.start() == 0)
        {
            return Some(format!(
                "the ICE port range {}-{} must be non-empty and must not include port 0",
                ports.start(),
                ports.end()
            ));
        }
        let (public, local) = (self.ice_public_addresses.len(), self.ice_addresses.len());
        if public > 1 && public != local {
            return Some(format!(
                "{public} ICE public addresses for {local} ICE addresses: give one, or one per ICE address"
            ));
        }
        None
    }

    /// The endpoint's ICE addresses: each local address with the port range and the public
    /// address it is advertised as.
    fn endpoint_ice(&self) -> Vec<IceAddress> {
        self.ice_addresses
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let mut a = IceAddress::new(*ip);
                if let Some(ports) = &self.ice_ports {
                    a = a.with_ports(ports.clone());
                }
                let public = match self.ice_public_addresses.as_slice() {
                    [one] => Some(one),
                    many => many.get(i),
                };
                if let Some(public) = public {
                    a = a.announced_as(*public);
                }
                a
            })
            .collect()
    }
}

struct Inner {
    session_defaults: SessionMediaSettings,
    pipeline: Pipeline,
    endpoint: MediaEndpoint,
    session_platform: SessionPlatform,
}

/// The media platform: pipeline threads plus the WebRTC endpoint at `mpUri`. Cheap to clone.
#[derive(Clone)]
pub struct MediaPlatform {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MediaPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaPlatform")
            .field("mp_uri", &self.mp_uri())
            .field("calls", &self.inner.pipeline.calls())
            .finish()
    }
}

impl MediaPlatform {
    /// Starts the pipeline threads and the endpoint. Must run inside a Tokio runtime.
    /// ICE settings are not checked here ([`MediaPlatformSettings::ice_problem`] does;
    /// [`crate::Bot::start`] refuses them): with an empty port range every leg is refused.
    pub async fn start(settings: MediaPlatformSettings) -> Result<Self, PlatformError> {
        let ice = settings.endpoint_ice();
        let pipeline = Pipeline::start(settings.pipeline)?;
        let mut endpoint_config = EndpointConfig::new(settings.listen)
            .with_ice(ice)
            .with_media_timeout(settings.media_timeout)
            .with_shared_udp(settings.shared_udp)
            .with_lean_media(settings.lean_media);
        if let Some(tls) = settings.tls {
            endpoint_config = endpoint_config.with_tls(tls);
        }
        let endpoint = MediaEndpoint::bind(endpoint_config).await?;
        let mp_uri = settings
            .public_mp_uri
            .unwrap_or_else(|| endpoint.mp_uri().to_owned());
        let session_platform = SessionPlatform::new(&mp_uri)?;
        Ok(Self {
            inner: Arc::new(Inner {
                session_defaults: settings.session_defaults,
                pipeline,
                endpoint,
                session_platform,
            }),
        })
    }

    /// The `mpUri` blobs name.
    pub fn mp_uri(&self) -> &str {
        self.inner.session_platform.mp_uri.as_str()
    }

    /// The media clock: 100 ns ticks, monotonic.
    pub fn now(&self) -> Ticks {
        self.inner.pipeline.now()
    }

    /// How loaded the pipeline threads are.
    pub fn health(&self) -> PlatformHealth {
        self.inner.pipeline.health()
    }

    /// What admission sees: the measured cost of a call per tick, the budget of a
    /// pipeline thread, and how many more calls fit (see
    /// [`crate::pipeline::HealthThresholds::admission_busy_fraction`]).
    pub fn capacity(&self) -> crate::pipeline::Capacity {
        self.inner.pipeline.capacity()
    }

    /// Load figures of each pipeline thread over its last second (lateness, work per tick,
    /// late and skipped ticks), in thread order.
    pub fn thread_loads(&self) -> Vec<crate::pipeline::ThreadLoad> {
        self.inner.pipeline.thread_loads()
    }

    /// Calls running on the pipeline.
    pub fn active_calls(&self) -> usize {
        self.inner.pipeline.calls()
    }

    /// Creates a media session: contexts, blob, and an audio socket whose frames are
    /// queued for [`AudioSocket::recv_frame`].
    pub fn create_session(
        &self,
        audio: AudioSocketSettings,
        call_id: Option<&str>,
    ) -> Result<MediaSession, SessionError> {
        let media = self.inner.session_defaults;
        self.create_session_with(audio, call_id, media, FrameHandler::Queue)
    }

    /// Creates a media session with its own media settings (encoder, jitter buffer, send
    /// queue bound). Settings out of range are refused with
    /// [`SessionError::Admission`] naming the setting; nothing is created.
    pub fn create_session_with_settings(
        &self,
        audio: AudioSocketSettings,
        call_id: Option<&str>,
        media: SessionMediaSettings,
    ) -> Result<MediaSession, SessionError> {
        self.create_session_with(audio, call_id, media, FrameHandler::Queue)
    }

    /// Creates a media session whose received frames go to `on_frame` on the pipeline
    /// thread: the lowest latency, but the callback must not allocate, lock or block.
    pub fn create_session_with_callback(
        &self,
        audio: AudioSocketSettings,
        call_id: Option<&str>,
        on_frame: impl FnMut(&audio_pipeline::ReceivedFrame) + Send + 'static,
    ) -> Result<MediaSession, SessionError> {
        let media = self.inner.session_defaults;
        self.create_session_with(
            audio,
            call_id,
            media,
            FrameHandler::Callback(Box::new(on_frame)),
        )
    }

    fn create_session_with(
        &self,
        audio: AudioSocketSettings,
        call_id: Option<&str>,
        media: SessionMediaSettings,
        frames: FrameHandler,
    ) -> Result<MediaSession, SessionError> {
        if audio.format != AudioFormat::Pcm16K {
            return Err(SessionError::UnsupportedFormat(audio.format));
        }
        let session =
            media_session::MediaSession::new(&self.inner.session_platform, &audio, call_id)?;
        // The wire SSRC and payload type are the endpoint's: it renumbers what the pipeline
        // encodes into the negotiated stream.
        let mut config = CallConfig {
            opus: media.opus,
            jitter: media.jitter,
            send_queue_target: media.send_queue_target,
            send_active: false,
            unmixed_streams: audio.unmixed_streams,
            ..CallConfig::default()
        };
        let queue = match frames {
            FrameHandler::Queue => true,
            FrameHandler::Callback(cb) => {
                config.receive_queue_frames = 0;
                config.on_frame = Some(cb);
                false
            }
        };
        let call = self.inner.pipeline.add_call(config)?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let source = session
            .audio_source_context()
            .or(session.audio_render_context())
            .ok_or(SessionError::NoDirection)?;
        let handle = self.inner.endpoint.register(
            *session.id(),
            SessionHooks::new(source, call.network, events_tx)
                .with_unmixed_contexts(session.unmixed_contexts().to_vec()),
        )?;
        let socket = AudioSocket::new(call.bot, call.handle, handle, events_rx, queue);
        Ok(MediaSession::new(session, socket))
    }

    /// Stops taking sessions, ends every leg and stops the pipeline threads once the last
    /// clone is gone.
    pub async fn shutdown(self) {
        match Arc::try_unwrap(self.inner) {
            Ok(inner) => {
                inner.endpoint.shutdown().await;
                inner.pipeline.shutdown();
            }
            Err(shared) => drop(shared),
        }
    }
}
