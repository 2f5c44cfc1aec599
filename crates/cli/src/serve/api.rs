//! The HTTP API: place, list and hang up calls; liveness and readiness.
//!
//! | request | answer |
//! |---|---|
//! | `POST /calls` `{"user": ID}` / `{"phone": E164}` / `{"meeting": {...}}`, `"behaviour"`? | 201 `{"id", ...}` |
//! | `GET /calls` | 200 `{"calls": [...]}` |
//! | `GET /calls/{id}` | 200 the call, 404 |
//! | `DELETE /calls/{id}` | 202 (the call terminates shortly), 404 |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 while admitting calls, 503 draining or loaded |
//! | `GET /metrics` | the bot's figures, Prometheus text (`botmedia::metrics`) |
//!
//! Errors are `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use botmedia::{Bot, BotError, CallId, CallRequest, PlatformHealth};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Admission;
use super::calls::{CallContext, Direction, Entry};
use super::config::Behaviour;

/// The largest request body read, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the handlers share.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The bot.
    pub bot: Bot,
    /// The running calls and how to run one.
    pub calls: Arc<CallContext>,
    /// Whether new calls are admitted.
    pub admission: Admission,
    /// The behaviour of a call whose request names none.
    pub default_behaviour: Behaviour,
    /// The application instance PSTN calls come from, unless the request names one.
    pub application_instance_id: Option<String>,
    /// This instance's id in a fleet, shown by readiness.
    pub instance: Option<String>,
}

/// The API's routes, with `extra` merged in (the place for `/metrics`: routes of their
/// own state, as `Router<()>`), and JSON answers for unknown paths and methods.
pub fn router(state: ApiState, extra: Router) -> Router {
    Router::new()
        .route("/calls", get(list_calls).post(place_call))
        .route("/calls/{id}", get(get_call).delete(hang_up_call))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// An API error: a status and `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "badRequest", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &json!({ "error": { "code": self.code, "message": self.message } }),
        )
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "notFound", "no such resource")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "methodNotAllowed",
        "the resource does not take this method",
    )
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

/// Ready exactly when a new call would be admitted: what a load balancer and the fleet's
/// placement read.
async fn readyz(State(state): State<ApiState>) -> Response {
    let (status, why) = match state.admission.check(&state.calls.registry) {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(refused) => (StatusCode::SERVICE_UNAVAILABLE, refused.code()),
    };
    let health = match state.bot.platform().health() {
        PlatformHealth::Normal => "normal",
        PlatformHealth::HeavilyLoaded => "heavilyLoaded",
        _ => "overloaded",
    };
    json_response(
        status,
        &json!({
            "status": why,
            "calls": state.calls.registry.len(),
            "health": health,
            "instance": state.instance,
        }),
    )
}

fn call_json(id: &CallId, e: &Entry) -> Value {
    let mut v = json!({
        "id": id.as_str(),
        "direction": e.direction.as_str(),
        "behaviour": e.behaviour.as_str(),
        "state": e.handle.state().map_or_else(|| "pending".to_owned(), |s| s.to_string()),
        "ageSeconds": e.started.elapsed().as_secs(),
        "framesReceived": e.frames(),
    });
    if let Some(path) = &e.recording {
        v["recording"] = Value::String(path.display().to_string());
        if e.speakers {
            let timeline = botmedia::recording::timeline_path(path);
            v["timeline"] = Value::String(timeline.display().to_string());
        }
    }
    v
}

async fn list_calls(State(state): State<ApiState>) -> Response {
    let calls: Vec<Value> = state
        .calls
        .registry
        .snapshot()
        .iter()
        .map(|(id, e)| call_json(id, e))
        .collect();
    json_response(StatusCode::OK, &json!({ "calls": calls }))
}

fn unknown_call(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "callNotFound",
        format!("no running call `{id}`"),
    )
}

async fn get_call(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let cid = CallId::new(id.as_str());
    match state.calls.registry.get(&cid) {
        Some(e) => json_response(StatusCode::OK, &call_json(&cid, &e)),
        None => unknown_call(&id).into_response(),
    }
}

async fn hang_up_call(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let cid = CallId::new(id.as_str());
    let Some(entry) = state.calls.registry.get(&cid) else {
        return unknown_call(&id).into_response();
    };
    tracing::info!(call = %cid, "hang-up requested through the API");
    match entry.handle.hang_up().await {
        Ok(()) => json_response(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "state": "terminating" }),
        ),
        Err(e) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstreamError",
            format!("the calling service did not hang up: {e}"),
        )
        .into_response(),
    }
}

