//! Graph's error envelope for the errors the emulator raises itself (authentication, unknown
//! resources, conflicts); request validation errors come from `signalling::GraphError`.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An error response in Graph's envelope.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error.code`.
    pub code: &'static str,
    /// `error.message`.
    pub message: String,
    /// `innerError.client-request-id`, echoed.
    pub client_request_id: Option<String>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            client_request_id: None,
        }
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "itemNotFound", what)
    }

    /// 400 for a request that is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 for a missing or invalid access token.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    /// 409 for an action that does not fit the resource's state.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", message)
    }

    /// Echoes the request's `client-request-id` header.
    pub fn for_request(mut self, headers: &HeaderMap) -> Self {
        self.client_request_id = client_request_id(headers);
        self
    }

    /// The envelope.
    pub fn body(&self) -> Value {
        envelope(self.code, &self.message, self.client_request_id.as_deref())
    }
}

/// The `client-request-id` header, if present and printable (bounded length).
pub fn client_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}

/// The id of the request being served (the one its `request-id` header and log line carry),
/// or a fresh one outside a request.
fn request_id() -> String {
    crate::middleware::current_request_id().unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// `{"error":{"code","message","innerError":{"request-id","date","client-request-id"}}}`.
pub fn envelope(code: &str, message: &str, client_request_id: Option<&str>) -> Value {
    let now = OffsetDateTime::now_utc();
    let date = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "request-id": request_id(),
                "date": date,
                "client-request-id": client_request_id,
            }
        }
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"botmedia-emulator\""),
            );
        }
        response
    }
}

/// Turns a validation error of the signalling crate into a response.
pub fn graph_error_response(err: signalling::GraphError, headers: &HeaderMap) -> Response {
    let err = match client_request_id(headers) {
        Some(id) => err.with_client_request_id(id),
        None => err,
    };
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut body = err.to_json();
    if let Some(inner) = body["error"]["innerError"].as_object_mut() {
        inner.insert("request-id".into(), request_id().into());
    }
    (status, axum::Json(body)).into_response()
}
