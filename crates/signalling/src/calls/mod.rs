//! The bot-facing API: a communications client built from settings, calls created or
//! received, each with its own ordered notification queue, state machine and event stream.

mod join_url;
mod request;
mod state;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::{
    AnswerOptions, ApiError, GraphClient, GraphClientConfig, Prompt, RecordOptions, RejectReason,
    RetryPolicy, ScreenSharingRole,
};
use crate::ids::{CallId, ParticipantId};
use crate::model::{
    Call as CallResource, CallState, ChangeType, CommsNotification, CommsNotifications,
    CommsOperation, InvitationParticipantInfo, MediaConfig, Participant, ParticipantInfo,
    RecordingStatus, ResourceData, ResultInfo, Tone,
};
use crate::token::{ClientCredentials, ClientCredentialsProvider, SecretString, TokenProvider};
use crate::webhook::{
    CallbackAuth, CallbackAuthConfig, CallbackClaims, NotificationSink, Overloaded,
    WebhookCounters, WebhookStats,
};
use crate::{RequestError, UriProblem};

pub use self::join_url::JoinWebUrl;
pub use self::request::{CallRequest, invitation, invite_phone, invite_user};
pub use self::state::{
    CallAction, CallEvent, CallStateMachine, DEFAULT_KEEP_ALIVE_INTERVAL, MAX_ROSTER, RosterDiff,
    call_id_of,
};

/// Notifications queued per call before the webhook answers 503.
pub const CALL_QUEUE: usize = 256;
/// Events buffered per call for the bot.
pub const EVENT_QUEUE: usize = 1024;
/// Incoming calls buffered for the bot.
const INCOMING_QUEUE: usize = 64;
/// Ended calls remembered so that late notifications about them are dropped.
const ENDED_REMEMBERED: usize = 4096;
/// Calls known at once; past this, notifications about new calls get 503.
pub const MAX_CALLS: usize = 10_000;
/// How long a bot has to answer, reject or redirect an incoming call.
pub const INCOMING_CALL_WINDOW: Duration = Duration::from_secs(15);
/// Default of [`CommunicationsSettings::unclaimed_call_ttl`].
pub const DEFAULT_UNCLAIMED_CALL_TTL: Duration = Duration::from_secs(120);
/// Ids of unclaimed calls remembered after they were forgotten, so that their later
/// notifications are dropped instead of making them new again.
const FORGOTTEN_REMEMBERED: usize = 4096;

/// The app-hosted `mediaConfig` of a media session.
pub(crate) fn media_config_of(session: &media_session::MediaSession) -> MediaConfig {
    MediaConfig::app_hosted(session.blob().to_json())
}

/// How the bot authenticates to Graph.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Credentials {
    /// Client credentials with this secret.
    Secret(SecretString),
    /// Tokens from this provider.
    Provider(Arc<dyn TokenProvider>),
}

/// Everything a [`CommunicationsClient`] needs.
#[derive(Clone, Debug)]
pub struct CommunicationsSettings {
    /// The bot's app id (the audience of its callbacks).
    pub app_id: String,
    /// The bot's tenant.
    pub tenant: String,
    /// How it gets tokens.
    pub credentials: Credentials,
    /// The token endpoint template (`{tenant}` substituted).
    pub authority: String,
    /// The Graph API base.
    pub graph_url: String,
    /// The OpenID configuration of callback tokens.
    pub openid_configuration_url: String,
    /// Accepted callback issuers.
    pub callback_issuers: Vec<String>,
    /// Tenant required in callback tokens (`None`: any tenant, for multi-tenant bots).
    pub callback_tenant: Option<String>,
    /// Shortest time between two fetches of the callback signing keys caused by tokens with
    /// an unknown `kid`.
    pub callback_key_refresh_interval: Duration,
    /// Where the service sends notifications about the calls this client places or answers
    /// (the webhook's public URL): the `callbackUri` of every create, answer and redirect.
    /// In a fleet, each instance's own URL (`https://bot.contoso.com/callback/botmedia-1`),
    /// so that every notification about a call reaches the instance that holds its media.
    pub notification_url: String,
    /// The app's registered calling webhook when it differs from [`Self::notification_url`]:
    /// the URL a fleet shares behind a load balancer (`https://bot.contoso.com/callback`),
    /// where the service delivers new incoming calls to any instance. The webhook router
    /// also answers at its path, with the same dispatcher; an incoming call taken there is
    /// answered naming [`Self::notification_url`], so its later notifications come to this
    /// client. `None`: the webhook answers at the notification URL's path only.
    pub shared_notification_url: Option<String>,
    /// The media platform, for app-hosted calls (used by the media facade).
    pub media_platform: Option<media_session::MediaPlatformSettings>,
    /// Interval of automatic keepAlive requests. They are sent only for calls a handle
    /// claimed (a call this client placed, or an incoming call it offered to the bot): a
    /// notification about a call nobody here holds (a call of an earlier run of this
    /// instance, whose media is gone) never keeps that call alive.
    pub keep_alive_interval: Duration,
    /// How long a call that notifications told of but that no handle claimed is kept (its
    /// notifications applied, no keepAlive sent) before it is forgotten; its later
    /// notifications are then answered and dropped. A call placed by this client is claimed
    /// when its create request returns, so this must exceed the longest create request
    /// (notifications may come before the service's answer). Unclaimed calls are reported
    /// ([`WebhookStats::unclaimed_calls`], one INFO line each) once they have gone
    /// unclaimed for [`Self::request_timeout`] or ended, whichever comes first.
    pub unclaimed_call_ttl: Duration,
    /// Timeout of one Graph request.
    pub request_timeout: Duration,
    /// Retries of Graph requests.
    pub retry: RetryPolicy,
    /// PEM certificates trusted besides the system's CA certificates by the HTTP client
    /// that [`CommunicationsClient::new`] builds (for Graph, the token endpoint and the
    /// callback keys): a test server's self-signed certificate, or a TLS-inspecting proxy's
    /// root. `None`: the system's only. Ignored by [`CommunicationsClient::with_http_client`].
    pub extra_root_certificates: Option<String>,
}

