//! A bot as one instance of a fleet, against the emulator: its instance id fills the
//! `{instance}` placeholders; an incoming call delivered at the app's shared callback URL is
//! answered and pinned to the instance's own URL; the metrics name the instance; after a
//! restart with the same id, a notification about a call of the earlier run is answered and
//! counted, and the new run works; settings that cannot work are refused.
//!
//! The metrics check needs `promtool` on PATH (scripts/setup.sh --test installs it).

#[path = "common/bot.rs"]
mod common;
#[path = "common/promtool.rs"]
mod promtool;

use std::net::SocketAddr;
use std::time::Duration;

use botmedia::{Bot, BotError, BotSettings, CallRequest, INSTANCE_PLACEHOLDER};
use common::{WAIT, echo_user, emulator, frames, free_tcp_port, until_established};

/// The value of one series of a scrape (name and labels as written).
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(s, _)| *s == series))
        .map(|(_, v)| v.parse().unwrap())
}

/// Settings of instance `id` of a fleet whose webhook, on 127.0.0.1:`port`, takes the
/// instance's own path `/callback/{instance}` and the shared `/callback`.
fn instance(emulator: &str, id: &str, port: u16) -> BotSettings {
    let base = format!("http://127.0.0.1:{port}");
    BotSettings::emulator(emulator)
        .with_webhook_listen(SocketAddr::from(([127, 0, 0, 1], port)))
        .with_instance_id(id)
        .with_callback_url(format!("{base}/callback/{INSTANCE_PLACEHOLDER}"))
        .with_shared_callback_url(format!("{base}/callback"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_at_the_shared_url_is_answered_and_pinned_to_the_instance() {
    let emu = emulator().await;
    let port = free_tcp_port();
    let bot = Bot::start(instance(&emu.base_url(), "botmedia-1", port))
        .await
        .unwrap();
    let shared = format!("http://127.0.0.1:{port}/callback");
    let own = format!("http://127.0.0.1:{port}/callback/botmedia-1");
    assert_eq!(bot.instance_id(), Some("botmedia-1"));
    assert_eq!(bot.callback_url(), own);
    assert_eq!(bot.shared_callback_url(), Some(shared.as_str()));

    // The service delivers the new call at the app's shared URL (any instance may get it).
    let id = emu
        .place_incoming_call(&echo_user(&emu), &shared, None)
        .unwrap();
    let incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .expect("an incoming call");
    assert_eq!(incoming.id().unwrap().as_str(), id);
    let mut call = incoming.answer().await.unwrap();
    // The answer named the instance's own URL: the service's call resource says so, and
    // the call's later notifications (established, then terminated) arrive there.
    let resource = call.fetch().await.unwrap();
    assert_eq!(resource.callback_uri.get(), Some(&own));
    until_established(&mut call).await;
    frames(&mut call, 25).await;

    // The metrics name the instance and its mpUri.
    let scrape = botmedia::metrics::render(&bot);
    promtool::check(&scrape);
    let info = format!(
        "botmedia_instance_info{{instance_id=\"botmedia-1\",mp_uri=\"{}\"}}",
        bot.platform().mp_uri()
    );
    assert_eq!(sample(&scrape, &info), Some(1.0), "{scrape}");
    assert_eq!(
        sample(&scrape, "botmedia_webhook_unclaimed_calls_total"),
        Some(0.0)
    );

    let result = call.end().await.unwrap();
    assert!(call.is_ended(), "{result:?}");
    assert_eq!(bot.client().webhook_stats().unclaimed_calls, 0);
    drop(call);
    bot.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_answers_notifications_of_the_earlier_runs_calls() {
    let emu = emulator().await;
    let port = free_tcp_port();
    // The first run serves its webhook itself (an app of its own), so that it can go away
    // while its media still runs: a crash, as the service sees it.
    let mut settings = instance(&emu.base_url(), "botmedia-1", port);
    settings.webhook_listen = None;
    settings.hang_up_on_drop = false;
    let first = Bot::start(settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let webhook = tokio::spawn({
        let router = first.webhook_router();
        async move { axum::serve(listener, router).await }
    });
    let mut old = first
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut old).await;
    let old_id = old.id().clone();

    // The first run dies: its webhook first, then its media. The second run comes up with
    // the same id on the same address before the service reports the call's end.
    webhook.abort();
    let _ = webhook.await;
    let second = Bot::start(instance(&emu.base_url(), "botmedia-1", port))
        .await
        .unwrap();
    assert_eq!(second.callback_url(), first.callback_url());
    first.shutdown().await;
    // The service ends the call whose media stopped and tells the instance's URL: the new
    // run answers, knows nothing of the call, counts it and keeps no state about it.
    let deadline = tokio::time::Instant::now() + 3 * WAIT;
    while second.client().webhook_stats().unclaimed_calls == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the earlier run's call was never reported: {:?}",
            second.client().webhook_stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        emu.call_state(old_id.as_str()).as_deref(),
        Some("terminated")
    );
    assert_eq!(second.client().webhook_stats().unclaimed_calls, 1);
    assert!(second.client().webhook_stats().refused.total() == 0);
    assert!(second.calls().is_empty());
    assert!(second.client().calls().ids().is_empty());
    let scrape = botmedia::metrics::render(&second);
    assert_eq!(
        sample(&scrape, "botmedia_webhook_unclaimed_calls_total"),
        Some(1.0)
    );

    // The new run works.
    let mut call = second
        .call(CallRequest::peer_to_peer(&echo_user(&emu), None))
        .await
        .unwrap();
    until_established(&mut call).await;
    frames(&mut call, 10).await;
    call.end().await.unwrap();
    drop(call);
    drop(old);
    second.shutdown().await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_instance_id_fills_the_placeholders_and_settings_that_cannot_work_are_refused() {
    let emu = emulator().await;
    let mut settings = BotSettings::emulator(&emu.base_url()).with_instance_id("botmedia-2");
    settings.media.public_mp_uri = Some(format!(
        "https://{INSTANCE_PLACEHOLDER}.media.contoso.com:8445/MediaProcessor"
    ));
    let bot = Bot::start(settings).await.unwrap();
    assert_eq!(
        bot.platform().mp_uri(),
        "https://botmedia-2.media.contoso.com:8445/MediaProcessor"
    );
    // No callback URL: the bound address's, with no placeholder to fill.
    assert!(bot.callback_url().ends_with("/callback"));
    assert_eq!(bot.shared_callback_url(), None);
    bot.shutdown().await;

    // A bot on its own has no instance series.
    let alone = Bot::start(BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    assert_eq!(alone.instance_id(), None);
    assert!(!botmedia::metrics::render(&alone).contains("botmedia_instance_info"));
    alone.shutdown().await;

    let refused = |settings: BotSettings, needle: &'static str| async move {
        match Bot::start(settings).await {
            Err(BotError::Settings(why)) => assert!(why.contains(needle), "{why}"),
            other => panic!("{needle}: {other:?}"),
        }
    };
    let base = BotSettings::emulator(&emu.base_url());
    refused(
        base.clone().with_callback_url(format!(
            "http://127.0.0.1:1/callback/{INSTANCE_PLACEHOLDER}"
        )),
        "no instance id",
    )
    .await;
    refused(
        base.clone().with_instance_id("Botmedia_1"),
        "not a pod name",
    )
    .await;
    refused(
        base.clone()
            .with_instance_id("botmedia-1")
            .with_shared_callback_url(format!("http://127.0.0.1:1/{INSTANCE_PLACEHOLDER}")),
        "every instance shares it",
    )
    .await;
    let mut empty_range = base.clone();
    let (low, high) = (40_010, 40_000);
    empty_range.media.ice_ports = Some(low..=high);
    refused(empty_range, "40010-40000").await;
    emu.shutdown().await;
}
