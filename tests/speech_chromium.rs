//! Speech through the whole stack with a real browser at the far end: headless Chromium
//! (libwebrtc) dials an echo bot's session WHIP-style with three spoken sentences as its
//! microphone (48 kHz Opus at 96 kb/s), records what comes back, and the echo is scored
//! against what was said (scripts/quality: make_speech.sh, chromium_far_end.py, score.py).
//!
//! It fails on what regressions look like, leniently, not on exact scores: a delay change of
//! more than 15 ms inside speech (a jitter buffer that drops or inserts whole packets while
//! someone talks), STOI under 0.85, or Chromium concealing 5 % or more of what it received
//! from the engine. PESQ-WB and the loop delay are printed, not judged. The delay changes
//! judged are the engine's: Chromium's jitter buffer also stretches the echo (it accelerates
//! when packets came in a burst), and the samples it removed, inserted and concealed (its
//! getStats counters, every 100 ms) are taken out of the delay track first; both are printed.
//!
//! Like tests/interop_chromium.rs it re-runs itself in a network namespace with only `lo`
//! up, where Chromium offers loopback candidates. The Python venv the scripts use
//! (scripts/quality/pyenv.sh) is made or checked before that, while PyPI is reachable.

mod common;
#[path = "common/echo.rs"]
mod echo;
#[path = "common/quality.rs"]
mod quality;

use std::path::{Path, PathBuf};
use std::process::Command;

use botmedia::{MediaPlatform, MediaPlatformSettings};
use common::browser::{self, LOOPBACK_ONLY};
use common::join;
use quality::{python, repo, run};
use serde_json::Value;

const TEST: &str = "chromium_hears_speech_echoed_without_delay_steps";
/// The first three sentences of the sample (it has a pause at 8.3-8.7 s).
const SPEECH_S: f64 = 8.5;
/// How long the page records from connect: the speech, the loop delay and a margin.
const RECORD_S: f64 = 10.0;

/// The speech sample cut to its first SPEECH_S seconds, at 48 kHz (the microphone) and
/// 16 kHz (the reference).
fn speech(work: &Path) -> (PathBuf, PathBuf) {
    let mut make = Command::new(repo().join("scripts/quality/make_speech.sh"));
    make.arg(work);
    run(make, "scripts/quality/make_speech.sh");
    let mut cut = Vec::new();
    for rate in ["48k", "16k"] {
        let full = work.join(format!("speech{rate}.wav"));
        let short = work.join(format!("short{rate}.wav"));
        let mut sox = Command::new("sox");
        sox.arg(&full)
            .arg(&short)
            .args(["trim", "0", &SPEECH_S.to_string()]);
        run(sox, "sox trim");
        cut.push(short);
    }
    (cut[0].clone(), cut[1].clone())
}

