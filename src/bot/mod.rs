//! A bot: the Graph calling client, its webhook and the media platform in one value, and
//! calls that own both their Graph call and their audio.
//!
//! [`Bot::call`] places a call and [`IncomingBotCall::answer`] answers one; either gives a
//! [`BotCall`], whose [`BotCall::next`] yields received 20 ms frames, the call's events
//! (state, roster, tones, operations) and the audio socket's events (send status, dominant
//! speaker, DTMF, link quality) in one stream. The call's media is released when the call
//! terminates, and a call the bot drops before it ended is hung up.
//!
//! In a meeting, a call that asked for unmixed audio
//! ([`BotSettings::with_unmixed_meeting_audio`]) gets the dominant speakers' voices apart
//! beside the mix; [`BotCall::unmixed`] pairs each with the participant the roster says
//! it is.

mod settings;
mod speakers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use audio_pipeline::{CallObserver, Pcm16K, ReceivedFrame, SendError};
use media_endpoint::{Tone, ToneError};
use media_session::AudioSocketSettings;
use signalling::calls::{BuildError, CallEvent, CreateError, IncomingCalls};
use signalling::client::{ApiError, RejectReason};
use signalling::model::{CallState, InvitationParticipantInfo, ParticipantInfo};
use signalling::{CallId, CallRequest, CommunicationsClient, CommunicationsSettings};
use tokio::sync::oneshot;

pub use self::settings::{BotSettings, EnvError, INSTANCE_PLACEHOLDER, emulator_app};
pub use self::speakers::{Speaker, SpeakerFrame, SpeakerFrames, Speakers};
use crate::{
    AudioSocket, AudioSocketEvent, AudioSocketItem, MediaPlatform, MediaSession, PlatformError,
    Quality, SessionError, SessionMediaSettings,
};

