//! `botmedia call` against `botmedia emulator` in another process, as a person runs them:
//! a call to the echoing user plays a tone and records it coming back, and a call to a user
//! the service does not know exits 1 with the service's words.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use botmedia::emulator::scenario::{Scenario, Voice};
use botmedia::wav::Wav;

/// A child process killed when the test lets go of it, passing or not. Its standard output
/// stays open meanwhile (a closed pipe would fail its next line).
struct Killed {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `botmedia emulator` on a free loopback port, and its base URL.
fn emulator() -> (Killed, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .args(["emulator", "--listen", "127.0.0.1:0", "--seconds", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the emulator starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut stdout = BufReader::new(stdout);
    let mut first = String::new();
    stdout.read_line(&mut first).expect("the emulator prints");
    let guard = Killed {
        child,
        _stdout: stdout,
    };
    let url = first
        .trim()
        .strip_prefix("botmedia emulator listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (guard, url)
}

/// Runs `botmedia call ARGS` to its end (at most `limit`); its status, stdout and stderr.
fn call(args: &[&str], limit: Duration) -> (ExitStatus, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_botmedia"))
        .arg("call")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("botmedia call starts");
    let pid = child.id();
    // Kill it from a watchdog if it outlives `limit`; the output is read here meanwhile.
    let (done, watch) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watch.recv_timeout(limit).is_err() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("botmedia call ends");
    let _ = done.send(());
    let _ = watchdog.join();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes `seconds` of a `hz` tone as 44.1 kHz stereo 16-bit PCM (so the call resamples
/// and downmixes it).
fn write_tone(path: &Path, hz: f32, seconds: f32) {
    let rate = 44_100u32;
    let frames = (rate as f32 * seconds) as u32;
    let mut bytes = Vec::with_capacity(44 + frames as usize * 4);
    let data_len = frames * 4;
    bytes.extend_from_slice(b"RIFF");
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&1u16.to_le_bytes()); // PCM
    bytes.extend_from_slice(&2u16.to_le_bytes()); // stereo
    bytes.extend_from_slice(&rate.to_le_bytes());
    bytes.extend_from_slice(&(rate * 4).to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&16u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        let t = i as f32 / rate as f32;
        let s = ((2.0 * std::f32::consts::PI * hz * t).sin() * 8_000.0) as i16;
        bytes.extend_from_slice(&s.to_le_bytes());
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Share of a 16 kHz block's energy at `hz` (Goertzel); 0 for a near-silent block.
fn tone_share(pcm: &[i16], hz: f32) -> f32 {
    let coeff = 2.0 * (2.0 * std::f32::consts::PI * hz / 16_000.0).cos();
    let (mut s1, mut s2, mut energy) = (0f32, 0f32, 0f32);
    for &x in pcm {
        let x = f32::from(x);
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
        energy += x * x;
    }
    if energy < 1e5 {
        return 0.0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power / (pcm.len() as f32 * energy)).min(1.0)
}

fn echo_user() -> String {
    Scenario::default()
        .users
        .into_iter()
        .find(|u| matches!(u.says, Voice::Echo))
        .expect("the built-in scenario has a user who echoes")
        .id
}

#[test]
fn a_call_to_the_echo_user_records_the_played_tone_and_ends_cleanly() {
    let (_emulator, url) = emulator();
    let dir = std::env::temp_dir().join(format!("botmedia-call-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (played, recorded) = (dir.join("in.wav"), dir.join("out.wav"));
    write_tone(&played, 700.0, 2.0);
    let started = Instant::now();
    let (status, stdout, stderr) = call(
        &[
            "--emulator",
            &url,
            "--user",
            &echo_user(),
            "--play",
            played.to_str().unwrap(),
            "--record",
            recorded.to_str().unwrap(),
            "--seconds",
            "3",
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(3), "{stdout}");
    for needle in [
        "state            established",
        "roster           joined: Grace",
        "played           2.00 s sent",
        "hang-up          after 3 s",
        "terminated       200/7000",
        "summary          frames in ",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in\n{stdout}");
    }
    let summary = stdout.lines().last().unwrap();
    assert!(
        summary.contains(&format!("to {}", recorded.display())),
        "{summary}"
    );

    let wav = Wav::read(&recorded).expect("the recording reads back");
    assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
    let seconds = wav.samples.len() as f64 / 16_000.0;
    assert!((2.5..=3.6).contains(&seconds), "recorded {seconds} s");
    // The tone went out for 2 s and came back: most of those 100 frames hold it.
    let with_tone = wav
        .samples
        .chunks(320)
        .filter(|f| tone_share(f, 700.0) > 0.5)
        .count();
    assert!(with_tone >= 70, "700 Hz heard in {with_tone} frames");
    let with_other = wav
        .samples
        .chunks(320)
        .filter(|f| tone_share(f, 1_100.0) > 0.5)
        .count();
    assert_eq!(with_other, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_the_service_refuses_exits_1_with_its_error() {
    let (_emulator, url) = emulator();
    let (status, stdout, stderr) = call(
        &[
            "--emulator",
            &url,
            "--user",
            "00000000-0000-0000-0000-00000000dead",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("No callee endpoints were found"),
        "{stderr}"
    );
    // Every line of standard output is one JSON event; the call ended with the service's
    // result.
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let terminated = events
        .iter()
        .find(|e| e["event"] == "terminated")
        .unwrap_or_else(|| panic!("no terminated event in\n{stdout}"));
    assert!(
        terminated["result"]["code"].as_i64().unwrap_or(0) >= 400,
        "{terminated}"
    );
    assert_eq!(events.last().unwrap()["event"], "summary", "{stdout}");
}

#[test]
fn usage_and_io_errors_exit_2_and_a_missing_target_lists_the_emulators_people() {
    let (status, _, stderr) = call(
        &["--emulator", "http://127.0.0.1:9"],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("name whom to call"), "{stderr}");
    assert!(
        stderr.contains("Grace") && stderr.contains("joinWebUrl"),
        "{stderr}"
    );
    // A service that cannot be reached is no refusal: exit 2.
    let (status, _, stderr) = call(
        &["--emulator", "http://127.0.0.1:9", "--user", "u"],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
    for (args, needle) in [
        (&["--user", "u", "--play", "/nonexistent.wav"][..], "--play"),
        (
            &["--user", "u", "--record", "/nonexistent/dir/out.wav"][..],
            "/nonexistent/dir",
        ),
        (
            &["--meeting-url", "https://example.com/"][..],
            "Teams join URL",
        ),
        (&["--user", "u", "--seconds", "0"][..], "--seconds"),
    ] {
        let (status, _, stderr) = call(args, Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_meeting_joined_by_its_id_and_passcode_is_heard() {
    let (_emulator, url) = emulator();
    let dir = std::env::temp_dir().join(format!("botmedia-call-meeting-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let recorded = dir.join("meeting.wav");
    let (status, stdout, stderr) = call(
        &[
            "--emulator",
            &url,
            "--meeting-id",
            "314 159 265 358",
            "--passcode",
            "demo42",
            "--record",
            recorded.to_str().unwrap(),
            "--seconds",
            "2",
        ],
        Duration::from_secs(60),
    );
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    assert!(stdout.contains("state            established"), "{stdout}");
    // John and Ada hum 440 and 660 Hz in the scenario's meeting.
    let wav = Wav::read(&recorded).expect("the recording reads back");
    for hz in [440.0, 660.0] {
        let frames = wav
            .samples
            .chunks(320)
            .filter(|f| tone_share(f, hz) > 0.1)
            .count();
        assert!(frames >= 25, "{hz} Hz heard in {frames} frames");
    }
    // A wrong passcode is refused by the service: exit 1.
    let (status, stdout, stderr) = call(
        &[
            "--emulator",
            &url,
            "--meeting-id",
            "314 159 265 358",
            "--passcode",
            "nope",
        ],
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
