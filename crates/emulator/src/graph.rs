//! The Graph calling API: create, get and delete calls, call actions, participants; every
//! request authenticated with an access token of this emulator and checked against the
//! permissions (`roles`) it carries.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use signalling::{ErrorReason, GraphError, ParseMode, Permission, Scenario as CallScenario};

use crate::calls::{self, CallEntry, CallResult, Plan, Target, user_identity};
use crate::errors::{ApiError, graph_error_response};
use crate::identity::AccessClaims;
use crate::scenario::{Answer, Voice};
use crate::state::{LogKind, Shared, lock};

type Api = State<Arc<Shared>>;

fn check_version(version: &str) -> Result<(), ApiError> {
    match version {
        "v1.0" | "beta" => Ok(()),
        other => Err(ApiError::not_found(format!(
            "Unknown API version `{}`: use v1.0 or beta",
            other.chars().take(32).collect::<String>()
        ))),
    }
}

/// The caller's verified access token.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("Access token is empty.").for_request(headers))?;
    let text = value.to_str().unwrap_or("");
    if text.len() > 16 * 1024 {
        return Err(ApiError::unauthorized("Access token is too large.").for_request(headers));
    }
    let token = text.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized("The Authorization header must be `Bearer <token>`.")
            .for_request(headers)
    })?;
    shared
        .identity
        .verify_access_token(token.trim())
        .map_err(|e| {
            ApiError::unauthorized(format!("Access token validation failure: {e}"))
                .for_request(headers)
        })
}

/// The call, if it exists and belongs to the caller's app (others' calls are not found).
fn owned_call(
    shared: &Shared,
    claims: &AccessClaims,
    id: &str,
    headers: &HeaderMap,
) -> Result<Arc<CallEntry>, ApiError> {
    shared
        .call(id)
        .filter(|c| c.app_id == claims.appid)
        .ok_or_else(|| {
            ApiError::not_found(format!("Call `{}` was not found.", short(id))).for_request(headers)
        })
}

fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

fn forbidden(
    required: signalling::PermissionRequirement,
    missing: Vec<Permission>,
    headers: &HeaderMap,
) -> Response {
    graph_error_response(
        GraphError::new(ErrorReason::Forbidden { required, missing }),
        headers,
    )
}

fn json_body(bytes: &Bytes) -> Result<Value, GraphError> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    signalling::parse_value_bytes(bytes, ParseMode::Strict).map_err(GraphError::from)
}