/// Why a bot could not start or a call could not be placed or answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BotError {
    /// The settings cannot work (say, no callback URL and no webhook address).
    #[error("bot settings: {0}")]
    Settings(String),
    /// The media platform did not start.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// The Graph client could not be built.
    #[error(transparent)]
    Client(#[from] BuildError),
    /// The webhook could not listen.
    #[error("cannot serve the webhook on {addr}: {source}")]
    Webhook {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The call's media session could not be created (platform at capacity, say).
    #[error(transparent)]
    Session(#[from] SessionError),
    /// Placing the call failed: refused locally or by the service.
    #[error(transparent)]
    Create(#[from] CreateError),
    /// A Graph request failed.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// What the bot tracks of one of its calls, for [`Bot::calls`].
#[derive(Clone, Debug)]
struct Tracked {
    graph: signalling::CallHandle,
    media: Option<CallObserver>,
}

/// One call as [`Bot::calls`] reports it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CallSummary {
    /// The call's id.
    pub id: CallId,
    /// Its state, once the service told.
    pub state: Option<CallState>,
    /// Its media pipeline's counters and latency, while it has media.
    pub media: Option<CallObserver>,
}

struct Inner {
    client: CommunicationsClient,
    platform: MediaPlatform,
    audio: AudioSocketSettings,
    hang_up_on_drop: bool,
    instance_id: Option<String>,
    callback_url: String,
    shared_callback_url: Option<String>,
    webhook_addr: Option<SocketAddr>,
    webhook_stop: Mutex<Option<oneshot::Sender<()>>>,
    incoming: tokio::sync::Mutex<Option<IncomingCalls>>,
    calls: Mutex<HashMap<CallId, Tracked>>,
    /// Admissions and the totals of ended calls, for [`crate::metrics`].
    ledger: crate::metrics::Ledger,
}

impl Inner {
    /// Removes a call from the live set, folding its figures into the ledger under the
    /// same lock.
    fn untrack(&self, id: &CallId) {
        let mut calls = lock(&self.calls);
        if let Some(t) = calls.remove(id) {
            self.ledger.call_ended(t.media.as_ref());
        }
    }

    /// Drops the calls the service terminated from the live set.
    fn prune(&self, calls: &mut HashMap<CallId, Tracked>) {
        calls.retain(|_, t| {
            let live = !t.graph.is_terminated();
            if !live {
                self.ledger.call_ended(t.media.as_ref());
            }
            live
        });
    }
}

/// Checks the instance id and replaces [`INSTANCE_PLACEHOLDER`] with it in the callback
/// URL and the public `mpUri`.
fn resolve_instance(settings: &mut BotSettings) -> Result<(), BotError> {
    if let Some(id) = &settings.instance_id {
        settings::check_instance_id(id)
            .map_err(|problem| BotError::Settings(format!("instance id: {problem}")))?;
    }
    if settings
        .shared_callback_url
        .as_deref()
        .is_some_and(|u| u.contains(INSTANCE_PLACEHOLDER))
    {
        return Err(BotError::Settings(format!(
            "the shared callback URL contains {INSTANCE_PLACEHOLDER}, but every instance shares it"
        )));
    }
    for (name, value) in [
        ("callback URL", &mut settings.callback_url),
        ("public mpUri", &mut settings.media.public_mp_uri),
    ] {
        let Some(v) = value.as_mut().filter(|v| v.contains(INSTANCE_PLACEHOLDER)) else {
            continue;
        };
        let Some(id) = &settings.instance_id else {
            return Err(BotError::Settings(format!(
                "the {name} contains {INSTANCE_PLACEHOLDER} but the bot has no instance id"
            )));
        };
        *v = v.replace(INSTANCE_PLACEHOLDER, id);
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A calling bot: Graph client, webhook and media platform. Cheap to clone.
///
/// ```no_run
/// use botmedia::{Bot, BotSettings, CallItem, CallRequest};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let bot = Bot::start(BotSettings::emulator("http://127.0.0.1:8440")).await?;
/// let mut call = bot.call(CallRequest::peer_to_peer("112f7296-5fa4-42ca-bae8-6a692b15d4b8", None)).await?;
/// while let Some(item) = call.next().await {
///     if let CallItem::Frame(frame) = item {
///         let _ = call.send(frame.pcm); // an echo
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bot {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Bot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bot")
            .field("instance_id", &self.inner.instance_id)
            .field("callback_url", &self.inner.callback_url)
            .field("mp_uri", &self.inner.platform.mp_uri())
            .finish_non_exhaustive()
    }
}

impl Bot {
    /// Starts the media platform, builds the Graph client and, when
    /// [`BotSettings::webhook_listen`] is set, serves the webhook. Must run inside a Tokio
    /// runtime. [`INSTANCE_PLACEHOLDER`] in the callback URL and the public `mpUri` is
    /// replaced by [`BotSettings::instance_id`] here; settings that cannot work (a
    /// placeholder and no instance id, an id that is no pod name, an empty ICE port range)
    /// are [`BotError::Settings`].
    pub async fn start(mut settings: BotSettings) -> Result<Bot, BotError> {
        resolve_instance(&mut settings)?;
        if let Some(problem) = settings.media.ice_problem() {
            return Err(BotError::Settings(problem));
        }
        if settings.audio.unmixed_streams > media_session::MAX_UNMIXED_STREAMS {
            return Err(BotError::Settings(format!(
                "unmixed meeting audio on {} streams: the most is {}",
                settings.audio.unmixed_streams,
                media_session::MAX_UNMIXED_STREAMS
            )));
        }
        let listener = match settings.webhook_listen {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| BotError::Webhook { addr, source })?,
            ),
            None => None,
        };
        let webhook_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let callback_url = match (&settings.callback_url, webhook_addr) {
            (Some(url), _) => url.clone(),
            (None, Some(addr)) if !addr.ip().is_unspecified() => format!("http://{addr}/callback"),
            (None, Some(addr)) => {
                return Err(BotError::Settings(format!(
                    "the webhook listens on {addr}, which is no address the service can reach: set callback_url"
                )));
            }
            (None, None) => {
                return Err(BotError::Settings(
                    "set callback_url (the webhook's public URL) or webhook_listen".into(),
                ));
            }
        };
        let mut comms = CommunicationsSettings::new(
            settings.app_id,
            settings.tenant,
            settings.credentials,
            callback_url.clone(),
        );
        comms.graph_url = settings.graph_url;
        comms.authority = settings.authority;
        comms.openid_configuration_url = settings.openid_configuration_url;
        comms.request_timeout = settings.request_timeout;
        comms.shared_notification_url = settings.shared_callback_url.clone();
        let client = CommunicationsClient::new(comms)?;
        let platform = MediaPlatform::start(settings.media).await?;
        let incoming = client.incoming_calls();
        let webhook_stop = listener.map(|listener| {
            let (stop, stopped) = oneshot::channel::<()>();
            let router = client.webhook_router();
            tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    let _ = stopped.await;
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "the webhook stopped");
                }
            });
            stop
        });
        tracing::info!(
            instance = settings.instance_id.as_deref(),
            callback = %callback_url,
            shared_callback = settings.shared_callback_url.as_deref(),
            mp_uri = %platform.mp_uri(),
            "bot started"
        );
        Ok(Bot {
            inner: Arc::new(Inner {
                client,
                platform,
                audio: settings.audio,
                hang_up_on_drop: settings.hang_up_on_drop,
                instance_id: settings.instance_id,
                callback_url,
                shared_callback_url: settings.shared_callback_url,
                webhook_addr,
                webhook_stop: Mutex::new(webhook_stop),
                incoming: tokio::sync::Mutex::new(incoming),
                calls: Mutex::new(HashMap::new()),
                ledger: crate::metrics::Ledger::default(),
            }),
        })
    }

    /// Places an app-hosted call with the bot's audio settings: creates its media session,
    /// puts the session's blob in the request and posts it.
    pub async fn call(&self, request: CallRequest) -> Result<BotCall, BotError> {
        self.call_with(request, self.inner.audio, None).await
    }

    /// Places an app-hosted call with its own audio socket and media settings.
    pub async fn call_with(
        &self,
        request: CallRequest,
        audio: AudioSocketSettings,
        media: Option<SessionMediaSettings>,
    ) -> Result<BotCall, BotError> {
        let session = self.session(audio, media)?;
        let call = self
            .inner
            .client
            .calls()
            .create(&request.app_hosted(session.description()))
            .await?;
        tracing::info!(call = %call.id(), session = %session.id(), "call placed");
        Ok(self.track(call, session))
    }

    /// The next incoming call; `None` once the bot is shut down. One consumer at a time.
    pub async fn next_incoming(&self) -> Option<IncomingBotCall> {
        let mut guard = self.inner.incoming.lock().await;
        let incoming = guard.as_mut()?;
        let call = incoming.next().await?;
        Some(IncomingBotCall {
            call,
            bot: self.clone(),
        })
    }

    /// The webhook, routed at the callback URL's path and at the shared callback URL's
    /// ([`BotSettings::shared_callback_url`]), both to the same calls: merge it into an
    /// axum app of your own when the bot does not serve it ([`BotSettings::webhook_listen`]
    /// unset).
    pub fn webhook_router(&self) -> axum::Router {
        self.inner.client.webhook_router()
    }

    /// The URL the service posts notifications about this bot's calls to (the instance's
    /// own in a fleet, its placeholder replaced).
    pub fn callback_url(&self) -> &str {
        &self.inner.callback_url
    }

    /// The app's webhook URL a fleet shares, where new incoming calls come, when set.
    pub fn shared_callback_url(&self) -> Option<&str> {
        self.inner.shared_callback_url.as_deref()
    }

    /// This instance's id in a fleet ([`BotSettings::instance_id`]).
    pub fn instance_id(&self) -> Option<&str> {
        self.inner.instance_id.as_deref()
    }

    /// Where the bot serves its webhook, when it does.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.inner.webhook_addr
    }

    /// The Graph calling client (for requests the bot API does not wrap).
    pub fn client(&self) -> &CommunicationsClient {
        &self.inner.client
    }

    /// The media platform (health, capacity, the `mpUri`).
    pub fn platform(&self) -> &MediaPlatform {
        &self.inner.platform
    }

    /// The audio socket settings [`Self::call`] and [`IncomingBotCall::answer`] use
    /// ([`BotSettings::audio`]): a start for a call's own settings in [`Self::call_with`],
    /// such as these with unmixed meeting audio.
    pub fn audio_settings(&self) -> AudioSocketSettings {
        self.inner.audio
    }

    /// The calls of this bot that have not ended, with their state and media figures.
    pub fn calls(&self) -> Vec<CallSummary> {
        let mut calls = lock(&self.inner.calls);
        self.inner.prune(&mut calls);
        calls
            .iter()
            .map(|(id, t)| CallSummary {
                id: id.clone(),
                state: t.graph.state(),
                media: t.media.clone().filter(|m| !m.is_removed()),
            })
            .collect()
    }

    /// The live calls and the ended calls' totals at one instant, for [`crate::metrics`].
    pub(crate) fn metrics_view(&self) -> crate::metrics::View {
        let mut calls = lock(&self.inner.calls);
        self.inner.prune(&mut calls);
        self.inner
            .ledger
            .view(calls.values().map(|t| (t.graph.state(), t.media.as_ref())))
    }

    /// Stops the webhook and the media platform once every clone of the bot is gone (calls
    /// still held keep their handles but their media ends).
    pub async fn shutdown(self) {
        if let Some(stop) = lock(&self.inner.webhook_stop).take() {
            let _ = stop.send(());
        }
        let platform = self.inner.platform.clone();
        drop(self);
        platform.shutdown().await;
    }

    fn session(
        &self,
        audio: AudioSocketSettings,
        media: Option<SessionMediaSettings>,
    ) -> Result<MediaSession, SessionError> {
        let session = match media {
            Some(m) => self
                .inner
                .platform
                .create_session_with_settings(audio, None, m),
            None => self.inner.platform.create_session(audio, None),
        };
        self.inner.ledger.admission(&session);
        session
    }

    fn track(&self, call: signalling::Call, session: MediaSession) -> BotCall {
        lock(&self.inner.calls).insert(
            call.id().clone(),
            Tracked {
                graph: call.handle().clone(),
                media: Some(session.observer()),
            },
        );
        let speakers = Speakers::from_roster(&call.handle().roster());
        BotCall {
            call,
            session: Some(session),
            speakers,
            bot: Arc::downgrade(&self.inner),
            hang_up_on_drop: self.inner.hang_up_on_drop,
            terminated: false,
            done: false,
        }
    }
}

