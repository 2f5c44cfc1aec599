//! The webhook's counters and request log: a refused request moves its reason's counter and
//! nothing else, an accepted one the accepted and dispatched counters; each request logs one
//! line with its status and reason, and never the token.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use signalling::token::StaticToken;
use signalling::webhook::{RefusalReason, WebhookStats};
use signalling::{CommunicationsClient, CommunicationsSettings, Credentials};

const APP_ID: &str = "5c3e7c1a-0000-4000-8000-0000000000b7";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const TENANT_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
const KID: &str = "key-1";

/// A signing key and its JWK.
fn key() -> (EncodingKey, Value) {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let public = key.to_public_key();
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": KID,
        "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
    });
    (
        EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        jwk,
    )
}

fn token(key: &EncodingKey, audience: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://api.botframework.com",
        "aud": audience,
        TENANT_CLAIM: TENANT,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.to_owned());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn notifications(calls: &[&str]) -> String {
    let value: Vec<Value> = calls
        .iter()
        .map(|call| {
            json!({
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": "updated",
                "resourceUrl": format!("/communications/calls/{call}"),
                "resourceData": { "@odata.type": "#microsoft.graph.call", "state": "established" }
            })
        })
        .collect();
    json!({ "@odata.type": "#microsoft.graph.commsNotifications", "value": value }).to_string()
}

fn json_body(v: Value) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
}

/// Serves `app` on 127.0.0.1; returns its base URL.
async fn serve(app: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, task)
}

/// A bot whose webhook trusts `jwk`, served on loopback.
struct Bot {
    client: CommunicationsClient,
    callback: String,
    http: reqwest::Client,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Bot {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Bot {
    async fn new(jwk: Value) -> Bot {
        let keys_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let key_base = format!("http://{}", keys_listener.local_addr().unwrap());
        let openid = json!({ "jwks_uri": format!("{key_base}/keys") });
        let keys = json!({ "keys": [jwk] });
        let keys_app = axum::Router::new()
            .route(
                "/openid",
                axum::routing::get(move || {
                    let openid = openid.clone();
                    async move { json_body(openid) }
                }),
            )
            .route(
                "/keys",
                axum::routing::get(move || {
                    let keys = keys.clone();
                    async move { json_body(keys) }
                }),
            );
        let key_task = tokio::spawn(async move {
            let _ = axum::serve(keys_listener, keys_app).await;
        });
        let mut settings = CommunicationsSettings::new(
            APP_ID,
            TENANT,
            Credentials::Provider(Arc::new(StaticToken::new("graph-token"))),
            "https://bot.contoso.com/api/callback",
        );
        settings.openid_configuration_url = format!("{key_base}/openid");
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let client = CommunicationsClient::with_http_client(settings, http.clone()).unwrap();
        let (bot_base, bot_task) = serve(client.webhook_router()).await;
        Bot {
            client,
            callback: format!("{bot_base}/api/callback"),
            http,
            tasks: vec![key_task, bot_task],
        }
    }

    async fn post(&self, authorization: Option<&str>, body: String) -> u16 {
        let mut request = self.http.post(&self.callback).body(body);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        request.send().await.unwrap().status().as_u16()
    }

    fn stats(&self) -> WebhookStats {
        self.client.webhook_stats()
    }
}

/// Log lines written while the guard lives (this thread's, so the current-thread runtime's
/// tasks too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// The webhook's request lines.
    fn requests(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("webhook request"))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn refused_requests_move_their_reason_only_and_log_it_without_the_token() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (signing, jwk) = key();
    let bot = Bot::new(jwk).await;
    assert_eq!(bot.stats(), WebhookStats::default());

    assert_eq!(bot.post(None, notifications(&["c1"])).await, 403);
    let s = bot.stats();
    assert_eq!(s.refused.get(RefusalReason::MissingToken), 1);
    assert_eq!((s.refused.total(), s.accepted), (1, 0));

    let other_app = token(&signing, "another-app");
    let bearer = format!("Bearer {other_app}");
    assert_eq!(bot.post(Some(&bearer), notifications(&["c1"])).await, 403);
    let s = bot.stats();
    assert_eq!(s.refused.get(RefusalReason::WrongAudience), 1);
    assert_eq!(s.refused.total(), 2);
    assert_eq!((s.accepted, s.notifications_dispatched), (0, 0));

    assert_eq!(
        bot.post(Some("Bearer not.a.jwt"), notifications(&["c1"]))
            .await,
        403
    );
    assert_eq!(bot.stats().refused.get(RefusalReason::BadToken), 1);
    assert!(bot.client.calls().ids().is_empty(), "nothing was applied");

    let huge = " ".repeat(signalling::webhook::MAX_NOTIFICATION_BYTES + 1);
    assert_eq!(bot.post(None, huge).await, 413);
    let s = bot.stats();
    assert_eq!(s.refused.get(RefusalReason::BodyTooLarge), 1);
    assert_eq!((s.refused.total(), s.accepted), (4, 0));

    let lines = logs.requests();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[3].contains("status=413"), "{}", lines[3]);
    assert!(
        lines[3].contains("reason=\"body_too_large\""),
        "{}",
        lines[3]
    );
    for (line, reason) in lines
        .iter()
        .zip(["missing_token", "wrong_audience", "bad_token"])
    {
        assert!(line.contains(" INFO "), "{line}");
        assert!(line.contains("method=POST"), "{line}");
        assert!(line.contains("path=\"/api/callback\""), "{line}");
        assert!(line.contains("status=403"), "{line}");
        assert!(line.contains("latency_us="), "{line}");
        assert!(line.contains("notifications=0"), "{line}");
        assert!(line.contains(&format!("reason=\"{reason}\"")), "{line}");
    }
    let all = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // Neither the token nor its signature, its payload or its header is logged.
    for part in other_app.split('.') {
        assert!(
            !all.contains(part),
            "a piece of the token was logged: {all}"
        );
    }
}

#[tokio::test]
async fn an_accepted_request_counts_its_notifications() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let (signing, jwk) = key();
    let bot = Bot::new(jwk).await;
    let bearer = format!("Bearer {}", token(&signing, APP_ID));

    assert_eq!(
        bot.post(Some(&bearer), notifications(&["c1", "c2"])).await,
        202
    );
    let s = bot.stats();
    assert_eq!((s.accepted, s.notifications_dispatched), (1, 2));
    assert_eq!(s.refused.total(), 0);

    assert_eq!(bot.post(Some(&bearer), notifications(&["c1"])).await, 202);
    assert_eq!(bot.post(Some(&bearer), "{not json".to_owned()).await, 400);
    let s = bot.stats();
    assert_eq!((s.accepted, s.notifications_dispatched), (2, 3));
    assert_eq!(s.refused.get(RefusalReason::BadBody), 1);
    assert_eq!(s.refused.total(), 1);

    let lines = logs.requests();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains("status=202"), "{}", lines[0]);
    assert!(lines[0].contains("notifications=2"), "{}", lines[0]);
    assert!(!lines[0].contains("reason="), "{}", lines[0]);
    assert!(lines[2].contains("status=400"), "{}", lines[2]);
    assert!(lines[2].contains("reason=\"bad_body\""), "{}", lines[2]);
    let all = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(!all.contains(bearer.trim_start_matches("Bearer ")));
}
