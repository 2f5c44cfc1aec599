//! Shared harness of the browser tests: re-running a test in a network namespace, a browser
//! process group that is killed and reaped on drop, and the whole scenario (a person joins
//! a meeting with a tone bot through the join page, hears the bot, is heard, leaves).

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::join;

/// Set in the environment of the test once it runs inside its network namespace.
const IN_NETNS: &str = "BOTMEDIA_TEST_IN_NETNS";

/// Network setup of a namespace with only loopback.
pub const LOOPBACK_ONLY: &str = "ip link set lo up";

/// Setup for [`ran_in_netns`] that Firefox needs: `lo`, and a veth pair whose one end holds
/// the private address [`VETH_ADDRESS`] with the default route, so Firefox sees a usable
/// interface (it pairs none of its candidates with a loopback one). Both ends stay in the
/// namespace.
pub const VETH_NETNS_SETUP: &str = "ip link set lo up; \
    ip link add bm0 type veth peer name bm1; \
    ip addr add 10.213.0.1/24 dev bm0; \
    ip link set bm1 up; ip link set bm0 up; \
    ip route add default dev bm0";

/// The address [`VETH_NETNS_SETUP`] gives the namespace's veth end.
pub const VETH_ADDRESS: [u8; 4] = [10, 213, 0, 1];

/// Outside the namespace: runs this test binary's `test` again inside a fresh network
/// namespace, after running the shell commands `setup` there (`ip ...`: set `lo` up, add
/// interfaces), checks that it passed and returns true: the caller is done. Nothing inside
/// reaches another machine. Inside (the re-run): returns false.
pub fn ran_in_netns(test: &str, setup: &str) -> bool {
    if std::env::var_os(IN_NETNS).is_some() {
        return false;
    }
    let exe = std::env::current_exe().expect("test binary");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let status = Command::new("unshare")
        .arg(if root { "-n" } else { "-rn" })
        .args(["sh", "-c", &format!("set -e; {setup}; exec \"$0\" \"$@\"")])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("run `unshare` (util-linux) to get a network namespace");
    assert!(
        status.success(),
        "the test in its network namespace: {status}"
    );
    true
}

/// A browser started in its own process group; the whole group (the browser and every
/// process it started) is killed on drop, the browser reaped and the group waited for.
pub struct Browser {
    child: Child,
    pub log: PathBuf,
}

impl Browser {
    /// Starts `cmd` in a new process group, its stdout and stderr to the file `log`.
    /// `package` names the Debian package to install when the program is missing.
    pub fn start(mut cmd: Command, log: PathBuf, package: &str) -> Self {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("start {program}: {e}: install the Debian package `{package}`")
            });
        Browser { child, log }
    }

    /// What the browser printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn group_alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The browser's children are reaped by init; wait (bounded) until they are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.group_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A person in `browser_name` joins a meeting with a bot playing `bot_hz` through the join
