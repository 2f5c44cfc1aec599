//! A service at capacity: with `max_app_hosted_calls` reached, creating one more
//! app-hosted call is refused with 503 `ServiceUnavailable` in Graph's error envelope and a
//! `Retry-After`, and nothing is created; service-hosted calls are not limited.

use emulator::scenario::Scenario;
use media_session::{AudioSocketSettings, MediaPlatformSettings, MediaSession};
use serde_json::{Value, json};

mod common;
use common::{app_token, call_to_john, http_client, start_emulator};

#[tokio::test]
async fn app_hosted_calls_past_capacity_get_503_in_graphs_format() {
    let mut scenario = Scenario::default();
    scenario.settings.max_app_hosted_calls = Some(1);
    let emu = start_emulator(scenario).await;
    let http = http_client();
    let token = app_token(&http, &emu).await;
    // A media endpoint that accepts connections and never answers: the first call stays
    // up (establishing) for the whole test.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let mp_uri = format!(
        "http://{}/MediaProcessor",
        silent.local_addr().expect("address")
    );
    let platform = MediaPlatformSettings::new(&mp_uri).expect("mpUri");
    let app_hosted = || {
        let session =
            MediaSession::new(&platform, &AudioSocketSettings::default(), None).expect("session");
        call_to_john(json!({
            "@odata.type": "#microsoft.graph.appHostedMediaConfig",
            "blob": session.blob().to_json()
        }))
    };
    let url = format!("{}/communications/calls", emu.graph_url());
    let post = |b: Value| {
        http.post(&url)
            .bearer_auth(&token)
            .header("client-request-id", "cap-1")
            .json(&b)
            .send()
    };

    let first = post(app_hosted()).await.expect("first");
    assert_eq!(first.status().as_u16(), 201);
    let second = post(app_hosted()).await.expect("second");
    assert_eq!(second.status().as_u16(), 503);
    assert_eq!(
        second
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let e: Value = second.json().await.expect("Graph error JSON");
    assert_eq!(e["error"]["code"], "ServiceUnavailable", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("capacity"))
    );
    assert_eq!(e["error"]["innerError"]["client-request-id"], "cap-1");
    assert!(e["error"]["innerError"]["request-id"].is_string());
    // Service-hosted media is not limited by it.
    let service = post(call_to_john(json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    })))
    .await
    .expect("service-hosted");
    assert_eq!(service.status().as_u16(), 201);
    drop(silent);
    emu.shutdown().await;
}
