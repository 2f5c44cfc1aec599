//! Notifications about calls nobody on this client claimed (an instance restarted with the
//! same callback URL, and the service still reports on the calls of its earlier run): they
//! are answered 202, no keepAlive is ever sent for them, each is logged once and counted,
//! and they are forgotten once ended or after `unclaimed_call_ttl`. A call the client places
//! whose first notifications come before its create request returns is claimed right after
//! and kept alive. A real local HTTP server stands in for Graph and records keepAlives.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::callback::{
    APP_ID, Signer, TENANT, json_response, key_routes, listen, serve, state_notification,
};
use serde_json::json;
use signalling::calls::CallEvent;
use signalling::model::CallState;
use signalling::token::StaticToken;
use signalling::{CallId, CallRequest, CommunicationsClient, CommunicationsSettings, Credentials};

const KEEP_ALIVE: Duration = Duration::from_millis(200);
/// The client's request timeout: an unclaimed call is reported after this.
const REPORT_AFTER: Duration = Duration::from_secs(1);
const FORGET_AFTER: Duration = Duration::from_secs(3);
const ORPHAN_LINE: &str = "no handle here claimed";

/// The stand-in for Graph and the callback keys.
struct Service {
    bearer: String,
    http: reqwest::Client,
    /// The bot's webhook, once it is served.
    webhook: OnceLock<String>,
    /// Ids the next create requests are answered with, in order.
    create_ids: Mutex<Vec<String>>,
    /// Calls that got a keepAlive, one entry per request.
    keep_alives: Mutex<Vec<String>>,
}

impl Service {
    fn keep_alives(&self, call: &str) -> usize {
        self.keep_alives
            .lock()
            .unwrap()
            .iter()
            .filter(|c| *c == call)
            .count()
    }

    async fn notify(&self, body: String) -> u16 {
        self.http
            .post(self.webhook.get().expect("the webhook is served"))
            .header("authorization", &self.bearer)
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// `POST /v1.0/communications/calls`: the service tells the bot the call is established
/// before it answers the create request (notifications and the answer race in the real
/// service too), then answers 201.
async fn create_call(State(s): State<Arc<Service>>) -> axum::response::Response {
    let id = s.create_ids.lock().unwrap().remove(0);
    assert_eq!(s.notify(state_notification(&id, "established")).await, 202);
    json_response(
        StatusCode::CREATED,
        json!({
            "@odata.type": "#microsoft.graph.call",
            "id": id,
            "state": "establishing",
        }),
    )
}

async fn keep_alive(
    State(s): State<Arc<Service>>,
    Path(call): Path<String>,
) -> axum::response::Response {
    s.keep_alives.lock().unwrap().push(call);
    StatusCode::OK.into_response()
}

/// Log lines written while the guard lives (this thread's: the current-thread runtime's
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

    /// INFO lines reporting `call` as unclaimed.
    fn orphan_lines(&self, call: &str) -> usize {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains(ORPHAN_LINE) && l.contains(call) && l.contains(" INFO "))
            .count()
    }
}

