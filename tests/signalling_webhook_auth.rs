//! The notification webhook over real HTTP against a key server of our own: real RS256
//! tokens are accepted; forged, expired, not-yet-valid, wrong-audience, wrong-issuer,
//! unsigned, `alg: none`, HS256-with-the-public-key, other-tenant and oversized ones get 403
//! and change nothing; unparseable bodies get 400; unknown `kid`s refresh the keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use signalling::token::StaticToken;
use signalling::{CommunicationsClient, CommunicationsSettings, Credentials};

const APP_ID: &str = "0f3e7c1a-0000-4000-8000-00000000b07";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const TENANT_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/tenantid";

struct TestKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

fn key(kid: &str) -> TestKey {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let public = key.to_public_key();
    TestKey {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
            "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
            "endorsements": ["msteams"],
        }),
        public_pem: public
            .to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap()
            .to_string(),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": "https://api.botframework.com",
        "aud": APP_ID,
        TENANT_CLAIM: TENANT,
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
    })
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn notification(call: &str, state: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.commsNotifications",
        "value": [{
            "@odata.type": "#microsoft.graph.commsNotification",
            "changeType": "updated",
            "resourceUrl": format!("/communications/calls/{call}"),
            "resourceData": { "@odata.type": "#microsoft.graph.call", "state": state }
        }]
    })
}

