//! The bot API end to end against the emulator: a placed call that echoes, media released
//! when the call ends, a dropped call hung up, an incoming call answered, a refused call
//! that leaves nothing behind, and settings that match the emulator's.

#[path = "common/bot.rs"]
mod common;

use std::time::Duration;

use botmedia::{
    Bot, BotError, BotSettings, CallEvent, CallItem, CallRequest, CallState, emulator_app,
};
use common::{WAIT, echo_user, emulator, until_established};
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT};

async fn until_media_released(bot: &Bot) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot.platform().active_calls() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the call's media was not released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn settings_for_the_emulator_match_its_urls_and_app() {
    assert_eq!(emulator_app::APP_ID, DEFAULT_APP_ID);
    assert_eq!(emulator_app::TENANT, DEFAULT_TENANT);
    assert_eq!(emulator_app::SECRET, DEFAULT_APP_SECRET);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let emu = emulator().await;
        let s = BotSettings::emulator(&emu.base_url());
        assert_eq!(s.graph_url, emu.graph_url());
        assert_eq!(s.authority, emu.authority());
        assert_eq!(s.openid_configuration_url, emu.openid_configuration_url());
        emu.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_echoes_and_its_media_ends_with_it() {
    let emu = emulator().await;
    let bot = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    let mut call = bot
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut call).await;
    assert_eq!(bot.calls().len(), 1);
    assert_eq!(bot.calls()[0].state, Some(CallState::Established));
    // Echo a tone; the echo user sends it back, so frames with energy come in.
    let mut loud = 0;
    let mut sent = 0u64;
    let deadline = tokio::time::Instant::now() + WAIT;
    while loud < 20 {
        assert!(tokio::time::Instant::now() < deadline, "no echo heard");
        match tokio::time::timeout(WAIT, call.next()).await.unwrap() {
            Some(CallItem::Frame(frame)) => {
                let energy: f64 = frame
                    .pcm
                    .samples
                    .iter()
                    .map(|&s| f64::from(s).powi(2))
                    .sum();
                if energy > 1e7 {
                    loud += 1;
                }
                let mut out = botmedia::Pcm16K::SILENCE;
                for (i, s) in out.samples.iter_mut().enumerate() {
                    let t = (sent * 320 + i as u64) as f32 / 16_000.0;
                    *s = ((2.0 * std::f32::consts::PI * 500.0 * t).sin() * 6_000.0) as i16;
                }
                if call.send(out).is_ok() {
                    sent += 1;
                }
            }
            Some(CallItem::Call(CallEvent::Terminated { result })) => {
                panic!("terminated: {result:?}")
            }
            Some(_) => {}
            None => panic!("the call's stream ended"),
        }
    }
    let q = call.quality().expect("the call has media");
    assert!(q.pipeline.frames_sent > 0 && q.pipeline.frames_received > 0);

    call.hang_up().await.unwrap();
    let mut terminated = false;
    while let Some(item) = tokio::time::timeout(WAIT, call.next()).await.unwrap() {
        if let CallItem::Call(CallEvent::Terminated { .. }) = item {
            terminated = true;
        }
    }
    assert!(terminated, "the stream ends with Terminated");
    assert!(call.is_ended());
    assert!(
        call.audio_socket().is_none(),
        "media released at termination"
    );
    assert!(call.send(botmedia::Pcm16K::SILENCE).is_err());
    until_media_released(&bot).await;
    assert!(bot.calls().is_empty());
    drop(call);
    bot.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_bot_drops_is_hung_up() {
    let emu = emulator().await;
    let bot = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    let mut call = bot
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut call).await;
    let graph = call.graph().clone();
    drop(call);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !graph.is_terminated() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a dropped call was not hung up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_media_released(&bot).await;
    bot.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_is_answered_with_media() {
    let emu = emulator().await;
    let bot = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    // John hums 440 Hz.
    let john = emu.scenario().users[0].id.clone();
    emu.place_incoming_call(&john, bot.callback_url(), None)
        .unwrap();
    let incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .expect("an incoming call");
    assert!(incoming.source().is_some());
    let mut call = incoming.answer().await.unwrap();
    until_established(&mut call).await;
    let mut heard = 0;
    let deadline = tokio::time::Instant::now() + WAIT;
    while heard < 25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the caller was not heard"
        );
        if let Some(CallItem::Frame(f)) = tokio::time::timeout(WAIT, call.next()).await.unwrap() {
            let energy: f64 = f.pcm.samples.iter().map(|&s| f64::from(s).powi(2)).sum();
            if energy > 1e6 && !f.active_speakers.is_empty() {
                heard += 1;
            }
        }
    }
    // end() hangs up and returns once the service confirmed: the bot's own hang-up.
    let result = tokio::time::timeout(WAIT, call.end())
        .await
        .unwrap()
        .unwrap()
        .expect("the service says how the call ended");
    assert_eq!(result.code.get().and_then(|c| c.as_i64()), Some(200));
    assert!(call.is_ended() && call.audio_socket().is_none());
    assert!(call.next().await.is_none());
    // Ending an ended call asks nothing more of the service.
    assert!(call.end().await.is_ok());
    until_media_released(&bot).await;
    drop(call);
    bot.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_call_leaves_no_media_behind() {
    let emu = emulator().await;
    let bot = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    // Refused locally (not E.164): nothing is sent, the session is gone.
    let err = bot
        .call(CallRequest::pstn(
            "555-0100",
            "app-instance",
            emulator_app::TENANT,
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, BotError::Create(_)), "{err}");
    until_media_released(&bot).await;
    assert!(bot.calls().is_empty());
    // Refused by the service (nobody with that id): the call ends 480/10037 and its media
    // goes with it.
    let mut call = bot
        .call(CallRequest::peer_to_peer(
            "00000000-0000-0000-0000-000000000000",
            None,
        ))
        .await
        .unwrap();
    let mut code = None;
    while let Some(item) = tokio::time::timeout(WAIT, call.next()).await.unwrap() {
        if let CallItem::Call(CallEvent::Terminated { result }) = item {
            code = result.and_then(|r| r.code.get().and_then(|c| c.as_i64()));
        }
    }
    assert_eq!(code, Some(480));
    until_media_released(&bot).await;
    assert!(bot.calls().is_empty());
    // Settings that cannot work are refused before anything starts.
    let mut s = BotSettings::emulator(&emu.base_url());
    s.webhook_listen = Some("0.0.0.0:0".parse().unwrap());
    let err = Bot::start(s).await.unwrap_err();
    assert!(err.to_string().contains("set callback_url"), "{err}");
    bot.shutdown().await;
    emu.shutdown().await;
}

#[test]
fn the_readme_shows_the_hello_bot_as_it_is() {
    let readme = include_str!("../README.md");
    let bot = include_str!("../examples/hello_bot.rs");
    assert!(
        readme.contains(bot),
        "README.md's Rust bot differs from examples/hello_bot.rs"
    );
    assert!(
        bot.lines().count() <= 30,
        "the README's bot grew past 30 lines"
    );
}