struct Setup {
    service: Arc<Service>,
    client: CommunicationsClient,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Setup {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn setup() -> Setup {
    let signer = Signer::new();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let service = Arc::new(Service {
        bearer: signer.bearer(),
        http: http.clone(),
        webhook: OnceLock::new(),
        create_ids: Mutex::new(Vec::new()),
        keep_alives: Mutex::new(Vec::new()),
    });
    let (listener, base) = listen().await;
    let app = key_routes(&base, signer.jwk.clone())
        .route(
            "/v1.0/communications/calls",
            axum::routing::post(create_call),
        )
        .route(
            "/v1.0/communications/calls/{id}/keepAlive",
            axum::routing::post(keep_alive),
        )
        .with_state(service.clone());
    let graph_task = serve(listener, app);

    let mut settings = CommunicationsSettings::new(
        APP_ID,
        TENANT,
        Credentials::Provider(Arc::new(StaticToken::new("graph-token"))),
        "https://bot.contoso.com/callback/botmedia-1",
    );
    settings.graph_url = format!("{base}/v1.0");
    settings.openid_configuration_url = format!("{base}/openid");
    settings.keep_alive_interval = KEEP_ALIVE;
    settings.request_timeout = REPORT_AFTER;
    settings.unclaimed_call_ttl = FORGET_AFTER;
    let client = CommunicationsClient::with_http_client(settings, http).unwrap();
    let (listener, bot_base) = listen().await;
    let bot_task = serve(listener, client.webhook_router());
    service
        .webhook
        .set(format!("{bot_base}/callback/botmedia-1"))
        .unwrap();
    Setup {
        service,
        client,
        tasks: vec![graph_task, bot_task],
    }
}

fn known(client: &CommunicationsClient, call: &str) -> bool {
    client.calls().ids().contains(&CallId::new(call))
}

#[tokio::test]
async fn an_unclaimed_call_is_answered_never_kept_alive_reported_once_and_forgotten() {
    let logs = Logs::default();
    let _guard = logs.capture();
    let Setup {
        service, client, ..
    } = &setup().await;

    // A call of an earlier run, established: answered, no keepAlive however long it lasts.
    assert_eq!(
        service
            .notify(state_notification("orphan-a", "established"))
            .await,
        202
    );
    assert!(known(client, "orphan-a"));
    // Not reported at once: a call being placed is claimed only once its create returns.
    assert_eq!(client.webhook_stats().unclaimed_calls, 0);
    assert_eq!(logs.orphan_lines("orphan-a"), 0);

    // A call placed by the client, established before its create request returned: it is
    // claimed when create returns, its early state reaches its stream, and it is kept alive.
    service
        .create_ids
        .lock()
        .unwrap()
        .push("placed-1".to_owned());
    let mut placed = client
        .calls()
        .create(&CallRequest::peer_to_peer(
            "112f7296-5fa4-42ca-bae8-6a692b15d4b8",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(placed.id().as_str(), "placed-1");
    let first = tokio::time::timeout(Duration::from_secs(5), placed.next_event())
        .await
        .unwrap();
    assert!(
        matches!(
            first,
            Some(CallEvent::StateChanged {
                to: CallState::Established,
                ..
            })
        ),
        "{first:?}"
    );

    // Well past the report time and several keepAlive intervals.
    tokio::time::sleep(REPORT_AFTER + 4 * KEEP_ALIVE).await;
    assert!(
        service.keep_alives("placed-1") >= 3,
        "the placed call was not kept alive: {:?}",
        service.keep_alives.lock().unwrap()
    );
    assert_eq!(service.keep_alives("orphan-a"), 0);
    assert_eq!(client.webhook_stats().unclaimed_calls, 1);
    assert_eq!(logs.orphan_lines("orphan-a"), 1);
    assert_eq!(logs.orphan_lines("placed-1"), 0);

    // More notifications about it: still answered, still not reported again.
    for state in ["hold", "established"] {
        assert_eq!(
            service.notify(state_notification("orphan-a", state)).await,
            202
        );
    }

    // An orphan whose first news is its end: reported at once, gone at once.
    assert_eq!(
        service
            .notify(state_notification("orphan-b", "terminated"))
            .await,
        202
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while client.webhook_stats().unclaimed_calls < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orphan-b not reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!known(client, "orphan-b"));
    assert_eq!(logs.orphan_lines("orphan-b"), 1);

    // After the TTL the unclaimed call is forgotten: its later notifications are answered
    // and dropped, nothing is made anew, nothing is counted again.
    tokio::time::sleep(FORGET_AFTER).await;
    assert!(!known(client, "orphan-a"), "the unclaimed call stayed");
    assert_eq!(
        service
            .notify(state_notification("orphan-a", "established"))
            .await,
        202
    );
    assert!(!known(client, "orphan-a"));
    assert!(known(client, "placed-1"), "the claimed call was forgotten");
    assert_eq!(service.keep_alives("orphan-a"), 0);
    assert_eq!(client.webhook_stats().unclaimed_calls, 2);
    assert_eq!(logs.orphan_lines("orphan-a"), 1);

    // A create request answered at last with a forgotten id claims the call anew (the
    // notification that raced the answer was dropped with the forgotten call's), and once
    // established again that call is kept alive.
    service
        .create_ids
        .lock()
        .unwrap()
        .push("orphan-a".to_owned());
    let late = client
        .calls()
        .create(&CallRequest::peer_to_peer(
            "112f7296-5fa4-42ca-bae8-6a692b15d4b8",
            None,
        ))
        .await
        .unwrap();
    assert_eq!(late.id().as_str(), "orphan-a");
    assert!(known(client, "orphan-a"));
    assert_eq!(
        service
            .notify(state_notification("orphan-a", "established"))
            .await,
        202
    );
    tokio::time::sleep(4 * KEEP_ALIVE).await;
    assert!(service.keep_alives("orphan-a") >= 2);

    // The placed call ends: its stream ends and its keepAlives stop.
    assert_eq!(
        service
            .notify(state_notification("placed-1", "terminated"))
            .await,
        202
    );
    loop {
        match tokio::time::timeout(Duration::from_secs(5), placed.next_event())
            .await
            .unwrap()
        {
            Some(CallEvent::Terminated { .. }) | None => break,
            Some(_) => {}
        }
    }
    tokio::time::sleep(KEEP_ALIVE).await;
    let after_end = service.keep_alives("placed-1");
    tokio::time::sleep(3 * KEEP_ALIVE).await;
    assert_eq!(service.keep_alives("placed-1"), after_end);
    assert_eq!(client.webhook_stats().unclaimed_calls, 2);
}
