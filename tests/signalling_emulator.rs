//! The signalling client, webhook and call state end to end against the emulator over real
//! HTTP: peer-to-peer, group, meeting join with roster and lobby, PSTN, operations, tones,
//! hang-up, transfer, automatic keepAlive, and the media release hook on termination.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use emulator::scenario::{Answer, DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use emulator::{Emulator, EmulatorConfig};
use signalling::calls::{CallEvent, RosterDiff};
use signalling::client::Prompt;
use signalling::model::{CallState, IdentityRole, OperationStatus, Tone};
use signalling::token::SecretString;
use signalling::{Call, CommunicationsClient, CommunicationsSettings, Credentials};

/// Bounded wait for one event.
const EVENT_WAIT: Duration = Duration::from_secs(10);

struct Harness {
    emu: Emulator,
    client: CommunicationsClient,
    server: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

fn fast() -> Scenario {
    let mut s = Scenario::default();
    s.settings.time_scale = 10.0;
    s
}

async fn start(scenario: Scenario, keep_alive: Option<Duration>) -> Harness {
    let emu = Emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let notification_url = format!("http://{}/callback", listener.local_addr().unwrap());
    let mut settings = CommunicationsSettings::new(
        DEFAULT_APP_ID,
        DEFAULT_TENANT,
        Credentials::Secret(SecretString::new(DEFAULT_APP_SECRET)),
        notification_url,
    );
    settings.graph_url = emu.graph_url();
    settings.authority = format!("{}/{{tenant}}/oauth2/v2.0/token", emu.base_url());
    settings.openid_configuration_url = emu.openid_configuration_url();
    if let Some(k) = keep_alive {
        settings.keep_alive_interval = k;
    }
    let client = CommunicationsClient::new(settings).unwrap();
    let app = client.webhook_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    Harness {
        emu,
        client,
        server,
        http,
    }
}

impl Harness {
    async fn stop(self) {
        self.server.abort();
        self.emu.shutdown().await;
    }

