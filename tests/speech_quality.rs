//! Speech through the engine, scored: an echo bot in this process and an independent
//! webrtc-rs far end (crates/quality-peer, its own Opus encoder and decoder, no jitter buffer)
//! that sends three spoken sentences as 48 kHz Opus at 96 kb/s and records the echo on the
//! engine's own RTP clock; scripts/quality/score.py aligns the echo per window and gives
//! PESQ-WB, STOI and the delay track.
//!
//! The assertions are what regressions look like, leniently, not exact scores:
//! - a delay change of more than 10 ms inside speech (a jitter buffer that drops or inserts a
//!   whole packet while someone talks), STOI under 0.85 on a clean path, under 0.75 with 10 %
//!   random loss towards the engine;
//! - under CPU load (two busy processes at normal priority during the call), the echo's delay
//!   more than 30 ms away from the quiet call's, or growing over the call by 20 ms or more
//!   (on the engine's clock: the last speech windows' delay minus the first's; and off it:
//!   the echo packets' transit, which shows a send queue filling up).
//!
//! Figures are printed (eprintln) so CI logs show them. Needs espeak-ng and sox
//! (scripts/quality/make_speech.sh) and the venv of scripts/quality/pyenv.sh, which the test
//! makes or checks itself.

#[path = "common/echo.rs"]
mod echo;
#[path = "common/quality.rs"]
mod quality;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use botmedia::pipeline::{PipelineConfig, Realtime};
use botmedia::{MediaPlatform, MediaPlatformSettings};
use quality::{python, repo, run};
use quality_peer::{Impairment, PeerConfig, PeerReport, Wav};
use serde_json::Value;

/// The first three sentences of the sample (it pauses at 8.3-8.7 s).
const SPEECH_S: f64 = 8.5;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A fresh work directory under the system temp dir.
fn work_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("botmedia-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// The speech sample cut to SPEECH_S: 48 kHz (what is sent) and 16 kHz (the reference).
fn speech(work: &Path) -> (PathBuf, PathBuf) {
    let mut make = Command::new(repo().join("scripts/quality/make_speech.sh"));
    make.arg(work);
    run(make, "scripts/quality/make_speech.sh");
    let mut cut = Vec::new();
    for rate in ["48k", "16k"] {
        let full = Wav::read(&work.join(format!("speech{rate}.wav"))).expect("speech WAV");
        let short = work.join(format!("short{rate}.wav"));
        full.truncated(SPEECH_S).write(&short).expect("write WAV");
        cut.push(short);
    }
    (cut[0].clone(), cut[1].clone())
}

/// One echo call: an engine with `pipeline`, one session whose bot sends back every frame
/// it receives, and the far end sending `mic` with `impairment`; the echo goes to `echo`.
async fn echo_call(
    pipeline: PipelineConfig,
    mic: &Path,
    echo: &Path,
    impairment: Impairment,
) -> PeerReport {
    let mut settings = MediaPlatformSettings::default();
    settings.pipeline = pipeline;
    let platform = MediaPlatform::start(settings).await.expect("platform");
    let (url, bot) = echo::start(&platform);
    let mut config = PeerConfig::new(url, mic, echo);
    config.impairment = impairment;
    let report = quality_peer::run(config).await;
    // The DELETE ended the leg: the bot's loop ends with the socket.
    let session = tokio::time::timeout(Duration::from_secs(5), bot).await;
    drop(session);
    platform.shutdown().await;
    report.expect("the far end's call")
}

/// score.py's verdict on `echo` against `reference`.
fn score(python: &str, reference: &Path, echo: &Path) -> Value {
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("scripts/quality/score.py"))
        .arg(reference)
        .arg(echo)
        .arg("--json");
    serde_json::from_str(&run(cmd, "score.py")).expect("score.py printed JSON")
}

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Median delay of the first and the last three speech windows, ms.
fn ends_of_track(scored: &Value) -> (f64, f64) {
    let d: Vec<f64> = scored["track"]
        .as_array()
        .map(|t| t.iter().map(|w| num(w, "delay_ms")).collect())
        .unwrap_or_default();
    if d.len() < 6 {
        return (f64::NAN, f64::NAN);
    }
    let med3 = |s: &[f64]| {
        let mut s = s.to_vec();
        s.sort_by(f64::total_cmp);
        s[1]
    };
    (med3(&d[..3]), med3(&d[d.len() - 3..]))
}

