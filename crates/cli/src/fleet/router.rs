//! The fleet's front: the ingress for the webhook (per instance and shared) and the
//! fleet-wide API. Errors are the serve API's `{"error": {"code", "message"}}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use serde_json::{Value, json};

use super::{Fleet, Instance};

/// The largest body passed on (the webhook's own cap is lower).
const MAX_BODY_BYTES: usize = 1024 * 1024;

type St = State<Arc<Fleet>>;

pub(super) fn router(fleet: Arc<Fleet>) -> Router {
    Router::new()
        .route("/callback", any(shared_callback))
        .route("/callback/{instance}", any(instance_callback))
        .route("/calls", post(place_call).get(list_calls))
        .route("/calls/{id}", get(get_call).delete(hang_up_call))
        .route("/instances", get(list_instances))
        .route("/instances/{id}/drain", post(drain))
        .route("/instances/{id}/kill", post(kill))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(fleet)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    json_response(
        status,
        &json!({ "error": { "code": code, "message": message.into() } }),
    )
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "notFound",
        format!("no route for {}", uri.path()),
    )
}

/// Headers not passed on: hop-by-hop ones, and those the client sets itself.
fn passed(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "content-length"
    )
}

/// Sends the request on to `base` + the same path and query; the answer comes back as is.
async fn pass_on(
    fleet: &Fleet,
    base: std::net::SocketAddr,
    method: Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = fleet
        .http
        .request(method, format!("http://{base}{path}"))
        .body(body);
    for (name, value) in headers {
        if passed(name) {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await?;
    let status = answer.status();
    let mut out_headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if passed(name) {
            out_headers.insert(name.clone(), value.clone());
        }
    }
    let body = answer.bytes().await?;
    Ok((status, out_headers, body).into_response())
}

fn instance_header(id: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_static("x-botmedia-instance"),
        HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("invalid")),
    )
}

/// A notification about a call: to the instance its callback URL names.
async fn instance_callback(
    State(fleet): St,
    Path(instance): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(inst) = fleet.get(&instance) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknownInstance",
            format!("no instance `{instance}` in this fleet"),
        );
    };
    match pass_on(&fleet, inst.webhook, method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(instance = %inst.id, error = %e, "notification not delivered: the instance is down");
            error(
                StatusCode::BAD_GATEWAY,
                "instanceDown",
                format!("instance `{}` does not answer: {e}", inst.id),
            )
        }
    }
}

/// The app's shared webhook: new incoming calls go to the ready instance with the fewest
/// calls; when none is ready, to a running one (which rejects the call busy).
async fn shared_callback(
    State(fleet): St,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut tried = Vec::new();
    while let Some(inst) = fleet.reserve(&tried, true) {
        tried.push(inst.id.clone());
        let passed = pass_on(
            &fleet,
            inst.webhook,
            method.clone(),
            &uri,
            &headers,
            body.clone(),
        )
        .await;
        match passed {
            Ok(mut r) => {
                inst.release(r.status().is_success());
                let (name, value) = instance_header(&inst.id);
                r.headers_mut().insert(name, value);
                return r;
            }
            Err(e) => {
                inst.release(false);
                tracing::info!(instance = %inst.id, error = %e, "instance did not take the notification; trying the next");
                inst.refused("unreachable");
            }
        }
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "noInstance",
        "no instance of the fleet runs",
    )
}

async fn place_call(State(fleet): St, headers: HeaderMap, body: Bytes) -> Response {
    let mut refusals = Vec::new();
    let mut tried = Vec::new();
    while let Some(inst) = fleet.reserve(&tried, false) {
        tried.push(inst.id.clone());
        let mut request = fleet
            .http
            .post(format!("http://{}/calls", inst.api))
            .body(body.clone());
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        let answer = match request.send().await {
            Ok(a) => a,
            Err(e) => {
                inst.release(false);
                inst.refused("unreachable");
                refusals.push(format!("{}: {e}", inst.id));
                continue;
            }
        };
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        let mut value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        inst.release(status.is_success());
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let code = value["error"]["code"].as_str().unwrap_or("unavailable");
            inst.refused(code);
            refusals.push(format!("{}: {code}", inst.id));
            continue;
        }
        if status.is_success() {
            tracing::info!(instance = %inst.id, call = value["id"].as_str().unwrap_or(""), "call placed");
        }
        if value.is_object() {
            value["instance"] = Value::String(inst.id.clone());
        }
        let mut r = json_response(status, &value);
        let (name, v) = instance_header(&inst.id);
        r.headers_mut().insert(name, v);
        return r;
    }
    let message = if refusals.is_empty() {
        "no instance is ready to take a call (all draining, loaded, at capacity or down)".to_owned()
    } else {
        format!(
            "every ready instance refused the call: {}",
            refusals.join("; ")
        )
    };
    error(StatusCode::SERVICE_UNAVAILABLE, "noInstanceReady", message)
}

