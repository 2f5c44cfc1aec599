//! A person in Firefox: headless Firefox ESR (Debian's `firefox-esr`) opens the emulator's
//! join page, joins a meeting with a bot over WebRTC, its fake microphone playing a 700 Hz
//! tone. The bot must hear 700 Hz with the browser's `sourceId` as the active speaker, and
//! the page must report (its own analysis of the received audio, posted back to the
//! emulator) that it heard the bot's 1 kHz. Closing Firefox makes the person leave.
//!
//! Firefox gathers no ICE candidate when only `lo` is up (whatever its loopback prefs), so
//! the test re-runs itself in a fresh network namespace with `lo` and a veth pair holding a
//! private address: Firefox offers that address, the emulator 127.0.0.1, and the packets
//! between the two never leave the namespace.
//!
//! With no sound device an AudioContext never starts in Firefox (`resume()` stays pending)
//! and the page would analyse silence, so Firefox plays to a private PulseAudio daemon's
//! null sink, which clocks its audio graph in real time. (Its mock backend,
//! `media.cubeb.force_mock_context`, runs the graph slower than real time: the bot then
//! hears the browser with gaps.)

mod common;

use common::browser;
use common::{join, pulse};

const BOT_HZ: f64 = 1_000.0;
const BROWSER_HZ: f64 = 700.0;
const TEST: &str = "firefox_joins_a_meeting_hears_the_bot_and_is_heard";

#[test]
fn firefox_joins_a_meeting_hears_the_bot_and_is_heard() {
    let firefox = browser::program("BOTMEDIA_FIREFOX", "firefox-esr");
    if browser::ran_in_netns(TEST, browser::VETH_NETNS_SETUP) {
        return;
    }
    let work = browser::work_dir("firefox");
    // Firefox's audio output: a null sink, the default (and only) one.
    let pulse = pulse::start(
        &work.join("pulse"),
        &["module-null-sink sink_name=speaker rate=48000"],
    );
    pulse.pactl(&["set-default-sink", "speaker"]);
    join::block_on(browser::joins_hears_and_is_heard(
        "Firefox",
        BOT_HZ,
        BROWSER_HZ,
        |url| browser::firefox(&firefox, &work, &pulse.server, BROWSER_HZ, url),
    ));
    drop(pulse);
    let _ = std::fs::remove_dir_all(&work);
}
