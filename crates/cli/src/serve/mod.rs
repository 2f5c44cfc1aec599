//! `botmedia serve`: a long-lived bot run from a TOML file and `BOTMEDIA_*` variables.
//!
//! It answers incoming calls with a configured behaviour (echo, record, play, reject),
//! places calls on request through a small HTTP API on its own listener, and drains on
//! SIGTERM or Ctrl-C: no new calls, running ones continue for the grace period, the rest
//! are hung up and their ends awaited. See `serve.example.toml` for the keys.

pub mod api;
pub mod calls;
pub mod config;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use botmedia::{Bot, BotError, MediaPlatform, PlatformHealth, RejectReason};
use tokio::net::TcpListener;

use self::api::ApiState;
use self::calls::{CallContext, Direction, Registry};
use self::config::{AnswerPolicy, Behaviour, ServeConfig};

/// How long the API and the bot get to stop once the calls are done.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The bot did not start.
    #[error(transparent)]
    Bot(#[from] BotError),
    /// The API could not listen.
    #[error("cannot serve the API on {addr}: {source}")]
    Api {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot listen for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Why a new call is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The bot is draining.
    Draining,
    /// `max_calls` calls run.
    AtCapacity(usize),
    /// The media platform is heavily loaded: its calls would suffer from one more.
    HeavilyLoaded,
    /// The media platform refuses new calls.
    Overloaded,
}

impl Refused {
    /// The API's and readiness's spelling.
    pub fn code(self) -> &'static str {
        match self {
            Refused::Draining => "draining",
            Refused::AtCapacity(_) => "atCapacity",
            Refused::HeavilyLoaded => "heavilyLoaded",
            Refused::Overloaded => "overloaded",
        }
    }
}

/// Whether new calls are admitted. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Admission {
    draining: Arc<AtomicBool>,
    max_calls: Option<usize>,
    platform: MediaPlatform,
}

impl Admission {
    fn new(max_calls: Option<usize>, platform: MediaPlatform) -> Self {
        Self {
            draining: Arc::new(AtomicBool::new(false)),
            max_calls,
            platform,
        }
    }

    /// True once the drain started.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether one more call may start beside those of `registry`.
    pub fn check(&self, registry: &Registry) -> Result<(), Refused> {
        if self.is_draining() {
            return Err(Refused::Draining);
        }
        if let Some(max) = self.max_calls
            && registry.len() >= max
        {
            return Err(Refused::AtCapacity(max));
        }
        match self.platform.health() {
            PlatformHealth::Normal => Ok(()),
            PlatformHealth::HeavilyLoaded => Err(Refused::HeavilyLoaded),
            _ => Err(Refused::Overloaded),
        }
    }
}

/// Routes merged into the API beside its own: `GET /metrics` (Prometheus text).
fn extra_routes(bot: &Bot) -> Router {
    botmedia::metrics::router(bot.clone())
}

/// Runs until SIGTERM or Ctrl-C, then drains and returns.
pub async fn serve(config: ServeConfig) -> Result<(), ServeError> {
    // Installed first: a signal that comes once the banner is out must find them.
    let mut signals = Signals::new().map_err(ServeError::Signals)?;
    let bot = Bot::start(config.bot.clone()).await?;
    let listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|source| ServeError::Api {
            addr: config.api_listen,
            source,
        })?;
    let api_addr = listener.local_addr().map_err(|source| ServeError::Api {
        addr: config.api_listen,
        source,
    })?;
    let ctx = Arc::new(CallContext::new(&config));
    let admission = Admission::new(config.max_calls, bot.platform().clone());
    let state = ApiState {
        bot: bot.clone(),
        calls: ctx.clone(),
        admission: admission.clone(),
        default_behaviour: config.call_behaviour,
        application_instance_id: config.application_instance_id.clone(),
        instance: config.instance_id.clone(),
    };
    let app = api::router(state, extra_routes(&bot));
    let (api_stop, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = api_stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the API stopped");
        }
    });
    let incoming = tokio::spawn(answer_incoming(
        bot.clone(),
        ctx.clone(),
        admission.clone(),
        config.answer.clone(),
    ));

    print_banner(&bot, api_addr, &config);
    tracing::info!(api = %api_addr, instance = config.instance_id.as_deref().unwrap_or("-"), "serving");

    let signal = signals.next().await;
    tracing::info!(
        signal,
        calls = ctx.registry.len(),
        grace_seconds = config.drain_grace.as_secs(),
        "draining: no new calls; running calls continue until they end or the grace period is over"
    );
    admission.start_draining();
    let ended = tokio::select! {
        ended = ctx.registry.wait_empty(config.drain_grace) => ended,
        signal = signals.next() => {
            tracing::info!(signal, "a second signal: the grace period ends now");
            ctx.registry.is_empty()
        }
    };
    if ended {
        tracing::info!("every call ended within the grace period");
    } else {
        let remaining = ctx.registry.snapshot();
        tracing::info!(
            calls = remaining.len(),
            "grace period over: hanging up the remaining calls"
        );
        for (id, entry) in &remaining {
            tracing::info!(call = %id, "hanging up");
            calls::hang_up(&entry.handle, "drain");
        }
        if ctx.registry.wait_empty(config.hangup_timeout).await {
            tracing::info!("every call hung up has terminated");
        } else {
            tracing::warn!(
                calls = ctx.registry.len(),
                timeout_seconds = config.hangup_timeout.as_secs(),
                "calls still not terminated; leaving them"
            );
        }
    }
    incoming.abort();
    let _ = api_stop.send(());
    if tokio::time::timeout(STOP_TIMEOUT, api_task).await.is_err() {
        tracing::warn!("the API did not stop in time");
    }
    if tokio::time::timeout(STOP_TIMEOUT, bot.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the bot did not stop in time");
    }
    tracing::info!("stopped");
    Ok(())
}

