//! What the emulator's integration tests share: the emulator on a free port, an HTTP
//! client, the default app's token, and a call to John.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

/// John, a user of the default scenario who answers.
pub const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";

/// The emulator playing `scenario`, on a free port of 127.0.0.1.
pub async fn start_emulator(scenario: Scenario) -> Emulator {
    Emulator::start(EmulatorConfig {
        scenario,
        ..Default::default()
    })
    .await
    .expect("emulator")
}

/// An HTTP client that never goes through a proxy (everything is on 127.0.0.1).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The default app's access token (client credentials against the emulator's token
/// endpoint).
pub async fn app_token(http: &reqwest::Client, emu: &Emulator) -> String {
    let r: Value = http
        .post(emu.token_url(DEFAULT_TENANT))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_APP_ID),
            ("client_secret", DEFAULT_APP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    r["access_token"].as_str().expect("a token").to_owned()
}

/// A `POST /communications/calls` body: a peer-to-peer call to John with `media_config`.
pub fn call_to_john(media_config: Value) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": "https://bot.contoso.com/callback",
        "targets": [{
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": {
                "@odata.type": "#microsoft.graph.identitySet",
                "user": { "@odata.type": "#microsoft.graph.identity", "id": JOHN }
            }
        }],
        "requestedModalities": ["audio"],
        "mediaConfig": media_config,
        "tenantId": DEFAULT_TENANT
    })
}
