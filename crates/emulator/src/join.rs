//! People and devices joining an emulator call over WebRTC: the join page at `/join`, and
//! a WHIP-style endpoint per call. `POST /emulator/calls/{id}/join?name=NAME` with an SDP
//! offer (`Content-Type: application/sdp`, ICE gathering complete) adds a participant to the
//! roster (the bot gets a roster notification with a new `sourceId`), answers `201 Created`
//! with the SDP answer and a `Location` whose `DELETE` makes them leave. They hear everyone
//! else in the call (the bot included) and are heard by everyone else.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use media_endpoint::{EndReason, EndpointEvent, SendStatus};
use serde::Deserialize;
use serde_json::Value;
use signalling::model::IdentityRole;

use crate::calls::CallEntry;
use crate::errors::ApiError;
use crate::media::remote::{self, JoinError, RemoteLeg};
use crate::scenario::Voice;
use crate::state::{LogKind, Shared, lock};

const PAGE: &str = include_str!("../assets/join.html");
/// Longest display name accepted, in characters.
const MAX_NAME_CHARS: usize = 64;
/// How often a remote leg's watcher checks that the call and the participant are still there.
const WATCH_EVERY: Duration = Duration::from_millis(250);
/// Largest report a page may post.
const MAX_REPORT_BYTES: usize = 16 * 1024;

type Api = State<Arc<Shared>>;

/// `GET /join`: the page a person joins a call from.
pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// The query of a join request.
#[derive(Debug, Deserialize)]
pub(crate) struct JoinQuery {
    name: Option<String>,
}

fn active_call(shared: &Shared, id: &str, headers: &HeaderMap) -> Result<Arc<CallEntry>, ApiError> {
    shared
        .call(id)
        .filter(|c| !c.is_ended())
        .ok_or_else(|| ApiError::not_found("No such active call.").for_request(headers))
}

/// The display name: trimmed, printable, at most [`MAX_NAME_CHARS`].
fn display_name(name: Option<&str>) -> Result<String, &'static str> {
    let name = name.map(str::trim).unwrap_or("");
    if name.is_empty() {
        return Ok("Guest".to_owned());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err("'name' is longer than 64 characters.");
    }
    if name.chars().any(char::is_control) {
        return Err("'name' holds control characters.");
    }
    Ok(name.to_owned())
}

fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

/// `POST /emulator/calls/{id}/join?name=NAME` with an SDP offer.
pub(crate) async fn join(
    State(shared): Api,
    Path(id): Path<String>,
    Query(query): Query<JoinQuery>,
    headers: HeaderMap,
    offer: Bytes,
) -> Response {
    let call = match active_call(&shared, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if lock(&call.inner).media.is_none() {
        return ApiError::conflict(
            "This call has no app-hosted media connected (yet): only app-hosted calls can be joined.",
        )
        .for_request(&headers)
        .into_response();
    }
    if !is_sdp(&headers) {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent with Content-Type: application/sdp".into(),
        );
    }
    let name = match display_name(query.name.as_deref()) {
        Ok(n) => n,
        Err(why) => {
            return ApiError::bad_request(why)
                .for_request(&headers)
                .into_response();
        }
    };
    let pid = uuid::Uuid::new_v4().to_string();
    let leg = match remote::join(&shared.media, &pid, offer).await {
        Ok(leg) => leg,
        Err(JoinError::Refused { status, reason }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return plain(status, reason);
        }
        Err(e) => {
            shared.log(LogKind::Error, Some(&id), format!("join: {e}"));
            return plain(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
    };
    let identity = crate::calls::identity_set(IdentityRole::Guest, &pid, Some(&name));
    let source_id = call.join(&shared, &pid, identity, Voice::Silence, false, false);
    shared.log(
        LogKind::Media,
        Some(&id),
        format!("{name} joined over WebRTC (sourceId {source_id})"),
    );
    let answer = leg.answer.clone();
    tokio::spawn(watch(shared.clone(), call, pid.clone(), name, leg));
    let mut response = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp")],
        answer,
    )
        .into_response();
    let h = response.headers_mut();
    let location = format!("/emulator/calls/{id}/join/{pid}");
    for (k, v) in [
        ("location", location),
        ("x-participant-id", pid),
        ("x-source-id", source_id.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    response
}

/// Follows a remote leg until it ends, the participant is hung up or the call ends; then
/// the participant leaves the roster and the leg and its pipeline call are dropped.
async fn watch(
    shared: Arc<Shared>,
    call: Arc<CallEntry>,
    pid: String,
    name: String,
    mut leg: RemoteLeg,
) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    let why = loop {
        tokio::select! {
            ev = leg.events.recv() => match ev {
                Some(EndpointEvent::SendStatus(SendStatus::Active)) => shared.log(
                    LogKind::Media,
                    Some(&call.id),
                    format!("{name}'s media connected"),
                ),
                Some(EndpointEvent::StreamFailure(r)) => break format!("media failed ({r:?})"),
                Some(EndpointEvent::LegEnded(EndReason::Closed)) | None => break "left".to_owned(),
                Some(EndpointEvent::LegEnded(r)) => break format!("media ended ({r:?})"),
                Some(_) => {}
            },
            _ = tick.tick() => {
                if call.is_ended() {
                    break "the call ended".to_owned();
                }
                if !lock(&call.inner).roster.iter().any(|m| m.id() == pid) {
                    break "was hung up".to_owned();
                }
            }
        }
    };
    call.leave(&shared, &pid);
    shared.media.remotes.forget(&pid);
    let st = leg.stats();
    drop(leg);
    shared.log(
        LogKind::Media,
        Some(&call.id),
        format!(
            "{name} {why}: {} packets received from them, {} frames concealed; {} packets sent to them",
            st.packets_received, st.concealed, st.frames_sent
        ),
    );
}

/// `DELETE /emulator/calls/{id}/join/{pid}`: the participant leaves.
pub(crate) async fn leave(
    State(shared): Api,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let call = match active_call(&shared, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if shared.media.remotes.contains(&pid) && call.leave(&shared, &pid) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ApiError::not_found("No such participant joined over WebRTC.")
            .for_request(&headers)
            .into_response()
    }
}

/// `POST /emulator/calls/{id}/join/{pid}/report`: a page reports what it measured (levels,
/// the tone it heard); the report goes to the event log.
pub(crate) async fn report(
    State(shared): Api,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let text = body.to_string();
    if text.len() > MAX_REPORT_BYTES {
        return ApiError::bad_request("The report is too large.")
            .for_request(&headers)
            .into_response();
    }
    if !shared.media.remotes.contains(&pid) {
        return ApiError::not_found("No such participant joined over WebRTC.")
            .for_request(&headers)
            .into_response();
    }
    shared.log(
        LogKind::Media,
        Some(&id),
        format!("report from {pid}: {text}"),
    );
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(display_name(None).as_deref(), Ok("Guest"));
        assert_eq!(display_name(Some("  Ada ")).as_deref(), Ok("Ada"));
        assert!(display_name(Some("a\nb")).is_err());
        assert!(display_name(Some(&"x".repeat(65))).is_err());
    }
}
