//! The notification webhook: an axum router that authenticates callbacks, parses them and
//! hands them to a [`NotificationSink`] without waiting for the bot.

mod auth;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::model::CommsNotifications;
use crate::{Document, ParseMode};

pub use self::auth::{
    AuthError, CallbackAuth, CallbackAuthConfig, CallbackClaims, DEFAULT_ISSUERS,
    DEFAULT_OPENID_CONFIGURATION, MAX_AUTHORIZATION_BYTES, TENANT_CLAIM, TokenProblem,
};

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
}

/// A router answering `POST path`: 403 for a missing or invalid token (nothing is applied),
/// 400 for a body that is not a notification, 413 for one too large, 503 when the sink is
/// full, 202 otherwise.
pub fn router(path: &str, auth: Arc<CallbackAuth>, sink: Arc<dyn NotificationSink>) -> Router {
    Router::new()
        .route(path, post(callback))
        .layer(DefaultBodyLimit::max(MAX_NOTIFICATION_BYTES))
        .with_state(Arc::new(Hook { auth, sink }))
}

async fn callback(State(hook): State<Arc<Hook>>, headers: HeaderMap, body: Bytes) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    let claims = match hook.auth.verify(authorization).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "notification refused: bad token");
            return StatusCode::FORBIDDEN.into_response();
        }
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not UTF-8").into_response();
    };
    // Tolerant: the service's own documentation prints bodies with trailing commas.
    let notifications = match crate::parse_document(text, ParseMode::Tolerant) {
        Ok(Document::Notifications(n)) => n,
        Ok(Document::Notification(n)) => CommsNotifications {
            value: vec![*n].into(),
            ..CommsNotifications::default()
        },
        Ok(other) => {
            tracing::warn!(
                kind = other.kind(),
                "notification refused: not a notification"
            );
            return (
                StatusCode::BAD_REQUEST,
                "the body is not commsNotifications",
            )
                .into_response();
        }
        Err(e) => {
            tracing::warn!(error = %e, "notification refused: unparseable");
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    match hook.sink.deliver(&claims, notifications) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(Overloaded) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
        )
            .into_response(),
    }
}