    /// Presses a key on the far side (the emulator dashboard's control endpoint).
    async fn press(&self, call: &Call, key: &str) {
        let r = self
            .http
            .post(format!(
                "{}/emulator/calls/{}/tone",
                self.emu.base_url(),
                call.id()
            ))
            .json(&serde_json::json!({ "tone": key }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    async fn admit(&self, call: &Call, participant: &str) {
        let r = self
            .http
            .post(format!(
                "{}/emulator/calls/{}/participants/{participant}/admit",
                self.emu.base_url(),
                call.id()
            ))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
}

/// Reads events until one satisfies `pred`; every event read is returned.
async fn until(call: &mut Call, what: &str, pred: impl Fn(&CallEvent) -> bool) -> Vec<CallEvent> {
    let mut seen = Vec::new();
    loop {
        let e = tokio::time::timeout(EVENT_WAIT, call.next_event())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {EVENT_WAIT:?}; saw {seen:#?}"))
            .unwrap_or_else(|| panic!("stream ended before {what}; saw {seen:#?}"));
        let hit = pred(&e);
        seen.push(e);
        if hit {
            return seen;
        }
    }
}

fn is_state(e: &CallEvent, s: CallState) -> bool {
    matches!(e, CallEvent::StateChanged { to, .. } if *to == s)
}

fn roster_of(events: &[CallEvent]) -> Vec<&RosterDiff> {
    events
        .iter()
        .filter_map(|e| match e {
            CallEvent::RosterChanged(d) => Some(d),
            _ => None,
        })
        .collect()
}

fn subcode(call: &Call) -> Option<(i64, i64)> {
    let r = call.result()?;
    Some((r.code.get()?.as_i64()?, r.subcode.get()?.as_i64()?))
}

#[tokio::test]
async fn peer_to_peer_call_with_operations_tones_and_hang_up() {
    let h = start(fast(), None).await;
    let john = h.emu.scenario().users[0].id.clone();
    let mut call = h
        .client
        .calls()
        .create(&signalling::CallRequest::peer_to_peer(&john, Some("John")))
        .await
        .unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let r = released.clone();
    call.set_media_release(Box::new(move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));

    let seen = until(&mut call, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    let order: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.as_str().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["establishing", "ringing", "established"]);
    until(&mut call, "roster", |e| {
        matches!(e, CallEvent::RosterChanged(_))
    })
    .await;
    // The bot joins, then John: wait until both are in.
    while call.roster().len() < 2 {
        until(&mut call, "second participant", |e| {
            matches!(e, CallEvent::RosterChanged(_))
        })
        .await;
    }
    let listed = call.list_participants().await.unwrap();
    assert_eq!(listed.len(), 2);
    let john_pid = listed
        .iter()
        .find(|p| {
            p.info
                .get()
                .and_then(|i| i.identity.get())
                .and_then(|s| s.get(IdentityRole::User))
                .is_some_and(|u| u.id.get().map(|i| i.as_str()) == Some(john.as_str()))
        })
        .and_then(|p| p.id.get())
        .cloned()
        .expect("John in the roster");
    let one = call
        .get_participant(&john_pid.as_str().into())
        .await
        .unwrap();
    assert_eq!(one.id.get(), Some(&john_pid));

    // A prompt: running at once, completed by notification.
    let op = call
        .play_prompt(
            &[Prompt::new("https://cdn.contoso.com/beep.wav", "beep")],
            Some("ctx-1"),
        )
        .await
        .unwrap()
        .expect("operation");
    assert_eq!(op.status(), Some(&OperationStatus::Running));
    until(&mut call, "prompt completed", |e| {
        matches!(e, CallEvent::OperationUpdated { status: OperationStatus::Completed, operation, .. }
            if matches!(**operation, signalling::model::CommsOperation::PlayPrompt(_)))
    })
    .await;

    // Tones: subscribe, then the far side presses 5.
    call.subscribe_to_tone(None).await.unwrap();
    h.press(&call, "5").await;
    until(
        &mut call,
        "tone 5",
        |e| matches!(e, CallEvent::Tone(t) if t.tone.get() == Some(&Tone::Tone5)),
    )
    .await;

    // DTMF out, mute/unmute, recording status, keepAlive, participant mute.
    call.send_dtmf_tones(&[Tone::Tone1, Tone::Pound], Some(50), None)
        .await
        .unwrap();
    until(&mut call, "dtmf completed", |e| {
        matches!(e, CallEvent::OperationUpdated { status: OperationStatus::Completed, operation, .. }
            if matches!(**operation, signalling::model::CommsOperation::SendDtmfTones(_)))
    })
    .await;
    call.mute(Some("m")).await.unwrap();
    call.unmute(None).await.unwrap();
    call.update_recording_status(&signalling::model::RecordingStatus::Recording, None)
        .await
        .unwrap();
    call.keep_alive().await.unwrap();
    call.mute_participant(&john_pid.as_str().into(), None)
        .await
        .unwrap();
    call.change_screen_sharing_role(signalling::client::ScreenSharingRole::Viewer)
        .await
        .unwrap();
    let fetched = call.fetch().await.unwrap();
    assert_eq!(fetched.state.get(), Some(&CallState::Established));

    call.hang_up().await.unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    assert_eq!(subcode(&call), Some((200, 7000)));
    assert!(call.is_terminated());
    assert_eq!(released.load(Ordering::SeqCst), 1, "media released once");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), call.next_event())
            .await
            .unwrap()
            .is_none(),
        "nothing after terminated"
    );
    // Hanging up again: a typed Graph error with the service's request id.
    let e = call.hang_up().await.unwrap_err();
    let g = e.graph().expect("graph error");
    assert_eq!(g.status, 404);
    assert!(g.request_id.is_some() && !g.code.is_empty(), "{g:?}");
    h.stop().await;
}

#[tokio::test]
async fn group_call_invite_and_remove() {
    let h = start(fast(), None).await;
    let users = h.emu.scenario().users.clone();
    let request = signalling::CallRequest::group([
        (users[0].id.as_str(), Some("John")),
        (users[1].id.as_str(), Some("Ada")),
    ])
    .subject("standup");
    let mut call = h.client.calls().create(&request).await.unwrap();
    until(&mut call, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    while call.roster().len() < 3 {
        until(&mut call, "roster", |e| {
            matches!(e, CallEvent::RosterChanged(_))
        })
        .await;
    }
    let grace = signalling::calls::invite_user(&users[2].id, Some("Grace"));
    call.invite(&[grace], Some("invite-1")).await.unwrap();
    let seen = until(&mut call, "invite completed", |e| {
        matches!(e, CallEvent::OperationUpdated { status: OperationStatus::Completed, operation, .. }
            if matches!(**operation, signalling::model::CommsOperation::InviteParticipants(_)))
    })
    .await;
    assert!(
        roster_of(&seen).iter().any(|d| d.added.len() == 1),
        "Grace joined: {seen:#?}"
    );
    assert_eq!(call.roster().len(), 4);
    let grace_pid = call
        .roster()
        .into_iter()
        .find(|p| format!("{:?}", p.info).contains(&users[2].id))
        .and_then(|p| p.id.get().cloned())
        .unwrap();
    call.remove_participant(&grace_pid.as_str().into())
        .await
        .unwrap();
    let seen = until(
        &mut call,
        "removed",
        |e| matches!(e, CallEvent::RosterChanged(d) if d.removed.len() == 1),
    )
    .await;
    assert!(!seen.is_empty());
    assert_eq!(call.roster().len(), 3);
    call.hang_up().await.unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn meeting_join_as_guest_waits_in_the_lobby_until_admitted() {
    let h = start(fast(), None).await;
    let m = h.emu.scenario().meetings[0].clone();
    // As an organiser's app: straight in, roster with the members and the bot.
    let request = signalling::CallRequest::join_meeting(
        &m.thread_id,
        &m.message_id,
        &m.organizer,
        DEFAULT_TENANT,
    );
    let mut call = h.client.calls().create(&request).await.unwrap();
    until(&mut call, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    assert_eq!(call.roster().len(), m.participants.len() + 1);
    assert!(call.lobby().is_empty());
    call.hang_up().await.unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;

    // As a guest: the bot is in the lobby until someone admits it.
    let mut guest = h
        .client
        .calls()
        .create(
            &request
                .clone()
                .as_guest("d7a3b999-17ac-4bca-9e77-e6a730d2ec2e", "Guest Bot"),
        )
        .await
        .unwrap();
    let seen = until(
        &mut guest,
        "lobby",
        |e| matches!(e, CallEvent::RosterChanged(d) if !d.in_lobby.is_empty()),
    )
    .await;
    assert!(!seen.iter().any(|e| is_state(e, CallState::Established)));
    let waiting = guest.lobby();
    assert_eq!(waiting.len(), 1);
    h.admit(&guest, waiting[0].as_str()).await;
    let seen = until(&mut guest, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    assert!(
        roster_of(&seen)
            .iter()
            .any(|d| d.updated.len() == 1 && d.in_lobby.is_empty()),
        "{seen:#?}"
    );
    assert!(guest.lobby().is_empty());
    guest.hang_up().await.unwrap();
    until(&mut guest, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn pstn_call_and_transfer() {
    let h = start(fast(), None).await;
    let phone = h.emu.scenario().phones[0].number.clone();
    let request = signalling::CallRequest::pstn(
        &phone,
        "3d913abb-aec0-4964-8fa6-3c6850c4f278",
        DEFAULT_TENANT,
    );
    let mut call = h.client.calls().create(&request).await.unwrap();
    until(&mut call, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    let target = signalling::calls::invite_user(&h.emu.scenario().users[1].id, None);
    call.transfer(&target, None).await.unwrap();
    let seen = until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    let states: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            CallEvent::StateChanged { to, .. } => Some(to.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            CallState::Transferring,
            CallState::TransferAccepted,
            CallState::Terminated
        ]
    );
    assert_eq!(subcode(&call), Some((200, 7015)));
    h.stop().await;
}

#[tokio::test]
async fn unanswered_and_busy_calls_end_with_their_codes() {
    let mut s = fast();
    s.users[1].answer = Answer::Busy;
    let h = start(s, None).await;
    let busy = h.emu.scenario().users[1].id.clone();
    let mut call = h
        .client
        .calls()
        .create(&signalling::CallRequest::peer_to_peer(&busy, None))
        .await
        .unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    assert_eq!(subcode(&call).map(|c| c.0), Some(486));
    h.stop().await;
}

#[tokio::test]
async fn keep_alive_is_sent_automatically() {
    let mut s = fast();
    // 3 s of emulated time at 10x: a call with no keepAlive for 300 ms ends with 408.
    s.settings.keep_alive_timeout_ms = 3000;
    let h = start(s.clone(), Some(Duration::from_millis(100))).await;
    let john = h.emu.scenario().users[0].id.clone();
    let mut call = h
        .client
        .calls()
        .create(&signalling::CallRequest::peer_to_peer(&john, None))
        .await
        .unwrap();
    until(&mut call, "established", |e| {
        is_state(e, CallState::Established)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        h.emu.call_state(call.id().as_str()).as_deref(),
        Some("established")
    );
    assert!(!call.is_terminated());
    call.hang_up().await.unwrap();
    h.stop().await;

    // The control: the same call without keepAlives (interval longer than the timeout) ends.
    let h = start(s, Some(Duration::from_secs(3600))).await;
    let mut call = h
        .client
        .calls()
        .create(&signalling::CallRequest::peer_to_peer(&john, None))
        .await
        .unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    assert_eq!(subcode(&call).map(|c| c.0), Some(408));
    h.stop().await;
}

#[tokio::test]
async fn invalid_requests_fail_locally_and_service_errors_are_typed() {
    let h = start(fast(), None).await;
    // Six targets: refused before anything is sent.
    let users: Vec<String> = (0..6).map(|i| format!("user-{i}")).collect();
    let err = h
        .client
        .calls()
        .create(&signalling::CallRequest::group(
            users.iter().map(|u| (u.as_str(), None)),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, signalling::calls::CreateError::Invalid(_)),
        "{err}"
    );
    // Service errors come back typed, with the client-request-id that was sent.
    let err = h
        .client
        .calls()
        .create(&signalling::CallRequest::join_meeting(
            "19:meeting_nope@thread.v2",
            "0",
            "112f7296-5fa4-42ca-bae8-6a692b15d4b8",
            DEFAULT_TENANT,
        ))
        .await;
    // An unknown meeting is accepted, then ends: the service says so by notification.
    let mut call = err.unwrap();
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    let e = call.mute(None).await.unwrap_err();
    let g = e.graph().expect("graph error");
    assert!(g.status == 404 || g.status == 409, "{g:?}");
    assert!(!g.client_request_id.is_empty() && g.request_id.is_some());
    h.stop().await;
}

#[tokio::test]
async fn app_hosted_call_whose_media_never_connects_ends_and_frees_the_session() {
    let h = start(fast(), None).await;
    // Nothing listens at this mpUri: the service cannot connect media.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let platform = media_session::MediaPlatformSettings::new(&format!(
        "http://127.0.0.1:{port}/MediaProcessor"
    ))
    .unwrap();
    let session = media_session::MediaSession::new(
        &platform,
        &media_session::AudioSocketSettings::default(),
        None,
    )
    .unwrap();
    let john = h.emu.scenario().users[0].id.clone();
    let mut call = h
        .client
        .calls()
        .create(&signalling::CallRequest::peer_to_peer(&john, None).app_hosted(&session))
        .await
        .unwrap();
    let released = Arc::new(AtomicUsize::new(0));
    let r = released.clone();
    call.set_media_release(Box::new(move || {
        r.fetch_add(1, Ordering::SeqCst);
    }));
    let sent = call.fetch().await.unwrap();
    let Some(signalling::model::MediaConfig::AppHosted(config)) = sent.media_config.get() else {
        panic!("{:?}", sent.media_config)
    };
    let blob = media_session::Blob::parse(config.blob.get().unwrap().as_str()).unwrap();
    assert_eq!(blob.mp_media_session_id, *session.id());
    until(&mut call, "terminated", |e| {
        matches!(e, CallEvent::Terminated { .. })
    })
    .await;
    assert_eq!(subcode(&call), Some((500, 1005)));
    assert_eq!(released.load(Ordering::SeqCst), 1);
    h.stop().await;
}