/// `POST /calls`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PlaceCall {
    /// A directory user's id.
    user: Option<String>,
    /// The user's display name.
    display_name: Option<String>,
    /// A phone number (E.164).
    phone: Option<String>,
    /// The application instance a PSTN call comes from.
    application_instance_id: Option<String>,
    /// A scheduled meeting.
    meeting: Option<Meeting>,
    #[serde(alias = "behavior")]
    behaviour: Option<Behaviour>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Meeting {
    thread_id: String,
    #[serde(default = "zero")]
    message_id: String,
    organizer_id: String,
    /// The organizer's tenant; the bot's by default.
    tenant_id: Option<String>,
}

fn zero() -> String {
    "0".into()
}

async fn place_call(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request(format!("cannot read the body: {}", e.body_text()))
        }
    })?;
    if let Some(ct) = headers.get(header::CONTENT_TYPE)
        && !ct
            .to_str()
            .is_ok_and(|t| t.trim_start().starts_with("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupportedMediaType",
            "the body must be application/json",
        ));
    }
    let request: PlaceCall = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body is not a call request: {e}")))?;
    let behaviour = request.behaviour.unwrap_or(state.default_behaviour);
    if behaviour == Behaviour::Reject {
        return Err(ApiError::bad_request(
            "`behaviour` \"reject\" is for incoming calls; use echo, record or play",
        ));
    }
    if !state.calls.can_run(behaviour) {
        return Err(ApiError::bad_request(
            "`behaviour` \"play\" needs a prompt, and none is configured (play.prompt)",
        ));
    }
    let audio = state
        .calls
        .audio(&state.bot, behaviour, request.meeting.is_some());
    let call_request = to_call_request(&state, request)?;
    state.admission.check(&state.calls.registry)?;
    let call = match audio {
        Some(audio) => state.bot.call_with(call_request, audio, None).await,
        None => state.bot.call(call_request).await,
    }
    .map_err(place_error)?;
    let id = state
        .calls
        .start(call, Direction::Outgoing, behaviour, audio.is_some());
    let entry = state.calls.registry.get(&id);
    let body = entry.map_or_else(
        || json!({ "id": id.as_str(), "state": "terminated" }),
        |e| call_json(&id, &e),
    );
    let mut response = json_response(StatusCode::CREATED, &body);
    if let Ok(location) = format!("/calls/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn to_call_request(state: &ApiState, r: PlaceCall) -> Result<CallRequest, ApiError> {
    let named = [r.user.is_some(), r.phone.is_some(), r.meeting.is_some()]
        .into_iter()
        .filter(|n| *n)
        .count();
    if named != 1 {
        return Err(ApiError::bad_request(
            "name exactly one of `user`, `phone`, `meeting`",
        ));
    }
    let blank = |field: &str| ApiError::bad_request(format!("`{field}` is empty"));
    if let Some(user) = r.user {
        if user.trim().is_empty() {
            return Err(blank("user"));
        }
        return Ok(CallRequest::peer_to_peer(
            user.trim(),
            r.display_name.as_deref(),
        ));
    }
    if let Some(phone) = r.phone {
        if phone.trim().is_empty() {
            return Err(blank("phone"));
        }
        let instance = r
            .application_instance_id
            .or_else(|| state.application_instance_id.clone())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "a phone call needs `applicationInstanceId` (or calls.application_instance_id in the config)",
                )
            })?;
        let tenant = state.bot.client().settings().tenant.clone();
        return Ok(CallRequest::pstn(phone.trim(), &instance, &tenant));
    }
    let m = r.meeting.ok_or_else(|| blank("meeting"))?;
    for (field, v) in [
        ("meeting.threadId", &m.thread_id),
        ("meeting.organizerId", &m.organizer_id),
    ] {
        if v.trim().is_empty() {
            return Err(blank(field));
        }
    }
    let tenant = m
        .tenant_id
        .unwrap_or_else(|| state.bot.client().settings().tenant.clone());
    Ok(CallRequest::join_meeting(
        &m.thread_id,
        &m.message_id,
        &m.organizer_id,
        &tenant,
    ))
}

fn place_error(e: BotError) -> ApiError {
    match e {
        BotError::Session(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "atCapacity",
            format!("no media session: {e}"),
        ),
        BotError::Create(botmedia::graph::calls::CreateError::Invalid(e)) => {
            ApiError::bad_request(format!("the call request would be refused: {e}"))
        }
        other => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstreamError",
            format!("the calling service did not place the call: {other}"),
        ),
    }
}

impl From<super::Refused> for ApiError {
    fn from(r: super::Refused) -> Self {
        match r {
            super::Refused::Draining => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "the bot is shutting down and takes no new calls",
            ),
            super::Refused::AtCapacity(max) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "atCapacity",
                format!("the bot runs its maximum of {max} calls"),
            ),
            super::Refused::HeavilyLoaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                r.code(),
                "the media platform is heavily loaded and takes no new calls",
            ),
            super::Refused::Overloaded => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                r.code(),
                "the media platform is overloaded",
            ),
        }
    }
}