#[test]
fn chromium_hears_speech_echoed_without_delay_steps() {
    let chromium = browser::program("BOTMEDIA_CHROMIUM", "chromium");
    let python = python();
    if browser::ran_in_netns(TEST, LOOPBACK_ONLY) {
        return;
    }
    let work = browser::work_dir("speech-chromium");
    let (mic, reference) = speech(&work);
    let echo = work.join("echo16k.wav");

    let far_end = join::block_on(call(&chromium, &python, &mic, &reference, &echo, &work));
    let scored = &far_end["score"];

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let (concealed, received) = (
        f(&far_end, "concealed_samples"),
        f(&far_end, "total_samples"),
    );
    // Each speech window: time in the reference, the echo's delay, the delay with Chromium's
    // own stretching taken out (what the engine did), correlation, speech run.
    let track: Vec<String> = scored["track"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter(|w| w[3].as_f64().unwrap_or(0.0) >= 0.3)
                .map(|w| format!("{}s:{}/{}", w[0], w[1], w[2]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "Chromium far end: PESQ-WB {:.2}, STOI {:.3}; echo delay {:.1} ms median (p05 {:.1}, \
         p95 {:.1}); largest delay step inside speech {:.1} ms ({} over 5 ms), {:.1} ms ({} over \
         5 ms) without Chromium's own stretching ({} ms in all); loop delay {} ms; Chromium \
         concealed {concealed} of {received} samples ({:.2} %), its jitter buffer {} ms, {} \
         packets lost; sent {} kb/s ({}), received {}",
        f(scored, "pesq_wb"),
        f(scored, "stoi"),
        f(scored, "delay_ms"),
        f(scored, "delay_p05_ms"),
        f(scored, "delay_p95_ms"),
        f(scored, "max_step_ms"),
        scored["steps_over_5ms"],
        f(scored, "engine_max_step_ms"),
        scored["engine_steps_over_5ms"],
        far_end["chromium_stretch_ms"],
        far_end["loop_delay_ms"],
        100.0 * concealed / received,
        far_end["jitter_buffer_ms"],
        far_end["packets_lost"],
        far_end["send_kbps"],
        far_end["outbound_codec"],
        far_end["inbound_codec"],
    );
    eprintln!(
        "delay track (time: echo / engine's part, ms): {}",
        track.join(" ")
    );
    eprintln!(
        "Chromium's jitter buffer by second: {}",
        far_end["timeline"]
    );

    let mut failures = Vec::new();
    if let Some(e) = scored.get("error") {
        failures.push(format!("the echo could not be scored: {e}"));
    }
    // Chromium's jitter buffer stretches the echo too (it accelerates after a burst of
    // packets): judged is what is left once that is taken out, the engine's part.
    let step = f(scored, "engine_max_step_ms");
    // 15 ms: a whole packet is 20 ms, and WebAudio's recording path alone can shift by
    // 10 ms once (10.8 ms was read on a steady echo).
    if step.is_nan() || step > 15.0 {
        failures.push(format!(
            "the echo's delay changed by {step:.1} ms inside speech, Chromium's own stretching \
             taken out (at most 15 ms): a jitter buffer dropping or inserting audio while \
             someone talks"
        ));
    }
    let stoi = f(scored, "stoi");
    if stoi.is_nan() || stoi < 0.85 {
        failures.push(format!("STOI {stoi:.3} < 0.85"));
    }
    if received.is_nan() || received <= 0.0 || concealed.is_nan() || concealed >= 0.05 * received {
        failures.push(format!(
            "Chromium concealed {concealed} of the {received} samples it received (5 % allowed)"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// An in-process echo bot and Chromium calling it through chromium_far_end.py, which scores
/// the echo against `reference` with score.py; returns the driver's figures.
async fn call(
    chromium: &str,
    python: &str,
    mic: &Path,
    reference: &Path,
    echo: &Path,
    work: &Path,
) -> Value {
    // Default settings: what a bot gets (real-time scheduling when the process may have it).
    let platform = MediaPlatform::start(MediaPlatformSettings::default())
        .await
        .expect("platform");
    // The bot: every frame received is sent straight back.
    let (url, bot) = echo::start(&platform);

    let mut driver = Command::new(python);
    driver
        .arg(repo().join("scripts/quality/chromium_far_end.py"))
        .arg("--url")
        .arg(&url)
        .arg("--input")
        .arg(mic)
        .arg("--output")
        .arg(echo)
        .arg("--reference")
        .arg(reference)
        .arg("--seconds")
        .arg(RECORD_S.to_string())
        .arg("--keep")
        .arg(work.join("far-end"))
        .env("BOTMEDIA_CHROMIUM", chromium);
    // The driver bounds itself (the recording plus a minute) and kills its browser.
    let out = tokio::task::spawn_blocking(move || driver.output())
        .await
        .expect("driver thread")
        .expect("start chromium_far_end.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chromium_far_end.py: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let far_end: Value = serde_json::from_str(stdout.trim()).expect("the driver's JSON line");

    // The driver DELETEd the leg: the socket ends by itself.
    let _session = tokio::time::timeout(std::time::Duration::from_secs(10), bot)
        .await
        .expect("the bot's socket ended after the DELETE")
        .expect("bot task");
    tokio::time::timeout(std::time::Duration::from_secs(10), platform.shutdown())
        .await
        .expect("the platform shut down");
    far_end
}