/// page, speaking `browser_hz` (the browser's fake microphone). `launch` starts the browser
/// on the page's URL. Checks that the page heard the bot, the dashboard showed the
/// person's level, the bot heard the person's tone under their `sourceId`, and that closing
/// the browser made the person leave.
pub async fn joins_hears_and_is_heard(
    browser_name: &str,
    bot_hz: f64,
    browser_hz: f64,
    launch: impl FnOnce(&str) -> Browser,
) {
    let meeting = join::start(bot_hz).await;
    let url = format!(
        "{}/join?call={}&name={browser_name}&auto=1&expect={bot_hz}&measure=4",
        meeting.emu.base_url(),
        meeting.call_id
    );
    let browser = launch(&url);

    let deadline = Instant::now() + Duration::from_secs(45);
    let person = loop {
        if let Some(p) = meeting.participant(browser_name).await {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "{browser_name} never joined; it said:\n{}",
            browser.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let pid = person["participant"]["id"].as_str().expect("id").to_owned();
    let source_id: u32 = person["participant"]["mediaStreams"][0]["sourceId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sourceId");
    // The page measures 4 s after connecting and posts its report.
    let deadline = Instant::now() + Duration::from_secs(40);
    let report: Value = loop {
        if let Some(line) = meeting.log_lines(&format!("report from {pid}")).await.pop() {
            let json = line.split_once(": ").map_or("", |(_, j)| j);
            break serde_json::from_str(json).expect("report json");
        }
        assert!(
            Instant::now() < deadline,
            "no report from the page; {browser_name} said:\n{}\nemulator: {:?}",
            browser.output(),
            meeting.log_lines("").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let state = meeting.state().await;
    let browser_level = state["calls"][0]["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["participant"]["id"] == pid.as_str()))
        .and_then(|p| p["level"].as_f64())
        .unwrap_or(0.0);
    let output = browser.output();

    // Closing the browser ends its leg: it leaves the roster.
    drop(browser);
    let deadline = Instant::now() + Duration::from_secs(30);
    while meeting.has_participant(&pid).await {
        assert!(
            Instant::now() < deadline,
            "the browser's participant stayed after the browser closed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = meeting.log_lines(&format!("{browser_name} ")).await;
    let heard = meeting.stop().await;

    println!("page report: {report}");
    println!("dashboard level of the browser while it spoke: {browser_level:.2}");
    println!("emulator: {left:?}");
    assert_eq!(
        report["heard"], true,
        "the page heard the bot's {bot_hz} Hz: {report}\n{browser_name} said:\n{output}"
    );
    assert!(
        browser_level > 0.3,
        "the dashboard showed the browser's level"
    );

    // What the bot heard while the browser was in: its tone, listed as the browser.
    join::assert_heard_as_speaker(&heard, source_id, browser_hz, "browser");
    // And on an unmixed speaker stream of its own, attributed to it.
    join::assert_unmixed_as_speaker(&heard, source_id, browser_hz, "browser");
}

/// The browser program: the environment variable `var` if set, else `package`'s program
/// (the Debian package and its program have the same name); it must be installed.
pub fn program(var: &str, package: &str) -> String {
    let program = std::env::var(var).unwrap_or_else(|_| package.into());
    assert!(
        installed(&program),
        "{program} not found: install the Debian package `{package}` (scripts/setup.sh does)"
    );
    program
}

/// A fresh scratch directory for one test run.
pub fn work_dir(what: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("botmedia-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    work
}

/// Whether `program` can be found (an absolute path, or in `PATH`).
pub fn installed(program: &str) -> bool {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Headless Chromium on a fresh profile in `work`, set up for WebRTC over loopback in the
/// test's namespace and with nothing reaching out: the flags every test's launch shares.
/// The caller adds its own (fake devices, the URL) and starts it with [`Browser::start`].
pub fn chromium_command(chromium: &str, work: &Path) -> Command {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--no-first-run",
        "--autoplay-policy=no-user-gesture-required",
        "--allow-loopback-in-peer-connection",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!(
        "--user-data-dir={}",
        work.join("profile").display()
    ));
    cmd
}

/// Starts headless Firefox on `url` with a fresh profile in `work`, playing to the
/// PulseAudio daemon at `pulse_server`, its fake microphone playing `mic_hz`.
pub fn firefox(firefox: &str, work: &Path, pulse_server: &str, mic_hz: f64, url: &str) -> Browser {
    let profile = work.join("profile");
    std::fs::create_dir_all(&profile).expect("profile dir");
    let prefs: String = firefox_prefs(mic_hz)
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

/// Firefox's profile preferences: a fake microphone playing `mic_hz` with no prompt,
/// audio allowed to play without a gesture, host candidates with their real addresses,
/// the page's console on stdout, and nothing that reaches for the network.
fn firefox_prefs(mic_hz: f64) -> Vec<(&'static str, String)> {
    let mut p: Vec<(&str, String)> = vec![
        ("media.navigator.streams.fake", "true".into()),
        ("media.navigator.permission.disabled", "true".into()),
        (
            "media.navigator.audio.fake_frequency",
            format!("{}", mic_hz as u32),
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