impl CommunicationsSettings {
    /// Settings for the real service: Graph v1.0, the Microsoft identity platform, the
    /// calling service's OpenID configuration.
    pub fn new(
        app_id: impl Into<String>,
        tenant: impl Into<String>,
        credentials: Credentials,
        notification_url: impl Into<String>,
    ) -> Self {
        let tenant = tenant.into();
        CommunicationsSettings {
            app_id: app_id.into(),
            callback_tenant: Some(tenant.clone()),
            tenant,
            credentials,
            authority: crate::token::DEFAULT_AUTHORITY.to_owned(),
            graph_url: crate::client::GRAPH_V1.to_owned(),
            openid_configuration_url: crate::webhook::DEFAULT_OPENID_CONFIGURATION.to_owned(),
            callback_issuers: crate::webhook::DEFAULT_ISSUERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            callback_key_refresh_interval: Duration::from_secs(30),
            notification_url: notification_url.into(),
            shared_notification_url: None,
            media_platform: None,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            unclaimed_call_ttl: DEFAULT_UNCLAIMED_CALL_TTL,
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            extra_root_certificates: None,
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::client::HttpClientError),
    /// The notification URL is not acceptable as a callback URI.
    #[error("notification URL is invalid: {0}")]
    NotificationUrl(UriProblem),
    /// The shared notification URL is not acceptable as a callback URI.
    #[error("shared notification URL is invalid: {0}")]
    SharedNotificationUrl(UriProblem),
}

/// Why a call could not be created.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CreateError {
    /// The request would be refused by the service; nothing was sent.
    #[error("invalid create-call request: {0}")]
    Invalid(#[from] RequestError),
    /// The service refused or could not be reached.
    #[error(transparent)]
    Api(#[from] ApiError),
}

type ReleaseHook = Box<dyn FnOnce() + Send + 'static>;

/// What a call's task shares with its handles.
struct CallShared {
    snapshot: Mutex<Snapshot>,
    release: Mutex<Option<ReleaseHook>>,
    /// Whether a bot holds the event stream; until then events beyond the buffer are
    /// dropped rather than waited for (a call the bot does not know must not stall), and
    /// no keepAlive is sent. Set under the registry's lock.
    claimed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Snapshot {
    state: Option<CallState>,
    roster: Vec<Participant>,
    lobby: Vec<ParticipantId>,
    result: Option<ResultInfo>,
    resource: CallResource,
    terminated: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CallShared {
    fn is_claimed(&self) -> bool {
        self.claimed.load(std::sync::atomic::Ordering::Acquire)
    }

    fn release_media(&self) {
        let hook = lock(&self.release).take();
        if let Some(hook) = hook {
            hook();
        }
    }
}

enum Input {
    Notification(Box<CommsNotification>),
    Resource(Box<CallResource>),
    Operation(Box<CommsOperation>),
}

struct Slot {
    queue: mpsc::Sender<Input>,
    shared: Arc<CallShared>,
    unclaimed_events: Option<mpsc::Receiver<CallEvent>>,
}

#[derive(Default)]
struct Registry {
    /// Calls not yet ended.
    calls: HashMap<CallId, Slot>,
    /// Ids of ended calls, oldest first, and the same as a set: a late or repeated
    /// notification for one is dropped instead of starting a new call. Only the id is
    /// kept (a slot with its queues and last resource is several KiB); the bot's own
    /// handles keep the final state.
    ended: VecDeque<CallId>,
    ended_ids: HashSet<CallId>,
    /// Ids of calls forgotten unclaimed ([`CommunicationsSettings::unclaimed_call_ttl`]),
    /// oldest first, and the same as a set: their notifications are dropped, but a claim
    /// (a create request answered with that id, at last) makes the call anew.
    forgotten: VecDeque<CallId>,
    forgotten_ids: HashSet<CallId>,
}

impl Registry {
    fn remember(ids: &mut VecDeque<CallId>, set: &mut HashSet<CallId>, id: CallId, cap: usize) {
        if set.insert(id.clone()) {
            ids.push_back(id);
        }
        while ids.len() > cap {
            if let Some(old) = ids.pop_front() {
                set.remove(&old);
            }
        }
    }
}

struct Inner {
    settings: CommunicationsSettings,
    graph: GraphClient,
    auth: Arc<CallbackAuth>,
    webhook_counters: Arc<WebhookCounters>,
    registry: Mutex<Registry>,
    incoming_tx: mpsc::Sender<IncomingCall>,
    incoming_rx: Mutex<Option<mpsc::Receiver<IncomingCall>>>,
}

/// The bot's entry point: Graph client, webhook and the calls it knows. Cheap to clone.
#[derive(Clone)]
pub struct CommunicationsClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for CommunicationsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommunicationsClient")
            .field("app_id", &self.inner.settings.app_id)
            .field("graph_url", &self.inner.settings.graph_url)
            .finish_non_exhaustive()
    }
}

impl CommunicationsClient {
    /// A client with its own HTTP client ([`crate::client::http_client`]: HTTPS with the
    /// system's CA certificates and [`CommunicationsSettings::extra_root_certificates`], plain
    /// HTTP to `http://` URLs).
    pub fn new(settings: CommunicationsSettings) -> Result<Self, BuildError> {
        let http = match &settings.extra_root_certificates {
            Some(pem) => crate::client::http_client_with_roots(pem.as_bytes())?,
            None => crate::client::http_client()?,
        };
        Self::with_http_client(settings, http)
    }

    /// A client sending through `http`.
    pub fn with_http_client(
        settings: CommunicationsSettings,
        http: reqwest::Client,
    ) -> Result<Self, BuildError> {
        crate::check_callback_uri(&settings.notification_url)
            .map_err(BuildError::NotificationUrl)?;
        if let Some(shared) = &settings.shared_notification_url {
            crate::check_callback_uri(shared).map_err(BuildError::SharedNotificationUrl)?;
        }
        let tokens: Arc<dyn TokenProvider> = match &settings.credentials {
            Credentials::Provider(p) => p.clone(),
            Credentials::Secret(secret) => Arc::new(ClientCredentialsProvider::new(
                ClientCredentials::new(
                    settings.tenant.clone(),
                    settings.app_id.clone(),
                    secret.clone(),
                )
                .with_authority(settings.authority.clone()),
                http.clone(),
            )),
        };
        let graph = GraphClient::new(
            GraphClientConfig {
                base_url: settings.graph_url.clone(),
                timeout: settings.request_timeout,
                retry: settings.retry,
            },
            tokens,
            http.clone(),
        );
        let mut auth_config = CallbackAuthConfig::new(settings.app_id.clone());
        auth_config.openid_configuration_url = settings.openid_configuration_url.clone();
        auth_config.issuers = settings.callback_issuers.clone();
        auth_config.tenant = settings.callback_tenant.clone();
        auth_config.min_refresh_interval = settings.callback_key_refresh_interval;
        let auth = Arc::new(CallbackAuth::new(auth_config, http));
        let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
        Ok(CommunicationsClient {
            inner: Arc::new(Inner {
                settings,
                graph,
                auth,
                webhook_counters: Arc::default(),
                registry: Mutex::new(Registry::default()),
                incoming_tx,
                incoming_rx: Mutex::new(Some(incoming_rx)),
            }),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &CommunicationsSettings {
        &self.inner.settings
    }

    /// The Graph client (for requests this API does not wrap).
    pub fn graph(&self) -> &GraphClient {
        &self.inner.graph
    }

    /// The callback verifier.
    pub fn callback_auth(&self) -> &Arc<CallbackAuth> {
        &self.inner.auth
    }

    /// Calls: create one, find one.
    pub fn calls(&self) -> Calls<'_> {
        Calls { client: self }
    }

    /// The stream of incoming calls; `None` after the first call (one consumer).
    pub fn incoming_calls(&self) -> Option<IncomingCalls> {
        lock(&self.inner.incoming_rx)
            .take()
            .map(|rx| IncomingCalls { rx })
    }

    /// The webhook, routed at the path of the notification URL and, when set, at the path
    /// of [`CommunicationsSettings::shared_notification_url`] (both to the same calls):
    /// merge it into the bot's app, or serve it alone.
    pub fn webhook_router(&self) -> axum::Router {
        crate::webhook::router_at_with_counters(
            &self.webhook_paths(),
            self.inner.auth.clone(),
            Arc::new(Dispatcher {
                inner: Arc::downgrade(&self.inner),
            }),
            self.inner.webhook_counters.clone(),
        )
    }

    /// The paths [`Self::webhook_router`] answers at: the notification URL's, then the
    /// shared notification URL's when it is set and differs.
    pub fn webhook_paths(&self) -> Vec<String> {
        let settings = &self.inner.settings;
        let mut paths = vec![path_of(&settings.notification_url)];
        if let Some(shared) = &settings.shared_notification_url {
            let shared = path_of(shared);
            if !paths.contains(&shared) {
                paths.push(shared);
            }
        }
        paths
    }

    /// What the webhook routers of [`Self::webhook_router`] did so far (all of them, if it
    /// was called more than once): requests accepted, requests refused by reason,
    /// notifications dispatched to the calls. For a metrics endpoint; each call reads the
    /// counters anew.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.inner.webhook_counters.stats()
    }

    /// The notification sink behind [`Self::webhook_router`], for bots with their own HTTP
    /// stack.
    pub fn notification_sink(&self) -> Arc<dyn NotificationSink> {
        Arc::new(Dispatcher {
            inner: Arc::downgrade(&self.inner),
        })
    }
}

/// The path of a URL (`/` when it has none).
fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let path = path.split(['?', '#']).next().unwrap_or("/");
    if path.is_empty() {
        "/".to_owned()
    } else {
        path.to_owned()
    }
}

/// Creates and finds calls.
#[derive(Debug)]
pub struct Calls<'a> {
    client: &'a CommunicationsClient,
}

impl Calls<'_> {
    /// Places a call: validates the request locally, POSTs it, and returns the call with its
    /// event stream.
    pub async fn create(&self, request: &CallRequest) -> Result<Call, CreateError> {
        let inner = &self.client.inner;
        let resource = request.build(&inner.settings.notification_url);
        crate::check_call(&resource)?;
        let created = inner.graph.create_call(&resource).await?;
        let call = match claim(inner, &created.id, true) {
            Claim::Call(call) => call,
            Claim::Full => {
                return Err(CreateError::Api(ApiError::BadResponse {
                    status: 201,
                    problem: "too many calls are open",
                }));
            }
            Claim::Ended | Claim::Forgotten => {
                return Err(CreateError::Api(ApiError::BadResponse {
                    status: 201,
                    problem: "the service answered with the id of a call that has ended",
                }));
            }
        };
        let _ = call
            .handle
            .queue
            .try_send(Input::Resource(Box::new(created.call)));
        Ok(call)
    }