/// One item of a call's stream: a received frame, a call event or a media event.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a frame is the common case; boxing it would allocate per frame
#[non_exhaustive]
pub enum CallItem {
    /// A received 20 ms frame: the mix of everyone the bot hears, and in a meeting with
    /// unmixed audio on, the dominant speakers apart ([`ReceivedFrame::unmixed`];
    /// [`BotCall::unmixed`] says whose they are).
    Frame(ReceivedFrame),
    /// The Graph call moved: state, roster, a tone the service detected, an operation, or
    /// [`CallEvent::Terminated`] (the last item).
    Call(CallEvent),
    /// The audio socket: send status, dominant speaker, DTMF received in the media, link
    /// quality, the media leg ending.
    Media(AudioSocketEvent),
}

/// A call of the bot with its audio. Derefs to the Graph call's
/// [`CallHandle`](signalling::CallHandle) for the call's actions (transfer, prompts, tones,
/// participants, roster). Dropping it before the call ended hangs up.
pub struct BotCall {
    call: signalling::Call,
    session: Option<MediaSession>,
    bot: Weak<Inner>,
    /// The roster's audio source ids, kept up to date from the call's roster events.
    speakers: Speakers,
    hang_up_on_drop: bool,
    /// The call reached `terminated` (its media is released).
    terminated: bool,
    /// Everything was read.
    done: bool,
}

