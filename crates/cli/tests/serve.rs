//! `botmedia serve` end to end: the real binary against the emulator (in this process).
//! Every child is killed on drop; every wait is bounded; everything listens on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use botmedia::emulator::{Emulator, EmulatorConfig};
use common::Lines;
use serde_json::{Value, json};

/// The emulator's user who echoes what the bot sends.
const ECHO_USER: &str = "550fae72-d251-43ec-868c-373732c2704f";

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "botmedia-serve-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `botmedia serve`.
struct Serve {
    child: ChildGuard,
    api: String,
    webhook: String,
    stdout: Lines,
    stderr: Lines,
    dir: TempDir,
}

impl Serve {
    /// Starts `botmedia serve` against `emulator` with `config` (TOML) written in a fresh
    /// directory (`{dir}` in it stands for that directory); waits for its banner.
    async fn start(emulator: &str, config: &str) -> Serve {
        let dir = TempDir::new();
        let config = config.replace("{dir}", &dir.0.display().to_string());
        let path = dir.0.join("serve.toml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_botmedia"));
        cmd.args(["serve", "--config"])
            .arg(&path)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, _) in std::env::vars() {
            if name.starts_with("BOTMEDIA_") {
                cmd.env_remove(name);
            }
        }
        cmd.env("BOTMEDIA_EMULATOR", emulator);
        let mut child = cmd.spawn().expect("botmedia serve starts");
        let stdout = Lines::default().follow(child.stdout.take().unwrap());
        let stderr = Lines::default().follow(child.stderr.take().unwrap());
        let mut child = ChildGuard(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let (Some(api), Some(webhook)) = (stdout.find("api"), stdout.find("webhook")) {
                let webhook = webhook.split_whitespace().next().unwrap().to_owned();
                return Serve {
                    child,
                    api,
                    webhook,
                    stdout,
                    stderr,
                    dir,
                };
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("serve exited with {status}: {}", stderr.text());
            }
            assert!(
                Instant::now() < deadline,
                "no banner in 30 s: {}\n{}",
                stdout.text(),
                stderr.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Waits (bounded) for the process to exit; its exit code.
    async fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("the emulator starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = http().get(url).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let r = http().post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Polls `check` every 50 ms until it holds or `within` passed.
async fn eventually(within: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state_in_api(list: &Value, id: &str) -> Option<String> {
    list["calls"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)
        .and_then(|c| c["state"].as_str().map(str::to_owned))
}

const ECHO: &str = r#"
drain_grace_seconds = 2
hangup_timeout_seconds = 5
[api]
listen = "127.0.0.1:0"
[answer]
behaviour = "echo"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_is_answered_with_echo_and_established() {
    let emu = emulator().await;
    let serve = Serve::start(&emu.base_url(), ECHO).await;
    let (status, body) = post_json(
        &format!("{}/emulator/incoming", emu.base_url()),
        &json!({ "from": ECHO_USER, "callbackUri": serve.webhook }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["callId"].as_str().unwrap().to_owned();
    let established = eventually(Duration::from_secs(20), async || {
        emu.call_state(&id).as_deref() == Some("established")
            && state_in_api(&get_json(&serve.url("/calls")).await.1, &id).as_deref()
                == Some("established")
    })
    .await;
    assert!(
        established,
        "emulator: {:?}; serve: {}",
        emu.call_state(&id),
        serve.stderr.text()
    );
    let (status, call) = get_json(&serve.url(&format!("/calls/{id}"))).await;
    assert_eq!(status, 200);
    assert_eq!(call["direction"], "incoming");
    assert_eq!(call["behaviour"], "echo");
    assert!(
        serve
            .stdout
            .find("mpUri")
            .is_some_and(|u| u.contains("/MediaProcessor")),
        "{}",
        serve.stdout.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placed_call_with_record_writes_a_wav_with_audio() {
    let emu = emulator().await;
    let prompt_dir = TempDir::new();
    let prompt = prompt_dir.0.join("prompt.wav");
    let tone: Vec<i16> = (0..16_000 * 2)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16_000.0).sin()) as i16)
        .collect();
    botmedia::wav::Wav {
        sample_rate: 16_000,
        channels: 1,
        samples: tone,
    }
    .write(&prompt)
    .unwrap();
    let config = format!(
        "{ECHO}[calls]\nbehaviour = \"echo\"\n[record]\ndir = \"{{dir}}/rec\"\ngreeting = true\n[play]\nprompt = \"{}\"\n",
        prompt.display()
    );
    let serve = Serve::start(&emu.base_url(), &config).await;
    let (status, call) = post_json(
        &serve.url("/calls"),
        &json!({ "user": ECHO_USER, "behaviour": "record" }),
    )
    .await;
    assert_eq!(status, 201, "{call}");
    let id = call["id"].as_str().unwrap().to_owned();
    assert_eq!(call["behaviour"], "record");
    let path = PathBuf::from(call["recording"].as_str().unwrap());
    assert!(path.starts_with(&serve.dir.0), "{}", path.display());
    assert!(
        eventually(Duration::from_secs(20), async || emu
            .call_state(&id)
            .as_deref()
            == Some("established"))
        .await,
        "{}",
        serve.stderr.text()
    );
    // The greeting goes out, the echo user sends it back, the bot records it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        wav_len(&path) > 44,
        "the recording grows as the call goes: {}",
        path.display()
    );
    hang_up_and_wait(&serve, &id).await;
    let wav = botmedia::wav::Wav::read(&path).expect("a readable WAV");
    assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
    assert!(wav.duration_secs() > 1.5, "{} s", wav.duration_secs());
    let loud = wav
        .samples
        .iter()
        .filter(|s| s.unsigned_abs() > 2000)
        .count();
    assert!(
        loud > 8000,
        "the recording holds the echoed greeting: {loud} loud samples of {}",
        wav.samples.len()
    );
}

fn wav_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Share of `samples`' energy in the DFT bin at `hz` (16 kHz): near 1 for a pure tone, near
/// 0 for silence or another tone.
fn tone_share(samples: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 16_000.0;
    let (re, im, energy) =
        samples
            .iter()
            .enumerate()
            .fold((0.0, 0.0, 1.0), |(re, im, energy), (n, &x)| {
                let (x, phase) = (f64::from(x), w * n as f64);
                (re + x * phase.cos(), im - x * phase.sin(), energy + x * x)
            });
    2.0 * (re * re + im * im) / (samples.len() as f64 * energy)
}

/// [`tone_share`] of each 200 ms window of `samples`, the median.
fn median_tone_share(samples: &[i16], hz: f64) -> f64 {
    let mut shares: Vec<f64> = samples
        .chunks_exact(3_200)
        .map(|w| tone_share(w, hz))
        .collect();
    if shares.is_empty() {
        return tone_share(samples, hz);
    }
    shares.sort_by(f64::total_cmp);
    shares[shares.len() / 2]
}

/// Deletes call `id` through the API and waits until serve has let it go (its files are
/// finished by then).
async fn hang_up_and_wait(serve: &Serve, id: &str) {
    let r = http()
        .delete(serve.url(&format!("/calls/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let gone = eventually(Duration::from_secs(10), async || {
        get_json(&serve.url(&format!("/calls/{id}"))).await.0 == 404
    });
    assert!(gone.await, "the call did not end: {}", serve.stderr.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_meeting_writes_each_speaker_and_who_spoke_when() {
    let emu = emulator().await;
    let scenario = emu.scenario().clone();
    let meeting = &scenario.meetings[0];
    // Each participant's tone, by display name (John 440 Hz, Ada 660 Hz).
    let tones: Vec<(String, f64)> = meeting
        .participants
        .iter()
        .filter_map(|id| scenario.users.iter().find(|u| &u.id == id))
        .filter_map(|u| match u.says {
            botmedia::emulator::scenario::Voice::Tone { hz, .. } => {
                Some((u.display_name.clone(), hz))
            }
            _ => None,
        })
        .collect();
    assert_eq!(tones.len(), 2, "{tones:?}");
    // The legs share the pump's UDP socket: the meeting's speaker streams and the other
    // call's leg come in on one port; and they run on the lean media path, which tells the
    // speaker streams apart by the SSRCs the offer gives their tracks.
    let config = format!(
        "{ECHO}[bot]\nshared_udp = true\nlean_media = true\n[record]\ndir = \"{{dir}}/rec\"\nunmixed = 4\n"
    );
    let serve = Serve::start(&emu.base_url(), &config).await;
    let place = async |body: Value| {
        let (status, call) = post_json(&serve.url("/calls"), &body).await;
        assert_eq!(status, 201, "{call}");
        call
    };
    let call = place(json!({
        "meeting": {
            "threadId": meeting.thread_id,
            "messageId": meeting.message_id,
            "organizerId": meeting.organizer,
        },
        "behaviour": "record",
    }))
    .await;
    // A call to one person, recorded beside it: it has nobody to unmix.
    let john = &scenario
        .users
        .iter()
        .find(|u| u.display_name == "John")
        .unwrap()
        .id;
    let p2p = place(json!({ "user": john, "behaviour": "record" })).await;
    let id = call["id"].as_str().unwrap().to_owned();
    let p2p_id = p2p["id"].as_str().unwrap().to_owned();
    let mix_path = PathBuf::from(call["recording"].as_str().unwrap());
    let timeline_path = PathBuf::from(call["timeline"].as_str().expect("a timeline"));
    assert!(p2p.get("timeline").is_none(), "{p2p}");
    for id in [&id, &p2p_id] {
        let up = eventually(Duration::from_secs(20), async || {
            emu.call_state(id).as_deref() == Some("established")
        });
        assert!(up.await, "{}", serve.stderr.text());
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Both calls' legs on one shared socket (one pump per two cores).
    let metrics = common::metrics(&http(), &serve.url("/metrics")).await;
    let value = |name: &str| {
        common::metric_value(&metrics, name).unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    assert!(value("botmedia_network_legs") >= 2.0, "{metrics}");
    assert_eq!(
        value("botmedia_network_lean_legs"),
        value("botmedia_network_legs"),
        "{metrics}"
    );
    let shared = value("botmedia_network_shared_sockets");
    assert!(
        shared >= 1.0 && shared <= value("botmedia_network_pumps"),
        "{metrics}"
    );
    hang_up_and_wait(&serve, &id).await;
    hang_up_and_wait(&serve, &p2p_id).await;

    // Beside the mix: one file per participant, the timeline, nothing half-written; the
    // call to one person has its mix alone.
    let stem = mix_path.file_stem().unwrap().to_string_lossy().into_owned();
    let p2p_stem = p2p_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
    let mut files: Vec<String> = std::fs::read_dir(mix_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut expected = vec![
        format!("{stem}.wav"),
        format!("{stem}.timeline.json"),
        format!("{p2p_stem}.wav"),
    ];
    expected.extend(tones.iter().map(|(name, _)| format!("{stem}.{name}.wav")));
    expected.sort();
    assert_eq!(files, expected, "{}", serve.stderr.text());

    let mix = botmedia::wav::Wav::read(&mix_path).unwrap();
    assert!(mix.duration_secs() > 3.0, "{} s", mix.duration_secs());
    let timeline: Value = serde_json::from_slice(&std::fs::read(&timeline_path).unwrap()).unwrap();
    assert_eq!(timeline["mix"], format!("{stem}.wav"));
    assert_eq!(timeline["unmixed_streams"], 4);
    let participants = timeline["participants"].as_array().unwrap();
    assert_eq!(participants.len(), tones.len(), "{timeline}");
    for (name, hz) in &tones {
        let p = participants
            .iter()
            .find(|p| p["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in {timeline}"));
        assert!(
            p["participant"].as_str().is_some_and(|id| !id.is_empty()),
            "{p}"
        );
        assert_eq!(p["wav"], format!("{stem}.{name}.wav"));
        let wav = botmedia::wav::Wav::read(&mix_path.with_file_name(format!("{stem}.{name}.wav")))
            .unwrap();
        assert_eq!(
            wav.samples.len(),
            mix.samples.len(),
            "{name}'s file and the mix"
        );
        let segments: Vec<&Value> = timeline["segments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["source_id"] == p["source_id"])
            .collect();
        let spoke_ms: u64 = segments
            .iter()
            .map(|s| s["end_ms"].as_u64().unwrap() - s["start_ms"].as_u64().unwrap())
            .sum();
        assert!(spoke_ms > 2_000, "{name} spoke {spoke_ms} ms: {segments:?}");
        // Where the timeline says they spoke, their file holds their tone, nobody else's.
        for s in &segments {
            let at = |key: &str| (s[key].as_u64().unwrap() * 16) as usize;
            let spoke = &wav.samples[at("start_ms")..at("end_ms")];
            for (other, other_hz) in &tones {
                let share = tone_share(spoke, *other_hz);
                if other == name {
                    // Their own tone, window by window: one bin over seconds would also
                    // count a phase step (the jitter buffer stretching or shortening a
                    // frame on a busy machine) against it.
                    let share = median_tone_share(spoke, *hz);
                    assert!(share > 0.8, "{name}'s {hz} Hz in {s}: median {share}");
                } else {
                    assert!(
                        share < 0.01,
                        "{other}'s {other_hz} Hz in {name}'s {s}: {share}"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_hangs_up_after_the_grace_period() {
    let emu = emulator().await;
    let mut serve = Serve::start(&emu.base_url(), ECHO).await;
    let (status, ready) = get_json(&serve.url("/readyz")).await;
    assert_eq!(status, 200, "{ready}");
    let (status, call) = post_json(&serve.url("/calls"), &json!({ "user": ECHO_USER })).await;
    assert_eq!(status, 201, "{call}");
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_secs(20), async || emu
            .call_state(&id)
            .as_deref()
            == Some("established"))
        .await,
        "{}",
        serve.stderr.text()
    );

    let pid = i32::try_from(serve.child.0.id()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which it still is (not reaped yet).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let signalled = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), async || get_json(
            &serve.url("/readyz")
        )
        .await
        .0 == 503)
        .await
    );
    let (status, refused) = post_json(&serve.url("/calls"), &json!({ "user": ECHO_USER })).await;
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"]["code"], "draining");
    // An incoming call is rejected (busy) at once: it never reaches established.
    let (status, body) = post_json(
        &format!("{}/emulator/incoming", emu.base_url()),
        &json!({ "from": ECHO_USER, "callbackUri": serve.webhook }),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let rung = body["callId"].as_str().unwrap().to_owned();
    assert!(
        eventually(Duration::from_millis(800), async || emu
            .call_state(&rung)
            .as_deref()
            == Some("terminated"))
        .await,
        "an incoming call while draining: {:?}",
        emu.call_state(&rung)
    );

    // Within the grace the call stays up.
    tokio::time::sleep(Duration::from_millis(1000).saturating_sub(signalled.elapsed())).await;
    assert_eq!(emu.call_state(&id).as_deref(), Some("established"));
    assert_eq!(
        state_in_api(&get_json(&serve.url("/calls")).await.1, &id).as_deref(),
        Some("established")
    );

    let code = serve.wait_exit(Duration::from_secs(20)).await;
    let took = signalled.elapsed();
    assert_eq!(code, Some(0), "{}", serve.stderr.text());
    assert!(
        took >= Duration::from_secs(2),
        "exited after {took:?}, before the grace"
    );
    assert!(
        eventually(Duration::from_secs(5), async || emu
            .call_state(&id)
            .as_deref()
            == Some("terminated"))
        .await,
        "the emulator says {:?}",
        emu.call_state(&id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_json_with_status_codes() {
    let emu = emulator().await;
    let serve = Serve::start(&emu.base_url(), ECHO).await;
    let (status, health) = get_json(&serve.url("/healthz")).await;
    assert_eq!((status, &health["status"]), (200, &json!("ok")));
    let metrics = http().get(serve.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics.text().await.unwrap().contains("# TYPE"));

    let post_raw = async |body: &'static str| {
        let r = http()
            .post(serve.url("/calls"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, e) = post_raw("{\"user\": ").await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("EOF"),
        "{e}"
    );
    let (status, e) = post_raw("{\"usr\": \"x\"}").await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `usr`"),
        "{e}"
    );
    let (status, e) = post_raw("{}").await;
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exactly one"),
        "{e}"
    );
    let (status, e) = post_raw("{\"user\": \"u\", \"behaviour\": \"play\"}").await;
    assert_eq!(status, 400, "no prompt configured: {e}");
    let (status, e) = post_raw("{\"user\": \"u\", \"behaviour\": \"reject\"}").await;
    assert_eq!(status, 400, "{e}");

    let big = format!("{{\"user\": \"{}\"}}", "x".repeat(64 * 1024));
    let r = http()
        .post(serve.url("/calls"))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);

    let (status, e) = get_json(&serve.url("/calls/nope")).await;
    assert_eq!((status, &e["error"]["code"]), (404, &json!("callNotFound")));
    let r = http()
        .delete(serve.url("/calls/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (status, e) = get_json(&serve.url("/nowhere")).await;
    assert_eq!((status, &e["error"]["code"]), (404, &json!("notFound")));
    let r = http().put(serve.url("/calls")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

/// Runs `botmedia serve` on a config that must be refused: its exit code and stderr.
fn refused(config: &str) -> (Option<i32>, String) {
    let dir = TempDir::new();
    let path = dir.0.join("serve.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botmedia"));
    cmd.args(["serve", "--config"])
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars() {
        if name.starts_with("BOTMEDIA_") {
            cmd.env_remove(name);
        }
    }
    // Never reached: the config is refused first.
    cmd.env("BOTMEDIA_EMULATOR", "http://127.0.0.1:9");
    let child = ChildGuard(cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut child = child;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        assert!(Instant::now() < deadline, "serve did not refuse the config");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_bad_config_names_the_key_and_exits_2() {
    for (config, key) in [
        ("[record]\ndirectory = \"x\"\n", "record.directory"),
        ("[record]\nunmixed = 5\n", "`record.unmixed` (line 2)"),
        ("[record]\nunmixed = -1\n", "`record.unmixed` (line 2)"),
        ("drain_grace_seconds = -1\n", "drain_grace_seconds"),
        ("[api]\nlisten = \"localhost\"\n", "api.listen"),
        ("[answer]\nbehaviour = \"dance\"\n", "answer.behaviour"),
        ("[bot]\napp_secret = \"s3cret\"\n", "bot.app_secret"),
        ("[bot]\nshared_udp = \"yes\"\n", "shared_udp"),
        ("[bot]\nlean_media = 1\n", "lean_media"),
        ("[answer]\nbehaviour = \"play\"\n", "play.prompt"),
        (
            "[bot]\ncallback_url = \"ftp://bot/cb\"\n",
            "bot.callback_url",
        ),
    ] {
        let (code, stderr) = refused(config);
        assert_eq!(code, Some(2), "{config}: {stderr}");
        assert!(stderr.contains(key), "{config}: {stderr}");
        assert!(!stderr.contains("s3cret"), "the secret is echoed: {stderr}");
    }
}
