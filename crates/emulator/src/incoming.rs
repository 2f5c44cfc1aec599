//! Calls placed to the bot: a scenario user (or phone) calls an app; the bot is notified
//! with a `created` notification in state `incoming` and must answer, reject or redirect
//! within 15 s.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use signalling::model::{
    Call, CallDirection, CallState, Field, IdentityRole, IdentitySet, IncomingContext,
    InvitationParticipantInfo, Modality, ParticipantInfo,
};

use crate::calls::{self, CallEntry, Plan, Target, identity_set, user_identity};
use crate::errors::ApiError;
use crate::scenario::Answer;
use crate::state::{LogKind, Shared, lock};

/// Places a call from `from` (a scenario user id or phone number) to the app `app_id` (the
/// scenario's first app when `None`), notifying `callback_uri`. Returns the call id.
pub(crate) fn place(
    shared: &Arc<Shared>,
    from: &str,
    app_id: Option<&str>,
    callback_uri: &str,
) -> Result<String, ApiError> {
    signalling::check_callback_uri(callback_uri)
        .map_err(|p| ApiError::bad_request(format!("'callbackUri' is invalid: {p}")))?;
    let app = match app_id {
        Some(id) => shared.scenario.apps.iter().find(|a| a.app_id == id),
        None => shared.scenario.apps.first(),
    }
    .ok_or_else(|| ApiError::not_found("No such app registration."))?
    .clone();
    let (identity, voice) = if let Some(u) = shared.scenario.user(from) {
        let tenant = u.tenant_id.as_deref().unwrap_or(&app.tenant_id);
        (
            user_identity(&u.id, &u.display_name, tenant),
            u.says.clone(),
        )
    } else if let Some(p) = shared.scenario.phone(from) {
        (
            identity_set(IdentityRole::Phone, &p.number, p.display_name.as_deref()),
            p.says.clone(),
        )
    } else {
        return Err(ApiError::not_found(crate::lookup::unknown_caller(
            &shared.scenario,
            from,
        )));
    };
    let id = uuid::Uuid::new_v4().to_string();
    let bot_identity = identity_set(IdentityRole::Application, &app.app_id, Some("Calling Bot"));
    let resource = incoming_resource(&id, callback_uri, &identity, &bot_identity, &app.tenant_id);
    let entry: Arc<CallEntry> = CallEntry::new(
        shared,
        resource,
        app.app_id.clone(),
        app.tenant_id.clone(),
        signalling::MediaHosting::App,
    );
    lock(&shared.calls).insert(id.clone(), entry.clone());
    shared.log(
        LogKind::Request,
        Some(&id),
        format!("incoming call from {from} to app {}", app.app_id),
    );
    // The caller is left out: it can be a phone number.
    tracing::info!(
        target: "emulator::calls",
        call_id = %id,
        scenario = "incoming",
        app_id = %app.app_id,
        "call created: incoming to the bot"
    );
    let caller = Target {
        identity,
        voice,
        answer: Answer::AfterMs(0),
        known: true,
    };
    tokio::spawn(calls::run(
        shared.clone(),
        entry,
        Plan::Incoming(Box::new(caller)),
        bot_identity,
    ));
    Ok(id)
}

/// The call resource the bot is offered: `incoming`, from `caller` to the bot.
fn incoming_resource(
    id: &str,
    callback_uri: &str,
    caller: &IdentitySet,
    bot: &IdentitySet,
    tenant: &str,
) -> Call {
    let mut source = ParticipantInfo::default();
    source.odata_type = "#microsoft.graph.participantInfo".to_owned().into();
    source.identity = caller.clone().into();
    source.region = Field::Null;
    source.language_id = Field::Null;
    let mut target = InvitationParticipantInfo::default();
    target.odata_type = "#microsoft.graph.invitationParticipantInfo"
        .to_owned()
        .into();
    target.identity = bot.clone().into();
    let mut context = IncomingContext::default();
    context.odata_type = "#microsoft.graph.incomingContext".to_owned().into();
    context.source_participant_id = uuid::Uuid::new_v4().to_string().into();
    let mut r = Call::default();
    r.odata_type = "#microsoft.graph.call".to_owned().into();
    r.state = CallState::Incoming.into();
    r.direction = CallDirection::Incoming.into();
    r.callback_uri = callback_uri.to_owned().into();
    r.call_chain_id = uuid::Uuid::new_v4().to_string().into();
    r.source = source.into();
    r.targets = vec![target].into();
    r.requested_modalities = vec![Modality::Audio].into();
    r.tenant_id = tenant.to_owned().into();
    r.my_participant_id = uuid::Uuid::new_v4().to_string().into();
    r.id = id.to_owned().into();
    r.incoming_context = context.into();
    r
}

/// `POST /emulator/incoming` with `{"from": USER_OR_NUMBER, "callbackUri": URL, "appId"?: ID}`.
pub(crate) async fn handler(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (Some(from), Some(cb)) = (body["from"].as_str(), body["callbackUri"].as_str()) else {
        return ApiError::bad_request("'from' and 'callbackUri' are required strings.")
            .for_request(&headers)
            .into_response();
    };
    match place(&shared, from, body["appId"].as_str(), cb) {
        Ok(id) => (StatusCode::CREATED, Json(json!({ "callId": id }))).into_response(),
        Err(e) => e.for_request(&headers).into_response(),
    }
}
