//! A fleet instance's webhook: the service delivers a new incoming call at the app's shared
//! callback URL (behind a load balancer, to any instance); the instance answers naming its
//! own callback URL, and the call's later notifications, posted there, reach the same call.
//! A real local HTTP server stands in for Graph and records the answer.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::callback::{
    APP_ID, Signer, TENANT, incoming_notification, key_routes, listen, serve, state_notification,
};
use serde_json::Value;
use signalling::calls::{BuildError, CallEvent};
use signalling::model::CallState;
use signalling::token::StaticToken;
use signalling::{CommunicationsClient, CommunicationsSettings, Credentials, UriProblem};

const INSTANCE: &str = "https://bot.contoso.com/callback/botmedia-1";
const SHARED: &str = "https://bot.contoso.com/callback";

fn settings(notification_url: &str, shared: Option<&str>) -> CommunicationsSettings {
    let mut s = CommunicationsSettings::new(
        APP_ID,
        TENANT,
        Credentials::Provider(Arc::new(StaticToken::new("graph-token"))),
        notification_url,
    );
    s.shared_notification_url = shared.map(str::to_owned);
    s
}

/// Answers recorded by the stand-in: call id and body.
type Answers = Arc<Mutex<Vec<(String, Value)>>>;

async fn answer(
    State(answers): State<Answers>,
    Path(call): Path<String>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    answers.lock().unwrap().push((call, body));
    StatusCode::ACCEPTED.into_response()
}

#[tokio::test]
async fn an_incoming_call_at_the_shared_path_is_answered_with_the_instance_url() {
    let signer = Signer::new();
    let bearer = signer.bearer();
    let answers = Answers::default();
    let (listener, base) = listen().await;
    let app = key_routes(&base, signer.jwk.clone())
        .route(
            "/v1.0/communications/calls/{id}/answer",
            axum::routing::post(answer),
        )
        .with_state(answers.clone());
    let graph = serve(listener, app);

    let mut s = settings(INSTANCE, Some(SHARED));
    s.graph_url = format!("{base}/v1.0");
    s.openid_configuration_url = format!("{base}/openid");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = CommunicationsClient::with_http_client(s, http.clone()).unwrap();
    assert_eq!(
        client.webhook_paths(),
        ["/callback/botmedia-1", "/callback"]
    );
    let mut incoming = client.incoming_calls().unwrap();
    let (listener, bot) = listen().await;
    let webhook = serve(listener, client.webhook_router());
    let post = |path: &str, body: String| {
        http.post(format!("{bot}{path}"))
            .header("authorization", &bearer)
            .body(body)
            .send()
    };

    // The service delivers the new call at the shared URL.
    let status = post("/callback", incoming_notification("in-1"))
        .await
        .unwrap();
    assert_eq!(status.status(), 202);
    let offer = tokio::time::timeout(Duration::from_secs(5), incoming.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(offer.id().unwrap().as_str(), "in-1");
    let mut call = offer.answer_service_hosted().await.unwrap();
    {
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0].0, "in-1");
        // The answer names the instance: every later notification comes to it.
        assert_eq!(answers[0].1["callbackUri"], INSTANCE);
    }

    // The later notifications, at the instance's path, reach the same call.
    let status = post(
        "/callback/botmedia-1",
        state_notification("in-1", "established"),
    )
    .await
    .unwrap();
    assert_eq!(status.status(), 202);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), call.next_event())
            .await
            .unwrap();
        match event {
            Some(CallEvent::StateChanged {
                to: CallState::Established,
                ..
            }) => break,
            Some(CallEvent::StateChanged {
                to: CallState::Incoming,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
    }
    // Both paths count into the one set of counters; other paths are not the webhook's.
    assert_eq!(client.webhook_stats().accepted, 2);
    let other = post("/callback/botmedia-2", state_notification("in-1", "hold"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(client.webhook_stats().unclaimed_calls, 0);
    graph.abort();
    webhook.abort();
}

#[test]
fn the_shared_url_is_checked_and_a_shared_path_is_routed_once() {
    let http = reqwest::Client::new();
    let same_path = CommunicationsClient::with_http_client(
        settings(
            "https://bot-1.contoso.com/callback",
            Some("https://bot.contoso.com/callback"),
        ),
        http.clone(),
    )
    .unwrap();
    assert_eq!(same_path.webhook_paths(), ["/callback"]);
    // Two routes at one path would make axum panic.
    let _ = same_path.webhook_router();

    let alone =
        CommunicationsClient::with_http_client(settings(INSTANCE, None), http.clone()).unwrap();
    assert_eq!(alone.webhook_paths(), ["/callback/botmedia-1"]);

    let insecure = CommunicationsClient::with_http_client(
        settings(INSTANCE, Some("http://bot.contoso.com/callback")),
        http,
    );
    assert!(matches!(
        insecure,
        Err(BuildError::SharedNotificationUrl(UriProblem::InsecureHttp))
    ));
}
