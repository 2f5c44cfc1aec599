//! The notification webhook: an axum router that authenticates callbacks, parses them and
//! hands them to a [`NotificationSink`] without waiting for the bot.

mod auth;
mod stats;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::model::CommsNotifications;
use crate::{Document, ParseMode};

pub use self::auth::{
    AuthError, CallbackAuth, CallbackAuthConfig, CallbackClaims, DEFAULT_ISSUERS,
    DEFAULT_OPENID_CONFIGURATION, MAX_AUTHORIZATION_BYTES, TENANT_CLAIM, TokenProblem,
};
pub use self::stats::{RefusalCounts, RefusalReason, WebhookCounters, WebhookStats};

/// Largest callback body read.
pub const MAX_NOTIFICATION_BYTES: usize = 1024 * 1024;

/// The sink refused notifications because a call's queue is full: the service is told to
/// retry (503).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a call's notification queue is full")]
pub struct Overloaded;

/// Where authenticated notifications go. `deliver` must not wait for the bot.
pub trait NotificationSink: Send + Sync + 'static {
    /// Takes one callback body; its notifications are in the order the service sent them.
    fn deliver(
        &self,
        claims: &CallbackClaims,
        notifications: CommsNotifications,
    ) -> Result<(), Overloaded>;
}

struct Hook {
    auth: Arc<CallbackAuth>,
    sink: Arc<dyn NotificationSink>,
    counters: Arc<WebhookCounters>,
}

/// A router answering `POST path`: 403 for a missing or invalid token (nothing is applied),
/// 400 for a body that is not a notification, 413 for one too large, 503 when the sink is
/// full, 202 otherwise. Each request gets one INFO log line (method, path, status, latency,
/// notifications, and the reason of a refusal; never the token).
pub fn router(path: &str, auth: Arc<CallbackAuth>, sink: Arc<dyn NotificationSink>) -> Router {
    router_with_counters(path, auth, sink, Arc::default())
}

/// [`router`], counting every request it handles into `counters` (read with
/// [`WebhookCounters::stats`]).
pub fn router_with_counters(
    path: &str,
    auth: Arc<CallbackAuth>,
    sink: Arc<dyn NotificationSink>,
    counters: Arc<WebhookCounters>,
) -> Router {
    router_at_with_counters(&[path], auth, sink, counters)
}

/// [`router_with_counters`] answering at each of `paths` (a fleet instance's own callback
/// path and the app's shared one, say), all to the same sink and counters. A path given
/// twice is routed once.
pub fn router_at_with_counters(
    paths: &[impl AsRef<str>],
    auth: Arc<CallbackAuth>,
    sink: Arc<dyn NotificationSink>,
    counters: Arc<WebhookCounters>,
) -> Router {
    let mut router = Router::new();
    let mut routed: Vec<&str> = Vec::with_capacity(paths.len());
    for path in paths.iter().map(AsRef::as_ref) {
        if !routed.contains(&path) {
            router = router.route(path, post(callback));
            routed.push(path);
        }
    }
    router
        .layer(DefaultBodyLimit::max(MAX_NOTIFICATION_BYTES))
        .with_state(Arc::new(Hook {
            auth,
            sink,
            counters,
        }))
}

/// What one request came to.
struct Handled {
    response: Response,
    /// Notifications in the body (0 when it was not read that far).
    notifications: usize,
    /// `None`: accepted.
    refusal: Option<RefusalReason>,
    /// What exactly was refused, for the log (never the token).
    detail: Option<String>,
}

impl Handled {
    fn refused(
        response: impl IntoResponse,
        reason: RefusalReason,
        detail: impl std::fmt::Display,
    ) -> Self {
        Handled {
            response: response.into_response(),
            notifications: 0,
            refusal: Some(reason),
            detail: Some(detail.to_string()),
        }
    }
}

async fn callback(
    State(hook): State<Arc<Hook>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let handled = handle(&hook, &headers, body).await;
    match handled.refusal {
        None => hook.counters.accepted(handled.notifications),
        Some(reason) => hook.counters.refused(reason),
    }
    tracing::info!(
        %method,
        path = uri.path(),
        status = handled.response.status().as_u16(),
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        notifications = handled.notifications,
        reason = handled.refusal.map(RefusalReason::as_str),
        detail = handled.detail.as_deref(),
        "webhook request"
    );
    handled.response
}

async fn handle(hook: &Hook, headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Handled {
    // The body is read before anything else, as an extractor would: a body over the limit
    // gets 413 whoever sends it.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                RefusalReason::BodyTooLarge
            } else {
                RefusalReason::BadBody
            };
            let detail = rejection.body_text();
            return Handled::refused(rejection, reason, detail);
        }
    };
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let claims = match hook.auth.verify(authorization).await {
        Ok(c) => c,
        Err(e) => return Handled::refused(StatusCode::FORBIDDEN, RefusalReason::from(&e), e),
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return Handled::refused(
            (StatusCode::BAD_REQUEST, "the body is not UTF-8"),
            RefusalReason::BadBody,
            "the body is not UTF-8",
        );
    };
    // Tolerant: the service's own documentation prints bodies with trailing commas.
    let notifications = match crate::parse_document(text, ParseMode::Tolerant) {
        Ok(Document::Notifications(n)) => n,
        Ok(Document::Notification(n)) => CommsNotifications {
            value: vec![*n].into(),
            ..CommsNotifications::default()
        },
        Ok(other) => {
            let detail = format!("the body is {}, not commsNotifications", other.kind());
            return Handled::refused(
                (
                    StatusCode::BAD_REQUEST,
                    "the body is not commsNotifications",
                ),
                RefusalReason::BadBody,
                detail,
            );
        }
        Err(e) => {
            return Handled::refused(
                (StatusCode::BAD_REQUEST, e.to_string()),
                RefusalReason::BadBody,
                e,
            );
        }
    };
    let count = notifications.value.get().map_or(0, Vec::len);
    match hook.sink.deliver(&claims, notifications) {
        Ok(()) => Handled {
            response: StatusCode::ACCEPTED.into_response(),
            notifications: count,
            refusal: None,
            detail: None,
        },
        Err(Overloaded) => Handled {
            response: (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
            )
                .into_response(),
            notifications: count,
            refusal: Some(RefusalReason::Overloaded),
            detail: Some(Overloaded.to_string()),
        },
    }
}