    /// A handle on a call this client knows and that has not ended (a handle the bot
    /// already holds keeps the final state of its call).
    pub fn get(&self, id: &CallId) -> Option<CallHandle> {
        let inner = &self.client.inner;
        let registry = lock(&inner.registry);
        registry.calls.get(id).map(|slot| CallHandle {
            id: id.clone(),
            graph: inner.graph.clone(),
            shared: slot.shared.clone(),
            queue: slot.queue.clone(),
        })
    }

    /// Ids of the calls this client knows that have not ended.
    pub fn ids(&self) -> Vec<CallId> {
        lock(&self.client.inner.registry)
            .calls
            .keys()
            .cloned()
            .collect()
    }
}

/// What [`claim`] found.
enum Claim {
    /// The call, created if it was new.
    Call(Call),
    /// The call has ended; nothing was created.
    Ended,
    /// The call was forgotten unclaimed and this is no claim; nothing was created.
    Forgotten,
    /// [`MAX_CALLS`] calls are open; nothing was created.
    Full,
}

/// Finds or starts the call's task. With `take_events`, claims the call: takes its event
/// stream (the first claim only) and lets its keepAlives go out.
fn claim(inner: &Arc<Inner>, id: &CallId, take_events: bool) -> Claim {
    let mut registry = lock(&inner.registry);
    if registry.ended_ids.contains(id) {
        return Claim::Ended;
    }
    if registry.forgotten_ids.contains(id) {
        if !take_events {
            return Claim::Forgotten;
        }
        registry.forgotten_ids.remove(id);
        registry.forgotten.retain(|f| f != id);
    }
    if !registry.calls.contains_key(id) {
        if registry.calls.len() >= MAX_CALLS {
            return Claim::Full;
        }
        let slot = spawn_call(inner, id.clone());
        registry.calls.insert(id.clone(), slot);
    }
    let Some(slot) = registry.calls.get_mut(id) else {
        return Claim::Full;
    };
    let events = if take_events {
        let events = slot.unclaimed_events.take();
        if events.is_some() {
            slot.shared
                .claimed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        events
    } else {
        None
    };
    let handle = CallHandle {
        id: id.clone(),
        graph: inner.graph.clone(),
        shared: slot.shared.clone(),
        queue: slot.queue.clone(),
    };
    Claim::Call(Call {
        handle,
        // A second claim gets a closed stream: events went to the first.
        events: events.unwrap_or_else(|| mpsc::channel(1).1),
    })
}

fn spawn_call(inner: &Arc<Inner>, id: CallId) -> Slot {
    let (queue, rx) = mpsc::channel(CALL_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let shared = Arc::new(CallShared {
        snapshot: Mutex::new(Snapshot::default()),
        release: Mutex::new(None),
        claimed: std::sync::atomic::AtomicBool::new(false),
    });
    let machine = CallStateMachine::new(id.clone(), inner.settings.keep_alive_interval);
    let now = Instant::now();
    let unclaimed = Unclaimed {
        report_at: now + inner.settings.request_timeout,
        forget_at: now + inner.settings.unclaimed_call_ttl,
        reported: false,
    };
    tokio::spawn(run_call(
        Arc::downgrade(inner),
        inner.graph.clone(),
        machine,
        rx,
        events_tx,
        shared.clone(),
        unclaimed,
    ));
    Slot {
        queue,
        shared,
        unclaimed_events: Some(events_rx),
    }
}

/// When a call's task reports and forgets its call while no handle claimed it.
struct Unclaimed {
    report_at: Instant,
    forget_at: Instant,
    reported: bool,
}

impl Unclaimed {
    /// The next time the task must look at the call's claim; `None` once claimed.
    fn wake(&self, claimed: bool) -> Option<Instant> {
        match (claimed, self.reported) {
            (true, _) => None,
            (false, false) => Some(self.report_at.min(self.forget_at)),
            (false, true) => Some(self.forget_at),
        }
    }

    /// Logs and counts the call once, if nobody claimed it.
    fn report(&mut self, inner: &Weak<Inner>, machine: &CallStateMachine) {
        if self.reported {
            return;
        }
        self.reported = true;
        tracing::info!(
            call = %machine.id(),
            state = machine.state().map(CallState::as_str),
            "notifications about a call no handle here claimed (a call of an earlier run of \
             this instance?): answered, no keepAlive sent"
        );
        if let Some(inner) = inner.upgrade() {
            inner.webhook_counters.unclaimed_call();
        }
    }
}

/// Forgets an unclaimed call: its slot goes, its id is remembered as forgotten. False
/// when it was claimed meanwhile (checked under the lock claims take).
fn forget(inner: &Weak<Inner>, shared: &CallShared, id: &CallId) -> bool {
    let Some(inner) = inner.upgrade() else {
        return true;
    };
    let mut registry = lock(&inner.registry);
    if shared.is_claimed() {
        return false;
    }
    registry.calls.remove(id);
    let Registry {
        forgotten,
        forgotten_ids,
        ..
    } = &mut *registry;
    Registry::remember(forgotten, forgotten_ids, id.clone(), FORGOTTEN_REMEMBERED);
    tracing::debug!(call = %id, "unclaimed call forgotten");
    true
}

async fn run_call(
    inner: Weak<Inner>,
    graph: GraphClient,
    mut machine: CallStateMachine,
    mut rx: mpsc::Receiver<Input>,
    events: mpsc::Sender<CallEvent>,
    shared: Arc<CallShared>,
    mut unclaimed: Unclaimed,
) {
    let id = machine.id().clone();
    loop {
        let wake = machine.poll_timeout();
        let check = unclaimed.wake(shared.is_claimed());
        let input = tokio::select! {
            input = rx.recv() => match input {
                Some(input) => input,
                None => break,
            },
            () = sleep_until(wake), if wake.is_some() => {
                if machine.handle_timeout(Instant::now()) == Some(CallAction::SendKeepAlive) {
                    if shared.is_claimed() {
                        // Off the queue: a slow keepAlive must not hold up notifications.
                        let (graph, id) = (graph.clone(), id.clone());
                        tokio::spawn(async move {
                            if let Err(e) = graph.keep_alive(&id).await {
                                tracing::warn!(call = %id, error = %e, "keepAlive failed");
                            }
                        });
                    } else {
                        // Nobody here holds the call (yet): keeping it alive at the
                        // service would keep a call without media going.
                        tracing::debug!(call = %id, "keepAlive of an unclaimed call skipped");
                    }
                }
                continue;
            }
            () = sleep_until(check), if check.is_some() => {
                if shared.is_claimed() {
                    continue;
                }
                let now = Instant::now();
                if now >= unclaimed.report_at {
                    unclaimed.report(&inner, &machine);
                }
                if now >= unclaimed.forget_at && forget(&inner, &shared, &id) {
                    unclaimed.report(&inner, &machine);
                    return;
                }
                continue;
            }
        };
        let now = Instant::now();
        let produced = match input {
            Input::Notification(n) => machine.apply(&n, now),
            Input::Resource(c) => machine.apply_resource(&c, now),
            Input::Operation(o) => machine.track_operation(&o, now),
        };
        if produced.is_empty() {
            continue;
        }
        {
            let mut snap = lock(&shared.snapshot);
            snap.state = machine.state().cloned();
            snap.roster = machine.roster().cloned().collect();
            snap.lobby = machine.lobby();
            snap.result = machine.result().cloned();
            snap.resource = machine.call();
            snap.terminated = machine.is_terminated();
        }
        if machine.is_terminated() {
            shared.release_media();
        }
        for event in produced {
            if shared.claimed.load(std::sync::atomic::Ordering::Acquire) {
                // The bot may have dropped its stream; its events are then discarded.
                let _ = events.send(event).await;
            } else if events.try_send(event).is_err() {
                tracing::debug!(call = %id, "event of an unclaimed call dropped");
            }
        }
        if machine.is_terminated() {
            break;
        }
    }
    if machine.is_terminated() && !shared.is_claimed() {
        unclaimed.report(&inner, &machine);
    }
    if let Some(inner) = inner.upgrade() {
        let mut registry = lock(&inner.registry);
        registry.calls.remove(&id);
        let Registry {
            ended, ended_ids, ..
        } = &mut *registry;
        Registry::remember(ended, ended_ids, id, ENDED_REMEMBERED);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Routes notifications to the calls' queues.
struct Dispatcher {
    inner: Weak<Inner>,
}

impl NotificationSink for Dispatcher {
    fn deliver(
        &self,
        _claims: &CallbackClaims,
        notifications: CommsNotifications,
    ) -> Result<(), Overloaded> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(Overloaded);
        };
        let mut result = Ok(());
        for n in notifications.value.into_option().unwrap_or_default() {
            let Some(id) = n.resource_path().and_then(call_id_of) else {
                tracing::debug!("notification without a call resource ignored");
                continue;
            };
            let incoming = n.change_type.get() == Some(&ChangeType::Created)
                && n.resource_data
                    .get()
                    .and_then(ResourceData::call)
                    .is_some_and(|c| c.state.get() == Some(&CallState::Incoming));
            let known = lock(&inner.registry).calls.contains_key(&id);
            let resource = incoming.then(|| {
                n.resource_data
                    .get()
                    .and_then(ResourceData::call)
                    .cloned()
                    .unwrap_or_default()
            });
            let call = match claim(&inner, &id, incoming && !known) {
                Claim::Call(call) => call,
                Claim::Ended => {
                    tracing::debug!(call = %id, "notification for an ended call ignored");
                    continue;
                }
                Claim::Forgotten => {
                    tracing::debug!(call = %id, "notification for a forgotten unclaimed call ignored");
                    continue;
                }
                Claim::Full => {
                    result = Err(Overloaded);
                    continue;
                }
            };
            match call.handle.queue.try_send(Input::Notification(Box::new(n))) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => result = Err(Overloaded),
                // The call's task has ended: a late or duplicated notification.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
            if let (Some(resource), false) = (resource, known) {
                offer_incoming(&inner, call, resource);
            }
        }
        result
    }
}

fn offer_incoming(inner: &Arc<Inner>, call: Call, resource: CallResource) {
    let incoming = IncomingCall {
        call: Some(call),
        resource: Box::new(resource),
        deadline: Instant::now() + INCOMING_CALL_WINDOW,
        callback_uri: inner.settings.notification_url.clone(),
    };
    if let Err(e) = inner.incoming_tx.try_send(incoming) {
        // Nobody takes incoming calls, or too many wait: dropping it rejects it as busy.
        tracing::warn!("incoming call not taken by the bot: {e}");
    }
}

/// The stream of incoming calls.
#[derive(Debug)]
pub struct IncomingCalls {
    rx: mpsc::Receiver<IncomingCall>,
}

impl IncomingCalls {
    /// The next incoming call; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<IncomingCall> {
        self.rx.recv().await
    }
}

/// An incoming call waiting for the bot's decision. Dropping it undecided rejects it.
pub struct IncomingCall {
    call: Option<Call>,
    resource: Box<CallResource>,
    deadline: Instant,
    callback_uri: String,
}

impl fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingCall")
            .field("id", &self.call.as_ref().map(|c| c.id().clone()))
            .finish_non_exhaustive()
    }
}

