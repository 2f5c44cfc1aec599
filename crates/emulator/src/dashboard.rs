//! The dashboard page at `/` and the control endpoints behind its buttons: admit from the
//! lobby, hang up a participant or the call, send a DTMF tone. Local use: no auth, the
//! emulator listens on loopback by default.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{Value, json};
use signalling::model::{CallState, IdentityRole, ResultCode, Tone};

use crate::calls::CallResult;
use crate::errors::ApiError;
use crate::state::{LogKind, Shared, lock};

type Api = State<Arc<Shared>>;

const PAGE: &str = include_str!("../assets/dashboard.html");
/// Log entries the state endpoint returns.
const LOG_SHOWN: usize = 150;
/// DTMF tones the dashboard can send.
const TONES: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#", "A", "B", "C", "D",
];

pub(crate) async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /emulator/state`: calls, rosters, levels and the recent log.
pub(crate) async fn state(State(shared): Api) -> Json<Value> {
    let calls: Vec<Value> = lock(&shared.calls)
        .values()
        .rev()
        .map(|c| {
            let inner = lock(&c.inner);
            let r = &inner.resource;
            let targets = r.targets.get().map_or(&[][..], Vec::as_slice);
            let scenario = if r.meeting_info.get().is_some() {
                "meeting"
            } else if targets.len() > 1 {
                "group call"
            } else if targets
                .first()
                .and_then(|t| t.identity.get())
                .is_some_and(|i| i.get(IdentityRole::Phone).is_some())
            {
                "PSTN"
            } else {
                "peer-to-peer"
            };
            let result = r.result_info.get().and_then(|info| {
                let code = info.code.get()?.as_i64()?;
                let subcode = info.subcode.get().and_then(ResultCode::as_i64).unwrap_or(0);
                let message = info.message.get().map_or("", String::as_str);
                Some(format!("{code}/{subcode}: {message}"))
            });
            json!({
                "id": c.id,
                "state": r.state.get().map(CallState::as_str),
                "appId": c.app_id,
                "scenario": scenario,
                "media": if matches!(c.hosting, signalling::MediaHosting::App) { "app-hosted" } else { "service-hosted" },
                "result": result,
                "mediaConnected": inner.media.is_some(),
                // The source id on each unmixed speaker stream the bot gets (null: nobody).
                "speakerStreams": inner.media.as_ref().map_or_else(Vec::new, |m| m.speaker_streams()),
                "participants": inner.roster.iter().map(|m| json!({
                    "participant": m.participant,
                    "isBot": m.is_bot,
                    "says": if shared.media.remotes.contains(m.id()) { "live over WebRTC".to_owned() } else { m.voice.describe() },
                    "level": m.level(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let log: Vec<Value> = {
        let log = lock(&shared.log);
        log.iter()
            .skip(log.len().saturating_sub(LOG_SHOWN))
            .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
            .collect()
    };
    Json(json!({
        "graphUrl": format!("{}/v1.0", shared.base_url()),
        "tenant": shared.scenario.apps.first().map(|a| a.tenant_id.clone()),
        "calls": calls,
        "log": log,
    }))
}

fn call_or_404(
    shared: &Shared,
    id: &str,
    headers: &HeaderMap,
) -> Result<Arc<crate::calls::CallEntry>, ApiError> {
    shared
        .call(id)
        .filter(|c| !c.is_ended())
        .ok_or_else(|| ApiError::not_found("No such active call.").for_request(headers))
}

/// `POST /emulator/calls/{id}/participants/{pid}/admit`.
pub(crate) async fn admit(
    State(shared): Api,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match call_or_404(&shared, &id, &headers) {
        Ok(call) if call.admit(&shared, &pid) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => ApiError::conflict("That participant is not waiting in the lobby.")
            .for_request(&headers)
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /emulator/calls/{id}/participants/{pid}/hangup`: a participant leaves.
pub(crate) async fn hangup_participant(
    State(shared): Api,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    match call_or_404(&shared, &id, &headers) {
        Ok(call) if call.leave(&shared, &pid) => StatusCode::NO_CONTENT.into_response(),
        Ok(_) => ApiError::not_found("No such participant.")
            .for_request(&headers)
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /emulator/calls/{id}/hangup`: the far side ends the call.
pub(crate) async fn hangup_call(
    State(shared): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match call_or_404(&shared, &id, &headers) {
        Ok(call) => {
            call.terminate(&shared, &CallResult::ENDED_BY_PEER);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `POST /emulator/calls/{id}/tone` with `{"tone": "5"}`: a participant presses a key.
pub(crate) async fn tone(
    State(shared): Api,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = match call_or_404(&shared, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(tone) = body["tone"].as_str().filter(|t| TONES.contains(t)) else {
        return ApiError::bad_request("'tone' must be one of 0-9, *, #, A-D.")
            .for_request(&headers)
            .into_response();
    };
    // App-hosted media: the key press travels in the media, as RFC 4733 events.
    let media_tone = tone
        .chars()
        .next()
        .and_then(media_endpoint::Tone::from_char)
        .and_then(|t| call.send_media_tone(t));
    match media_tone {
        Some(Ok(())) => {
            shared.log(
                LogKind::Media,
                Some(&id),
                format!("DTMF {tone} from the far side, sent to the bot as RFC 4733"),
            );
            return StatusCode::NO_CONTENT.into_response();
        }
        Some(Err(e)) => {
            return ApiError::conflict(format!("The media leg cannot carry the tone: {e}."))
                .for_request(&headers)
                .into_response();
        }
        None => {}
    }
    let graph_tone = match tone {
        "*" => Tone::Star,
        "#" => Tone::Pound,
        t => Tone::from_graph(&format!("tone{t}")),
    };
    shared.log(
        LogKind::Request,
        Some(&id),
        format!("DTMF {tone} from the far side"),
    );
    call.notify_tone(&shared, graph_tone);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /emulator/calls/{id}/participants/{pid}/say` with `{"wav": PATH}`, `{"tone": HZ}`,
/// `{"silence": true}` or `{"echo": true}`: the participant says that from now on.
pub(crate) async fn say(
    State(shared): Api,
    Path((id, pid)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let call = match call_or_404(&shared, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let voice = if let Some(path) = body["wav"].as_str() {
        crate::scenario::Voice::Wav(path.into())
    } else if let Some(hz) = body["tone"].as_f64() {
        crate::scenario::Voice::Tone {
            hz,
            dbfs: body["dbfs"].as_f64().unwrap_or(-12.0),
        }
    } else if body["echo"] == true {
        crate::scenario::Voice::Echo
    } else if body["silence"] == true {
        crate::scenario::Voice::Silence
    } else {
        return ApiError::bad_request(
            "say what? Give 'wav' (a path), 'tone' (Hz), 'echo' or 'silence'.",
        )
        .for_request(&headers)
        .into_response();
    };
    if let crate::scenario::Voice::Tone { hz, dbfs } = &voice
        && !(hz.is_finite()
            && (20.0..=7900.0).contains(hz)
            && dbfs.is_finite()
            && (-96.0..=0.0).contains(dbfs))
    {
        return ApiError::bad_request("'tone' must be 20 to 7900 Hz and 'dbfs' -96 to 0.")
            .for_request(&headers)
            .into_response();
    }
    let described = voice.describe();
    match call.set_voice(&shared, &pid, voice) {
        Ok(()) => {
            shared.log(
                LogKind::Media,
                Some(&id),
                format!("a participant now says {described}"),
            );
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => ApiError::bad_request(format!("cannot change the voice: {e}"))
            .for_request(&headers)
            .into_response(),
    }
}
