//! The emulator's HTTP server: Graph API, token endpoint, OpenID configuration and JWKS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::graph;
use crate::identity::{Identity, IdentityError};
use crate::scenario::Scenario;
use crate::state::Shared;

/// Largest request body the emulator reads.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How to start an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Participants, meetings, apps and timers.
    pub scenario: Scenario,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            scenario: Scenario::default(),
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The scenario is invalid.
    #[error(transparent)]
    Scenario(#[from] crate::scenario::ScenarioError),
    /// The signing key could not be generated.
    #[error("cannot generate the signing key: {0}")]
    Key(String),
}

/// A running emulator. Dropping it stops the server.
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts the emulator on a tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Self, StartError> {
        config.scenario.validate()?;
        let identity = Identity::generate(config.scenario.apps.clone())
            .map_err(|e| StartError::Key(e.to_string()))?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared::new(config.scenario, identity));
        let _ = shared.base_url.set(format!("http://{addr}"));
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Graph API base, `http://HOST:PORT/v1.0` (use `/beta` for the beta version).
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.base_url())
    }

    /// The token endpoint with a `{tenant}` placeholder, as
    /// `signalling::token::ClientCredentials::with_authority` and
    /// `CommunicationsSettings::authority` take it.
    pub fn authority(&self) -> String {
        self.token_url("{tenant}")
    }

    /// The OAuth2 token endpoint of `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.base_url())
    }

    /// The OpenID configuration that names the keys of notification tokens.
    pub fn openid_configuration_url(&self) -> String {
        format!("{}/v1/.well-known/OpenIdConfiguration", self.base_url())
    }

    /// The page people join a call from with a browser (microphone and speakers over
    /// WebRTC): `http://HOST:PORT/join`; `?call=CALL_ID&name=NAME` preselects the call and
    /// the name, `&auto=1` joins at once.
    pub fn join_url(&self) -> String {
        format!("{}/join", self.base_url())
    }

    /// The dashboard: calls, rosters, levels and the event log, `http://HOST:PORT/`.
    pub fn dashboard_url(&self) -> String {
        format!("{}/", self.base_url())
    }

    /// The scenario in force, for people: see [`Scenario::describe`].
    pub fn describe(&self) -> String {
        self.shared.scenario.describe(&self.base_url())
    }

    /// The scenario in force.
    pub fn scenario(&self) -> &Scenario {
        &self.shared.scenario
    }

    /// The state of a call as the API shows it, if the call exists.
    pub fn call_state(&self, call_id: &str) -> Option<String> {
        self.shared
            .call(call_id)
            .map(|c| c.state().as_str().to_owned())
    }

    /// Places a call from a scenario user or phone number (`from`) to the bot: the bot gets a
    /// `created` notification at `callback_uri` and must answer within 15 s (emulated time).
    /// `app_id` defaults to the scenario's first app. Returns the call id.
    pub fn place_incoming_call(
        &self,
        from: &str,
        callback_uri: &str,
        app_id: Option<&str>,
    ) -> Result<String, String> {
        crate::incoming::place(&self.shared, from, app_id, callback_uri).map_err(|e| e.message)
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.media.shutdown();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1/.well-known/OpenIdConfiguration", get(openid))
        .route("/v1/.well-known/keys", get(jwks))
        .route("/{version}/communications/calls", post(graph::create_call))
        .route("/{version}/app/calls", post(graph::create_call))
        .route(
            "/{version}/communications/calls/{id}",
            get(graph::get_call).delete(graph::delete_call),
        )
        .route(
            "/{version}/communications/calls/{id}/{action}",
            post(graph::call_action),
        )
        .route(
            "/{version}/communications/calls/{id}/participants",
            get(graph::list_participants),
        )
        .route(
            "/{version}/communications/calls/{id}/participants/invite",
            post(graph::invite),
        )
        .route(
            "/{version}/communications/calls/{id}/participants/{pid}",
            get(graph::get_participant).delete(graph::delete_participant),
        )
        .route(
            "/{version}/communications/calls/{id}/participants/{pid}/{action}",
            post(graph::participant_action),
        )
        .route("/", get(crate::dashboard::page))
        .route("/join", get(crate::join::page))
        .route("/emulator/calls/{id}/join", post(crate::join::join))
        .route(
            "/emulator/calls/{id}/join/{pid}",
            axum::routing::delete(crate::join::leave),
        )
        .route(
            "/emulator/calls/{id}/join/{pid}/report",
            post(crate::join::report),
        )
        .route("/emulator/state", get(crate::dashboard::state))
        .route("/emulator/incoming", post(crate::incoming::handler))
        .route(
            "/emulator/calls/{id}/participants/{pid}/say",
            post(crate::dashboard::say),
        )
        .route(
            "/recordings/{call}/{file}",
            get(crate::recordings::download),
        )
        .route(
            "/emulator/calls/{id}/hangup",
            post(crate::dashboard::hangup_call),
        )
        .route("/emulator/calls/{id}/tone", post(crate::dashboard::tone))
        .route(
            "/emulator/calls/{id}/participants/{pid}/admit",
            post(crate::dashboard::admit),
        )
        .route(
            "/emulator/calls/{id}/participants/{pid}/hangup",
            post(crate::dashboard::hangup_participant),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(shared);
    // `Router::layer` wraps each route, inside the code that adds a 405's `Allow` header;
    // wrapping the whole router as one service puts these after it.
    Router::new()
        .fallback_service(api)
        .layer(axum::middleware::from_fn(
            crate::middleware::method_not_allowed,
        ))
        .layer(axum::middleware::from_fn(crate::middleware::log_requests))
}

async fn not_found(headers: HeaderMap) -> Response {
    crate::errors::ApiError::not_found("No such resource.")
        .for_request(&headers)
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let form: BTreeMap<String, String> = match serde_urlencoded_form(&body) {
        Some(f) => f,
        None => return oauth_error(IdentityError::MissingField("grant_type")),
    };
    match shared.identity.issue_access_token(&tenant, &form) {
        Ok(token) => axum::Json(json!({
            "token_type": "Bearer",
            "expires_in": crate::identity::TOKEN_LIFETIME_SECS,
            "ext_expires_in": crate::identity::TOKEN_LIFETIME_SECS,
            "access_token": token,
        }))
        .into_response(),
        Err(e) => oauth_error(e),
    }
}

/// Parses `application/x-www-form-urlencoded`; None when it is not.
fn serde_urlencoded_form(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn oauth_error(e: IdentityError) -> Response {
    let code = match &e {
        IdentityError::InvalidClient => "invalid_client",
        IdentityError::UnsupportedGrant(_) => "unsupported_grant_type",
        IdentityError::InvalidScope => "invalid_scope",
        _ => "invalid_request",
    };
    let status = if code == "invalid_client" {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    (
        status,
        axum::Json(json!({ "error": code, "error_description": e.to_string() })),
    )
        .into_response()
}

async fn openid(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.identity.openid_configuration(shared.base_url())).into_response()
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.identity.jwks()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f =
            serde_urlencoded_form(b"a=1&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&b=x+y")
                .unwrap();
        assert_eq!(f["scope"], "https://graph.microsoft.com/.default");
        assert_eq!(f["b"], "x y");
        assert!(serde_urlencoded_form(b"a=%zz").is_none());
        assert!(serde_urlencoded_form(b"a=%e2%28").is_none());
    }
}
