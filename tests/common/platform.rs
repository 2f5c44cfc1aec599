//! The pieces every emulator-backed test starts with: the emulator on a free port, the
//! bot's media platform on one pipeline thread, an HTTP client, the bot's app token from the emulator's identity, and
//! creating a call (a meeting join among them).
//! Used through `mod common` and on its own (`#[path = "common/platform.rs"]`).

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::time::{Duration, Instant};

use botmedia::pipeline::{PipelineConfig, Realtime};
use botmedia::{
    AudioSocket, AudioSocketEvent, AudioSocketItem, MediaPlatform, MediaPlatformSettings, Pcm16K,
    ReceivedFrame,
};
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Meeting, Scenario};
use emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use signalling::token::{ClientCredentials, ClientCredentialsProvider, TokenProvider};

/// The embedded emulator playing `scenario`, on a free port of 127.0.0.1.
pub async fn start_emulator(scenario: Scenario) -> Emulator {
    Emulator::start(EmulatorConfig {
        scenario,
        ..Default::default()
    })
    .await
    .expect("emulator")
}

/// A media platform with one pipeline thread and no real-time scheduling: the machine's
/// two cores are shared with the emulator and the test.
pub async fn start_platform() -> MediaPlatform {
    start_platform_with(false, false).await
}

/// [`start_platform`], its legs sharing one UDP socket per network pump when `shared_udp`,
/// and on the lean media path when `lean_media`.
pub async fn start_platform_with(shared_udp: bool, lean_media: bool) -> MediaPlatform {
    let mut settings = MediaPlatformSettings::default();
    settings.shared_udp = shared_udp;
    settings.lean_media = lean_media;
    settings.pipeline = PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    };
    MediaPlatform::start(settings).await.expect("platform")
}

/// An HTTP client that never goes through a proxy (everything is on 127.0.0.1).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// The default app's access token, fetched by the bot's own token provider from the
/// emulator's token endpoint.
pub async fn app_token(emu: &Emulator, http: &reqwest::Client) -> String {
    ClientCredentialsProvider::new(
        ClientCredentials::new(DEFAULT_TENANT, DEFAULT_APP_ID, DEFAULT_APP_SECRET)
            .with_authority(emu.authority()),
        http.clone(),
    )
    .token()
    .await
    .expect("token")
    .token
    .expose()
    .to_owned()
}

/// A `POST /communications/calls` body that joins `meeting` (no host needed) with
/// `media_config`, notifications going to `callback_uri`.
pub fn meeting_join(meeting: &Meeting, callback_uri: &str, media_config: Value) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": callback_uri,
        "requestedModalities": ["audio"],
        "mediaConfig": media_config,
        "chatInfo": { "@odata.type": "#microsoft.graph.chatInfo", "threadId": meeting.thread_id, "messageId": "0" },
        "meetingInfo": { "@odata.type": "#microsoft.graph.organizerMeetingInfo",
            "organizer": { "@odata.type": "#microsoft.graph.identitySet",
                "user": { "@odata.type": "#microsoft.graph.identity", "id": meeting.organizer, "tenantId": DEFAULT_TENANT } },
            "allowConversationWithoutHost": true },
    })
}

/// Creates a call with `body` as the app (`token`); checks the 201 and returns the call.
pub async fn create_call(
    emu: &Emulator,
    http: &reqwest::Client,
    token: &str,
    body: &Value,
) -> Value {
    let r = http
        .post(format!("{}/communications/calls", emu.graph_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("create the call");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    r.json().await.expect("call json")
}

/// `GET /emulator/state`: the dashboard's view of calls, rosters, levels and the event log.
pub async fn emulator_state(emu: &Emulator, http: &reqwest::Client) -> Value {
    http.get(format!("{}/emulator/state", emu.base_url()))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("state json")
}

/// Reads the socket for `d`, answering every received frame with `reply(n)` (so what is
/// sent stays in step with what is received). Returns the frames and events.
pub async fn pump(
    socket: &mut AudioSocket,
    d: Duration,
    mut reply: impl FnMut(usize) -> Pcm16K,
) -> (Vec<ReceivedFrame>, Vec<AudioSocketEvent>) {
    let deadline = Instant::now() + d;
    let (mut frames, mut events) = (Vec::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(AudioSocketItem::Frame(f))) => {
                // A full queue means the far side stopped draining; the frame is dropped.
                let _ = socket.send(reply(frames.len()));
                frames.push(f);
            }
            Ok(Some(AudioSocketItem::Event(e))) => events.push(e),
            Ok(None) | Err(_) => break,
        }
    }
    (frames, events)
}