/// The key server: OpenID configuration and a JWKS that the test can rotate.
struct KeyServer {
    url: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn key_server(keys: Vec<Value>) -> KeyServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(Mutex::new(json!({ "keys": keys })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let openid =
        json!({ "issuer": "https://api.botframework.com", "jwks_uri": format!("{base}/keys") });
    let (j, f) = (jwks.clone(), fetches.clone());
    let app = axum::Router::new()
        .route(
            "/openid",
            axum::routing::get(move || {
                let o = openid.clone();
                async move { axum::Json(o) }
            }),
        )
        .route(
            "/keys",
            axum::routing::get(move || {
                let v = j.lock().unwrap().clone();
                f.fetch_add(1, Ordering::SeqCst);
                async move { axum::Json(v) }
            }),
        );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    KeyServer {
        url: format!("{base}/openid"),
        jwks,
        fetches,
        task,
    }
}

struct Bot {
    client: CommunicationsClient,
    url: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

async fn bot(openid: &str) -> Bot {
    bot_with(openid, Duration::from_secs(30)).await
}

async fn bot_with(openid: &str, key_refresh: Duration) -> Bot {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/callback", listener.local_addr().unwrap());
    let mut settings = CommunicationsSettings::new(
        APP_ID,
        TENANT,
        Credentials::Provider(Arc::new(StaticToken::new("unused"))),
        url.clone(),
    );
    settings.openid_configuration_url = openid.to_owned();
    settings.callback_key_refresh_interval = key_refresh;
    // Nothing listens there: these tests make no Graph requests.
    settings.graph_url = "http://127.0.0.1:9/v1.0".into();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = CommunicationsClient::with_http_client(settings, http.clone()).unwrap();
    let app = client.webhook_router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Bot {
        client,
        url,
        http,
        task,
    }
}

impl Bot {
    async fn post(&self, authorization: Option<String>, body: &str) -> u16 {
        let mut r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(a) = authorization {
            r = r.header("authorization", a);
        }
        r.send().await.unwrap().status().as_u16()
    }

    async fn post_token(&self, token: &str, call: &str) -> u16 {
        self.post(
            Some(format!("Bearer {token}")),
            &notification(call, "established").to_string(),
        )
        .await
    }
}

#[tokio::test]
async fn bad_tokens_get_403_and_change_nothing() {
    let good = key("k1");
    let attacker = key("k1");
    let keys = key_server(vec![good.jwk.clone()]).await;
    let bot = bot(&keys.url).await;

    let mut cases: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        (
            "not bearer",
            Some(format!("Basic {}", sign(&good, &claims()))),
        ),
        ("garbage", Some("Bearer abc.def.ghi".into())),
        ("empty bearer", Some("Bearer ".into())),
    ];
    let mut bearer = |name: &'static str, token: String| {
        cases.push((name, Some(format!("Bearer {token}"))));
    };
    bearer("forged (other key, same kid)", sign(&attacker, &claims()));
    let mut c = claims();
    c["exp"] = json!(now() - 600);
    c["nbf"] = json!(now() - 4000);
    bearer("expired beyond skew", sign(&good, &c));
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    c["exp"] = json!(now() + 4000);
    bearer("not yet valid beyond skew", sign(&good, &c));
    let mut c = claims();
    c["aud"] = json!("another-app");
    bearer("wrong audience", sign(&good, &c));
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com");
    bearer("wrong issuer", sign(&good, &c));
    let mut c = claims();
    c[TENANT_CLAIM] = json!("11111111-2222-3333-4444-555555555555");
    bearer("other tenant", sign(&good, &c));
    let mut c = claims();
    c.as_object_mut().unwrap().remove(TENANT_CLAIM);
    bearer("no tenant claim", sign(&good, &c));
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    bearer("no exp", sign(&good, &c));
    // Unsigned: `alg: none` and an empty signature.
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none_header = json!({ "alg": "none", "typ": "JWT", "kid": "k1" });
    bearer(
        "alg none",
        format!("{}.{}.", b64(&none_header), b64(&claims())),
    );
    // A valid RS256 token with its signature cut off.
    let valid = sign(&good, &claims());
    let unsigned = valid.rsplit_once('.').unwrap().0.to_owned() + ".";
    bearer("signature removed", unsigned);
    // HS256 keyed with the public key (algorithm confusion).
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let confused = jsonwebtoken::encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(good.public_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    bearer("HS256 with the public key", confused);
    // A header far beyond any real token.
    let big_header = json!({ "alg": "RS256", "kid": "k1", "x": "a".repeat(20_000) });
    bearer(
        "oversized header",
        format!("{}.{}.sig", b64(&big_header), b64(&claims())),
    );
    // A kid nobody has.
    let stranger = key("k-unknown");
    bearer("unknown kid", sign(&stranger, &claims()));

    for (name, auth) in cases {
        let status = bot
            .post(auth, &notification("call-1", "established").to_string())
            .await;
        assert_eq!(status, 403, "{name}");
        assert!(bot.client.calls().ids().is_empty(), "{name} changed state");
    }

    // The good token, and one expired but within the 5-minute skew, are accepted.
    assert_eq!(bot.post_token(&sign(&good, &claims()), "call-1").await, 202);
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    assert_eq!(bot.post_token(&sign(&good, &c), "call-2").await, 202);
    let mut c = claims();
    c["iss"] = json!("https://graph.microsoft.com");
    assert_eq!(bot.post_token(&sign(&good, &c), "call-3").await, 202);
    let mut ids: Vec<String> = bot
        .client
        .calls()
        .ids()
        .iter()
        .map(|i| i.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["call-1", "call-2", "call-3"]);

    keys.task.abort();
    bot.task.abort();
}

#[tokio::test]
async fn unparseable_bodies_get_400_after_authentication() {
    let good = key("k1");
    let keys = key_server(vec![good.jwk.clone()]).await;
    let bot = bot(&keys.url).await;
    let auth = Some(format!("Bearer {}", sign(&good, &claims())));
    for body in [
        "",
        "{",
        "not json",
        "[1,2]",
        r#"{"value": 5}"#,
        r#"{"value": [{"resourceData": "x"}]}"#,
    ] {
        assert_eq!(bot.post(auth.clone(), body).await, 400, "{body:?}");
    }
    // Without a token the body is never looked at.
    assert_eq!(bot.post(None, "{").await, 403);
    assert!(bot.client.calls().ids().is_empty());
    keys.task.abort();
    bot.task.abort();
}

#[tokio::test]
async fn an_unknown_kid_refreshes_the_keys() {
    let first = key("k1");
    let second = key("k2");
    let keys = key_server(vec![first.jwk.clone()]).await;
    // Refetches at most once a second: long enough that the five posts below, on a
    // loaded machine, all fall within it.
    let bot = bot_with(&keys.url, Duration::from_secs(1)).await;
    assert_eq!(bot.post_token(&sign(&first, &claims()), "a").await, 202);
    assert_eq!(bot.post_token(&sign(&first, &claims()), "a").await, 202);
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 1, "keys are cached");
    // The service rotates its key, a while later.
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    *keys.jwks.lock().unwrap() = json!({ "keys": [second.jwk.clone()] });
    assert_eq!(bot.post_token(&sign(&second, &claims()), "b").await, 202);
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 2);
    // Unknown kids right after a refresh do not make the bot fetch again.
    let stranger = key("k3");
    for _ in 0..5 {
        assert_eq!(bot.post_token(&sign(&stranger, &claims()), "c").await, 403);
    }
    assert_eq!(keys.fetches.load(Ordering::SeqCst), 2);
    keys.task.abort();
    bot.task.abort();
}