/// The call a request addresses, once the API version, the caller's token and the call's
/// ownership are checked.
fn call_for(
    shared: &Shared,
    version: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<Arc<CallEntry>, ApiError> {
    check_version(version)?;
    let claims = authenticate(shared, headers)?;
    owned_call(shared, &claims, id, headers)
}

/// `POST /{version}/communications/calls` (and the deprecated `/{version}/app/calls`).
pub(crate) async fn create_call(
    State(shared): Api,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = check_version(&version) {
        return e.for_request(&headers).into_response();
    }
    let claims = match authenticate(&shared, &headers) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let text = match std::str::from_utf8(&body) {
        Ok(t) => t,
        Err(_) => {
            return ApiError::bad_request("The request body is not UTF-8.")
                .for_request(&headers)
                .into_response();
        }
    };
    let call = match signalling::parse_call(text, ParseMode::Strict) {
        Ok(c) => c,
        Err(e) => return graph_error_response(GraphError::from(e), &headers),
    };
    let validated = match signalling::validate_create_call(&call) {
        Ok(v) => v,
        Err(e) => return graph_error_response(e, &headers),
    };
    let missing = validated.required_permissions.missing(&claims.roles);
    if !missing.is_empty() {
        shared.log(
            LogKind::Error,
            None,
            format!("create call refused: missing {missing:?}"),
        );
        return forbidden(validated.required_permissions, missing, &headers);
    }
    if validated.media == signalling::MediaHosting::App
        && let Some(max) = shared.scenario.settings.max_app_hosted_calls
        && app_hosted_calls(&shared) >= max
    {
        shared.log(
            LogKind::Error,
            None,
            format!("create call refused: {max} app-hosted calls already"),
        );
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is at its capacity for app-hosted media; retry later.",
        )
        .for_request(&headers)
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return response;
    }
    let request = signalling::model::GraphType::to_json_value(&call);
    let id = uuid::Uuid::new_v4().to_string();
    let my_participant_id = uuid::Uuid::new_v4().to_string();
    let tenant = request["tenantId"]
        .as_str()
        .unwrap_or(&claims.tid)
        .to_owned();
    let bot_identity = if request["source"]["identity"].is_object() {
        request["source"]["identity"].clone()
    } else {
        json!({
            "@odata.type": "#microsoft.graph.identitySet",
            "application": {
                "@odata.type": "#microsoft.graph.identity",
                "displayName": "Calling Bot",
                "id": claims.appid,
            }
        })
    };
    let resource = json!({
        "@odata.type": "#microsoft.graph.call",
        "state": "establishing",
        "direction": "outgoing",
        "callbackUri": request["callbackUri"],
        "callChainId": uuid::Uuid::new_v4().to_string(),
        "callRoutes": [],
        "source": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": bot_identity,
            "region": null,
            "languageId": null,
        },
        "targets": request.get("targets").cloned().unwrap_or(json!([])),
        "requestedModalities": request["requestedModalities"],
        "activeModalities": [],
        "mediaConfig": request["mediaConfig"],
        "routingPolicies": [],
        "tenantId": tenant,
        "myParticipantId": my_participant_id,
        "id": id,
        "@odata.context": format!("{}/{version}/$metadata#communications/calls/$entity", shared.base_url()),
        "subject": request.get("subject").cloned().unwrap_or(Value::Null),
        "terminationReason": null,
        "ringingTimeoutInSeconds": null,
        "mediaState": null,
        "resultInfo": null,
        "answeredBy": null,
        "chatInfo": request.get("chatInfo").cloned().unwrap_or(Value::Null),
        "meetingInfo": request.get("meetingInfo").cloned().unwrap_or(Value::Null),
        "transcription": null,
        "meetingCapability": null,
        "toneInfo": null,
    });
    let plan = plan_for(&shared, &validated.scenario, &request, &tenant);
    let entry = CallEntry::new(
        &shared,
        resource.clone(),
        claims.appid.clone(),
        tenant,
        validated.media,
    );
    lock(&shared.calls).insert(id.clone(), entry.clone());
    shared.log(
        LogKind::Request,
        Some(&id),
        format!(
            "create call: {:?}, {:?} media, app {}",
            validated.scenario, validated.media, claims.appid
        ),
    );
    tracing::info!(
        target: "emulator::calls",
        call_id = %id,
        scenario = ?validated.scenario,
        media = ?validated.media,
        app_id = %claims.appid,
        "call created: {:?}",
        validated.scenario
    );
    tokio::spawn(calls::run(shared.clone(), entry, plan, bot_identity));
    let location = format!("{}/{version}/communications/calls/{id}", shared.base_url());
    (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(resource),
    )
        .into_response()
}

/// App-hosted calls not yet terminated.
fn app_hosted_calls(shared: &Shared) -> usize {
    lock(&shared.calls)
        .values()
        .filter(|c| {
            c.hosting == signalling::MediaHosting::App
                && lock(&c.inner).resource["state"] != "terminated"
        })
        .count()
}