impl IncomingCall {
    /// The call's id.
    pub fn id(&self) -> Option<&CallId> {
        self.call.as_ref().map(|c| c.id())
    }

    /// The call resource as notified (source, targets, incoming context, ...).
    pub fn resource(&self) -> &CallResource {
        &self.resource
    }

    /// Who calls.
    pub fn source(&self) -> Option<&ParticipantInfo> {
        self.resource.source.get()
    }

    /// When the service stops waiting for an answer.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    fn take(&mut self) -> Result<Call, ApiError> {
        self.call.take().ok_or(ApiError::InvalidArgument {
            name: "incoming call",
            problem: "it was already decided",
        })
    }

    /// Answers with `options`.
    pub async fn answer(mut self, options: AnswerOptions) -> Result<Call, ApiError> {
        let call = self.take()?;
        call.graph.answer(&call.handle.id, &options).await?;
        Ok(call)
    }

    /// Answers with app-hosted media: `session`'s blob goes in the answer; `release` runs
    /// when the call terminates (or at once if the answer fails).
    pub async fn answer_app_hosted(
        mut self,
        session: &media_session::MediaSession,
        release: Option<Box<dyn FnOnce() + Send + 'static>>,
    ) -> Result<Call, ApiError> {
        let call = self.take()?;
        if let Some(release) = release {
            call.set_media_release(release);
        }
        let options = AnswerOptions::new(self.callback_uri.clone(), media_config_of(session));
        match call.graph.answer(&call.handle.id, &options).await {
            Ok(()) => Ok(call),
            Err(e) => {
                call.shared.release_media();
                Err(e)
            }
        }
    }

    /// Answers with service-hosted media.
    pub async fn answer_service_hosted(self) -> Result<Call, ApiError> {
        let options = AnswerOptions::new(self.callback_uri.clone(), MediaConfig::service_hosted());
        self.answer(options).await
    }

    /// Rejects.
    pub async fn reject(mut self, reason: RejectReason) -> Result<(), ApiError> {
        let call = self.take()?;
        call.graph.reject(&call.handle.id, reason, None).await
    }

    /// Redirects to `targets`.
    pub async fn redirect(
        mut self,
        targets: &[InvitationParticipantInfo],
        timeout_seconds: Option<u32>,
    ) -> Result<(), ApiError> {
        let call = self.take()?;
        let cb = self.callback_uri.clone();
        call.graph
            .redirect(&call.handle.id, targets, timeout_seconds, Some(&cb))
            .await
    }
}

