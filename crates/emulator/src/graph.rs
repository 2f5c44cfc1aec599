//! The Graph calling API: create, get and delete calls, call actions, participants; every
//! request authenticated with an access token of this emulator and checked against the
//! permissions (`roles`) it carries.
//!
//! The call resource, its participants and its operations are `signalling::model` values,
//! serialized in the response. The bodies of call actions (`playPrompt`, `answer`, ...) stay
//! JSON values: the model has no types for action requests, and each handler reads the two
//! or three properties it needs from them.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use signalling::model::{
    CallDirection, CallState, CommsOperation, Field, GraphType, IdentityRole, IdentitySet,
    InviteParticipantsOperation, MediaConfig, OperationDetails, OperationStatus, ParticipantInfo,
    PlayPromptCompletionReason, PlayPromptOperation, RecordCompletionReason, RecordOperation,
    ResultCode, ResultInfo, Secret, SendDtmfCompletionReason, SendDtmfTonesOperation,
};
use signalling::{ErrorReason, GraphError, ParseMode, Permission, Scenario as CallScenario};

use crate::calls::{
    self, CallEntry, CallResult, Plan, Target, identity_set, or_null, user_identity,
};
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
    let id = uuid::Uuid::new_v4().to_string();
    let my_participant_id = uuid::Uuid::new_v4().to_string();
    let tenant = call.tenant_id.get().unwrap_or(&claims.tid).to_owned();
    let bot_identity = call
        .source
        .get()
        .and_then(|s| s.identity.get())
        .cloned()
        .unwrap_or_else(|| {
            identity_set(
                IdentityRole::Application,
                &claims.appid,
                Some("Calling Bot"),
            )
        });
    let resource = new_resource(
        &call,
        shared.base_url(),
        &version,
        &id,
        &my_participant_id,
        &tenant,
        &bot_identity,
    );
    let plan = plan_for(&shared, &validated.scenario, &call, &tenant);
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
        Json(resource.to_json_value()),
    )
        .into_response()
}

/// The call resource of a new outgoing call: what the request asked for, and `null` for
/// everything not known yet, as Graph shows it.
fn new_resource(
    request: &signalling::model::Call,
    base_url: &str,
    version: &str,
    id: &str,
    my_participant_id: &str,
    tenant: &str,
    bot_identity: &IdentitySet,
) -> signalling::model::Call {
    let mut source = ParticipantInfo::default();
    source.odata_type = "#microsoft.graph.participantInfo".to_owned().into();
    source.identity = bot_identity.clone().into();
    source.region = Field::Null;
    source.language_id = Field::Null;
    let mut r = signalling::model::Call::default();
    r.odata_type = "#microsoft.graph.call".to_owned().into();
    r.state = CallState::Establishing.into();
    r.direction = CallDirection::Outgoing.into();
    r.callback_uri = or_null(&request.callback_uri);
    r.call_chain_id = uuid::Uuid::new_v4().to_string().into();
    r.call_routes = Vec::new().into();
    r.source = source.into();
    r.targets = match &request.targets {
        Field::Absent => Vec::new().into(),
        given => given.clone(),
    };
    r.requested_modalities = or_null(&request.requested_modalities);
    r.active_modalities = Vec::new().into();
    r.media_config = or_null(&request.media_config);
    r.routing_policies = Vec::new().into();
    r.tenant_id = tenant.to_owned().into();
    r.my_participant_id = my_participant_id.to_owned().into();
    r.id = id.to_owned().into();
    // OData's own annotation: not a property of the call, so not in the model.
    r.extra.insert(
        "@odata.context".to_owned(),
        format!("{base_url}/{version}/$metadata#communications/calls/$entity").into(),
    );
    r.subject = or_null(&request.subject);
    r.termination_reason = Field::Null;
    r.ringing_timeout_in_seconds = Field::Null;
    r.media_state = Field::Null;
    r.result_info = Field::Null;
    r.answered_by = Field::Null;
    r.chat_info = or_null(&request.chat_info);
    r.meeting_info = or_null(&request.meeting_info);
    r.transcription = Field::Null;
    r.meeting_capability = Field::Null;
    r.tone_info = Field::Null;
    r
}

