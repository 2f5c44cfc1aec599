//! A person in a real browser: headless Chromium (Debian's `chromium`) opens the emulator's
//! join page, joins a meeting with a bot over WebRTC, its fake microphone playing a 700 Hz
//! WAV. The bot must hear 700 Hz with the browser's `sourceId` as the active speaker, and
//! the page must report (its own analysis of the received audio, posted back to the
//! emulator) that it heard the bot's 1 kHz.
//!
//! Chromium offers loopback candidates only with `--allow-loopback-in-peer-connection`
//! and no other interface up, so the test re-runs itself in a fresh network namespace
//! with only `lo` (`unshare -n`, or `unshare -rn` when not root).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::join::{self, dbfs, tone_share};
use serde_json::Value;

const IN_NETNS: &str = "BOTMEDIA_TEST_IN_NETNS";
const BOT_HZ: f64 = 1_000.0;
const BROWSER_HZ: f64 = 700.0;
const TEST: &str = "a_browser_joins_a_meeting_hears_the_bot_and_is_heard";

#[test]
fn a_browser_joins_a_meeting_hears_the_bot_and_is_heard() {
    if std::env::var_os(IN_NETNS).is_none() {
        rerun_in_netns(TEST);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(in_browser());
}

/// Runs this test binary's `test` again inside a network namespace with only loopback.
fn rerun_in_netns(test: &str) {
    let exe = std::env::current_exe().expect("test binary");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let status = Command::new("unshare")
        .arg(if root { "-n" } else { "-rn" })
        .args(["sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(IN_NETNS, "1")
        .status()
        .expect("run `unshare` (util-linux) to get a network namespace with only loopback");
    assert!(
        status.success(),
        "the test in its network namespace: {status}"
    );
}

/// A Chromium child process, killed and reaped on drop.
struct Browser(std::process::Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn in_browser() {
    let work = std::env::temp_dir().join(format!("botmedia-browser-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let wav = work.join("mic.wav");
    join::write_tone_wav(&wav, BROWSER_HZ, 48_000, 10.0, 0.3);

    let meeting = join::start(BOT_HZ).await;
    let url = format!(
        "{}/join?call={}&name=Chromium&auto=1&expect={BOT_HZ}&measure=4",
        meeting.emu.base_url(),
        meeting.call_id
    );
    let chromium = std::env::var("BOTMEDIA_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let log = std::fs::File::create(work.join("chromium.log")).expect("log file");
    let child = Command::new(&chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
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
        ))
        .arg(format!(
            "--use-file-for-fake-audio-capture={}",
            wav.display()
        ))
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {chromium} (Debian package `chromium`): {e}"));
    let browser = Browser(child);

    let person = meeting
        .wait_participant("Chromium", Duration::from_secs(30))
        .await;
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
        let chromium_log = std::fs::read_to_string(work.join("chromium.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "no report from the page; chromium said:\n{chromium_log}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let state = meeting.state().await;
    let browser_level = state["calls"][0]["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["participant"]["id"] == pid.as_str()))
        .and_then(|p| p["level"].as_f64())
        .unwrap_or(0.0);

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
    let left = meeting.log_lines("Chromium ").await;
    let heard = meeting.stop().await;
    let _ = std::fs::remove_dir_all(&work);

    println!("page report: {report}");
    println!("dashboard level of the browser while it spoke: {browser_level:.2}");
    println!("emulator: {left:?}");
    assert_eq!(
        report["heard"], true,
        "the page heard the bot's 1 kHz: {report}"
    );
    assert!(
        browser_level > 0.3,
        "the dashboard showed the browser's level"
    );

    // What the bot heard while the browser was in: 700 Hz, listed as the browser.
    let frames: Vec<usize> = heard
        .speakers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.contains(&source_id))
        .map(|(i, _)| i)
        .collect();
    println!(
        "bot: {} frames heard, {} list the browser's sourceId {source_id}",
        heard.speakers.len(),
        frames.len()
    );
    assert!(
        frames.len() >= 150,
        "the browser was an active speaker for at least 3 s"
    );
    let (first, last) = (frames[0], frames[frames.len() - 1]);
    // Skip the first second of the browser's audio (its jitter buffer and the start).
    let window = &heard.samples[(first + 50) * 320..(last + 1) * 320];
    let share = tone_share(window, BROWSER_HZ);
    println!(
        "bot heard {BROWSER_HZ} Hz: share {share:.3}, level {:.1} dBFS",
        dbfs(window)
    );
    assert!(
        share > 0.7,
        "the bot heard the browser's tone (share {share:.3})"
    );
}