impl std::fmt::Debug for BotCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotCall")
            .field("id", self.call.id())
            .field("state", &self.call.state())
            .field("media", &self.session.is_some())
            .finish()
    }
}

impl std::ops::Deref for BotCall {
    type Target = signalling::CallHandle;

    fn deref(&self) -> &signalling::CallHandle {
        self.call.handle()
    }
}

impl BotCall {
    /// The next frame or event; `None` after [`CallEvent::Terminated`] was returned.
    /// Frames come every 20 ms while the call has media.
    pub async fn next(&mut self) -> Option<CallItem> {
        if self.done {
            return None;
        }
        loop {
            if let Some(e) = self.call.try_next_event() {
                return Some(self.on_call_event(e));
            }
            let Self { call, session, .. } = self;
            let item = match session {
                Some(session) => {
                    tokio::select! {
                        biased;
                        e = call.next_event() => Err(e),
                        item = session.audio_socket().next() => Ok(item),
                    }
                }
                None => Err(call.next_event().await),
            };
            match item {
                Err(Some(e)) => return Some(self.on_call_event(e)),
                Err(None) => {
                    // The client is gone: nothing more will come.
                    self.finish();
                    return None;
                }
                Ok(Some(AudioSocketItem::Frame(frame))) => return Some(CallItem::Frame(frame)),
                Ok(Some(AudioSocketItem::Event(e))) => return Some(CallItem::Media(e)),
                // The media leg is over; the call's own events still come.
                Ok(None) => self.release_media(),
            }
        }
    }

