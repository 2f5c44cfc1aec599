//! What every HTTP exchange gets whatever the route: a 405 in Graph's error envelope with an
//! `Allow` header, a `request-id`, and one log line on `emulator::http` that carries no
//! secret.

use std::sync::{Arc, Mutex};

use emulator::Emulator;
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use serde_json::{Value, json};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

mod common;
use common::{http_client, start_emulator};

/// Keeps every event as `target LEVEL message field=value ...`.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line(String);

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0 += &format!(" {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let m = event.metadata();
        let mut line = Line(format!("{} {}", m.target(), m.level()));
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

async fn start() -> (Emulator, reqwest::Client) {
    let mut scenario = Scenario::default();
    scenario.settings.time_scale = 10.0;
    (start_emulator(scenario).await, http_client())
}

#[tokio::test]
async fn unsupported_methods_answer_graphs_error_envelope_with_allow() {
    let (emu, http) = start().await;
    for (method, url, allow) in [
        (
            reqwest::Method::GET,
            format!("{}/communications/calls", emu.graph_url()),
            "POST",
        ),
        (
            reqwest::Method::GET,
            format!("{}/beta/communications/calls", emu.base_url()),
            "POST",
        ),
        (
            reqwest::Method::PATCH,
            format!("{}/communications/calls/abc", emu.graph_url()),
            "GET,HEAD,DELETE",
        ),
        (
            reqwest::Method::GET,
            format!("{}/communications/calls/abc/keepAlive", emu.graph_url()),
            "POST",
        ),
        (
            reqwest::Method::DELETE,
            emu.token_url(DEFAULT_TENANT),
            "POST",
        ),
    ] {
        let r = http
            .request(method.clone(), &url)
            .header("client-request-id", "cid-405")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {url}");
        let allowed = r.headers()["allow"].to_str().unwrap().to_owned();
        let header_id = r.headers()["request-id"].to_str().unwrap().to_owned();
        assert_eq!(allowed.replace(' ', ""), allow, "{method} {url}");
        let body: Value = r.json().await.unwrap();
        let e = &body["error"];
        assert_eq!(e["code"], "MethodNotAllowed", "{body}");
        let message = e["message"].as_str().unwrap();
        assert!(
            message.contains(method.as_str()) && message.contains(&allowed),
            "{message}"
        );
        assert_eq!(e["innerError"]["client-request-id"], "cid-405");
        // The body's request id is the response header's.
        assert_eq!(e["innerError"]["request-id"], header_id.as_str());
        assert!(e["innerError"]["date"].is_string());
    }
    // A HEAD stays bodiless; an unknown path is still a 404 in the envelope.
    let r = http
        .head(format!("{}/communications/calls", emu.graph_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = http
        .get(format!("{}/communications/nothing", emu.graph_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "itemNotFound"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn each_request_is_logged_once_without_secrets() {
    let capture = Capture::default();
    // The test's runtime is single-threaded: the server's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(capture.clone());
    let (emu, http) = start().await;
    let token: Value = http
        .post(emu.token_url(DEFAULT_TENANT))
        .header("client-request-id", "cid-token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEFAULT_APP_ID),
            ("client_secret", DEFAULT_APP_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{}/communications/calls", emu.graph_url()))
        .bearer_auth(&access)
        .header("client-request-id", "cid-call")
        .json(&json!({
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": "http://127.0.0.1:9/callback?code=cb-s3cret",
            "targets": [{
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": { "@odata.type": "#microsoft.graph.identitySet",
                    "user": { "@odata.type": "#microsoft.graph.identity", "id": "00000000-0000-0000-0000-00000000dead" } }
            }],
            "requestedModalities": ["audio"],
            "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let call_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(format!("{}?name=Private+Person&call=x", emu.join_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .get(format!("{}/communications/calls", emu.graph_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The call to nobody ends (480) once the emulator has tried; wait for that line.
    for _ in 0..100 {
        if emu.call_state(&call_id).as_deref() == Some("terminated") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    emu.shutdown().await;

    let lines = capture.0.lock().unwrap().clone();
    let all = lines.join("\n");
    let http_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("emulator::http INFO"))
        .collect();
    assert_eq!(http_lines.len(), 4, "{all}");
    let token_line = http_lines[0];
    assert!(
        token_line.contains(&format!("path={DEFAULT_TENANT}/oauth2/v2.0/token"))
            || token_line.contains(&format!("path=/{DEFAULT_TENANT}/oauth2/v2.0/token")),
        "{token_line}"
    );
    for needle in [
        "method=POST",
        "status=200",
        "latency_ms=",
        "client_request_id=\"cid-token\"",
        "request_id=",
    ] {
        assert!(token_line.contains(needle), "{needle} in {token_line}");
    }
    assert!(http_lines[1].contains("status=201") && http_lines[1].contains("cid-call"));
    assert!(http_lines[2].contains("path=/join") && http_lines[2].contains("status=200"));
    assert!(http_lines[3].contains("status=405"), "{}", http_lines[3]);
    assert!(
        lines.iter().any(|l| l.starts_with("emulator::calls INFO")
            && l.contains("call created")
            && l.contains(&call_id)
            && l.contains("PeerToPeer")),
        "{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("emulator::calls INFO")
            && l.contains("call ended")
            && l.contains("code=480")
            && l.contains("subcode=10037")),
        "{all}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("emulator::notify DEBUG")
            && l.contains("http://127.0.0.1:9/callback")),
        "{all}"
    );
    for secret in [
        DEFAULT_APP_SECRET,
        access.as_str(),
        "Bearer",
        "cb-s3cret",
        "Private",
        "00000000-0000-0000-0000-00000000dead",
    ] {
        assert!(!all.contains(secret), "{secret:?} logged:\n{all}");
    }
}
