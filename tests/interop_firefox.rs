//! The bot's media endpoint dialled by Firefox ESR (Debian's `firefox-esr`: its own ICE,
//! NSS's DTLS, its SRTP and RTCP) playing the calling service: the scenario of
//! `cases/interop.rs` (four legs at once, a tone each way, DTMF, DELETE; see
//! `interop_chromium.rs`) with the bot's legs on the lean media path, each with its own
//! socket. Firefox's audio output goes to a PulseAudio null sink, so the page's
//! AudioContext runs; the test re-runs itself in a network namespace with `lo` and a veth
//! pair, where Firefox offers its host candidates. The bot's ICE address is the veth's
//! (10.213.0.1), as a server's is a real interface's: an ICE-lite endpoint sends no checks
//! of its own, and Firefox pairs none of its candidates with a loopback one, so a bot on
//! 127.0.0.1 would only be reached through the checks the whole stack sends.

mod common;

use common::{browser, pulse};

const TEST: &str = "firefox_as_the_calling_service_dials_four_lean_bot_sessions_at_once";
const BROWSER: &str = "Firefox";
const SHARED_UDP: bool = false;
const LEAN_MEDIA: bool = true;

async fn platform() -> botmedia::MediaPlatform {
    let mut settings = botmedia::MediaPlatformSettings::default();
    settings.ice_addresses = vec![std::net::IpAddr::from(browser::VETH_ADDRESS)];
    settings.shared_udp = SHARED_UDP;
    settings.lean_media = LEAN_MEDIA;
    settings.pipeline = botmedia::pipeline::PipelineConfig {
        threads: 1,
        realtime: botmedia::pipeline::Realtime::Off,
        ..botmedia::pipeline::PipelineConfig::default()
    };
    botmedia::MediaPlatform::start(settings)
        .await
        .expect("platform")
}

#[test]
fn firefox_as_the_calling_service_dials_four_lean_bot_sessions_at_once() {
    let firefox = browser::program("BOTMEDIA_FIREFOX", "firefox-esr");
    if browser::ran_in_netns(TEST, browser::VETH_NETNS_SETUP) {
        return;
    }
    let work = browser::work_dir("interop-firefox");
    let pulse = pulse::start(
        &work.join("pulse"),
        &["module-null-sink sink_name=speaker rate=48000"],
    );
    pulse.pactl(&["set-default-sink", "speaker"]);
    // The page makes its own audio; the fake microphone is not used.
    join::block_on(scenario(|url| {
        browser::firefox(&firefox, &work, &pulse.server, 440.0, url)
    }));
    drop(pulse);
    let _ = std::fs::remove_dir_all(&work);
}

include!("cases/interop.rs");
