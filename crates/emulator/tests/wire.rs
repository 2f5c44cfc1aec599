//! What goes on the wire, against golden files: the Graph responses and the notification
//! bodies of a peer-to-peer call with operations, a meeting join and an incoming call, ids
//! and ports replaced by placeholders. Values are compared exactly (types, `null` against
//! absence, array order); key order is not, as JSON objects have none: both sides are
//! compared with their keys sorted and their ids numbered in that order.
//!
//! `UPDATE_GOLDEN=1 cargo nextest run -p emulator --test wire` rewrites the files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use emulator::Emulator;
use emulator::scenario::{DEFAULT_TENANT, Scenario};
use serde_json::{Value, json};

mod common;
use common::{JOHN, app_token, http_client, start_emulator};

/// Every notification body, as text, in arrival order.
#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<String>>>);

async fn callback(State(hook): State<Hook>, body: String) -> StatusCode {
    hook.0.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}

struct Bed {
    emu: Emulator,
    hook: Hook,
    callback_url: String,
    http: reqwest::Client,
    token: String,
    /// What the test saw, labelled, in order.
    seen: Vec<(String, String)>,
    server: tokio::task::JoinHandle<()>,
}

impl Bed {
    async fn start() -> Self {
        let mut scenario = Scenario::default();
        scenario.settings.time_scale = 10.0;
        let emu = start_emulator(scenario).await;
        let http = http_client();
        let token = app_token(&http, &emu).await;
        let hook = Hook::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback_url = format!("http://{}/callback", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/callback", axum::routing::post(callback))
            .with_state(hook.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            emu,
            hook,
            callback_url,
            http,
            token,
            seen: Vec::new(),
            server,
        }
    }

    /// Sends a request and keeps the response body (if any) under `label`.
    async fn request(
        &mut self,
        label: &str,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Value {
        let mut r = match method {
            "POST" => self.http.post(url),
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            other => panic!("{other}"),
        }
        .bearer_auth(&self.token);
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        self.seen
            .push((format!("{label} → {status}"), text.clone()));
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Waits (bounded) until `n` notifications arrived, then keeps the new ones.
    async fn notifications(&mut self, n: usize) {
        for _ in 0..400 {
            if self.hook.0.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Late extras would show as a difference: let them arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let got: Vec<String> = self.hook.0.lock().unwrap().drain(..).collect();
        assert_eq!(got.len(), n, "notifications: {got:#?}");
        for (i, body) in got.into_iter().enumerate() {
            self.seen.push((format!("notification {i}"), body));
        }
    }

    /// Checks what was seen against `tests/data/wire/{name}.txt`.
    async fn check(self, name: &str) {
        let base = self.emu.base_url();
        let port = base.rsplit(':').next().unwrap().to_owned();
        let hook_port = self
            .callback_url
            .trim_end_matches("/callback")
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        let mut text = String::new();
        for (label, body) in &self.seen {
            let body = body
                .replace(&port, "EMULATOR_PORT")
                .replace(&hook_port, "HOOK_PORT");
            let pretty = match serde_json::from_str::<Value>(&body) {
                Ok(v) => serde_json::to_string_pretty(&v).unwrap(),
                Err(_) => body,
            };
            text += &format!("### {label}\n{pretty}\n");
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/wire")
            .join(format!("{name}.txt"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, Ids::default().replace(&text)).unwrap();
        } else {
            let golden = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
            let (want, got) = (sections(&golden), sections(&text));
            assert_eq!(
                want.iter().map(|s| &s.0).collect::<Vec<_>>(),
                got.iter().map(|s| &s.0).collect::<Vec<_>>(),
                "{name}: the exchanges differ:\n{text}"
            );
            for ((label, want), (_, got)) in want.iter().zip(&got) {
                assert_eq!(want, got, "{name}, {label}:\n{text}");
            }
        }
        self.emu.shutdown().await;
        self.server.abort();
    }
}

/// (label, body as JSON, or as a string when it is not JSON), keys sorted, ids numbered in
/// order of first appearance over the whole exchange.
fn sections(text: &str) -> Vec<(String, Value)> {
    let mut ids = Ids::default();
    text.split("### ")
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (label, body) = s.split_once('\n').unwrap_or((s, ""));
            let body = body.trim_end();
            let value = match serde_json::from_str::<Value>(body) {
                Ok(v) => {
                    let sorted = serde_json::to_string(&sorted(v)).unwrap();
                    serde_json::from_str(&ids.replace(&sorted)).unwrap()
                }
                Err(_) => json!(ids.replace(body)),
            };
            (label.to_owned(), value)
        })
        .collect()
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Replaces each UUID, and each placeholder of an earlier replacement (`uuid-7`), by a
/// placeholder numbered in order of first appearance (the scenario's own fixed ids
/// included, which is harmless: they are stable).
#[derive(Default)]
struct Ids(HashMap<String, usize>);

impl Ids {
    fn replace(&mut self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < bytes.len() {
            let placeholder = text[i..]
                .strip_prefix("uuid-")
                .map(|rest| 5 + rest.bytes().take_while(u8::is_ascii_digit).count());
            let len = match placeholder {
                Some(n) if n > 5 => Some(n),
                _ if text.get(i..i + 36).is_some_and(is_uuid) => Some(36),
                _ => None,
            };
            if let Some(len) = len {
                let n = self.0.len();
                let k = *self.0.entry(text[i..i + len].to_owned()).or_insert(n);
                out += &format!("uuid-{k}");
                i += len;
            } else {
                let c = text[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }
}

fn is_uuid(s: &str) -> bool {
    s.char_indices().all(|(i, c)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            c == '-'
        } else {
            c.is_ascii_hexdigit()
        }
    })
}

#[tokio::test]
async fn a_peer_to_peer_call_with_operations() {
    let mut b = Bed::start().await;
    let calls = format!("{}/communications/calls", b.emu.graph_url());
    let request = json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": b.callback_url,
        "targets": [{
            "@odata.type": "#microsoft.graph.invitationParticipantInfo",
            "identity": { "@odata.type": "#microsoft.graph.identitySet",
                "user": { "@odata.type": "#microsoft.graph.identity", "displayName": "John", "id": JOHN } }
        }],
        "requestedModalities": ["audio"],
        "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
        "tenantId": DEFAULT_TENANT
    });
    let call = b.request("create", "POST", &calls, Some(request)).await;
    let url = format!("{calls}/{}", call["id"].as_str().unwrap());
    // establishing, ringing, roster (bot), established, roster (bot and John).
    b.notifications(5).await;
    b.request("get", "GET", &url, None).await;
    b.request("participants", "GET", &format!("{url}/participants"), None)
        .await;
    let prompt = json!({ "clientContext": "c1", "prompts": [{ "@odata.type": "#microsoft.graph.mediaPrompt" }] });
    b.request(
        "playPrompt",
        "POST",
        &format!("{url}/playPrompt"),
        Some(prompt),
    )
    .await;
    b.notifications(1).await;
    b.request(
        "mute",
        "POST",
        &format!("{url}/mute"),
        Some(json!({ "clientContext": "c2" })),
    )
    .await;
    b.notifications(1).await;
    b.request(
        "subscribeToTone",
        "POST",
        &format!("{url}/subscribeToTone"),
        Some(json!({})),
    )
    .await;
    let dtmf = json!({ "tones": ["tone1"], "delayBetweenTonesMs": 0 });
    b.request(
        "sendDtmfTones",
        "POST",
        &format!("{url}/sendDtmfTones"),
        Some(dtmf),
    )
    .await;
    b.request(
        "cancelMediaProcessing",
        "POST",
        &format!("{url}/cancelMediaProcessing"),
        None,
    )
    .await;
    b.notifications(1).await;
    b.request("keepAlive", "POST", &format!("{url}/keepAlive"), None)
        .await;
    b.request("hang up", "DELETE", &url, None).await;
    b.notifications(2).await;
    b.check("peer_to_peer").await;
}

#[tokio::test]
async fn a_meeting_join_and_its_roster() {
    let mut b = Bed::start().await;
    let meeting = b.emu.scenario().meetings[0].clone();
    let calls = format!("{}/communications/calls", b.emu.graph_url());
    let request = json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": b.callback_url,
        "requestedModalities": ["audio"],
        "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
        "chatInfo": { "@odata.type": "#microsoft.graph.chatInfo", "threadId": meeting.thread_id, "messageId": "0" },
        "meetingInfo": { "@odata.type": "#microsoft.graph.organizerMeetingInfo",
            "organizer": { "@odata.type": "#microsoft.graph.identitySet",
                "user": { "@odata.type": "#microsoft.graph.identity", "id": meeting.organizer, "tenantId": DEFAULT_TENANT } },
            "allowConversationWithoutHost": true },
        "tenantId": DEFAULT_TENANT
    });
    let call = b.request("create", "POST", &calls, Some(request)).await;
    let url = format!("{calls}/{}", call["id"].as_str().unwrap());
    // establishing, one roster per participant joining (the bot last), established.
    b.notifications(meeting.participants.len() + 3).await;
    let roster = b
        .request("participants", "GET", &format!("{url}/participants"), None)
        .await;
    let someone = roster["value"][0]["id"].as_str().unwrap().to_owned();
    b.request(
        "get participant",
        "GET",
        &format!("{url}/participants/{someone}"),
        None,
    )
    .await;
    b.request(
        "mute participant",
        "POST",
        &format!("{url}/participants/{someone}/mute"),
        Some(json!({ "clientContext": "m" })),
    )
    .await;
    b.notifications(1).await;
    b.request(
        "remove participant",
        "DELETE",
        &format!("{url}/participants/{someone}"),
        None,
    )
    .await;
    b.notifications(1).await;
    b.request("hang up", "DELETE", &url, None).await;
    b.notifications(2).await;
    b.check("meeting").await;
}

#[tokio::test]
async fn an_incoming_call_answered() {
    let mut b = Bed::start().await;
    let incoming = format!("{}/emulator/incoming", b.emu.base_url());
    let placed = b
        .request(
            "incoming",
            "POST",
            &incoming,
            Some(json!({ "from": JOHN, "callbackUri": b.callback_url })),
        )
        .await;
    let id = placed["callId"].as_str().unwrap().to_owned();
    b.notifications(1).await;
    let url = format!("{}/communications/calls/{id}", b.emu.graph_url());
    let answer = json!({
        "callbackUri": b.callback_url,
        "acceptedModalities": ["audio"],
        "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" }
    });
    b.request("answer", "POST", &format!("{url}/answer"), Some(answer))
        .await;
    // establishing, roster (bot), roster (bot and John), established.
    b.notifications(4).await;
    b.request("get", "GET", &url, None).await;
    b.request("hang up", "DELETE", &url, None).await;
    b.notifications(2).await;
    b.check("incoming").await;
}