impl Drop for IncomingCall {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = call.graph.reject(&call.handle.id, RejectReason::Busy, None).await {
                    tracing::warn!(call = %call.handle.id, error = %e, "rejecting an undecided call failed");
                }
            });
        }
    }
}

/// A call and its event stream. Derefs to its [`CallHandle`].
pub struct Call {
    handle: CallHandle,
    events: mpsc::Receiver<CallEvent>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("id", &self.handle.id)
            .finish_non_exhaustive()
    }
}

impl Call {
    /// The next event, in the order notifications were received; `None` after
    /// [`CallEvent::Terminated`].
    pub async fn next_event(&mut self) -> Option<CallEvent> {
        self.events.recv().await
    }

    /// An event if one is ready.
    pub fn try_next_event(&mut self) -> Option<CallEvent> {
        self.events.try_recv().ok()
    }

    /// A handle for acting on the call from elsewhere.
    pub fn handle(&self) -> &CallHandle {
        &self.handle
    }
}

impl Deref for Call {
    type Target = CallHandle;

    fn deref(&self) -> &CallHandle {
        &self.handle
    }
}

/// Acts on a call and reads its state. Cheap to clone.
#[derive(Clone)]
pub struct CallHandle {
    id: CallId,
    graph: GraphClient,
    shared: Arc<CallShared>,
    queue: mpsc::Sender<Input>,
}

