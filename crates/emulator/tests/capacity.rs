//! A service at capacity: with `max_app_hosted_calls` reached, creating one more
//! app-hosted call is refused with 503 `ServiceUnavailable` in Graph's error envelope and a
//! `Retry-After`, and nothing is created; service-hosted calls are not limited.

use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use emulator::{Emulator, EmulatorConfig};
use media_session::{AudioSocketSettings, MediaPlatformSettings, MediaSession};
use serde_json::{Value, json};
use signalling::token::{ClientCredentials, ClientCredentialsProvider, TokenProvider};

#[tokio::test]
async fn app_hosted_calls_past_capacity_get_503_in_graphs_format() {
    let mut scenario = Scenario::default();
    scenario.settings.max_app_hosted_calls = Some(1);
    let emu = Emulator::start(EmulatorConfig {
        scenario,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    // The bot's own token provider against the emulator's token endpoint.
    let token = ClientCredentialsProvider::new(
        ClientCredentials::new(DEFAULT_TENANT, DEFAULT_APP_ID, DEFAULT_APP_SECRET)
            .with_authority(emu.authority()),
        http.clone(),
    )
    .token()
    .await
    .expect("token")
    .token
    .expose()
    .to_owned();
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
    let body = |media: Value| {
        json!({
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": "https://bot.contoso.com/callback",
            "targets": [{
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": {
                    "@odata.type": "#microsoft.graph.identitySet",
                    "user": { "@odata.type": "#microsoft.graph.identity",
                              "id": "112f7296-5fa4-42ca-bae8-6a692b15d4b8" }
                }
            }],
            "requestedModalities": ["audio"],
            "mediaConfig": media,
            "tenantId": DEFAULT_TENANT
        })
    };
    let app_hosted = || {
        let session =
            MediaSession::new(&platform, &AudioSocketSettings::default(), None).expect("session");
        body(json!({
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
    let service = post(body(json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    })))
    .await
    .expect("service-hosted");
    assert_eq!(service.status().as_u16(), 201);
    drop(silent);
    emu.shutdown().await;
}
