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

use std::path::Path;
use std::process::Command;

use common::browser::{self, Browser};
use common::{join, pulse};

const BOT_HZ: f64 = 1_000.0;
const BROWSER_HZ: f64 = 700.0;
const TEST: &str = "firefox_joins_a_meeting_hears_the_bot_and_is_heard";
/// `lo`, and a veth pair whose one end holds a private address (with the default route, so
/// Firefox sees a usable interface). Both ends stay in the namespace.
const NETNS_SETUP: &str = "ip link set lo up; \
    ip link add bm0 type veth peer name bm1; \
    ip addr add 10.213.0.1/24 dev bm0; \
    ip link set bm1 up; ip link set bm0 up; \
    ip route add default dev bm0";

#[test]
fn firefox_joins_a_meeting_hears_the_bot_and_is_heard() {
    let firefox = browser::program("BOTMEDIA_FIREFOX", "firefox-esr");
    if browser::ran_in_netns(TEST, NETNS_SETUP) {
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
        |url| launch(&firefox, &work, &pulse.server, url),
    ));
    drop(pulse);
    let _ = std::fs::remove_dir_all(&work);
}

/// Starts headless Firefox on `url` with a fresh profile in `work`, playing to the
/// PulseAudio daemon at `pulse_server`.
fn launch(firefox: &str, work: &Path, pulse_server: &str, url: &str) -> Browser {
    let profile = work.join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let prefs: String = prefs()
        .iter()
        .map(|(k, v)| format!("user_pref(\"{k}\", {v});\n"))
        .collect();
    std::fs::write(profile.join("user.js"), prefs).expect("user.js");
    let mut cmd = Command::new(firefox);
    cmd.args(["--headless", "--no-remote", "--profile"])
        .arg(&profile)
        .arg(url)
        .env("HOME", work)
        .env("MOZ_HEADLESS", "1")
        .env("PULSE_SERVER", pulse_server)
        .env("MOZ_CRASHREPORTER_DISABLE", "1")
        .env("MOZ_DISABLE_AUTO_SAFE_MODE", "1")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    Browser::start(cmd, work.join("firefox.log"), "firefox-esr")
}

/// The profile's preferences: a fake microphone playing [`BROWSER_HZ`] with no prompt,
/// audio allowed to play without a gesture, host candidates with their real addresses,
/// the page's console on stdout, and nothing that reaches for the network.
fn prefs() -> Vec<(&'static str, String)> {
    let mut p: Vec<(&str, String)> = vec![
        ("media.navigator.streams.fake", "true".into()),
        ("media.navigator.permission.disabled", "true".into()),
        (
            "media.navigator.audio.fake_frequency",
            format!("{}", BROWSER_HZ as u32),
        ),
        ("media.autoplay.default", "0".into()),
        ("media.autoplay.block-webaudio", "false".into()),
        ("media.autoplay.blocking_policy", "0".into()),
        (
            "media.peerconnection.ice.obfuscate_host_addresses",
            "false".into(),
        ),
        ("media.peerconnection.ice.loopback", "true".into()),
        (
            "media.peerconnection.ice.default_address_only",
            "false".into(),
        ),
        ("media.peerconnection.ice.no_host", "false".into()),
        ("devtools.console.stdout.content", "true".into()),
    ];
    for off in [
        "app.update.enabled",
        "app.update.auto",
        "app.normandy.enabled",
        "browser.aboutwelcome.enabled",
        "browser.discovery.enabled",
        "browser.newtabpage.enabled",
        "browser.ping-centre.telemetry",
        "browser.region.network.scan",
        "browser.safebrowsing.blockedURIs.enabled",
        "browser.safebrowsing.downloads.enabled",
        "browser.safebrowsing.malware.enabled",
        "browser.safebrowsing.phishing.enabled",
        "browser.search.update",
        "browser.shell.checkDefaultBrowser",
        "browser.topsites.contile.enabled",
        "datareporting.healthreport.uploadEnabled",
        "datareporting.policy.dataSubmissionEnabled",
        "extensions.getAddons.cache.enabled",
        "extensions.update.enabled",
        "extensions.blocklist.enabled",
        "media.gmp-manager.updateEnabled",
        "network.captive-portal-service.enabled",
        "network.connectivity-service.enabled",
        "network.dns.native_https_query",
        "network.prefetch-next",
        "network.predictor.enabled",
        "services.settings.server.enabled",
        "toolkit.telemetry.enabled",
        "toolkit.telemetry.unified",
        "toolkit.telemetry.archive.enabled",
        "toolkit.telemetry.server.enabled",
    ] {
        p.push((off, "false".into()));
    }
    for (k, v) in [
        ("browser.startup.homepage_override.mstone", "\"ignore\""),
        ("browser.startup.page", "0"),
        ("extensions.autoDisableScopes", "15"),
        ("network.proxy.type", "0"),
        ("network.trr.mode", "5"),
        ("toolkit.telemetry.server", "\"\""),
        ("services.settings.server", "\"http://127.0.0.1:9/\""),
        ("browser.safebrowsing.provider.mozilla.updateURL", "\"\""),
        ("extensions.getAddons.discovery.api_url", "\"\""),
    ] {
        p.push((k, v.into()));
    }
    p
}
