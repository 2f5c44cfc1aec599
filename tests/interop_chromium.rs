//! The bot's media endpoint dialled by an independent WebRTC implementation: headless
//! Chromium (libwebrtc) plays the calling service. A page served by this test opens one
//! WHIP-style leg per bot session, all at once (`POST {mpUri}/sessions/{mpMediaSessionId}`
//! with its own offer, ICE gathering complete), sends a WebAudio oscillator tone on each,
//! measures the bot's tone in what it receives, sends DTMF, `DELETE`s each leg's `Location`
//! and posts a report. Each bot plays its own tone and must hear the page's tone for its
//! session; the page must hear each bot's; after the DELETE each bot's socket reports the
//! leg ended, and dropping the sessions frees their calls. The scenario is
//! `cases/interop.rs`, shared with `interop_firefox.rs`.
//!
//! The bot's platform runs in shared-UDP mode on the lean media path: the four legs share
//! one socket, and each hearing only its own tone is the demultiplexing checked against
//! libwebrtc's ICE; each leg answers as an ICE-lite agent and DTLS server and protects its
//! own SRTP, so libwebrtc's ICE, DTLS client, SRTP, RTCP and DTMF are what it is checked
//! against. (tests/speech_chromium.rs has Chromium against the whole stack.)
//!
//! No emulator in between: the page talks to the endpoint directly, cross-origin (the
//! endpoint's CORS answer lets it; no `--disable-web-security`). Like tests/browser.rs the
//! test re-runs itself in a network namespace with only `lo`, where Chromium offers loopback
//! candidates (`--allow-loopback-in-peer-connection`).

mod common;

use common::browser::{self, LOOPBACK_ONLY};

const TEST: &str = "chromium_as_the_calling_service_dials_four_bot_sessions_at_once";
const BROWSER: &str = "Chromium";
const SHARED_UDP: bool = true;
const LEAN_MEDIA: bool = true;

async fn platform() -> botmedia::MediaPlatform {
    common::platform::start_platform_with(SHARED_UDP, LEAN_MEDIA).await
}

#[test]
fn chromium_as_the_calling_service_dials_four_bot_sessions_at_once() {
    let chromium = browser::program("BOTMEDIA_CHROMIUM", "chromium");
    if browser::ran_in_netns(TEST, LOOPBACK_ONLY) {
        return;
    }
    let work = browser::work_dir("interop-chromium");
    // Headless Chromium with a fresh profile: no fake devices, the page makes its own audio.
    join::block_on(scenario(|url| {
        let mut cmd = browser::chromium_command(&chromium, &work);
        cmd.arg(url);
        Browser::start(cmd, work.join("chromium.log"), "chromium")
    }));
    let _ = std::fs::remove_dir_all(&work);
}

include!("cases/interop.rs");