/// `GET path` on every running instance's API, concurrently: `(instance, status, body)`.
async fn ask_all(
    fleet: &Arc<Fleet>,
    method: Method,
    path: &str,
) -> Vec<(Arc<Instance>, u16, Value)> {
    let handles: Vec<_> = fleet
        .instances
        .iter()
        .filter(|i| i.is_running())
        .map(|inst| {
            let inst = inst.clone();
            let http = fleet.http.clone();
            let url = format!("http://{}{path}", inst.api);
            let method = method.clone();
            tokio::spawn(async move {
                let answer = http.request(method, url).send().await.ok()?;
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap_or(Value::Null);
                Some((inst, status, body))
            })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        if let Ok(Some(r)) = h.await {
            out.push(r);
        }
    }
    out
}

async fn list_calls(State(fleet): St) -> Response {
    let mut calls = Vec::new();
    for (inst, _, body) in ask_all(&fleet, Method::GET, "/calls").await {
        for mut call in body["calls"].as_array().cloned().unwrap_or_default() {
            call["instance"] = Value::String(inst.id.clone());
            calls.push(call);
        }
    }
    json_response(StatusCode::OK, &json!({ "calls": calls }))
}

fn call_path(id: &str) -> Option<String> {
    id.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        .then(|| format!("/calls/{id}"))
}

async fn on_call(fleet: Arc<Fleet>, method: Method, id: String) -> Response {
    let Some(path) = call_path(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            "callNotFound",
            format!("no running call `{id}`"),
        );
    };
    for (inst, status, mut body) in ask_all(&fleet, method, &path).await {
        if status != 404 {
            if body.is_object() {
                body["instance"] = Value::String(inst.id.clone());
            }
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return json_response(status, &body);
        }
    }
    error(
        StatusCode::NOT_FOUND,
        "callNotFound",
        format!("no running call `{id}` on any instance"),
    )
}

async fn get_call(State(fleet): St, Path(id): Path<String>) -> Response {
    on_call(fleet, Method::GET, id).await
}

async fn hang_up_call(State(fleet): St, Path(id): Path<String>) -> Response {
    on_call(fleet, Method::DELETE, id).await
}

async fn list_instances(State(fleet): St) -> Response {
    let instances: Vec<Value> = fleet
        .instances
        .iter()
        .map(|i| serde_json::to_value(i.view()).unwrap_or(Value::Null))
        .collect();
    json_response(StatusCode::OK, &json!({ "instances": instances }))
}

fn signal(fleet: &Fleet, id: &str, signal: libc::c_int, what: &str) -> Response {
    let Some(inst) = fleet.get(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknownInstance",
            format!("no instance `{id}` in this fleet"),
        );
    };
    if !inst.signal(signal) {
        return error(
            StatusCode::CONFLICT,
            "notRunning",
            format!("instance `{id}` has no running process"),
        );
    }
    tracing::info!(instance = %id, what, "signal sent");
    json_response(
        StatusCode::ACCEPTED,
        &serde_json::to_value(inst.view()).unwrap_or(Value::Null),
    )
}

async fn drain(State(fleet): St, Path(id): Path<String>) -> Response {
    signal(&fleet, &id, libc::SIGTERM, "SIGTERM (drain)")
}

async fn kill(State(fleet): St, Path(id): Path<String>) -> Response {
    signal(&fleet, &id, libc::SIGKILL, "SIGKILL")
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

async fn readyz(State(fleet): St) -> Response {
    let ready = fleet.instances.iter().filter(|i| i.is_ready()).count();
    let status = if ready > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(
        status,
        &json!({ "readyInstances": ready, "instances": fleet.instances.len() }),
    )
}
