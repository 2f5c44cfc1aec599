//! A local audio device joins a meeting for real: cpal (ALSA, routed to a private PulseAudio
//! daemon by Debian's `libasound2-plugins`) with a 700 Hz tone played into a null sink whose
//! monitor is the microphone, and another null sink as the speaker. The bot (1 kHz) must hear 700 Hz under the device's
//! `sourceId`, and the sink's monitor must have recorded the bot's 1 kHz.
//!
//! The test starts PulseAudio itself, then runs again in a child process whose
//! `PULSE_SERVER` names that daemon (the environment of a running test cannot be changed
//! safely), and stops every process it started.

mod common;

#[path = "../examples/device.rs"]
#[allow(dead_code, reason = "the example's main and --list are not used here")]
mod device;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::join::{self, dbfs, tone_share};
use common::process::Proc;
use common::pulse::{self, PulseAudio};

const CHILD: &str = "BOTMEDIA_TEST_PULSE_CHILD";
const BOT_HZ: f64 = 1_000.0;
const MIC_HZ: f64 = 700.0;
const TEST: &str = "a_device_through_pulseaudio_joins_a_meeting_both_ways";
const TEST_LOST: &str = "a_device_that_goes_away_ends_the_session_with_a_message";
const SECONDS: u64 = 8;

#[test]
fn a_device_through_pulseaudio_joins_a_meeting_both_ways() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(with_device());
        return;
    }
    let work = work_dir("both-ways");
    let pulse = start_pulseaudio(&work);
    let recorded = work.join("played.raw");
    let parec = Proc(
        Command::new("parec")
            .args(["--server", &pulse.server, "--device=speaker.monitor"])
            .args(["--rate=16000", "--channels=1", "--format=s16le", "--raw"])
            .stdout(std::fs::File::create(&recorded).expect("recording file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start parec (Debian package pulseaudio-utils)"),
    );
    let exe = std::env::current_exe().expect("test binary");
    let status = Command::new(exe)
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("PULSE_SERVER", &pulse.server)
        .env("HOME", &work)
        .env("XDG_RUNTIME_DIR", &work)
        .status()
        .expect("run the device half of the test");
    drop(parec);
    drop(pulse);
    let bytes = std::fs::read(&recorded).expect("the recording");
    let _ = std::fs::remove_dir_all(&work);
    assert!(status.success(), "the device half: {status}");

    // What the speaker played: the bot's 1 kHz, in some 2 s stretch of the recording.
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let best = samples
        .chunks(32_000)
        .filter(|w| w.len() == 32_000)
        .map(|w| (tone_share(w, BOT_HZ), dbfs(w)))
        .fold((0.0, -120.0), |b, c| if c.0 > b.0 { c } else { b });
    println!(
        "sink monitor: {:.1} s recorded; best 2 s: {BOT_HZ} Hz share {:.3} at {:.1} dBFS",
        samples.len() as f64 / 16_000.0,
        best.0,
        best.1
    );
    assert!(
        best.0 > 0.7 && best.1 > -40.0,
        "the speaker played the bot's tone"
    );
}

/// The sound server vanishes mid-call (as a USB headset unplugged or a crashed daemon does):
/// the session ends with an error naming the device, not a panic or a hang.
#[test]
fn a_device_that_goes_away_ends_the_session_with_a_message() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(device_goes_away());
        return;
    }
    let work = work_dir("lost");
    let pulse = start_pulseaudio(&work);
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Proc(
        Command::new(exe)
            .args([TEST_LOST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("PULSE_SERVER", &pulse.server)
            .env("HOME", &work)
            .env("XDG_RUNTIME_DIR", &work)
            .stdout(Stdio::piped())
            .spawn()
            .expect("run the device half of the test"),
    );
    // Pull the plug once media flows; the child's stdout is read to its end on a thread.
    let (joined_tx, joined_rx) = std::sync::mpsc::channel();
    let stdout = child.0.stdout.take().expect("child stdout");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            println!("child: {line}");
            if line.contains("joined: media connected") {
                let _ = joined_tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let joined = joined_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    if joined {
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(pulse);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for the child") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(child);
    let output = reader.join().unwrap_or_default();
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        joined,
        "the device joined before the plug was pulled:\n{output}"
    );
    let status = status.expect("the session ended within 20 s of the device going away");
    assert!(status.success(), "the device half: {status}\n{output}");
}

async fn device_goes_away() {
    let meeting = join::start(BOT_HZ).await;
    let args = device::Args {
        list: false,
        emulator: meeting.emu.base_url(),
        call: Some(meeting.call_id.clone()),
        name: "Device".into(),
        input: None,
        output: None,
        seconds: Some(60),
    };
    let started = Instant::now();
    let outcome = tokio::task::spawn_blocking(move || device::run(&args, true))
        .await
        .expect("device thread");
    let _ = meeting.stop().await;
    match outcome {
        Err(e @ device::DeviceError::Lost { .. }) => {
            println!("ended after {:.1} s: {e}", started.elapsed().as_secs_f64());
            assert!(
                e.to_string().contains("device went away"),
                "the message says what happened: {e}"
            );
        }
        Err(e) => panic!("expected the device to be reported lost, got: {e}"),
        Ok(report) => panic!("the session outlived its device: {report:#?}"),
    }
}

/// A fresh directory for one test's PulseAudio daemon (socket, home, log).
fn work_dir(test: &str) -> PathBuf {
    let work = std::env::temp_dir().join(format!("botmedia-pulse-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    work
}

/// Starts a private PulseAudio daemon (socket, home and log in `work`): a 48 kHz null sink
/// `speaker`, the default sink (its monitor records what was played), and a null sink `mic`
/// that `module-sine` plays 700 Hz into, whose monitor is the default source.
/// `module-sine-source` would be simpler but posts its samples in 2 s blocks, which no real
/// microphone does.
fn start_pulseaudio(work: &Path) -> PulseAudio {
    let pulse = pulse::start(
        work,
        &[
            "module-null-sink sink_name=speaker rate=48000",
            "module-null-sink sink_name=mic rate=48000",
            &format!("module-sine sink=mic frequency={MIC_HZ}"),
        ],
    );
    pulse.pactl(&["set-default-sink", "speaker"]);
    pulse.pactl(&["set-default-source", "mic.monitor"]);
    pulse
}

async fn with_device() {
    let meeting = join::start(BOT_HZ).await;
    let args = device::Args {
        list: false,
        emulator: meeting.emu.base_url(),
        call: Some(meeting.call_id.clone()),
        name: "Device".into(),
        input: None,
        output: None,
        seconds: Some(SECONDS),
    };
    let run = tokio::task::spawn_blocking(move || device::run(&args, true));
    let person = meeting
        .wait_participant("Device", Duration::from_secs(20))
        .await;
    let source_id: u32 = person["participant"]["mediaStreams"][0]["sourceId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sourceId");
    let report = run
        .await
        .expect("device thread")
        .unwrap_or_else(|e| panic!("the device session failed: {e}"));
    println!("{report:#?}");
    // The device left: its participant is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while meeting
        .has_participant(person["participant"]["id"].as_str().unwrap_or(""))
        .await
    {
        assert!(Instant::now() < deadline, "the device stayed after leaving");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let heard = meeting.stop().await;

    assert!(report.input_callbacks > 0 && report.output_callbacks > 0);
    assert!(
        report.frames_received > SECONDS * 50 / 2,
        "the device received the call's audio"
    );
    join::assert_heard_as_speaker(&heard, source_id, MIC_HZ, "device");
}