/// Prints one call's figures.
fn print_call(label: &str, report: &PeerReport, scored: &Value) {
    let track: Vec<String> = scored["track"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|w| format!("{}s:{}", w["time_s"], w["delay_ms"]))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "{label}: PESQ-WB {:.2}, STOI {:.3}; echo delay {:.1} ms median, largest step inside \
         speech {:.1} ms, {} steps over 5 ms; far end sent {} packets ({} dropped, {:.1} kb/s, \
         {} sent over 5 ms late, worst {:.1} ms), received {}, {} gaps ({:.0} ms concealed); \
         transit excess p50 {:?} p95 {:?} ms, growth {:?} ms",
        num(scored, "pesq_wb"),
        num(scored, "stoi"),
        num(scored, "delay_ms"),
        num(scored, "max_step_ms"),
        scored["steps_over_5ms"],
        report.packets_sent,
        report.packets_dropped,
        report.send_kbps,
        report.send_late,
        report.send_late_max_ms,
        report.echo.packets_received,
        report.echo.gaps,
        report.echo.concealed_ms,
        report.echo.transit_excess_ms.p50,
        report.echo.transit_excess_ms.p95,
        report.echo.transit_excess_growth_ms,
    );
    eprintln!("{label} delay track: {}", track.join(" "));
}

#[test]
fn speech_echo_is_intelligible_without_delay_steps() {
    let python = python();
    let work = work_dir("speech-quality");
    let (mic, reference) = speech(&work);
    let quiet = PipelineConfig {
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    };
    let mut failures = Vec::new();
    for (label, loss, stoi_floor) in [("clean", 0.0, 0.85), ("10 % loss", 10.0, 0.75)] {
        let echo = work.join(format!("echo-{}.wav", loss as u32));
        let impairment = Impairment {
            loss_percent: loss,
            seed: 1,
            ..Impairment::default()
        };
        let report = block_on(echo_call(quiet.clone(), &mic, &echo, impairment));
        let scored = score(&python, &reference, &echo);
        print_call(label, &report, &scored);
        let step = num(&scored, "max_step_ms");
        if step.is_nan() || step > 10.0 {
            failures.push(format!(
                "{label}: the echo's delay changed by {step:.1} ms inside speech (at most \
                 10 ms): a jitter buffer dropping or inserting audio while someone talks"
            ));
        }
        let stoi = num(&scored, "stoi");
        if stoi.is_nan() || stoi < stoi_floor {
            failures.push(format!("{label}: STOI {stoi:.3} < {stoi_floor}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}

/// Two processes spinning at normal priority; stopped when dropped.
struct BusyLoad(Vec<Child>);

impl BusyLoad {
    fn start() -> Self {
        BusyLoad(
            (0..2)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoad {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn speech_echo_delay_holds_under_cpu_load() {
    let python = python();
    let work = work_dir("speech-load");
    let (mic, reference) = speech(&work);
    // The engine as a user starts it: default pipeline (real-time priority where allowed).
    let quiet_echo = work.join("echo-quiet.wav");
    let quiet_report = block_on(echo_call(
        PipelineConfig::default(),
        &mic,
        &quiet_echo,
        Impairment::default(),
    ));
    let quiet = score(&python, &reference, &quiet_echo);
    print_call("quiet", &quiet_report, &quiet);

    let loaded_echo = work.join("echo-loaded.wav");
    let load = BusyLoad::start();
    let loaded_report = block_on(echo_call(
        PipelineConfig::default(),
        &mic,
        &loaded_echo,
        Impairment::default(),
    ));
    drop(load);
    let loaded = score(&python, &reference, &loaded_echo);
    print_call("two busy processes", &loaded_report, &loaded);

    let (q, l) = (num(&quiet, "delay_ms"), num(&loaded, "delay_ms"));
    let (first, last) = ends_of_track(&loaded);
    let transit_growth = loaded_report
        .echo
        .transit_excess_growth_ms
        .unwrap_or(f64::NAN);
    eprintln!(
        "delay median quiet {q:.1} ms, loaded {l:.1} ms ({:+.1}); loaded track first \
         {first:.1} ms, last {last:.1} ms ({:+.1}); transit growth {transit_growth:+.1} ms",
        l - q,
        last - first
    );
    let mut failures = Vec::new();
    // 30 ms: under load the arrivals spread, and the jitter buffer may rightly keep one
    // frame more than in the quiet call (+22.7 ms was seen once); a queue that fills is
    // caught by the growth checks below, and the old engine's +34 ms still fails here.
    if (l - q).abs().is_nan() || (l - q).abs() > 30.0 {
        failures.push(format!(
            "under load the echo's delay was {l:.1} ms against {q:.1} ms quiet (30 ms allowed)"
        ));
    }
    if (last - first).is_nan() || last - first >= 20.0 {
        failures.push(format!(
            "under load the echo's delay grew from {first:.1} ms to {last:.1} ms over the call"
        ));
    }
    if transit_growth.is_nan() || transit_growth >= 20.0 {
        failures.push(format!(
            "under load the echo packets arrived {transit_growth:.1} ms later at the end of \
             the call than at its start against their timestamps: a queue filling up"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let _ = std::fs::remove_dir_all(&work);
}
