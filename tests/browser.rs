//! A person in a real browser: headless Chromium (Debian's `chromium`) opens the emulator's
//! join page, joins a meeting with a bot over WebRTC, its fake microphone playing a 700 Hz
//! WAV. The bot must hear 700 Hz with the browser's `sourceId` as the active speaker, and
//! the page must report (its own analysis of the received audio, posted back to the
//! emulator) that it heard the bot's 1 kHz. Closing Chromium makes the person leave.
//! (Firefox: tests/browser_firefox.rs.)
//!
//! Chromium offers loopback candidates only with `--allow-loopback-in-peer-connection`
//! and no other interface up, so the test re-runs itself in a fresh network namespace
//! with only `lo` (`unshare -n`, or `unshare -rn` when not root).

mod common;

use std::path::Path;

use common::browser::{self, Browser, LOOPBACK_ONLY};
use common::join;

const BOT_HZ: f64 = 1_000.0;
const BROWSER_HZ: f64 = 700.0;
const TEST: &str = "a_browser_joins_a_meeting_hears_the_bot_and_is_heard";

#[test]
fn a_browser_joins_a_meeting_hears_the_bot_and_is_heard() {
    let chromium = browser::program("BOTMEDIA_CHROMIUM", "chromium");
    if browser::ran_in_netns(TEST, LOOPBACK_ONLY) {
        return;
    }
    let work = browser::work_dir("chromium");
    let wav = work.join("mic.wav");
    join::write_tone_wav(&wav, BROWSER_HZ, 48_000, 10.0, 0.3);
    join::block_on(browser::joins_hears_and_is_heard(
        "Chromium",
        BOT_HZ,
        BROWSER_HZ,
        |url| launch(&chromium, &work, &wav, url),
    ));
    let _ = std::fs::remove_dir_all(&work);
}

/// Starts headless Chromium on `url` with a fresh profile in `work`, its fake microphone
/// playing `wav`.
fn launch(chromium: &str, work: &Path, wav: &Path, url: &str) -> Browser {
    let mut cmd = browser::chromium_command(chromium, work);
    cmd.args([
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ])
    .arg(format!(
        "--use-file-for-fake-audio-capture={}",
        wav.display()
    ))
    .arg(url);
    Browser::start(cmd, work.join("chromium.log"), "chromium")
}
