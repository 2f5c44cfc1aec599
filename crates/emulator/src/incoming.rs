//! Calls placed to the bot: a scenario user (or phone) calls an app; the bot is notified
//! with a `created` notification in state `incoming` and must answer, reject or redirect
//! within 15 s.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::calls::{self, CallEntry, Plan, Target, user_identity};
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
            json!({
                "@odata.type": "#microsoft.graph.identitySet",
                "phone": { "@odata.type": "#microsoft.graph.identity", "id": p.number, "displayName": p.display_name }
            }),
            p.says.clone(),
        )
    } else {
        return Err(ApiError::not_found(crate::lookup::unknown_caller(
            &shared.scenario,
            from,
        )));
    };
    let id = uuid::Uuid::new_v4().to_string();
    let bot_identity = json!({
        "@odata.type": "#microsoft.graph.identitySet",
        "application": { "@odata.type": "#microsoft.graph.identity", "displayName": "Calling Bot", "id": app.app_id }
    });
    let resource = json!({
        "@odata.type": "#microsoft.graph.call",
        "state": "incoming",
        "direction": "incoming",
        "callbackUri": callback_uri,
        "callChainId": uuid::Uuid::new_v4().to_string(),
        "source": {
            "@odata.type": "#microsoft.graph.participantInfo",
            "identity": identity,
            "region": null,
            "languageId": null,
        },
        "targets": [{
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": bot_identity,
        }],
        "requestedModalities": ["audio"],
        "tenantId": app.tenant_id,
        "myParticipantId": uuid::Uuid::new_v4().to_string(),
        "id": id,
        "incomingContext": {
            "@odata.type": "#microsoft.graph.incomingContext",
            "sourceParticipantId": uuid::Uuid::new_v4().to_string(),
        },
    });
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
        participant: identity,
        voice,
        answer: Answer::AfterMs(0),
        known: true,
    };
    tokio::spawn(calls::run(
        shared.clone(),
        entry,
        Plan::Incoming(caller),
        bot_identity,
    ));
    Ok(id)
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
