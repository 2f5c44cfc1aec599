//! A local audio device joins a meeting for real: cpal (ALSA, routed to a private PulseAudio
//! daemon by Debian's `libasound2-plugins`) with a 700 Hz tone played into a null sink whose
//! monitor is the microphone, and another null sink as the speaker. The bot (1 kHz) must hear
//! 700 Hz under the device's `sourceId`, and the sink's monitor must have recorded the bot's
//! 1 kHz. The same, with two busy processes loading the machine; with the device's streams
//! killed inside PulseAudio, or its sinks suspended for 3 s, mid-call (the example reopens
//! the streams and plays on); and with PulseAudio killed (the session ends with a message).
//!
//! Each test starts PulseAudio itself, then runs again in a child process whose
//! `PULSE_SERVER` names that daemon (the environment of a running test cannot be changed
//! safely), and stops every process it started.
//!
//! Tones are checked in 40 ms windows: one Goertzel over seconds of audio is phase-coherent,
//! so a single glitch (an xrun, a reopened stream) can cancel it; in windows, a glitch costs
//! only the windows it touches.

mod common;

#[path = "../examples/device.rs"]
#[allow(dead_code, reason = "the example's main and --list are not used here")]
mod device;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::join::{self, Heard, dbfs, tone_share};
use common::process::Proc;
use common::pulse::{self, PulseAudio};

const CHILD: &str = "BOTMEDIA_TEST_PULSE_CHILD";
const BOT_HZ: f64 = 1_000.0;
const MIC_HZ: f64 = 700.0;
const TEST: &str = "a_device_through_pulseaudio_joins_a_meeting_both_ways";
const TEST_LOAD: &str = "a_device_under_load_keeps_its_streams_for_the_whole_call";
const TEST_OUTAGE: &str = "a_device_whose_streams_fail_is_reopened_and_plays_on";
const TEST_SUSPEND: &str = "a_device_whose_sinks_are_suspended_is_reopened_and_plays_on";
const TEST_LOST: &str = "a_device_that_goes_away_ends_the_session_with_a_message";
const SECONDS: u64 = 8;
const LOAD_SECONDS: u64 = 10;
const OUTAGE_SECONDS: u64 = 16;
/// 40 ms at 16 kHz: 700 Hz and 1 kHz complete whole cycles in it.
const WINDOW: usize = 640;

#[test]
fn a_device_through_pulseaudio_joins_a_meeting_both_ways() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(with_device(SECONDS, 0.8));
        return;
    }
    let work = work_dir("both-ways");
    let pulse = start_pulseaudio(&work);
    let recorded = work.join("played.raw");
    let parec = record_speaker(&pulse, &recorded);
    let child = Child::spawn(TEST, &work, &pulse);
    let (status, output) = child.wait(Duration::from_secs(45));
    drop(parec);
    drop(pulse);
    let samples = read_recording(&recorded);
    let _ = std::fs::remove_dir_all(&work);
    let status = status.unwrap_or_else(|| panic!("the device half did not end:\n{output}"));
    assert!(status.success(), "the device half: {status}");
    assert_speaker_played(&samples, 0.8);
}

/// Two busy processes at normal priority share the machine's cores with the device's audio
/// threads: xruns follow, cpal re-prepares the streams, and the ALSA pulse plugin answers
/// with I/O errors for a moment. The session must run its whole duration, both ways. The
/// tone need only be there in a quarter of the 40 ms windows: on a shared machine already
/// loaded (load average 11 on 2 cores was seen), xruns and frames dropped behind a starved
/// worker cost many (49-95 % measured); a session whose stream did not come back has none.
#[test]
fn a_device_under_load_keeps_its_streams_for_the_whole_call() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(with_device(LOAD_SECONDS, 0.25));
        return;
    }
    let work = work_dir("load");
    let pulse = start_pulseaudio(&work);
    let recorded = work.join("played.raw");
    let parec = record_speaker(&pulse, &recorded);
    let load = busy_load();
    let child = Child::spawn(TEST_LOAD, &work, &pulse);
    let (status, output) = child.wait(Duration::from_secs(50));
    drop(load);
    drop(parec);
    drop(pulse);
    let samples = read_recording(&recorded);
    let _ = std::fs::remove_dir_all(&work);
    let status = status.unwrap_or_else(|| panic!("the device half did not end:\n{output}"));
    assert!(status.success(), "the device half: {status}");
    assert_speaker_played(&samples, 0.5);
}

