//! The calling service's side of callbacks, for tests with real HTTP servers: an RS256
//! signing key with its JWK, bearer tokens, notification bodies, a loopback server.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

pub const APP_ID: &str = "5c3e7c1a-0000-4000-8000-0000000000b7";
pub const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const TENANT_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
const KID: &str = "key-1";

/// A key that signs callback tokens, and its public half as a JWK.
pub struct Signer {
    key: EncodingKey,
    pub jwk: Value,
}

impl Signer {
    pub fn new() -> Signer {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        let public = key.to_public_key();
        let jwk = json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
            "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
            "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
        });
        Signer {
            key: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
            jwk,
        }
    }

    /// `Bearer <JWT>` for [`APP_ID`] in [`TENANT`], valid for an hour.
    pub fn bearer(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = json!({
            "iss": "https://api.botframework.com",
            "aud": APP_ID,
            TENANT_CLAIM: TENANT,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        format!(
            "Bearer {}",
            jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
        )
    }
}

/// One call-state notification, as the service posts it (`deleted` for `terminated`).
pub fn state_notification(call: &str, state: &str) -> String {
    let change = if state == "terminated" {
        "deleted"
    } else {
        "updated"
    };
    notifications(json!({
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": change,
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": { "@odata.type": "#microsoft.graph.call", "state": state }
    }))
}

/// The `created` notification of a call ringing the bot.
pub fn incoming_notification(call: &str) -> String {
    notifications(json!({
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": "created",
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": {
            "@odata.type": "#microsoft.graph.call",
            "state": "incoming",
            "direction": "incoming",
            "source": {
                "@odata.type": "#microsoft.graph.participantInfo",
                "identity": { "user": { "id": "112f7296-5fa4-42ca-bae8-6a692b15d4b8", "displayName": "John" } }
            }
        }
    }))
}

fn notifications(one: Value) -> String {
    json!({ "@odata.type": "#microsoft.graph.commsNotifications", "value": [one] }).to_string()
}

pub fn json_response(status: StatusCode, v: Value) -> axum::response::Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A listener on a free loopback port and its base URL (`http://127.0.0.1:PORT`).
pub async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

/// Serves `app` on `listener` until the task is aborted.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// The routes of the callback keys: `GET /openid` naming `GET /keys`, served at `base`.
pub fn key_routes<S: Clone + Send + Sync + 'static>(base: &str, jwk: Value) -> axum::Router<S> {
    let openid = json!({ "jwks_uri": format!("{base}/keys") });
    let keys = json!({ "keys": [jwk] });
    axum::Router::new()
        .route(
            "/openid",
            axum::routing::get(move || {
                let openid = openid.clone();
                async move { json_response(StatusCode::OK, openid) }
            }),
        )
        .route(
            "/keys",
            axum::routing::get(move || {
                let keys = keys.clone();
                async move { json_response(StatusCode::OK, keys) }
            }),
        )
}