/// App-hosted calls not yet terminated.
fn app_hosted_calls(shared: &Shared) -> usize {
    lock(&shared.calls)
        .values()
        .filter(|c| {
            c.hosting == signalling::MediaHosting::App
                && calls::state_of(&lock(&c.inner).resource) != CallState::Terminated
        })
        .count()
}

/// Resolves the request's targets or meeting against the scenario.
fn plan_for(
    shared: &Shared,
    scenario: &CallScenario,
    request: &signalling::model::Call,
    tenant: &str,
) -> Plan {
    let sc = &shared.scenario;
    let unknown = |given: &IdentitySet| Target {
        identity: given.clone(),
        voice: Voice::Silence,
        answer: Answer::NoAnswer,
        known: false,
    };
    let user_target = |id: &str, given: &IdentitySet| match sc.user(id) {
        Some(u) => Target {
            identity: user_identity(
                &u.id,
                &u.display_name,
                u.tenant_id.as_deref().unwrap_or(tenant),
            ),
            voice: u.says.clone(),
            answer: u.answer.clone(),
            known: true,
        },
        None => unknown(given),
    };
    match scenario {
        CallScenario::MeetingJoin { as_guest, .. } => {
            let meeting = crate::lookup::find_meeting(sc, request).map(|m| {
                let members = m
                    .participants
                    .iter()
                    .map(|p| user_target(p, &IdentitySet::default()))
                    .collect();
                (m.clone(), members)
            });
            Plan::Meeting {
                meeting,
                as_guest: *as_guest,
            }
        }
        _ => {
            let targets = request.targets.get().map_or(&[][..], Vec::as_slice);
            Plan::Direct(
                targets
                    .iter()
                    .map(|t| {
                        let identity = t.identity.get().cloned().unwrap_or_default();
                        let id_in = |role| {
                            identity
                                .get(role)
                                .and_then(|i| i.id.get())
                                .map(|id| id.as_str().to_owned())
                        };
                        if let Some(id) = id_in(IdentityRole::User) {
                            user_target(&id, &identity)
                        } else if let Some(number) = id_in(IdentityRole::Phone) {
                            match sc.phone(&number) {
                                Some(p) => Target {
                                    identity: identity_set(
                                        IdentityRole::Phone,
                                        &p.number,
                                        p.display_name.as_deref(),
                                    ),
                                    voice: p.says.clone(),
                                    answer: p.answer.clone(),
                                    known: true,
                                },
                                None => unknown(&identity),
                            }
                        } else {
                            unknown(&identity)
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
        let resource = lock(&call.inner).resource.to_json_value();
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
        call.set_state(&shared, CallState::Terminating);
        call.terminate(&shared, &CallResult::ENDED_BY_BOT);
        Ok(StatusCode::NO_CONTENT)
    })();
    result.map_or_else(
        |e| e.for_request(&headers).into_response(),
        IntoResponse::into_response,
    )
}

/// Sets the properties every operation type has, whichever type `$op` is.
macro_rules! with_base {
    ($op:expr, $o:ident => $body:expr, $otherwise:expr) => {
        match $op {
            CommsOperation::PlayPrompt($o) => $body,
            CommsOperation::Record($o) => $body,
            CommsOperation::SendDtmfTones($o) => $body,
            CommsOperation::InviteParticipants($o) => $body,
            CommsOperation::Other($o) => $body,
            _ => $otherwise,
        }
    };
}

/// A running operation of `kind` (`playPromptOperation`, ...) with the request's
/// `clientContext`.
fn operation(kind: &str, body: &Value) -> CommsOperation {
    let mut op = match kind {
        "playPromptOperation" => CommsOperation::PlayPrompt(PlayPromptOperation::default()),
        "recordOperation" => CommsOperation::Record(RecordOperation::default()),
        "sendDtmfTonesOperation" => {
            CommsOperation::SendDtmfTones(SendDtmfTonesOperation::default())
        }
        "inviteParticipantsOperation" => {
            CommsOperation::InviteParticipants(InviteParticipantsOperation::default())
        }
        _ => CommsOperation::Other(OperationDetails::default()),
    };
    let odata_type = format!("#microsoft.graph.{kind}");
    let id = uuid::Uuid::new_v4().to_string();
    // The bot's context comes back as it was sent; the model's is a string, anything else
    // is echoed as an unknown property.
    let (context, odd_context) = match body.get("clientContext") {
        Some(Value::String(s)) => (Field::Value(s.clone()), None),
        None | Some(Value::Null) => (Field::Null, None),
        Some(other) => (Field::Absent, Some(other.clone())),
    };
    with_base!(&mut op, o => {
        o.odata_type = odata_type.into();
        o.id = id.into();
        o.status = OperationStatus::Running.into();
        o.client_context = context;
        o.result_info = Field::Null;
        if let Some(v) = odd_context {
            o.extra.insert("clientContext".to_owned(), v);
        }
    }, {});
    op
}

/// The operation's id.
pub(crate) fn operation_id(op: &CommsOperation) -> &str {
    with_base!(op, o => o.id.get().map_or("", String::as_str), "")
}

/// The operation completed with success (`resultInfo` 200/0).
fn completed(mut op: CommsOperation) -> CommsOperation {
    let mut info = ResultInfo::default();
    info.odata_type = "#microsoft.graph.resultInfo".to_owned().into();
    info.code = ResultCode::from(200).into();
    info.subcode = ResultCode::from(0).into();
    info.message = "Success".to_owned().into();
    with_base!(&mut op, o => {
        o.status = OperationStatus::Completed.into();
        o.result_info = info.into();
    }, {});
    op
}

/// A cancelled operation: completed, with `completionReason` `operationCanceled` whatever its
/// type (the model's enums of play-prompt and DTMF reasons do not have it: it is written as
/// given).
fn cancelled(op: CommsOperation) -> CommsOperation {
    const CANCELED: &str = "operationCanceled";
    let mut op = completed(op);
    match &mut op {
        CommsOperation::PlayPrompt(o) => {
            o.completion_reason = PlayPromptCompletionReason::from_graph(CANCELED).into();
        }
        CommsOperation::Record(o) => {
            o.completion_reason = RecordCompletionReason::OperationCanceled.into();
        }
        CommsOperation::SendDtmfTones(o) => {
            o.completion_reason = SendDtmfCompletionReason::from_graph(CANCELED).into();
        }
        other => with_base!(other, o => {
            o.extra.insert("completionReason".to_owned(), CANCELED.into());
        }, {}),
    }
    op
}

/// Completes an operation after `d` of emulated time, unless the call ended; `finish` sets
/// what the completed operation reports beyond its status.
fn complete_later(
    shared: &Arc<Shared>,
    call: &Arc<CallEntry>,
    op: CommsOperation,
    d: Duration,
    finish: impl FnOnce(&mut CommsOperation) + Send + 'static,
) {
    let shared = shared.clone();
    let call = call.clone();
    tokio::spawn(async move {
        tokio::time::sleep(shared.scaled(d)).await;
        if call.is_ended() {
            return;
        }
        let mut done = completed(op);
        finish(&mut done);
        let still_running = lock(&call.inner)
            .operations
            .remove(operation_id(&done))
            .is_some();
        if still_running {
            call.notify_operation(&shared, done);
        }
    });
}

fn respond_operation(op: &CommsOperation, call: &CallEntry) -> Response {
    let location = format!("{}/operations/{}", call.resource_url(), operation_id(op));
    (
        StatusCode::OK,
        [(header::LOCATION, location)],
        Json(op.to_json_value()),
    )
        .into_response()
}

/// Keeps a running operation until it completes or is cancelled.
fn track(call: &CallEntry, op: &CommsOperation) {
    lock(&call.inner)
        .operations
        .insert(operation_id(op).to_owned(), op.clone());
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
    let my_id = call.my_participant_id();
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
            track(&call, &op);
            complete_later(
                &shared,
                &call,
                op.clone(),
                Duration::from_secs(prompts as u64),
                |op| {
                    if let CommsOperation::PlayPrompt(o) = op {
                        o.completion_reason =
                            PlayPromptCompletionReason::CompletedSuccessfully.into();
                    }
                },
            );
            respond_operation(&op, &call)
        }
        "recordResponse" => {
            let secs = body["maxRecordDurationInSeconds"]
                .as_u64()
                .unwrap_or(5)
                .clamp(1, 300);
            let op = operation("recordOperation", &body);
            track(&call, &op);
            let location = format!(
                "{}/recordings/{}/{}.wav",
                shared.base_url(),
                id,
                operation_id(&op)
            );
            let token = uuid::Uuid::new_v4().to_string();
            // What the other side says: the first participant who is not the bot.
            let voice = lock(&call.inner)
                .roster
                .iter()
                .find(|m| !m.is_bot)
                .map(|m| m.voice.clone())
                .unwrap_or_default();
            let op_id = operation_id(&op).to_owned();
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
                move |op| {
                    if let CommsOperation::Record(o) = op {
                        o.completion_reason =
                            RecordCompletionReason::MaxRecordDurationReached.into();
                        o.recording_location = location.into();
                        o.recording_access_token = Secret(token).into();
                    }
                },
            );
            respond_operation(&op, &call)
        }
        "cancelMediaProcessing" => {
            let running: Vec<CommsOperation> = std::mem::take(&mut lock(&call.inner).operations)
                .into_values()
                .collect();
            for op in running {
                call.notify_operation(&shared, cancelled(op));
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
            track(&call, &op);
            let gap = body["delayBetweenTonesMs"]
                .as_u64()
                .unwrap_or(100)
                .min(5000);
            complete_later(
                &shared,
                &call,
                op.clone(),
                Duration::from_millis((gap + 100) * tones as u64),
                |op| {
                    if let CommsOperation::SendDtmfTones(o) = op {
                        o.completion_reason =
                            SendDtmfCompletionReason::CompletedSuccessfully.into();
                    }
                },
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
            if call.state() != CallState::Incoming {
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
            if call.state() != CallState::Incoming {
                return ApiError::conflict("Only an incoming call can be answered.")
                    .for_request(&headers)
                    .into_response();
            }
            answer(&shared, &call, body, &headers).await
        }
        "redirect" => {
            if call.state() != CallState::Incoming {
                return ApiError::conflict("Only an incoming call can be redirected.")
                    .for_request(&headers)
                    .into_response();
            }
            if body["targets"].as_array().is_none_or(Vec::is_empty) {
                return ApiError::bad_request("'targets' is required and must not be empty.")
                    .for_request(&headers)
                    .into_response();
            }
            call.set_state(&shared, CallState::Redirecting);
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
            call.set_state(&shared, CallState::Transferring);
            let (shared2, call2) = (shared.clone(), call.clone());
            tokio::spawn(async move {
                tokio::time::sleep(shared2.scaled(Duration::from_millis(300))).await;
                call2.set_state(&shared2, CallState::TransferAccepted);
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
    let media_config = match body.get("mediaConfig") {
        None | Some(Value::Null) => Field::Null,
        Some(v) => match MediaConfig::from_json_value(v.clone()) {
            Ok(c) => Field::Value(c),
            Err(e) => {
                return ApiError::bad_request(format!("'mediaConfig' is invalid: {e}"))
                    .for_request(headers)
                    .into_response();
            }
        },
    };
    if let Some(blob) = calls::app_hosted_blob(media_config.get())
        && let Err(e) = media_session::Blob::parse(&blob)
    {
        return ApiError::bad_request(format!("'mediaConfig.blob' is invalid: {e}"))
            .for_request(headers)
            .into_response();
    }
    {
        let mut inner = lock(&call.inner);
        inner.resource.callback_uri = cb.to_owned().into();
        inner.resource.media_config = media_config;
    }
    call.set_state(shared, CallState::Establishing);
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
            .map(|m| m.participant.to_json_value())
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
            .map(|m| m.participant.to_json_value())
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
    track(&call, &op);
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
        if lock(&call2.inner)
            .operations
            .remove(operation_id(&op2))
            .is_some()
        {
            call2.notify_operation(&shared2, completed(op2));
        }
    });
    respond_operation(&op, &call)
}
