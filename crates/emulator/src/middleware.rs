//! What every HTTP exchange goes through: a `request-id` (Graph's response header, also the
//! `innerError.request-id` of an error raised while serving it), one log line per request,
//! and Graph's error envelope on a 405 (axum answers those with an empty body).

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::errors::{ApiError, client_request_id};

/// Characters of a path written to the log.
const LOGGED_PATH_CHARS: usize = 200;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being served, inside [`log_requests`].
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Serves a request under a fresh `request-id` and logs it at INFO on `emulator::http`:
/// method, path (never the query, where a name or a secret may travel), status, latency,
/// and the client's `client-request-id`. No header value but that id is logged.
pub(crate) async fn log_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(LOGGED_PATH_CHARS).collect();
    let client_id = client_request_id(req.headers());
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = REQUEST_ID.scope(request_id.clone(), next.run(req)).await;
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.entry("request-id").or_insert(v);
    }
    if let Some(v) = client_id
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
    {
        headers.entry("client-request-id").or_insert(v);
    }
    let status = response.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "emulator::http",
        %method,
        %path,
        status,
        latency_ms,
        client_request_id = client_id.as_deref(),
        request_id = %request_id,
        "{method} {path} {status} {latency_ms:.1} ms"
    );
    response
}

/// Gives a 405 Graph's error envelope, naming the methods the resource supports (from the
/// `Allow` header axum sets), which stays.
pub(crate) async fn method_not_allowed(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path: String = req.uri().path().chars().take(LOGGED_PATH_CHARS).collect();
    let headers = req.headers().clone();
    let response = next.run(req).await;
    if response.status() != StatusCode::METHOD_NOT_ALLOWED || method == Method::HEAD {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let allowed = allow
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("none");
    let mut envelope = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!("`{method}` is not supported on `{path}`; it supports {allowed}."),
    )
    .for_request(&headers)
    .into_response();
    if let Some(allow) = allow {
        envelope.headers_mut().insert(header::ALLOW, allow);
    }
    envelope
}