/// Resolves the request's targets or meeting against the scenario.
fn plan_for(shared: &Shared, scenario: &CallScenario, request: &Value, tenant: &str) -> Plan {
    let sc = &shared.scenario;
    let user_target = |id: &str, given: &Value| match sc.user(id) {
        Some(u) => Target {
            participant: user_identity(
                &u.id,
                &u.display_name,
                u.tenant_id.as_deref().unwrap_or(tenant),
            ),
            voice: u.says.clone(),
            answer: u.answer.clone(),
            known: true,
        },
        None => Target {
            participant: given.clone(),
            voice: Voice::Silence,
            answer: Answer::NoAnswer,
            known: false,
        },
    };
    match scenario {
        CallScenario::MeetingJoin { as_guest, .. } => {
            let meeting = crate::lookup::find_meeting(sc, request).map(|m| {
                let members = m
                    .participants
                    .iter()
                    .map(|p| user_target(p, &Value::Null))
                    .collect();
                (m.clone(), members)
            });
            Plan::Meeting {
                meeting,
                as_guest: *as_guest,
            }
        }
        _ => {
            let targets = request["targets"].as_array().cloned().unwrap_or_default();
            Plan::Direct(
                targets
                    .iter()
                    .map(|t| {
                        let identity = &t["identity"];
                        if let Some(id) = identity["user"]["id"].as_str() {
                            user_target(id, identity)
                        } else if let Some(number) = identity["phone"]["id"].as_str() {
                            match sc.phone(number) {
                                Some(p) => Target {
                                    participant: json!({
                                        "@odata.type": "#microsoft.graph.identitySet",
                                        "phone": {
                                            "@odata.type": "#microsoft.graph.identity",
                                            "id": p.number,
                                            "displayName": p.display_name,
                                        }
                                    }),
                                    voice: p.says.clone(),
                                    answer: p.answer.clone(),
                                    known: true,
                                },
                                None => Target {
                                    participant: identity.clone(),
                                    voice: Voice::Silence,
                                    answer: Answer::NoAnswer,
                                    known: false,
                                },
                            }
                        } else {
                            Target {
                                participant: identity.clone(),
                                voice: Voice::Silence,
                                answer: Answer::NoAnswer,
                                known: false,
                            }
                        }
                    })
                    .collect(),
            )
        }
    }
}

