//! The emulator's Graph API over real HTTP on 127.0.0.1: tokens, create call, signed
//! notifications to a real webhook, hang-up, permissions and authentication errors.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use emulator::Emulator;
use emulator::scenario::{Answer, DEFAULT_APP_ID, DEFAULT_TENANT, Scenario};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

mod common;
use common::{JOHN, app_token, http_client, start_emulator};

/// A bot's callback: checks each notification's token against the emulator's JWKS and
/// records the bodies.
#[derive(Clone, Default)]
struct Webhook {
    received: Arc<Mutex<Vec<Value>>>,
    key: Arc<Mutex<Option<DecodingKey>>>,
}

async fn callback(
    State(hook): State<Webhook>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> StatusCode {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let key = hook.key.lock().unwrap().clone().expect("key loaded");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[DEFAULT_APP_ID]);
    v.set_issuer(&["https://api.botframework.com"]);
    let claims =
        jsonwebtoken::decode::<Value>(token, &key, &v).expect("notification token verifies");
    assert_eq!(
        claims.claims["http://schemas.microsoft.com/identity/claims/tenantid"],
        DEFAULT_TENANT
    );
    hook.received.lock().unwrap().push(body.0);
    StatusCode::ACCEPTED
}

struct Fixture {
    emu: Emulator,
    hook: Webhook,
    callback_url: String,
    http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start(scenario: Scenario) -> Self {
        let emu = start_emulator(scenario).await;
        let http = http_client();
        let hook = Webhook::default();
        let openid: Value = http
            .get(emu.openid_configuration_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let jwks: jsonwebtoken::jwk::JwkSet = http
            .get(openid["jwks_uri"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        *hook.key.lock().unwrap() = Some(DecodingKey::from_jwk(&jwks.keys[0]).unwrap());
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
            server,
        }
    }

    async fn token(&self, app: &str, secret: &str) -> reqwest::Response {
        self.http
            .post(self.emu.token_url(DEFAULT_TENANT))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", app),
                ("client_secret", secret),
                ("scope", "https://graph.microsoft.com/.default"),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn access_token(&self) -> String {
        app_token(&self.http, &self.emu).await
    }

    fn p2p_request(&self, user: &str) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": self.callback_url,
            "targets": [{
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": { "@odata.type": "#microsoft.graph.identitySet",
                    "user": { "@odata.type": "#microsoft.graph.identity", "displayName": "John", "id": user } }
            }],
            "requestedModalities": ["audio"],
            "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" }
        })
    }

    /// Waits (bounded) until a notification satisfies `pred`.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(v) = self.hook.received.lock().unwrap().iter().find(|v| pred(v)) {
                return v.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "no notification {what}; got {:#?}",
            self.hook.received.lock().unwrap()
        );
    }

    fn states(&self) -> Vec<String> {
        self.hook
            .received
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| {
                v["value"][0]["resourceData"]["state"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    async fn stop(self) {
        self.emu.shutdown().await;
        self.server.abort();
    }
}

fn fast() -> Scenario {
    let mut s = Scenario::default();
    s.settings.time_scale = 10.0;
    s
}

#[tokio::test]
async fn peer_to_peer_call_lives_and_ends() {
    let f = Fixture::start(fast()).await;
    let token = f.access_token().await;
    let r = f
        .http
        .post(format!("{}/communications/calls", f.emu.graph_url()))
        .bearer_auth(&token)
        .json(&f.p2p_request(JOHN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let call: Value = r.json().await.unwrap();
    assert_eq!(call["state"], "establishing");
    assert_eq!(call["direction"], "outgoing");
    assert!(location.ends_with(call["id"].as_str().unwrap()));

    f.wait_for("established", |v| {
        v["value"][0]["resourceData"]["state"] == "established"
    })
    .await;
    let roster = f
        .wait_for("roster", |v| {
            v["value"][0]["resourceData"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .await;
    assert!(
        roster["value"][0]["resourceUrl"]
            .as_str()
            .unwrap()
            .ends_with("/participants")
    );
    let got: Value = f
        .http
        .get(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["state"], "established");

    let r = f
        .http
        .post(format!("{location}/keepAlive"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .delete(&location)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let ended = f
        .wait_for("terminated", |v| {
            v["value"][0]["resourceData"]["state"] == "terminated"
        })
        .await;
    assert_eq!(ended["value"][0]["resourceData"]["resultInfo"]["code"], 200);
    assert_eq!(
        ended["value"][0]["resourceData"]["resultInfo"]["subcode"],
        7000
    );
    let states = f.states();
    let pos = |s: &str| {
        states
            .iter()
            .position(|x| x == s)
            .unwrap_or_else(|| panic!("{s} in {states:?}"))
    };
    assert!(
        pos("establishing") < pos("established") && pos("established") < pos("terminated"),
        "{states:?}"
    );
    f.stop().await;
}

#[tokio::test]
async fn busy_unknown_and_unanswered_targets_end_with_their_codes() {
    let mut scenario = fast();
    scenario.users[1].answer = Answer::Busy;
    scenario.users[2].answer = Answer::NoAnswer;
    scenario.settings.ring_timeout_ms = 2000;
    let busy = scenario.users[1].id.clone();
    let silent = scenario.users[2].id.clone();
    let f = Fixture::start(scenario).await;
    let token = f.access_token().await;
    for (user, code) in [
        (busy.as_str(), 486),
        ("00000000-0000-0000-0000-000000000000", 480),
        (silent.as_str(), 408),
    ] {
        let r = f
            .http
            .post(format!("{}/communications/calls", f.emu.graph_url()))
            .bearer_auth(&token)
            .json(&f.p2p_request(user))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let ended = f
            .wait_for("terminated", |v| {
                v["value"][0]["resourceUrl"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(&id))
                    && v["value"][0]["resourceData"]["state"] == "terminated"
            })
            .await;
        assert_eq!(
            ended["value"][0]["resourceData"]["resultInfo"]["code"], code,
            "{user}"
        );
    }
    f.stop().await;
}

#[tokio::test]
async fn authentication_and_permissions_are_enforced() {
    let mut scenario = fast();
    scenario.apps.push(emulator::identity::AppRegistration {
        app_id: "limited-app".into(),
        secret: "limited-secret".into(),
        tenant_id: DEFAULT_TENANT.into(),
        roles: vec!["Calls.JoinGroupCalls.All".into()],
    });
    let f = Fixture::start(scenario).await;
    let url = format!("{}/communications/calls", f.emu.graph_url());
    let body = f.p2p_request(JOHN);

    // No token, a garbage token, a wrong secret.
    let r = f.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "InvalidAuthenticationToken");
    assert!(e["error"]["innerError"]["request-id"].is_string());
    let r = f
        .http
        .post(&url)
        .bearer_auth("abc.def.ghi")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(f.token(DEFAULT_APP_ID, "wrong").await.status(), 401);

    // A token without Calls.Initiate.All: 403 naming the permission.
    let r: Value = f
        .token("limited-app", "limited-secret")
        .await
        .json()
        .await
        .unwrap();
    let limited = r["access_token"].as_str().unwrap();
    let r = f
        .http
        .post(&url)
        .bearer_auth(limited)
        .header("client-request-id", "abc-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "Forbidden");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Calls.Initiate.All"),
        "{e}"
    );
    assert_eq!(e["error"]["innerError"]["client-request-id"], "abc-123");

    // Invalid bodies: 400 naming the property, nothing created.
    let token = f.access_token().await;
    let mut bad = body.clone();
    bad["callbackUri"] = json!("http://bot.contoso.com/callback");
    let r = f
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("callbackUri"),
        "{e}"
    );
    let r = f
        .http
        .post(&url)
        .bearer_auth(&token)
        .body("{\"a\":1,}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Unknown versions and calls.
    let r = f
        .http
        .post(format!("{}/v2/communications/calls", f.emu.base_url()))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = f
        .http
        .get(format!("{url}/nope"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(f.hook.received.lock().unwrap().is_empty());
    f.stop().await;
}

#[tokio::test]
async fn meeting_join_sends_the_roster_with_the_bot() {
    let f = Fixture::start(fast()).await;
    let token = f.access_token().await;
    let meeting = f.emu.scenario().meetings[0].clone();
    let body = json!({
        "@odata.type": "#microsoft.graph.call",
        "callbackUri": f.callback_url,
        "requestedModalities": ["audio"],
        "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
        "chatInfo": { "@odata.type": "#microsoft.graph.chatInfo", "threadId": meeting.thread_id, "messageId": "0" },
        "meetingInfo": { "@odata.type": "#microsoft.graph.organizerMeetingInfo",
            "organizer": { "@odata.type": "#microsoft.graph.identitySet",
                "user": { "@odata.type": "#microsoft.graph.identity", "id": meeting.organizer, "tenantId": DEFAULT_TENANT } },
            "allowConversationWithoutHost": true },
        "tenantId": DEFAULT_TENANT
    });
    let r = f
        .http
        .post(format!("{}/communications/calls", f.emu.graph_url()))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let est = f
        .wait_for("established", |v| {
            v["value"][0]["resourceData"]["state"] == "established"
        })
        .await;
    assert_eq!(
        est["value"][0]["resourceData"]["chatInfo"]["threadId"],
        meeting.thread_id.as_str()
    );
    let roster = f
        .wait_for("roster with bot", |v| {
            v["value"][0]["resourceData"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|p| p["info"]["identity"]["application"].is_object())
            })
        })
        .await;
    let list = roster["value"][0]["resourceData"].as_array().unwrap();
    assert_eq!(list.len(), meeting.participants.len() + 1);
    assert!(
        list.iter()
            .all(|p| p["mediaStreams"][0]["sourceId"].is_string())
    );
    f.stop().await;
}

#[tokio::test]
async fn record_response_produces_a_downloadable_recording() {
    let f = Fixture::start(fast()).await;
    let token = f.access_token().await;
    let r = f
        .http
        .post(format!("{}/communications/calls", f.emu.graph_url()))
        .bearer_auth(&token)
        .json(&f.p2p_request(JOHN))
        .send()
        .await
        .unwrap();
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    f.wait_for("established", |v| {
        v["value"][0]["resourceData"]["state"] == "established"
    })
    .await;
    let r = f
        .http
        .post(format!("{location}/recordResponse"))
        .bearer_auth(&token)
        .json(&json!({ "maxRecordDurationInSeconds": 2, "clientContext": "rec-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let done = f
        .wait_for("record completed", |v| {
            v["value"][0]["resourceData"]["@odata.type"] == "#microsoft.graph.recordOperation"
                && v["value"][0]["resourceData"]["status"] == "completed"
        })
        .await;
    let op = &done["value"][0]["resourceData"];
    assert_eq!(op["clientContext"], "rec-1");
    let url = op["recordingLocation"].as_str().unwrap();
    let wav = f
        .http
        .get(url)
        .bearer_auth(op["recordingAccessToken"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(wav.status(), 200);
    let wav = emulator::wav::Wav::parse(&wav.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.samples.len()),
        (16_000, 1, 32_000)
    );
    // John's tone: zero crossings of a 440 Hz sine, 880 a second.
    let crossings = wav
        .samples
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    assert!((1700..1820).contains(&crossings), "{crossings}");
    assert_eq!(f.http.get(url).send().await.unwrap().status(), 401);
    assert_eq!(
        f.http
            .get(url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    f.stop().await;
}

impl Fixture {
    /// Creates a call (201 expected) and returns its id.
    async fn create(&self, token: &str, body: &Value) -> String {
        let r = self
            .http
            .post(format!("{}/communications/calls", self.emu.graph_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first notification of call `id` that moves it to `state`.
    async fn state_of(&self, id: &str, state: &str) -> Value {
        let n = self
            .wait_for(state, |v| {
                v["value"][0]["resourceUrl"]
                    .as_str()
                    .is_some_and(|u| u.ends_with(id))
                    && v["value"][0]["resourceData"]["state"] == state
            })
            .await;
        n["value"][0]["resourceData"].clone()
    }

    fn meeting_request(&self, chat_info: Option<Value>, meeting_info: Value) -> Value {
        let mut body = json!({
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": self.callback_url,
            "requestedModalities": ["audio"],
            "mediaConfig": { "@odata.type": "#microsoft.graph.serviceHostedMediaConfig" },
            "meetingInfo": meeting_info,
            "tenantId": DEFAULT_TENANT
        });
        if let Some(chat) = chat_info {
            body["chatInfo"] = chat;
        }
        body
    }
}

fn organizer_info(organizer: &str, tenant: &str) -> Value {
    json!({ "@odata.type": "#microsoft.graph.organizerMeetingInfo",
        "organizer": { "@odata.type": "#microsoft.graph.identitySet",
            "user": { "@odata.type": "#microsoft.graph.identity", "id": organizer, "tenantId": tenant } },
        "allowConversationWithoutHost": true })
}

#[tokio::test]
async fn a_scenario_meeting_is_joined_by_join_meeting_id_and_by_its_join_url() {
    let f = Fixture::start(fast()).await;
    let token = f.access_token().await;
    let meeting = f.emu.scenario().meetings[0].clone();
    // joinMeetingIdMeetingInfo with the passcode, the id typed without its spaces.
    let by_id = f.meeting_request(
        None,
        json!({ "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": meeting.join_meeting_id.as_deref().unwrap().replace(' ', ""),
            "passcode": meeting.passcode.as_deref().unwrap() }),
    );
    let id = f.create(&token, &by_id).await;
    f.state_of(&id, "established").await;
    // The join URL the scenario's description prints, read as a client reads a Teams link.
    let url = f
        .emu
        .describe()
        .lines()
        .find_map(|l| l.trim().strip_prefix("joinWebUrl ").map(str::to_owned))
        .expect("a joinWebUrl line");
    let parsed = emulator::scenario::JoinWebUrl::parse(&url).expect("a join URL");
    let by_url = f.meeting_request(
        Some(json!({ "@odata.type": "#microsoft.graph.chatInfo",
            "threadId": parsed.thread_id, "messageId": parsed.message_id })),
        organizer_info(
            parsed.organizer_id.as_deref().unwrap(),
            parsed.tenant_id.as_deref().unwrap(),
        ),
    );
    let id = f.create(&token, &by_url).await;
    let est = f.state_of(&id, "established").await;
    assert_eq!(est["chatInfo"]["threadId"], meeting.thread_id.as_str());
    // A wrong passcode does not get in, and the message does not give the right one away.
    let wrong = f.meeting_request(
        None,
        json!({ "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
            "joinMeetingId": meeting.join_meeting_id.as_deref().unwrap(),
            "passcode": "nope" }),
    );
    let id = f.create(&token, &wrong).await;
    let ended = f.state_of(&id, "terminated").await;
    assert_eq!(
        (
            ended["resultInfo"]["code"].as_u64(),
            ended["resultInfo"]["subcode"].as_u64()
        ),
        (Some(404), Some(11000))
    );
    let message = ended["resultInfo"]["message"].as_str().unwrap();
    assert!(message.contains("passcode does not match"), "{message}");
    assert!(
        !message.contains(meeting.passcode.as_deref().unwrap()),
        "{message}"
    );
    f.stop().await;
}

#[tokio::test]
async fn bodies_from_graphs_docs_end_with_messages_that_say_what_the_scenario_has() {
    let f = Fixture::start(fast()).await;
    let token = f.access_token().await;
    let meeting = f.emu.scenario().meetings[0].clone();
    // Example 5 of the create-call docs: a meeting the scenario does not have.
    let docs_meeting = f.meeting_request(
        Some(json!({ "@odata.type": "#microsoft.graph.chatInfo",
            "threadId": "19:meeting_Win6Ydo4wsMijFjZS00ZGVjLTk5MGUtOTRjNWY2NmNkYTFm@thread.v2",
            "messageId": "0" })),
        organizer_info("5810cede-f3cc-42eb-b2c1-e9bd5d53ec96", DEFAULT_TENANT),
    );
    let id = f.create(&token, &docs_meeting).await;
    let ended = f.state_of(&id, "terminated").await;
    assert_eq!(ended["resultInfo"]["code"], 404);
    assert_eq!(ended["resultInfo"]["subcode"], 11000);
    let message = ended["resultInfo"]["message"].as_str().unwrap();
    assert!(message.contains("19:meeting_Win6Ydo4ws"), "{message}");
    assert!(message.contains(&meeting.thread_id), "{message}");
    // A peer-to-peer call to a user the scenario does not have.
    let id = f
        .create(
            &token,
            &f.p2p_request("8e2d6f0a-1111-2222-3333-444455556666"),
        )
        .await;
    let ended = f.state_of(&id, "terminated").await;
    assert_eq!(ended["resultInfo"]["code"], 480);
    assert_eq!(ended["resultInfo"]["subcode"], 10037);
    let message = ended["resultInfo"]["message"].as_str().unwrap();
    assert!(
        message.contains("no user with id `8e2d6f0a-1111-2222-3333-444455556666`"),
        "{message}"
    );
    assert!(
        message.contains("Grace (id 550fae72-d251-43ec-868c-373732c2704f)"),
        "{message}"
    );
    // GET on the call shows the same resultInfo.
    let call: Value = f
        .http
        .get(format!("{}/communications/calls/{id}", f.emu.graph_url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(call["resultInfo"]["message"], message);
    f.stop().await;
}