    fn on_call_event(&mut self, e: CallEvent) -> CallItem {
        match &e {
            CallEvent::RosterChanged(diff) => self.speakers.apply(diff),
            CallEvent::Terminated { .. } => self.finish(),
            _ => {}
        }
        CallItem::Call(e)
    }

    fn finish(&mut self) {
        self.terminated = true;
        self.done = true;
        self.release_media();
        if let Some(bot) = self.bot.upgrade() {
            bot.untrack(self.call.id());
        }
    }

    fn release_media(&mut self) {
        if let Some(session) = self.session.take() {
            tracing::debug!(call = %self.call.id(), session = %session.id(), "media released");
        }
    }

    /// Queues a frame to send; it leaves on the next free 20 ms tick. Never blocks: a full
    /// queue, or a call without media any more, hands the frame back.
    #[allow(clippy::result_large_err)] // hands the frame back, like the socket
    pub fn send(&mut self, frame: Pcm16K) -> Result<(), SendError> {
        match &mut self.session {
            Some(s) => s.audio_socket().send(frame),
            None => Err(SendError::Removed(frame)),
        }
    }

    /// Sends a DTMF tone in the media (RFC 4733) lasting `duration`.
    pub fn send_dtmf(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        match &self.session {
            Some(s) => s.socket().send_dtmf(tone, duration),
            None => Err(ToneError::Ended),
        }
    }

    /// The audio socket, while the call has media.
    pub fn audio_socket(&mut self) -> Option<&mut AudioSocket> {
        self.session.as_mut().map(MediaSession::audio_socket)
    }

    /// The media session (blob, contexts, socket), while the call has media.
    pub fn media_session(&mut self) -> Option<&mut MediaSession> {
        self.session.as_mut()
    }

    /// Link quality and pipeline counters, while the call has media.
    pub fn quality(&mut self) -> Option<Quality> {
        self.audio_socket().map(AudioSocket::quality)
    }

    /// Hangs up (unless the call already ended) and reads the stream to its end, so that
    /// when this returns the service has confirmed the end; returns how the call ended.
    /// Frames and events read meanwhile are dropped.
    pub async fn end(&mut self) -> Result<Option<signalling::model::ResultInfo>, BotError> {
        if !self.done && !self.call.is_terminated() {
            self.call.handle().hang_up().await?;
        }
        let mut result = None;
        while let Some(item) = self.next().await {
            if let CallItem::Call(CallEvent::Terminated { result: r }) = item {
                result = r;
            }
        }
        Ok(result.or_else(|| self.call.result()))
    }

    /// Whether the call has ended (its media is released).
    pub fn is_ended(&self) -> bool {
        self.terminated || self.call.is_terminated()
    }

    /// The Graph call's handle (also reachable through `Deref`).
    pub fn graph(&self) -> &signalling::CallHandle {
        self.call.handle()
    }

    /// The call's speakers by media source id, as of the roster events [`Self::next`] has
    /// returned (a roster change is applied before the item that carries it is returned).
    pub fn speakers(&self) -> &Speakers {
        &self.speakers
    }