impl fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl CallHandle {
    /// The call's id.
    pub fn id(&self) -> &CallId {
        &self.id
    }

    /// The state as last notified.
    pub fn state(&self) -> Option<CallState> {
        lock(&self.shared.snapshot).state.clone()
    }

    /// True once terminated.
    pub fn is_terminated(&self) -> bool {
        lock(&self.shared.snapshot).terminated
    }

    /// The roster as last notified.
    pub fn roster(&self) -> Vec<Participant> {
        lock(&self.shared.snapshot).roster.clone()
    }

    /// Who waits in the lobby.
    pub fn lobby(&self) -> Vec<ParticipantId> {
        lock(&self.shared.snapshot).lobby.clone()
    }

    /// How the call ended.
    pub fn result(&self) -> Option<ResultInfo> {
        lock(&self.shared.snapshot).result.clone()
    }

    /// The call resource with every notified property merged.
    pub fn resource(&self) -> CallResource {
        lock(&self.shared.snapshot).resource.clone()
    }

    /// Runs `release` when the call terminates (at once if it already has): the owner of
    /// the call's media session frees it there. Replaces an earlier hook, which is dropped.
    pub fn set_media_release(&self, release: Box<dyn FnOnce() + Send + 'static>) {
        *lock(&self.shared.release) = Some(release);
        if self.is_terminated() {
            self.shared.release_media();
        }
    }

