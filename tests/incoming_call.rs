//! Incoming calls from the emulator to the bot: the bot's handler answers with a media
//! session (and hears the caller), rejects, or lets the 15 s window pass.

use std::time::Duration;

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketItem, MediaPlatform, MediaPlatformSettings};
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use emulator::{Emulator, EmulatorConfig};
use signalling::calls::CallEvent;
use signalling::client::RejectReason;
use signalling::model::CallState;
use signalling::token::SecretString;
use signalling::{CommunicationsClient, CommunicationsSettings, Credentials};

const WAIT: Duration = Duration::from_secs(10);

struct Bot {
    emu: Emulator,
    client: CommunicationsClient,
    callback: String,
    server: tokio::task::JoinHandle<()>,
}

async fn start(time_scale: f64) -> Bot {
    let mut scenario = Scenario::default();
    scenario.settings.time_scale = time_scale;
    let emu = Emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        scenario,
    })
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/callback", listener.local_addr().unwrap());
    let mut settings = CommunicationsSettings::new(
        DEFAULT_APP_ID,
        DEFAULT_TENANT,
        Credentials::Secret(SecretString::new(DEFAULT_APP_SECRET)),
        callback.clone(),
    );
    settings.graph_url = emu.graph_url();
    settings.authority = format!("{}/{{tenant}}/oauth2/v2.0/token", emu.base_url());
    settings.openid_configuration_url = emu.openid_configuration_url();
    let client = CommunicationsClient::new(settings).unwrap();
    let app = client.webhook_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Bot {
        emu,
        client,
        callback,
        server,
    }
}

async fn ended_with(call: &mut signalling::Call) -> i64 {
    loop {
        match tokio::time::timeout(WAIT, call.next_event())
            .await
            .expect("an event in time")
        {
            Some(CallEvent::Terminated { result }) => {
                return result
                    .and_then(|r| r.code.get().and_then(|c| c.as_i64()))
                    .unwrap_or(-1);
            }
            Some(_) => {}
            None => panic!("events ended before termination"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_incoming_call_carries_the_callers_voice() {
    let bot = start(1.0).await;
    let platform = MediaPlatform::start(MediaPlatformSettings::default())
        .await
        .unwrap();
    let mut incoming = bot
        .client
        .incoming_calls()
        .expect("the incoming call stream");
    let john = bot.emu.scenario().users[0].id.clone();
    bot.emu
        .place_incoming_call(&john, &bot.callback, None)
        .unwrap();
    let offer = tokio::time::timeout(WAIT, incoming.next())
        .await
        .unwrap()
        .unwrap();
    assert!(offer.deadline() > std::time::Instant::now());
    let mut session = platform
        .create_session(AudioSocketSettings::default(), None)
        .unwrap();
    let mut call = offer
        .answer_app_hosted(session.description(), None)
        .await
        .unwrap();
    // Established, and John's 440 Hz tone arrives with his sourceId as active speaker.
    loop {
        match tokio::time::timeout(WAIT, call.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            CallEvent::StateChanged {
                to: CallState::Established,
                ..
            } => break,
            CallEvent::Terminated { result } => panic!("terminated: {result:?}"),
            _ => {}
        }
    }
    let socket = session.audio_socket();
    let mut heard = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while heard < 25 && tokio::time::Instant::now() < deadline {
        if let Some(AudioSocketItem::Frame(f)) =
            tokio::time::timeout(WAIT, socket.next()).await.unwrap()
        {
            let energy: f64 = f
                .pcm
                .samples
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum();
            if energy > 1e6 && !f.active_speakers.is_empty() {
                heard += 1;
            }
        }
    }
    assert!(heard >= 25, "the caller's audio did not arrive");
    call.handle().hang_up().await.unwrap();
    assert_eq!(ended_with(&mut call).await, 200);
    drop(session);
    bot.server.abort();
    bot.emu.shutdown().await;
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_and_unanswered_incoming_calls_end() {
    // Time runs 10x: the 15 s window passes in 1.5 s.
    let bot = start(10.0).await;
    let mut incoming = bot.client.incoming_calls().unwrap();
    let ada = bot.emu.scenario().users[1].id.clone();
    let first = bot
        .emu
        .place_incoming_call(&ada, &bot.callback, None)
        .unwrap();
    let offer = tokio::time::timeout(WAIT, incoming.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        offer.id().map(|i| i.as_str().to_owned()),
        Some(first.clone())
    );
    offer.reject(RejectReason::Busy).await.unwrap();
    for _ in 0..100 {
        if bot.emu.call_state(&first).as_deref() == Some("terminated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bot.emu.call_state(&first).as_deref(), Some("terminated"));

    // Nobody answers: the emulator ends the call when the window passes.
    let second = bot
        .emu
        .place_incoming_call(&ada, &bot.callback, None)
        .unwrap();
    let offer = tokio::time::timeout(WAIT, incoming.next())
        .await
        .unwrap()
        .unwrap();
    let _held = offer; // neither answered nor dropped: dropping would reject
    for _ in 0..100 {
        if bot.emu.call_state(&second).as_deref() == Some("terminated") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bot.emu.call_state(&second).as_deref(), Some("terminated"));

    // Bad requests are refused by name.
    let err = bot
        .emu
        .place_incoming_call("nobody", &bot.callback, None)
        .unwrap_err();
    assert!(err.contains("from"), "{err}");
    let err = bot
        .emu
        .place_incoming_call(&ada, "http://example.com/cb", None)
        .unwrap_err();
    assert!(err.contains("callbackUri"), "{err}");
    bot.server.abort();
    bot.emu.shutdown().await;
}