/// The device's playback and capture streams are killed inside PulseAudio mid-call (the
/// daemon and its sinks stay): the ALSA plugin then fails every call with an I/O error.
/// The example must reopen both streams, play on, and leave with exit status 0.
#[test]
fn a_device_whose_streams_fail_is_reopened_and_plays_on() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(device_reopened());
        return;
    }
    outage_test(TEST_OUTAGE, |pulse| {
        let killed = kill_device_streams(pulse);
        println!("killed the device's sink inputs and source outputs: {killed:?}");
        assert!(
            killed.0 > 0 && killed.1 > 0,
            "the device had a stream on each sink/source"
        );
    });
}

/// Both null sinks (the speaker, and the microphone's) are suspended for 3 s mid-call: the
/// streams' callbacks stop without an error. The example must reopen both streams, play
/// on once the sinks resume, and leave with exit status 0.
#[test]
fn a_device_whose_sinks_are_suspended_is_reopened_and_plays_on() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(device_reopened());
        return;
    }
    outage_test(TEST_SUSPEND, |pulse| {
        pulse.pactl(&["suspend-sink", "speaker", "1"]);
        pulse.pactl(&["suspend-sink", "mic", "1"]);
        std::thread::sleep(Duration::from_secs(3));
        pulse.pactl(&["suspend-sink", "speaker", "0"]);
        pulse.pactl(&["suspend-sink", "mic", "0"]);
    });
}

/// The parent half of the outage tests: `outage` is done to PulseAudio 3 s after the device
/// joined; the child must end well, and the speaker play the bot at the end of the call.
fn outage_test(test: &str, outage: impl FnOnce(&PulseAudio)) {
    let work = work_dir(test);
    let pulse = start_pulseaudio(&work);
    let recorded = work.join("played.raw");
    let parec = record_speaker(&pulse, &recorded);
    let child = Child::spawn(test, &work, &pulse);
    let joined = child.joined.recv_timeout(Duration::from_secs(30)).is_ok();
    if joined {
        std::thread::sleep(Duration::from_secs(3));
        outage(&pulse);
    }
    let (status, output) = child.wait(Duration::from_secs(45));
    drop(parec);
    drop(pulse);
    let samples = read_recording(&recorded);
    let _ = std::fs::remove_dir_all(&work);
    assert!(joined, "the device joined:\n{output}");
    let status = status.unwrap_or_else(|| panic!("the device half did not end:\n{output}"));
    assert!(status.success(), "the device half: {status}");
    // The speaker plays the bot again: a 2 s stretch of the recording's last 6 s (long after
    // the outage; its last second or two is the silence after the session). Found by the
    // recording's content, not by the wall clock: the sink monitor records nothing while
    // the speaker sink is suspended, and a loaded machine delays parec.
    let tail = &samples[samples.len().saturating_sub(6 * 16_000)..];
    let played = best_stretch(tail, 2, BOT_HZ);
    println!(
        "sink monitor, last 6 s of {:.1} s: best 2 s has {BOT_HZ} Hz in {:.0} % of 40 ms windows",
        samples.len() as f64 / 16_000.0,
        played * 100.0
    );
    assert!(
        played > 0.5,
        "the speaker played the bot again after the outage"
    );
}

/// The sound server vanishes mid-call (as a USB headset unplugged or a crashed daemon does):
/// the session ends with an error naming the device, not a panic or a hang, after its
/// bounded attempts to reopen the stream.
#[test]
fn a_device_that_goes_away_ends_the_session_with_a_message() {
    if std::env::var_os(CHILD).is_some() {
        join::block_on(device_goes_away());
        return;
    }
    let work = work_dir("lost");
    let pulse = start_pulseaudio(&work);
    let child = Child::spawn(TEST_LOST, &work, &pulse);
    // Pull the plug once media flows.
    let joined = child.joined.recv_timeout(Duration::from_secs(30)).is_ok();
    if joined {
        std::thread::sleep(Duration::from_secs(1));
    }
    drop(pulse);
    let killed = Instant::now();
    let (status, output) = child.wait(Duration::from_secs(20));
    let ended_after = killed.elapsed();
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        joined,
        "the device joined before the plug was pulled:\n{output}"
    );
    let status = status.expect("the session ended within 20 s of the device going away");
    println!(
        "the session ended {:.1} s after PulseAudio was killed",
        ended_after.as_secs_f64()
    );
    assert!(status.success(), "the device half: {status}\n{output}");
}