    /// The Graph client.
    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    fn track(&self, op: Option<CommsOperation>) -> Option<CommsOperation> {
        if let Some(op) = &op {
            let _ = self.queue.try_send(Input::Operation(Box::new(op.clone())));
        }
        op
    }

    /// Hangs up (`DELETE`); the `terminated` notification follows.
    pub async fn hang_up(&self) -> Result<(), ApiError> {
        self.graph.delete_call(&self.id).await
    }

    /// Fetches the call resource from the service.
    pub async fn fetch(&self) -> Result<CallResource, ApiError> {
        self.graph.get_call(&self.id).await
    }

    /// Transfers the call.
    pub async fn transfer(
        &self,
        target: &InvitationParticipantInfo,
        transferee: Option<&ParticipantInfo>,
    ) -> Result<(), ApiError> {
        self.graph.transfer(&self.id, target, transferee).await
    }

    /// Plays prompts (service-hosted media).
    pub async fn play_prompt(
        &self,
        prompts: &[Prompt],
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .play_prompt(&self.id, prompts, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Records a response (service-hosted media).
    pub async fn record_response(
        &self,
        options: &RecordOptions,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self.graph.record_response(&self.id, options).await?;
        Ok(self.track(op))
    }

    /// Cancels running prompts and recordings.
    pub async fn cancel_media_processing(
        &self,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .cancel_media_processing(&self.id, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Subscribes to DTMF tones; they arrive as [`CallEvent::Tone`].
    pub async fn subscribe_to_tone(
        &self,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .subscribe_to_tone(&self.id, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Sends DTMF tones.
    pub async fn send_dtmf_tones(
        &self,
        tones: &[Tone],
        delay_between_tones_ms: Option<u32>,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .send_dtmf_tones(&self.id, tones, delay_between_tones_ms, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Sends a keepAlive now (they are also sent automatically).
    pub async fn keep_alive(&self) -> Result<(), ApiError> {
        self.graph.keep_alive(&self.id).await
    }

    /// Mutes the bot.
    pub async fn mute(
        &self,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self.graph.mute(&self.id, client_context).await?;
        Ok(self.track(op))
    }

    /// Unmutes the bot.
    pub async fn unmute(
        &self,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self.graph.unmute(&self.id, client_context).await?;
        Ok(self.track(op))
    }

    /// Tells the service whether the bot records.
    pub async fn update_recording_status(
        &self,
        status: &RecordingStatus,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .update_recording_status(&self.id, status, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Changes the bot's screen-sharing role.
    pub async fn change_screen_sharing_role(
        &self,
        role: ScreenSharingRole,
    ) -> Result<(), ApiError> {
        self.graph.change_screen_sharing_role(&self.id, role).await
    }

    /// Lists participants from the service.
    pub async fn list_participants(&self) -> Result<Vec<Participant>, ApiError> {
        self.graph.list_participants(&self.id).await
    }

    /// Fetches one participant.
    pub async fn get_participant(
        &self,
        participant: &ParticipantId,
    ) -> Result<Participant, ApiError> {
        self.graph.get_participant(&self.id, participant).await
    }

    /// Invites participants.
    pub async fn invite(
        &self,
        participants: &[InvitationParticipantInfo],
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .invite_participants(&self.id, participants, client_context)
            .await?;
        Ok(self.track(op))
    }

    /// Removes a participant.
    pub async fn remove_participant(&self, participant: &ParticipantId) -> Result<(), ApiError> {
        self.graph.delete_participant(&self.id, participant).await
    }

    /// Mutes a participant.
    pub async fn mute_participant(
        &self,
        participant: &ParticipantId,
        client_context: Option<&str>,
    ) -> Result<Option<CommsOperation>, ApiError> {
        let op = self
            .graph
            .mute_participant(&self.id, participant, client_context)
            .await?;
        Ok(self.track(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let settings = CommunicationsSettings::new(
            "app",
            "tenant",
            Credentials::Secret(SecretString::new("hunter2-app-secret")),
            "https://bot.contoso.com/cb",
        );
        assert!(!format!("{settings:?}").contains("hunter2"));
        let static_token = CommunicationsSettings::new(
            "app",
            "tenant",
            Credentials::Provider(Arc::new(crate::token::StaticToken::new(
                "eyJhbGciOi.secret",
            ))),
            "https://bot.contoso.com/cb",
        );
        assert!(!format!("{static_token:?}").contains("eyJhbGciOi"));
    }

    #[test]
    fn notification_url_must_be_a_callback_uri() {
        let settings = CommunicationsSettings::new(
            "app",
            "tenant",
            Credentials::Secret(SecretString::new("s")),
            "http://bot.contoso.com/cb",
        );
        let http = reqwest::Client::new();
        assert!(matches!(
            CommunicationsClient::with_http_client(settings, http),
            Err(BuildError::NotificationUrl(UriProblem::InsecureHttp))
        ));
    }

    #[test]
    fn notification_path() {
        assert_eq!(
            path_of("https://bot.contoso.com/api/callback?x=1"),
            "/api/callback"
        );
        assert_eq!(path_of("http://127.0.0.1:8080"), "/");
        assert_eq!(path_of("http://127.0.0.1:8080/cb"), "/cb");
    }
}
