//! The signalling client against a scripted service of our own over real HTTP: incoming
//! calls (answer with app-hosted media, reject, redirect, undecided), notifications out of
//! order and duplicated, retries with `Retry-After` and backoff, timeouts, token caching
//! under concurrency, and a bot that never reads its events.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use signalling::calls::CallEvent;
use signalling::client::{GraphClient, GraphClientConfig, RejectReason, RetryPolicy};
use signalling::model::{CallState, GraphType};
use signalling::token::{
    ClientCredentials, ClientCredentialsProvider, SecretString, StaticToken, TokenError,
    TokenProvider,
};
use signalling::{CommunicationsClient, CommunicationsSettings, Credentials};

const APP_ID: &str = "6b8a3f1e-0000-4000-8000-0000000000a1";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    client_request_id: Option<String>,
    body: Value,
}

struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
    delay: Duration,
}

#[derive(Default)]
struct Mock {
    recorded: Mutex<Vec<Recorded>>,
    script: Mutex<VecDeque<Scripted>>,
    token_requests: AtomicUsize,
    token_lifetime: Mutex<u64>,
    jwks: Mutex<Value>,
    base: Mutex<String>,
}

struct Service {
    mock: Arc<Mock>,
    base: String,
    key: EncodingKey,
    task: tokio::task::JoinHandle<()>,
}