fn print_banner(bot: &Bot, api: SocketAddr, config: &ServeConfig) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let webhook = bot
        .webhook_addr()
        .map_or_else(String::new, |a| format!(" (listening on {a})"));
    match &config.instance_id {
        Some(id) => {
            let _ = writeln!(out, "botmedia serve (instance {id})");
        }
        None => {
            let _ = writeln!(out, "botmedia serve");
        }
    }
    let _ = writeln!(out, "  webhook   {}{webhook}", bot.callback_url());
    let _ = writeln!(out, "  api       http://{api}");
    let _ = writeln!(out, "  mpUri     {}", bot.platform().mp_uri());
    let _ = writeln!(
        out,
        "  answer    {}{}",
        config.answer.default.as_str(),
        if config.answer.rules.is_empty() {
            String::new()
        } else {
            format!(" ({} caller rules)", config.answer.rules.len())
        }
    );
    let _ = writeln!(
        out,
        "  drain     {} s grace on SIGTERM / Ctrl-C",
        config.drain_grace.as_secs()
    );
    let _ = out.flush();
}

/// Takes every incoming call: the configured behaviour while admitting, busy while not.
async fn answer_incoming(
    bot: Bot,
    ctx: Arc<CallContext>,
    admission: Admission,
    policy: AnswerPolicy,
) {
    while let Some(incoming) = bot.next_incoming().await {
        let caller: Vec<String> = incoming
            .source()
            .and_then(|s| s.identity.get())
            .map(|set| {
                set.identities()
                    .filter_map(|(_, i)| i.id.get().map(|id| id.as_str().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        // The kind of caller only: its id is personal data.
        let kind = incoming
            .source()
            .and_then(|s| s.identity.get())
            .and_then(|set| set.identities().next().map(|(role, _)| role.as_str()))
            .unwrap_or("unknown");
        let id = incoming.id().map(|i| i.to_string()).unwrap_or_default();
        let refused = admission.check(&ctx.registry);
        let ids: Vec<&str> = caller.iter().map(String::as_str).collect();
        let behaviour = policy.for_caller(&ids);
        // A meeting that invites the bot says so in its chat and meeting info.
        let resource = incoming.resource();
        let meeting = resource.meeting_info.get().is_some() || resource.chat_info.get().is_some();
        let audio = ctx.audio(&bot, behaviour, meeting);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            if let Err(why) = refused {
                tracing::info!(call = %id, caller = kind, ?why, "incoming call rejected busy");
                if let Err(e) = incoming.reject(RejectReason::Busy).await {
                    tracing::warn!(call = %id, error = %e, "rejecting failed");
                }
                return;
            }
            if behaviour == Behaviour::Reject {
                tracing::info!(call = %id, caller = kind, "incoming call rejected (configured)");
                if let Err(e) = incoming.reject(RejectReason::None).await {
                    tracing::warn!(call = %id, error = %e, "rejecting failed");
                }
                return;
            }
            tracing::info!(call = %id, caller = kind, behaviour = behaviour.as_str(), "answering");
            let answered = match audio {
                Some(audio) => incoming.answer_with(audio, None).await,
                None => incoming.answer().await,
            };
            match answered {
                Ok(call) => {
                    ctx.start(call, Direction::Incoming, behaviour, audio.is_some());
                }
                Err(e) => tracing::warn!(call = %id, error = %e, "answering failed"),
            }
        });
    }
}

/// SIGTERM and Ctrl-C (SIGINT).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        Ok(Self {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// The next signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = self.term.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