async fn device_goes_away() {
    let meeting = join::start(BOT_HZ).await;
    let args = args(&meeting, 60);
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

/// The device half of the outage test: the session lasts its whole duration, the streams
/// that failed were reopened, and the bot hears the microphone in the call's last 3 s.
async fn device_reopened() {
    let meeting = join::start(BOT_HZ).await;
    let args = args(&meeting, OUTAGE_SECONDS);
    let run = tokio::task::spawn_blocking(move || device::run(&args, true));
    let source_id = device_source_id(&meeting).await;
    let report = run
        .await
        .expect("device thread")
        .unwrap_or_else(|e| panic!("the device session failed: {e}"));
    println!("{report:#?}");
    let heard = meeting.stop().await;
    assert!(
        report.seconds >= OUTAGE_SECONDS as f64,
        "the session ran its whole duration"
    );
    // Both streams were killed, but ALSA's PulseAudio plugin sometimes rides out a killed
    // capture stream and goes on delivering (seen once in a clean clone's run: the output
    // reopened, the input never reported trouble); a stream that failed is reopened, and
    // the microphone and the speaker are judged below.
    assert!(
        report.reopened >= 1,
        "the failed streams were reopened ({} reopens)",
        report.reopened
    );
    let frames = device_frames(&heard, source_id);
    let last = &frames[frames.len().saturating_sub(150 * 320)..];
    let share = tone_windows(last, MIC_HZ);
    println!(
        "bot, the device's last 3 s: {MIC_HZ} Hz in {:.0} % of 40 ms windows",
        share * 100.0
    );
    // A quarter of the windows: on a loaded machine, xruns and microphone frames dropped
    // behind a starved worker cost some (32-100 % measured); a stream that did not come back
    // costs all.
    assert!(
        share > 0.25,
        "the bot heard the microphone again after the reopen"
    );
}

/// The device half of the quiet and loaded tests: the session lasts its whole duration, the
/// device leaves the roster, and the bot heard 700 Hz in more than `min_windows` of the
/// device's 40 ms windows.
async fn with_device(seconds: u64, min_windows: f64) {
    let meeting = join::start(BOT_HZ).await;
    let args = args(&meeting, seconds);
    let run = tokio::task::spawn_blocking(move || device::run(&args, true));
    let person = meeting
        .wait_participant("Device", Duration::from_secs(20))
        .await;
    let source_id = source_id_of(&person);
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

    assert!(
        report.seconds >= seconds as f64,
        "the session ran its whole duration"
    );
    assert!(report.input_callbacks > 0 && report.output_callbacks > 0);
    assert!(
        report.frames_received > seconds * 50 / 2,
        "the device received the call's audio"
    );
    let frames = device_frames(&heard, source_id);
    assert!(
        frames.len() >= 100 * 320,
        "the device was an active speaker for at least 3 s"
    );
    let share = tone_windows(&frames, MIC_HZ);
    println!(
        "bot: {MIC_HZ} Hz in {:.0} % of the device's 40 ms windows, at {:.1} dBFS",
        share * 100.0,
        dbfs(&frames)
    );
    assert!(
        share > min_windows,
        "the bot heard the device's tone ({:.0} % of windows)",
        share * 100.0
    );
}

fn args(meeting: &join::Meeting, seconds: u64) -> device::Args {
    device::Args {
        list: false,
        emulator: meeting.emu.base_url(),
        call: Some(meeting.call_id.clone()),
        name: "Device".into(),
        input: None,
        output: None,
        seconds: Some(seconds),
    }
}

async fn device_source_id(meeting: &join::Meeting) -> u32 {
    let person = meeting
        .wait_participant("Device", Duration::from_secs(20))
        .await;
    source_id_of(&person)
}

fn source_id_of(person: &serde_json::Value) -> u32 {
    person["participant"]["mediaStreams"][0]["sourceId"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sourceId")
}

/// The samples of the bot's frames that list the device as a speaker, its first second
/// (the jitter buffer's start) left out.
fn device_frames(heard: &Heard, source_id: u32) -> Vec<i16> {
    heard
        .speakers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.contains(&source_id))
        .skip(50)
        .flat_map(|(i, _)| heard.samples[i * 320..(i + 1) * 320].iter().copied())
        .collect()
}

/// The fraction of `x`'s 40 ms windows in which `hz` holds more than 0.7 of the energy at
/// more than -40 dBFS.
fn tone_windows(x: &[i16], hz: f64) -> f64 {
    let windows = x.len() / WINDOW;
    if windows == 0 {
        return 0.0;
    }
    let toned = x
        .chunks_exact(WINDOW)
        .filter(|w| tone_share(w, hz) > 0.7 && dbfs(w) > -40.0)
        .count();
    toned as f64 / windows as f64
}

/// The largest fraction of 40 ms windows holding `hz` (see [`tone_windows`]) in a stretch of
/// `seconds` of `x`, stretches starting every 0.5 s.
fn best_stretch(x: &[i16], seconds: usize, hz: f64) -> f64 {
    x.windows((seconds * 16_000).min(x.len()).max(1))
        .step_by(8_000)
        .map(|w| tone_windows(w, hz))
        .fold(0.0, f64::max)
}

/// What the speaker played (the sink monitor's recording) holds the bot's 1 kHz in more
/// than `min_windows` of the 40 ms windows of its best 4 s.
fn assert_speaker_played(samples: &[i16], min_windows: f64) {
    let best = best_stretch(samples, 4, BOT_HZ);
    println!(
        "sink monitor: {:.1} s recorded; best 4 s: {BOT_HZ} Hz in {:.0} % of 40 ms windows",
        samples.len() as f64 / 16_000.0,
        best * 100.0
    );
    assert!(best > min_windows, "the speaker played the bot's tone");
}

/// A device session run by this test binary in a child process against `pulse`, its
/// output echoed and kept.
struct Child {
    proc: Proc,
    /// Fires when the session's media is connected.
    joined: mpsc::Receiver<()>,
    reader: std::thread::JoinHandle<String>,
}

impl Child {
    fn spawn(test: &str, work: &Path, pulse: &PulseAudio) -> Self {
        let exe = std::env::current_exe().expect("test binary");
        let mut proc = Proc(
            Command::new(exe)
                .args([test, "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, "1")
                .env("PULSE_SERVER", &pulse.server)
                .env("HOME", work)
                .env("XDG_RUNTIME_DIR", work)
                .stdout(Stdio::piped())
                .spawn()
                .expect("run the device half of the test"),
        );
        let (joined_tx, joined) = mpsc::channel();
        let stdout = proc.0.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            let mut all = String::new();
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok)
            {
                println!("child: {line}");
                if line.contains("joined: media connected") {
                    let _ = joined_tx.send(());
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        Self {
            proc,
            joined,
            reader,
        }
    }

    /// Waits up to `within` for the child to end (killing it if it does not); its status,
    /// if it ended, and its output.
    fn wait(mut self, within: Duration) -> (Option<ExitStatus>, String) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.proc.0.try_wait().expect("wait for the child") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        drop(self.proc);
        (status, self.reader.join().unwrap_or_default())
    }
}

/// Kills the client streams on the `speaker` sink and the `mic.monitor` source (the device's
/// playback and capture); how many of each. A stream's index changes when cpal re-prepares
/// it (the pulse plugin then makes a new PulseAudio stream), so a kill that finds its index
/// gone lists the streams again, for up to 3 s.
fn kill_device_streams(pulse: &PulseAudio) -> (usize, usize) {
    let speaker = pulse
        .index_of("sinks", "speaker")
        .expect("the speaker sink");
    let mic = pulse
        .index_of("sources", "mic.monitor")
        .expect("the microphone source");
    let deadline = Instant::now() + Duration::from_secs(3);
    let (mut playing, mut capturing) = (0, 0);
    while (playing == 0 || capturing == 0) && Instant::now() < deadline {
        if playing == 0 {
            for i in pulse.streams_on("sink-inputs", &speaker) {
                playing += usize::from(pulse.cli(&format!("kill-sink-input {i}")).is_empty());
            }
        }
        if capturing == 0 {
            for o in pulse.streams_on("source-outputs", &mic) {
                capturing += usize::from(pulse.cli(&format!("kill-source-output {o}")).is_empty());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (playing, capturing)
}

/// Two processes spinning at normal priority, killed on drop.
fn busy_load() -> [Proc; 2] {
    let spin = || {
        Proc(
            Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .spawn()
                .expect("start a busy loop"),
        )
    };
    [spin(), spin()]
}

/// Records the speaker sink's monitor (what was played) to `path` as 16 kHz mono s16le.
fn record_speaker(pulse: &PulseAudio, path: &Path) -> Proc {
    Proc(
        Command::new("parec")
            .args(["--server", &pulse.server, "--device=speaker.monitor"])
            .args(["--rate=16000", "--channels=1", "--format=s16le", "--raw"])
            .args(["--latency-msec=20"])
            .stdout(std::fs::File::create(path).expect("recording file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start parec (Debian package pulseaudio-utils)"),
    )
}

fn read_recording(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .expect("the recording")
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
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

/// The reopen policy, with time passed in: an I/O error the stream recovers from by itself
/// (as the pulse plugin's after a re-prepare) never reopens it.
#[test]
fn errors_a_stream_recovers_from_do_not_reopen_it() {
    let t0 = Instant::now();
    let ms = |n: u64| t0 + Duration::from_millis(n);
    let mut r = device::Recovery::new(t0, 0);
    let mut callbacks = 0;
    for step in 1..=400u64 {
        let now = ms(step * 10);
        // An error every second, callbacks again 50 ms later.
        if step % 100 == 0 {
            r.error("I/O error".into());
        } else if step % 100 > 5 {
            callbacks += 1;
        }
        assert_eq!(
            r.poll(now, callbacks),
            device::Verdict::Wait,
            "at {step}0 ms"
        );
    }
}

/// A stream whose callbacks stop is reopened after 1 s; when every reopen fails, the
/// session ends after 6 attempts with backoff, within 10 s, naming the first and last cause.
#[test]
fn a_stream_that_cannot_be_reopened_gives_up_in_bounded_time() {
    let t0 = Instant::now();
    let mut r = device::Recovery::new(t0, 0);
    let mut reopens = Vec::new();
    let mut now = t0;
    let message = loop {
        now += Duration::from_millis(50);
        assert!(now < t0 + Duration::from_secs(12), "no verdict within 12 s");
        // Callbacks for 2 s, then none.
        let callbacks = (now - t0).as_millis().min(2_000) as u64 / 10;
        match r.poll(now, callbacks) {
            device::Verdict::Wait => {}
            device::Verdict::Reopen => {
                reopens.push(now - t0);
                r.reopened(now, callbacks, Err("Connection refused".into()));
            }
            device::Verdict::GiveUp(m) => break m,
            v => panic!("unexpected {v:?}"),
        }
    };
    println!(
        "reopens at {reopens:?}; gave up at {:?}: {message}",
        now - t0
    );
    assert_eq!(reopens.len(), 6);
    assert!(
        reopens[0] >= Duration::from_millis(2_950) && reopens[0] <= Duration::from_millis(3_100)
    );
    assert!(reopens.windows(2).all(|w| w[1] > w[0]), "backoff");
    assert!(message.starts_with("no audio callbacks") && message.ends_with("Connection refused"));
}

/// A reopened stream whose callbacks run for a second counts as recovered.
#[test]
fn a_reopened_stream_that_runs_is_recovered() {
    let t0 = Instant::now();
    let mut r = device::Recovery::new(t0, 0);
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    assert_eq!(r.poll(at(100), 10), device::Verdict::Wait);
    r.error("poll: I/O error".into());
    // Failing for 0.5 s without callbacks: reopen.
    assert_eq!(r.poll(at(500), 10), device::Verdict::Wait);
    assert_eq!(r.poll(at(650), 10), device::Verdict::Reopen);
    r.reopened(at(700), 10, Ok(()));
    // The new stream starts after 1 s, then runs.
    assert_eq!(r.poll(at(1_700), 10), device::Verdict::Wait);
    let mut verdict = device::Verdict::Wait;
    for ms in (1_750..3_200).step_by(50) {
        verdict = r.poll(at(ms), ms / 10);
        if verdict != device::Verdict::Wait {
            break;
        }
    }
    assert!(
        matches!(verdict, device::Verdict::Recovered { reopens: 1, .. }),
        "{verdict:?}"
    );
}