async fn any(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if path.ends_with("/oauth2/v2.0/token") {
        mock.token_requests.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let form = String::from_utf8_lossy(&body).to_string();
        if !form.contains("client_secret=s3cret") {
            return (
                StatusCode::UNAUTHORIZED,
                axum::Json(json!({"error": "invalid_client", "error_description": "bad secret"})),
            )
                .into_response();
        }
        let n = mock.token_requests.load(Ordering::SeqCst);
        let lifetime = *mock.token_lifetime.lock().unwrap();
        return axum::Json(json!({
            "token_type": "Bearer", "expires_in": lifetime, "access_token": format!("token-{n}")
        }))
        .into_response();
    }
    if path == "/openid" {
        let base = mock.base.lock().unwrap().clone();
        return axum::Json(json!({ "jwks_uri": format!("{base}/keys") })).into_response();
    }
    if path == "/keys" {
        return axum::Json(mock.jwks.lock().unwrap().clone()).into_response();
    }
    mock.recorded.lock().unwrap().push(Recorded {
        method,
        path,
        client_request_id: headers
            .get("client-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let next = mock.script.lock().unwrap().pop_front();
    let Some(s) = next else {
        return StatusCode::ACCEPTED.into_response();
    };
    tokio::time::sleep(s.delay).await;
    let mut r = (StatusCode::from_u16(s.status).unwrap(), axum::Json(s.body)).into_response();
    for (k, v) in s.headers {
        r.headers_mut().insert(k, v.parse().unwrap());
    }
    r
}

async fn service() -> Service {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
    let public = key.to_public_key();
    let mock = Arc::new(Mock::default());
    *mock.token_lifetime.lock().unwrap() = 3600;
    *mock.jwks.lock().unwrap() = json!({ "keys": [{
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "svc",
        "n": URL_SAFE_NO_PAD.encode(public.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(public.e_bytes()),
    }]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    *mock.base.lock().unwrap() = base.clone();
    let app = axum::Router::new().fallback(any).with_state(mock.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Service {
        mock,
        base,
        key: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        task,
    }
}

impl Service {
    fn script(&self, status: u16, headers: Vec<(&'static str, String)>, body: Value) {
        self.script_delayed(status, headers, body, Duration::ZERO);
    }

    fn script_delayed(
        &self,
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Value,
        delay: Duration,
    ) {
        self.mock.script.lock().unwrap().push_back(Scripted {
            status,
            headers,
            body,
            delay,
        });
    }

    fn recorded(&self) -> Vec<Recorded> {
        self.mock.recorded.lock().unwrap().clone()
    }

    async fn wait_recorded(&self, what: &str, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if let Some(r) = self.recorded().into_iter().find(|r| pred(r)) {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no request {what}; got {:#?}", self.recorded());
    }

    fn token(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("svc".into());
        jsonwebtoken::encode(
            &h,
            &json!({
                "iss": "https://api.botframework.com", "aud": APP_ID,
                "http://schemas.microsoft.com/identity/claims/tenantid": TENANT,
                "nbf": now, "exp": now + 600,
            }),
            &self.key,
        )
        .unwrap()
    }

    fn graph(&self, retry: RetryPolicy, timeout: Duration) -> GraphClient {
        GraphClient::new(
            GraphClientConfig {
                base_url: format!("{}/v1.0", self.base),
                timeout,
                retry,
            },
            Arc::new(StaticToken::new("static-token")),
            reqwest::Client::builder().no_proxy().build().unwrap(),
        )
    }
}

struct Bot {
    client: CommunicationsClient,
    url: String,
    http: reqwest::Client,
    task: tokio::task::JoinHandle<()>,
}

async fn bot(svc: &Service) -> Bot {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/callback", listener.local_addr().unwrap());
    let mut settings = CommunicationsSettings::new(
        APP_ID,
        TENANT,
        Credentials::Secret(SecretString::new("s3cret")),
        url.clone(),
    );
    settings.graph_url = format!("{}/v1.0", svc.base);
    settings.authority = format!("{}/{{tenant}}/oauth2/v2.0/token", svc.base);
    settings.openid_configuration_url = format!("{}/openid", svc.base);
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
    async fn notify(&self, svc: &Service, notifications: Vec<Value>) -> u16 {
        let body =
            json!({ "@odata.type": "#microsoft.graph.commsNotifications", "value": notifications });
        self.http
            .post(&self.url)
            .bearer_auth(svc.token())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn call_note(change: &str, call: &str, data: Value) -> Value {
    let mut data = data;
    data["@odata.type"] = json!("#microsoft.graph.call");
    json!({
        "@odata.type": "#microsoft.graph.commsNotification",
        "changeType": change,
        "resourceUrl": format!("/communications/calls/{call}"),
        "resourceData": data,
    })
}

fn incoming(call: &str) -> Value {
    call_note(
        "created",
        call,
        json!({
            "state": "incoming", "direction": "incoming", "id": call,
            "source": { "identity": { "user": { "id": "caller-1", "displayName": "Caller" } } },
            "tenantId": TENANT,
        }),
    )
}

async fn next(call: &mut signalling::Call) -> CallEvent {
    tokio::time::timeout(WAIT, call.next_event())
        .await
        .expect("event in time")
        .expect("stream open")
}

#[tokio::test]
async fn incoming_call_answered_with_app_hosted_media() {
    let svc = service().await;
    let bot = bot(&svc).await;
    let mut incoming_calls = bot.client.incoming_calls().unwrap();
    assert!(bot.client.incoming_calls().is_none(), "one consumer");
    assert_eq!(bot.notify(&svc, vec![incoming("in-1")]).await, 202);
    let offer = tokio::time::timeout(WAIT, incoming_calls.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offer.id().unwrap().as_str(), "in-1");
    let left = offer.deadline().saturating_duration_since(Instant::now());
    assert!(left > Duration::from_secs(10) && left <= Duration::from_secs(15));
    assert!(format!("{:?}", offer.source()).contains("caller-1"));

    let platform =
        media_session::MediaPlatformSettings::new("http://127.0.0.1:8445/MediaProcessor").unwrap();
    let session = media_session::MediaSession::new(
        &platform,
        &media_session::AudioSocketSettings::default(),
        Some("in-1"),
    )
    .unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let r = released.clone();
    let mut call = offer
        .answer_app_hosted(
            &session,
            Some(Box::new(move || {
                r.fetch_add(1, Ordering::SeqCst);
            })),
        )
        .await
        .unwrap();
    let answer = svc
        .wait_recorded("answer", |r| r.path.ends_with("/in-1/answer"))
        .await;
    assert_eq!(answer.method, Method::POST);
    assert_eq!(answer.path, "/v1.0/communications/calls/in-1/answer");
    assert_eq!(answer.body["callbackUri"], bot.url.as_str());
    assert_eq!(answer.body["acceptedModalities"], json!(["audio"]));
    let config = &answer.body["mediaConfig"];
    assert_eq!(
        config["@odata.type"],
        "#microsoft.graph.appHostedMediaConfig"
    );
    let blob = media_session::Blob::parse(config["blob"].as_str().unwrap()).unwrap();
    assert_eq!(blob.mp_media_session_id, *session.id());
    assert_eq!(blob.call_id.as_deref(), Some("in-1"));

    assert!(matches!(
        next(&mut call).await,
        CallEvent::StateChanged {
            to: CallState::Incoming,
            ..
        }
    ));
    // Out of order and duplicated: established, establishing (late), established again, a
    // tone twice, then terminated twice.
    let tone = call_note(
        "updated",
        "in-1",
        json!({ "toneInfo": { "sequenceId": 7, "tone": "tone3" } }),
    );
    for batch in [
        vec![call_note(
            "updated",
            "in-1",
            json!({ "state": "established" }),
        )],
        vec![call_note(
            "updated",
            "in-1",
            json!({ "state": "establishing" }),
        )],
        vec![
            call_note("updated", "in-1", json!({ "state": "established" })),
            tone.clone(),
        ],
        vec![tone],
    ] {
        assert_eq!(bot.notify(&svc, batch).await, 202);
    }
    assert!(matches!(
        next(&mut call).await,
        CallEvent::StateChanged {
            to: CallState::Established,
            ..
        }
    ));
    assert!(matches!(next(&mut call).await, CallEvent::Tone(_)));
    assert_eq!(released.load(Ordering::SeqCst), 0);
    let end = call_note(
        "deleted",
        "in-1",
        json!({ "state": "terminated", "resultInfo": { "code": 200, "subcode": 5001, "message": "bye" } }),
    );
    assert_eq!(bot.notify(&svc, vec![end.clone()]).await, 202);
    assert_eq!(bot.notify(&svc, vec![end]).await, 202);
    assert!(matches!(
        next(&mut call).await,
        CallEvent::StateChanged {
            to: CallState::Terminated,
            ..
        }
    ));
    assert!(matches!(
        next(&mut call).await,
        CallEvent::Terminated { result: Some(_) }
    ));
    assert!(
        tokio::time::timeout(Duration::from_secs(2), call.next_event())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(released.load(Ordering::SeqCst), 1);
    // A late notification about the ended call is acknowledged and ignored.
    assert_eq!(
        bot.notify(
            &svc,
            vec![call_note(
                "updated",
                "in-1",
                json!({ "state": "established" })
            )]
        )
        .await,
        202
    );
    assert!(call.is_terminated());
    bot.task.abort();
    svc.task.abort();
}

#[tokio::test]
async fn incoming_calls_rejected_redirected_or_left_undecided() {
    let svc = service().await;
    let bot = bot(&svc).await;
    let mut incoming_calls = bot.client.incoming_calls().unwrap();
    for id in ["in-a", "in-b", "in-c"] {
        assert_eq!(bot.notify(&svc, vec![incoming(id)]).await, 202);
    }
    // A duplicated `created` does not offer the call twice.
    assert_eq!(bot.notify(&svc, vec![incoming("in-a")]).await, 202);
    let a = incoming_calls.next().await.unwrap();
    let b = incoming_calls.next().await.unwrap();
    let c = incoming_calls.next().await.unwrap();
    assert_eq!(
        [a.id(), b.id(), c.id()].map(|i| i.unwrap().to_string()),
        ["in-a", "in-b", "in-c"]
    );
    a.reject(RejectReason::Forbidden).await.unwrap();
    b.redirect(&[signalling::calls::invite_phone("+12345678901")], Some(30))
        .await
        .unwrap();
    drop(c);
    let r = svc
        .wait_recorded("reject a", |r| r.path.ends_with("/in-a/reject"))
        .await;
    assert_eq!(r.body, json!({ "reason": "forbidden" }));
    let r = svc
        .wait_recorded("redirect b", |r| r.path.ends_with("/in-b/redirect"))
        .await;
    assert_eq!(
        r.body["targets"][0]["identity"]["phone"]["id"],
        "+12345678901"
    );
    assert_eq!(r.body["timeout"], 30);
    let r = svc
        .wait_recorded("reject c", |r| r.path.ends_with("/in-c/reject"))
        .await;
    assert_eq!(r.body["reason"], "busy");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), incoming_calls.next())
            .await
            .is_err(),
        "no duplicate offer"
    );
    // Every request carried its own client-request-id, and the token came from the
    // client-credentials endpoint once.
    let ids: std::collections::HashSet<_> = svc
        .recorded()
        .into_iter()
        .map(|r| r.client_request_id.unwrap())
        .collect();
    assert_eq!(ids.len(), svc.recorded().len());
    assert_eq!(svc.mock.token_requests.load(Ordering::SeqCst), 1);
    bot.task.abort();
    svc.task.abort();
}

fn created_call() -> Value {
    json!({ "@odata.type": "#microsoft.graph.call", "id": "c-1", "state": "establishing" })
}

#[tokio::test]
async fn throttling_and_unavailability_are_retried() {
    let svc = service().await;
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        max_retry_after: Duration::from_secs(5),
    };
    let graph = svc.graph(policy, Duration::from_secs(5));
    let busy = json!({ "error": { "code": "TooManyRequests", "message": "slow down" } });
    svc.script(429, vec![("retry-after", "1".into())], busy.clone());
    svc.script(503, vec![], busy.clone());
    svc.script(504, vec![], busy.clone());
    svc.script(
        201,
        vec![(
            "location",
            format!("{}/v1.0/communications/calls/c-1", svc.base),
        )],
        created_call(),
    );
    let request =
        signalling::CallRequest::peer_to_peer("u-1", None).build("https://bot.example.com/cb");
    let started = Instant::now();
    let created = graph.create_call(&request).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(created.id.as_str(), "c-1");
    assert!(created.location.ends_with("/communications/calls/c-1"));
    let rec = svc.recorded();
    assert_eq!(rec.len(), 4);
    assert_eq!(rec[0].body, request.to_json_value());
    let ids: std::collections::HashSet<_> =
        rec.iter().map(|r| r.client_request_id.clone()).collect();
    assert_eq!(ids.len(), 4, "a fresh client-request-id per request");

    // Bounded: after max_attempts the last error comes back typed.
    for _ in 0..4 {
        svc.script(503, vec![], busy.clone());
    }
    let e = graph.get_call(&"c-1".into()).await.unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(svc.recorded().len(), 8);
    // A Retry-After beyond the policy's limit is not waited for.
    svc.script(429, vec![("retry-after", "3600".into())], busy.clone());
    let e = graph.get_call(&"c-1".into()).await.unwrap_err();
    assert_eq!(e.graph().unwrap().code, "TooManyRequests");
    assert_eq!(svc.recorded().len(), 9);
    // Client errors are not retried, and keep code, message and request id.
    svc.script(
        400,
        vec![],
        json!({ "error": { "code": "BadRequest", "message": "'targets' is required",
                "innerError": { "request-id": "rid-9", "date": "2026-01-01T00:00:00Z" } } }),
    );
    let e = graph.delete_call(&"c-1".into()).await.unwrap_err();
    let g = e.graph().unwrap();
    assert_eq!(
        (g.status, g.code.as_str(), g.message.as_str()),
        (400, "BadRequest", "'targets' is required")
    );
    assert_eq!(g.request_id.as_deref(), Some("rid-9"));
    assert_eq!(
        &g.client_request_id,
        svc.recorded()
            .last()
            .unwrap()
            .client_request_id
            .as_ref()
            .unwrap()
    );
    assert_eq!(svc.recorded().len(), 10);
    svc.task.abort();
}

#[tokio::test]
async fn every_request_has_a_timeout() {
    let svc = service().await;
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(1),
    };
    let graph = svc.graph(policy, Duration::from_millis(300));
    // A POST that timed out may have been applied: not repeated.
    svc.script_delayed(202, vec![], Value::Null, Duration::from_secs(3));
    let e = graph.keep_alive(&"c-1".into()).await.unwrap_err();
    assert!(
        matches!(e, signalling::client::ApiError::Timeout { .. }),
        "{e}"
    );
    assert_eq!(svc.recorded().len(), 1);
    // A GET is.
    svc.script_delayed(200, vec![], created_call(), Duration::from_secs(3));
    svc.script(200, vec![], created_call());
    let call = graph.get_call(&"c-1".into()).await.unwrap();
    assert_eq!(call.id.get().unwrap(), "c-1");
    assert_eq!(svc.recorded().len(), 3);
    svc.task.abort();
}

#[tokio::test]
async fn tokens_are_cached_refreshed_and_fetched_once_under_concurrency() {
    let svc = service().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let creds = ClientCredentials::new(TENANT, APP_ID, "s3cret")
        .with_authority(format!("{}/{{tenant}}/oauth2/v2.0/token", svc.base));
    let provider = Arc::new(ClientCredentialsProvider::new(creds.clone(), http.clone()));
    assert!(!format!("{provider:?}").contains("s3cret"));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let p = provider.clone();
            tokio::spawn(async move { p.token().await.unwrap().token.expose().to_owned() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), "token-1");
    }
    assert_eq!(svc.mock.token_requests.load(Ordering::SeqCst), 1);
    // Invalidated (a 401 from the API): the next caller fetches a new one.
    provider.invalidate();
    assert_eq!(provider.token().await.unwrap().token.expose(), "token-2");
    // A token inside the refresh margin is replaced before it expires.
    *svc.mock.token_lifetime.lock().unwrap() = 120;
    provider.invalidate();
    assert_eq!(provider.token().await.unwrap().token.expose(), "token-3");
    assert_eq!(provider.token().await.unwrap().token.expose(), "token-4");
    // A wrong secret is a typed refusal.
    let bad = ClientCredentialsProvider::new(
        ClientCredentials {
            client_secret: SecretString::new("wrong"),
            ..creds
        },
        http,
    );
    match bad.token().await.unwrap_err() {
        TokenError::Refused { status, code, .. } => {
            assert_eq!((status, code.as_str()), (401, "invalid_client"));
        }
        other => panic!("{other}"),
    }
    svc.task.abort();
}

#[tokio::test]
async fn a_bot_that_never_reads_its_events_does_not_block_the_webhook() {
    let svc = service().await;
    let bot = bot(&svc).await;
    // Tones for a call the bot answered but never reads: each answered at once. Once the
    // call's event buffer and its notification queue are full, the webhook says 503 (the
    // service retries) rather than wait for the bot.
    let mut incoming_calls = bot.client.incoming_calls().unwrap();
    assert_eq!(bot.notify(&svc, vec![incoming("slow")]).await, 202);
    let offer = incoming_calls.next().await.unwrap();
    let _unread = offer.answer_service_hosted().await.unwrap();
    let started = Instant::now();
    let mut statuses = Vec::new();
    let total = signalling::calls::EVENT_QUEUE + signalling::calls::CALL_QUEUE + 64;
    let tones: Vec<Value> = (0..total)
        .map(|seq| {
            call_note(
                "updated",
                "slow",
                json!({ "toneInfo": { "sequenceId": seq, "tone": "tone1" } }),
            )
        })
        .collect();
    for batch in tones.chunks(64) {
        statuses.push(bot.notify(&svc, batch.to_vec()).await);
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let accepted_batches = signalling::calls::EVENT_QUEUE / 64;
    assert!(statuses[..accepted_batches].iter().all(|s| *s == 202));
    assert!(statuses.iter().all(|s| *s == 202 || *s == 503));
    assert_eq!(statuses.last(), Some(&503), "backpressure, not blocking");
    // A call no bot holds never pushes back: its events beyond the buffer are dropped.
    for batch in tones.chunks(64) {
        let batch: Vec<Value> = batch
            .iter()
            .map(|n| {
                let mut n = n.clone();
                n["resourceUrl"] = json!("/communications/calls/unclaimed");
                n
            })
            .collect();
        assert_eq!(bot.notify(&svc, batch).await, 202);
    }
    // Another call is still served.
    assert_eq!(
        bot.notify(
            &svc,
            vec![call_note(
                "updated",
                "other",
                json!({ "state": "established" })
            )]
        )
        .await,
        202
    );
    let handle = bot.client.calls().get(&"other".into()).unwrap();
    let start = Instant::now();
    while handle.state() != Some(CallState::Established) && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handle.state(), Some(CallState::Established));
    bot.task.abort();
    svc.task.abort();
}

#[tokio::test]
async fn an_ended_call_is_forgotten_and_late_notifications_about_it_are_ignored() {
    let svc = service().await;
    let bot = bot(&svc).await;
    let mut incoming_calls = bot.client.incoming_calls().unwrap();
    assert_eq!(bot.notify(&svc, vec![incoming("brief")]).await, 202);
    let offer = incoming_calls.next().await.unwrap();
    let mut call = offer.answer_service_hosted().await.unwrap();
    let handle = call.handle().clone();
    assert_eq!(
        bot.notify(
            &svc,
            vec![call_note(
                "deleted",
                "brief",
                json!({ "state": "terminated", "resultInfo": { "code": 200, "subcode": 7000, "message": "bye" } })
            )]
        )
        .await,
        202
    );
    while !matches!(next(&mut call).await, CallEvent::Terminated { .. }) {}
    // The client lets go of the call: only its id is kept.
    let start = Instant::now();
    while !bot.client.calls().ids().is_empty() && start.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(bot.client.calls().ids().is_empty());
    assert!(bot.client.calls().get(&"brief".into()).is_none());
    // The bot's own handle still has the final state.
    assert!(handle.is_terminated());
    let result = handle.result().expect("result");
    assert_eq!(result.code.get().and_then(|c| c.as_i64()), Some(200));
    // A late or repeated notification about it is accepted and changes nothing: no new
    // call, no incoming offer, no event.
    for n in [
        call_note("updated", "brief", json!({ "state": "established" })),
        incoming("brief"),
    ] {
        assert_eq!(bot.notify(&svc, vec![n]).await, 202);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bot.client.calls().ids().is_empty());
    assert!(
        tokio::time::timeout(Duration::from_millis(200), incoming_calls.next())
            .await
            .is_err(),
        "no offer for an ended call"
    );
    bot.task.abort();
    svc.task.abort();
}