    /// The participant whose audio has media source id `source_id` (an
    /// [`UnmixedFrame::source_id`](crate::UnmixedFrame::source_id), a CSRC of the mix, a
    /// [`AudioSocketEvent::DominantSpeakerChanged`] id); `None` for an id the roster does
    /// not list (yet: a roster notification can lag the media by a moment).
    pub fn speaker(&self, source_id: u32) -> Option<&Speaker> {
        self.speakers.get(source_id)
    }

    /// `frame`'s unmixed speaker entries, in stream order, each with the participant it
    /// belongs to. Empty unless the call asked for unmixed audio and the service sends it
    /// ([`AudioSocketEvent::UnmixedAudio`]). Allocates nothing.
    ///
    /// ```no_run
    /// # async fn demo(mut call: botmedia::BotCall) {
    /// use botmedia::CallItem;
    ///
    /// while let Some(item) = call.next().await {
    ///     if let CallItem::Frame(frame) = item {
    ///         for entry in call.unmixed(&frame) {
    ///             let who = entry.speaker.map_or("someone not in the roster yet", |s| s.label());
    ///             println!("{who}: level {:?}", entry.frame.level);
    ///         }
    ///     }
    /// }
    /// # }
    /// ```
    pub fn unmixed<'a>(&'a self, frame: &'a ReceivedFrame) -> SpeakerFrames<'a> {
        self.speakers.attribute(&frame.unmixed)
    }
}

impl Drop for BotCall {
    fn drop(&mut self) {
        if let Some(bot) = self.bot.upgrade() {
            bot.untrack(self.call.id());
        }
        if self.terminated || self.call.is_terminated() || !self.hang_up_on_drop {
            return;
        }
        let handle = self.call.handle().clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                match handle.hang_up().await {
                    Ok(()) => tracing::info!(call = %handle.id(), "hung up a dropped call"),
                    Err(e) => {
                        tracing::warn!(call = %handle.id(), error = %e, "hanging up a dropped call failed")
                    }
                }
            });
        }
    }
}

/// A call ringing the bot, waiting for its answer. Dropping it undecided rejects it (busy).
pub struct IncomingBotCall {
    call: signalling::IncomingCall,
    bot: Bot,
}

impl std::fmt::Debug for IncomingBotCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingBotCall")
            .field("id", &self.call.id())
            .finish_non_exhaustive()
    }
}

impl IncomingBotCall {
    /// The call's id.
    pub fn id(&self) -> Option<&CallId> {
        self.call.id()
    }

    /// Who calls.
    pub fn source(&self) -> Option<&ParticipantInfo> {
        self.call.source()
    }

    /// The call resource as notified (targets, meeting, incoming context).
    pub fn resource(&self) -> &signalling::model::Call {
        self.call.resource()
    }

    /// Answers with app-hosted media and the bot's audio settings.
    pub async fn answer(self) -> Result<BotCall, BotError> {
        let audio = self.bot.inner.audio;
        self.answer_with(audio, None).await
    }

    /// Answers with app-hosted media, this audio socket and these media settings.
    pub async fn answer_with(
        self,
        audio: AudioSocketSettings,
        media: Option<SessionMediaSettings>,
    ) -> Result<BotCall, BotError> {
        let session = self.bot.session(audio, media)?;
        let call = self
            .call
            .answer_app_hosted(session.description(), None)
            .await?;
        tracing::info!(call = %call.id(), session = %session.id(), "call answered");
        Ok(self.bot.track(call, session))
    }

    /// Rejects the call.
    pub async fn reject(self, reason: RejectReason) -> Result<(), BotError> {
        Ok(self.call.reject(reason).await?)
    }

    /// Redirects the call to `targets`.
    pub async fn redirect(
        self,
        targets: &[InvitationParticipantInfo],
        timeout_seconds: Option<u32>,
    ) -> Result<(), BotError> {
        Ok(self.call.redirect(targets, timeout_seconds).await?)
    }

    /// The Graph client's incoming call, for answers the bot API does not wrap (service-hosted
    /// media, say).
    pub fn into_inner(self) -> signalling::IncomingCall {
        self.call
    }
}