/// `GET /{version}/communications/calls/{id}`.
pub(crate) async fn get_call(
    State(shared): Api,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let call = call_for(&shared, &version, &id, &headers)?;
        let resource = lock(&call.inner).resource.clone();
        Ok::<_, ApiError>(Json(resource))
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

/// `DELETE /{version}/communications/calls/{id}`: the bot hangs up.
pub(crate) async fn delete_call(
    State(shared): Api,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let call = call_for(&shared, &version, &id, &headers)?;
        if call.is_ended() {
            return Err(ApiError::not_found(format!(
                "Call `{}` has ended.",
                short(&id)
            )));
        }
        call.set_state(&shared, "terminating");
        call.terminate(&shared, &CallResult::ENDED_BY_BOT);
        Ok(StatusCode::NO_CONTENT)
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

fn operation(kind: &str, body: &Value) -> Value {
    json!({
        "@odata.type": format!("#microsoft.graph.{kind}"),
        "id": uuid::Uuid::new_v4().to_string(),
        "status": "running",
        "clientContext": body.get("clientContext").cloned().unwrap_or(Value::Null),
        "resultInfo": null,
    })
}

fn completed(mut op: Value) -> Value {
    op["status"] = json!("completed");
    op["resultInfo"] = json!({ "@odata.type": "#microsoft.graph.resultInfo", "code": 200, "subcode": 0, "message": "Success" });
    op
}

/// Completes an operation after `d` of emulated time, unless the call ended.
fn complete_later(
    shared: &Arc<Shared>,
    call: &Arc<CallEntry>,
    op: Value,
    d: Duration,
    extra: Value,
) {
    let shared = shared.clone();
    let call = call.clone();
    tokio::spawn(async move {
        tokio::time::sleep(shared.scaled(d)).await;
        if call.is_ended() {
            return;
        }
        let mut done = completed(op);
        if let (Some(done_obj), Some(extra)) = (done.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                done_obj.insert(k.clone(), v.clone());
            }
        }
        let id = done["id"].as_str().unwrap_or("").to_owned();
        let still_running = lock(&call.inner).operations.remove(&id).is_some();
        if still_running {
            call.notify_operation(&shared, done);
        }
    });
}

fn respond_operation(op: &Value, call: &CallEntry) -> Response {
    let location = format!(
        "{}/operations/{}",
        call.resource_url(),
        op["id"].as_str().unwrap_or("")
    );
    (
        StatusCode::OK,
        [(header::LOCATION, location)],
        Json(op.clone()),
    )
        .into_response()
}

/// `POST /{version}/communications/calls/{id}/{action}`.
pub(crate) async fn call_action(
    State(shared): Api,
    Path((version, id, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = match call_for(&shared, &version, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.for_request(&headers).into_response(),
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return graph_error_response(e, &headers),
    };
    if call.is_ended() {
        return ApiError::conflict(format!("Call `{}` has ended.", short(&id)))
            .for_request(&headers)
            .into_response();
    }
    shared.log(LogKind::Request, Some(&id), format!("action {action}"));
    let my_id = lock(&call.inner).resource["myParticipantId"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    match action.as_str() {
        "keepAlive" => {
            call.keep_alive();
            StatusCode::OK.into_response()
        }
        "playPrompt" => {
            let prompts = body["prompts"].as_array().map_or(0, Vec::len);
            if prompts == 0 {
                return ApiError::bad_request("'prompts' is required and must not be empty.")
                    .for_request(&headers)
                    .into_response();
            }
            let op = operation("playPromptOperation", &body);
            lock(&call.inner)
                .operations
                .insert(op["id"].as_str().unwrap_or("").into(), op.clone());
            complete_later(
                &shared,
                &call,
                op.clone(),
                Duration::from_secs(prompts as u64),
                json!({ "completionReason": "completedSuccessfully" }),
            );
            respond_operation(&op, &call)
        }
        "recordResponse" => {
            let secs = body["maxRecordDurationInSeconds"]
                .as_u64()
                .unwrap_or(5)
                .clamp(1, 300);
            let op = operation("recordOperation", &body);
            lock(&call.inner)
                .operations
                .insert(op["id"].as_str().unwrap_or("").into(), op.clone());
            let location = format!(
                "{}/recordings/{}/{}.wav",
                shared.base_url(),
                id,
                op["id"].as_str().unwrap_or("")
            );
            let token = uuid::Uuid::new_v4().to_string();
            // What the other side says: the first participant who is not the bot.
            let voice = lock(&call.inner)
                .roster
                .iter()
                .find(|m| !m.is_bot)
                .map(|m| m.voice.clone())
                .unwrap_or_default();
            let op_id = op["id"].as_str().unwrap_or("").to_owned();
            if let Err(e) = shared.recordings.record(&id, &op_id, &token, &voice, secs) {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "generalException",
                    format!("Cannot record: {e}"),
                )
                .for_request(&headers)
                .into_response();
            }
            complete_later(
                &shared,
                &call,
                op.clone(),
                Duration::from_secs(secs),
                json!({ "completionReason": "maxRecordDurationReached", "recordingLocation": location, "recordingAccessToken": token }),
            );
            respond_operation(&op, &call)
        }
        "cancelMediaProcessing" => {
            let running: Vec<Value> = std::mem::take(&mut lock(&call.inner).operations)
                .into_values()
                .collect();
            for op in running {
                let mut done = completed(op);
                done["completionReason"] = json!("operationCanceled");
                call.notify_operation(&shared, done);
            }
            respond_operation(
                &completed(operation("cancelMediaProcessingOperation", &body)),
                &call,
            )
        }
        "subscribeToTone" => respond_operation(
            &completed(operation("subscribeToToneOperation", &body)),
            &call,
        ),
        "sendDtmfTones" => {
            let tones = body["tones"].as_array().map_or(0, Vec::len);
            if tones == 0 {
                return ApiError::bad_request("'tones' is required and must not be empty.")
                    .for_request(&headers)
                    .into_response();
            }
            let op = operation("sendDtmfTonesOperation", &body);
            lock(&call.inner)
                .operations
                .insert(op["id"].as_str().unwrap_or("").into(), op.clone());
            let gap = body["delayBetweenTonesMs"]
                .as_u64()
                .unwrap_or(100)
                .min(5000);
            complete_later(
                &shared,
                &call,
                op.clone(),
                Duration::from_millis((gap + 100) * tones as u64),
                json!({ "completionReason": "completedSuccessfully" }),
            );
            respond_operation(&op, &call)
        }
        "mute" | "unmute" => {
            call.set_muted(&shared, &my_id, action == "mute");
            let kind = if action == "mute" {
                "muteParticipantOperation"
            } else {
                "unmuteParticipantOperation"
            };
            respond_operation(&completed(operation(kind, &body)), &call)
        }
        "updateRecordingStatus" => {
            let status = body["status"].as_str().unwrap_or("");
            if !matches!(status, "recording" | "notRecording" | "failed") {
                return ApiError::bad_request(
                    "'status' must be recording, notRecording or failed.",
                )
                .for_request(&headers)
                .into_response();
            }
            respond_operation(
                &completed(operation("updateRecordingStatusOperation", &body)),
                &call,
            )
        }
        "changeScreenSharingRole" => {
            if !matches!(body["role"].as_str(), Some("viewer" | "sharer")) {
                return ApiError::bad_request("'role' must be viewer or sharer.")
                    .for_request(&headers)
                    .into_response();
            }
            StatusCode::ACCEPTED.into_response()
        }
        "reject" => {
            if call.state() != "incoming" {
                return ApiError::conflict("Only an incoming call can be rejected.")
                    .for_request(&headers)
                    .into_response();
            }
            call.terminate(
                &shared,
                &CallResult {
                    code: 603,
                    subcode: 0,
                    message: "The call was rejected by the application.".into(),
                },
            );
            StatusCode::ACCEPTED.into_response()
        }
        "answer" => {
            if call.state() != "incoming" {
                return ApiError::conflict("Only an incoming call can be answered.")
                    .for_request(&headers)
                    .into_response();
            }
            answer(&shared, &call, body, &headers).await
        }
        "redirect" => {
            if call.state() != "incoming" {
                return ApiError::conflict("Only an incoming call can be redirected.")
                    .for_request(&headers)
                    .into_response();
            }
            if body["targets"].as_array().is_none_or(Vec::is_empty) {
                return ApiError::bad_request("'targets' is required and must not be empty.")
                    .for_request(&headers)
                    .into_response();
            }
            call.set_state(&shared, "redirecting");
            call.terminate(
                &shared,
                &CallResult {
                    code: 200,
                    subcode: 7015,
                    message: "The call was redirected.".into(),
                },
            );
            StatusCode::ACCEPTED.into_response()
        }
        "transfer" => {
            if !body["transferTarget"].is_object() {
                return ApiError::bad_request("'transferTarget' is required.")
                    .for_request(&headers)
                    .into_response();
            }
            call.set_state(&shared, "transferring");
            let (shared2, call2) = (shared.clone(), call.clone());
            tokio::spawn(async move {
                tokio::time::sleep(shared2.scaled(Duration::from_millis(300))).await;
                call2.set_state(&shared2, "transferAccepted");
                tokio::time::sleep(shared2.scaled(Duration::from_millis(300))).await;
                call2.terminate(
                    &shared2,
                    &CallResult {
                        code: 200,
                        subcode: 7015,
                        message: "The call was transferred.".into(),
                    },
                );
            });
            StatusCode::ACCEPTED.into_response()
        }
        other => ApiError::bad_request(format!("Unknown call action `{}`.", short(other)))
            .for_request(&headers)
            .into_response(),
    }
}

async fn answer(
    shared: &Arc<Shared>,
    call: &Arc<CallEntry>,
    body: Value,
    headers: &HeaderMap,
) -> Response {
    let Some(cb) = body["callbackUri"].as_str() else {
        return ApiError::bad_request("'callbackUri' is required.")
            .for_request(headers)
            .into_response();
    };
    if let Err(p) = signalling::check_callback_uri(cb) {
        return ApiError::bad_request(format!("'callbackUri' is invalid: {p}"))
            .for_request(headers)
            .into_response();
    }
    if body["mediaConfig"]["@odata.type"] == "#microsoft.graph.appHostedMediaConfig" {
        let blob = body["mediaConfig"]["blob"].as_str().unwrap_or("");
        if let Err(e) = media_session::Blob::parse(blob) {
            return ApiError::bad_request(format!("'mediaConfig.blob' is invalid: {e}"))
                .for_request(headers)
                .into_response();
        }
    }
    {
        let mut inner = lock(&call.inner);
        inner.resource["callbackUri"] = json!(cb);
        inner.resource["mediaConfig"] = body["mediaConfig"].clone();
    }
    call.set_state(shared, "establishing");
    // The call's task joins the roster, connects media per the answer's media config and
    // moves on to established.
    call.answered.notify_one();
    StatusCode::ACCEPTED.into_response()
}

/// `GET /{version}/communications/calls/{id}/participants`.
pub(crate) async fn list_participants(
    State(shared): Api,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let call = call_for(&shared, &version, &id, &headers)?;
        let value: Vec<Value> = lock(&call.inner)
            .roster
            .iter()
            .map(|m| m.participant.clone())
            .collect();
        Ok::<_, ApiError>(Json(json!({
            "@odata.context": format!("{}/{version}/$metadata#communications/calls('{id}')/participants", shared.base_url()),
            "value": value,
        })))
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

/// `GET /{version}/communications/calls/{id}/participants/{pid}`.
pub(crate) async fn get_participant(
    State(shared): Api,
    Path((version, id, pid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let call = call_for(&shared, &version, &id, &headers)?;
        let p = lock(&call.inner)
            .roster
            .iter()
            .find(|m| m.id() == pid)
            .map(|m| m.participant.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("Participant `{}` was not found.", short(&pid)))
            })?;
        Ok::<_, ApiError>(Json(p))
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

/// `DELETE /{version}/communications/calls/{id}/participants/{pid}`.
pub(crate) async fn delete_participant(
    State(shared): Api,
    Path((version, id, pid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = (|| {
        let call = call_for(&shared, &version, &id, &headers)?;
        if !call.leave(&shared, &pid) {
            return Err(ApiError::not_found(format!(
                "Participant `{}` was not found.",
                short(&pid)
            )));
        }
        Ok(StatusCode::NO_CONTENT)
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

/// `POST /{version}/communications/calls/{id}/participants/{pid}/mute` and
/// `POST /{version}/communications/calls/{id}/participants/invite`.
pub(crate) async fn participant_action(
    State(shared): Api,
    Path((version, id, pid, action)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = match call_for(&shared, &version, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.for_request(&headers).into_response(),
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return graph_error_response(e, &headers),
    };
    match action.as_str() {
        "mute" => {
            if !call.set_muted(&shared, &pid, true) {
                return ApiError::not_found(format!(
                    "Participant `{}` was not found.",
                    short(&pid)
                ))
                .for_request(&headers)
                .into_response();
            }
            respond_operation(
                &completed(operation("muteParticipantOperation", &body)),
                &call,
            )
        }
        other => ApiError::bad_request(format!("Unknown participant action `{}`.", short(other)))
            .for_request(&headers)
            .into_response(),
    }
}

/// `POST /{version}/communications/calls/{id}/participants/invite`.
pub(crate) async fn invite(
    State(shared): Api,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let call = match call_for(&shared, &version, &id, &headers) {
        Ok(c) => c,
        Err(e) => return e.for_request(&headers).into_response(),
    };
    let body = match json_body(&body) {
        Ok(b) => b,
        Err(e) => return graph_error_response(e, &headers),
    };
    let Some(list) = body["participants"].as_array().filter(|l| !l.is_empty()) else {
        return ApiError::bad_request("'participants' is required and must not be empty.")
            .for_request(&headers)
            .into_response();
    };
    let mut joining = Vec::new();
    for (i, p) in list.iter().enumerate() {
        let Some(uid) = p["identity"]["user"]["id"].as_str() else {
            return ApiError::bad_request(format!(
                "'participants[{i}].identity.user.id' is required."
            ))
            .for_request(&headers)
            .into_response();
        };
        match shared.scenario.user(uid) {
            Some(u) => joining.push(u.clone()),
            None => {
                return ApiError::not_found(crate::lookup::unknown_user(&shared.scenario, uid))
                    .for_request(&headers)
                    .into_response();
            }
        }
    }
    let op = operation("inviteParticipantsOperation", &body);
    lock(&call.inner)
        .operations
        .insert(op["id"].as_str().unwrap_or("").into(), op.clone());
    let (shared2, call2, op2) = (shared.clone(), call.clone(), op.clone());
    tokio::spawn(async move {
        for u in joining {
            let delay = match u.answer {
                Answer::AfterMs(ms) => ms,
                _ => continue,
            };
            tokio::time::sleep(shared2.scaled(Duration::from_millis(delay))).await;
            if call2.is_ended() {
                return;
            }
            let tenant = u
                .tenant_id
                .clone()
                .unwrap_or_else(|| call2.tenant_id.clone());
            call2.join(
                &shared2,
                &uuid::Uuid::new_v4().to_string(),
                user_identity(&u.id, &u.display_name, &tenant),
                u.says.clone(),
                false,
                false,
            );
        }
        let id = op2["id"].as_str().unwrap_or("").to_owned();
        if lock(&call2.inner).operations.remove(&id).is_some() {
            call2.notify_operation(&shared2, completed(op2));
        }
    });
    respond_operation(&op, &call)
}
