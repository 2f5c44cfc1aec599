//! The bot examples, each against an in-process emulator.
//!
//! Each example file is compiled into this test as a module and the test calls the function
//! its `main` calls after parsing the command line (`echo_bot::echo`, `recorder::record`,
//! `ivr::serve`, `answerer::serve`), on a bot built by the example's own `settings`. Running
//! the example binaries instead would depend on them being built and fresh: a plain `cargo
//! test` or `cargo nextest run` builds the examples, but `--test examples` builds none, and
//! a stale binary would be tested silently. What is left out is each `main`'s argument
//! parsing, a few lines.
//!
//! The tests observe the calls from the emulator's side (`GET /emulator/state`: call
//! states, results, the bot's send level) and drive them from there (`/emulator/incoming`,
//! `.../tone`, `.../say`, `.../hangup`), as a person with the dashboard and curl would.

#[allow(
    dead_code,
    reason = "the example's `main` and its helpers are for its binary"
)]
#[path = "../examples/answerer.rs"]
mod answerer;
#[allow(
    dead_code,
    reason = "the example's `main` and its helpers are for its binary"
)]
#[path = "../examples/echo_bot.rs"]
mod echo_bot;
#[allow(
    dead_code,
    reason = "the example's `main` and its helpers are for its binary"
)]
#[path = "../examples/ivr.rs"]
mod ivr;
#[allow(
    dead_code,
    reason = "the example's `main` and its helpers are for its binary"
)]
#[path = "../examples/recorder.rs"]
mod recorder;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use botmedia::Bot;
use emulator::scenario::DEFAULT_TENANT;
use emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

/// Every wait of these tests is bounded by this.
const WAIT: Duration = Duration::from_secs(10);
/// John, a scenario user who says a 440 Hz tone.
const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
const ENDED_BY_BOT: &str = "200/7000";
const TRANSFERRED: &str = "200/7015";
const REJECTED: &str = "603/0";

/// An emulator on a free loopback port and a bot pointed at it by an example's `settings`.
async fn start() -> (Emulator, Bot) {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let settings = botmedia::BotSettings::emulator(&emu.base_url());
    let bot = Bot::start(settings).await.unwrap();
    (emu, bot)
}

async fn stop(emu: Emulator, bot: Bot) {
    bot.shutdown().await;
    emu.shutdown().await;
}

/// A task aborted when the test ends, passed or not.
struct Task<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The emulator's view of call `id`: state, result, roster with levels.
async fn emulated_call(emu: &Emulator, id: &str) -> Option<Value> {
    let state: Value = reqwest::get(format!("{}/emulator/state", emu.base_url()))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    state["calls"]
        .as_array()?
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
}

async fn post(emu: &Emulator, path: &str, body: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", emu.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "POST {path}: {response:?}");
}

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after [`WAIT`].
async fn wait_for<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until call `id` is established with its media connected.
async fn established(emu: &Emulator, id: &str) -> Value {
    wait_for(&format!("call {id} established with media"), || async {
        emulated_call(emu, id)
            .await
            .filter(|c| c["state"] == "established" && c["mediaConnected"] == true)
    })
    .await
}

/// Waits until call `id` ended; returns its result (`code/subcode: message`).
async fn ended(emu: &Emulator, id: &str) -> String {
    wait_for(&format!("call {id} to end"), || async {
        let call = emulated_call(emu, id).await?;
        (call["state"] == "terminated").then(|| call["result"].as_str().unwrap_or("").to_owned())
    })
    .await
}

/// The level (0 to 1) at which the emulator hears the bot in `call`.
fn bot_level(call: &Value) -> f64 {
    call["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["isBot"] == true))
        .and_then(|p| p["level"].as_f64())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_bot_calls_the_echo_user_and_sends_back_what_it_hears() {
    let (emu, bot) = start().await;
    let mut echo = Task(tokio::spawn({
        let bot = bot.clone();
        async move { echo_bot::echo(&bot, echo_bot::ECHO_USER, Some(Duration::from_secs(5))).await }
    }));
    let id = wait_for("the bot's call", || async {
        bot.calls().first().map(|c| c.id.to_string())
    })
    .await;
    let call = established(&emu, &id).await;
    // Grace echoes, so the call is silent until she says something: a tone.
    let grace = call["participants"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["isBot"] == false))
        .and_then(|p| p["participant"]["id"].as_str())
        .expect("Grace in the roster")
        .to_owned();
    post(
        &emu,
        &format!("/emulator/calls/{id}/participants/{grace}/say"),
        json!({ "tone": 500.0 }),
    )
    .await;
    wait_for("the bot to send the tone back", || async {
        emulated_call(&emu, &id)
            .await
            .filter(|c| bot_level(c) > 0.3)
    })
    .await;
    let (heard, echoed) = tokio::time::timeout(WAIT, &mut echo.0)
        .await
        .expect("the echo bot stops after --seconds")
        .unwrap()
        .unwrap();
    assert!(heard > 50 && echoed > 50, "heard {heard}, echoed {echoed}");
    assert!(ended(&emu, &id).await.starts_with(ENDED_BY_BOT));
    stop(emu, bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_writes_what_a_meeting_says() {
    let (emu, bot) = start().await;
    let meeting = &emu.scenario().meetings[0];
    let source = recorder::Source::Meeting {
        thread: meeting.thread_id.clone(),
        message: meeting.message_id.clone(),
        organizer: meeting.organizer.clone(),
        tenant: DEFAULT_TENANT.into(),
    };
    let path = std::env::temp_dir().join(format!("botmedia-recorder-{}.wav", std::process::id()));
    // The mix alone (`--unmixed 0`): no participants' files, no timeline.
    let recording = tokio::time::timeout(
        WAIT,
        recorder::record(&bot, &source, &path, Some(Duration::from_secs(3)), 0),
    )
    .await
    .expect("the recorder stops after --seconds")
    .unwrap();
    assert!(recording.tracks.is_empty() && recording.timeline.is_none());
    assert_eq!(recording.unmixed_offered, None);
    let written = recording.seconds;
    let wav = botmedia::wav::Wav::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
    assert_eq!(wav.samples.len(), (written * 16_000.0).round() as usize);
    assert!(written > 2.0, "{written} s written");
    // John and Ada say 440 and 660 Hz; nobody says 1 kHz.
    let last_second = &wav.samples[wav.samples.len() - 16_000..];
    let (a, b, none) = (
        amplitude(last_second, 440.0),
        amplitude(last_second, 660.0),
        amplitude(last_second, 1000.0),
    );
    assert!(
        a > 4000.0 && b > 4000.0 && none < 200.0,
        "440 Hz {a}, 660 Hz {b}, 1 kHz {none}"
    );
    stop(emu, bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_answers_a_call_and_stops_when_the_caller_hangs_up() {
    let (emu, bot) = start().await;
    let path = std::env::temp_dir().join(format!("botmedia-answered-{}.wav", std::process::id()));
    let id = emu
        .place_incoming_call(JOHN, bot.callback_url(), None)
        .unwrap();
    let recording = recorder::record(
        &bot,
        &recorder::Source::Answer,
        &path,
        Some(WAIT),
        recorder::DEFAULT_UNMIXED,
    );
    let hang_up = async {
        established(&emu, &id).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        post(&emu, &format!("/emulator/calls/{id}/hangup"), json!({})).await;
    };
    let (recording, ()) = tokio::join!(recording, hang_up);
    let recording = recording.unwrap();
    // Only John is on the call: if the service unmixes a two-party call at all, he is
    // the one speaker.
    assert!(
        recording.tracks.iter().all(|t| t.label() == "John"),
        "{:?}",
        recording.tracks
    );
    let written = recording.seconds;
    let wav = botmedia::wav::Wav::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    // Well before its limit, with John's 440 Hz in it.
    assert!((1.0..5.0).contains(&written), "{written} s written");
    let a = amplitude(&wav.samples[wav.samples.len() - 8_000..], 440.0);
    assert!(a > 4000.0, "440 Hz {a}");
    stop(emu, bot).await;
}

/// A meeting of John (440 Hz), Ada (660 Hz), Hedy (880 Hz) and Linus (silent): the
/// default scenario's meeting with two more people in it.
fn speaking_meeting() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    let scenario = &mut config.scenario;
    let hedy = emulator::scenario::User {
        id: HEDY.into(),
        display_name: "Hedy".into(),
        tenant_id: None,
        says: emulator::scenario::Voice::Tone {
            hz: 880.0,
            dbfs: -12.0,
        },
        answer: Default::default(),
    };
    scenario.users.push(hedy);
    let linus = scenario
        .users
        .iter()
        .find(|u| u.display_name == "Linus")
        .expect("Linus in the default scenario")
        .id
        .clone();
    scenario.meetings[0]
        .participants
        .extend([HEDY.to_owned(), linus]);
    config
}

/// Hedy, a user [`speaking_meeting`] adds.
const HEDY: &str = "5e1d7a0c-8b3f-4c2e-9f61-0d2b6c880880";

/// The participants' tones.
const TONES: [(&str, f64); 3] = [("John", 440.0), ("Ada", 660.0), ("Hedy", 880.0)];

/// The emulator playing `config`, a bot on it, the recorder's source for the scenario's
/// first meeting, and an empty directory for the files (named after `what`).
async fn meeting_recording(
    config: EmulatorConfig,
    what: &str,
) -> (Emulator, Bot, recorder::Source, std::path::PathBuf) {
    let emu = Emulator::start(config).await.unwrap();
    let bot = Bot::start(botmedia::BotSettings::emulator(&emu.base_url()))
        .await
        .unwrap();
    let meeting = &emu.scenario().meetings[0];
    let source = recorder::Source::Meeting {
        thread: meeting.thread_id.clone(),
        message: meeting.message_id.clone(),
        organizer: meeting.organizer.clone(),
        tenant: DEFAULT_TENANT.into(),
    };
    let dir = std::env::temp_dir().join(format!("botmedia-recorder-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    (emu, bot, source, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_writes_each_speaker_of_a_meeting_and_who_spoke_when() {
    let (emu, bot, source, dir) = meeting_recording(speaking_meeting(), "unmixed").await;
    let mix_path = dir.join("meeting.wav");
    let recording = recorder::record(
        &bot,
        &source,
        &mix_path,
        Some(Duration::from_secs(5)),
        recorder::DEFAULT_UNMIXED,
    );
    // Ada stops talking two seconds into the call; John and Hedy talk throughout.
    let silence_ada = async {
        let id = wait_for("the bot's call", || async {
            bot.calls().first().map(|c| c.id.to_string())
        })
        .await;
        let call = established(&emu, &id).await;
        let ada = call["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p.to_string().contains("\"Ada\"")))
            .and_then(|p| p["participant"]["id"].as_str())
            .expect("Ada in the roster")
            .to_owned();
        tokio::time::sleep(Duration::from_secs(2)).await;
        post(
            &emu,
            &format!("/emulator/calls/{id}/participants/{ada}/say"),
            json!({ "silence": true }),
        )
        .await;
    };
    let (recording, ()) =
        tokio::time::timeout(WAIT, async { tokio::join!(recording, silence_ada) })
            .await
            .expect("the recorder stops after --seconds");
    let recording = recording.unwrap();
    assert_eq!(recording.unmixed_offered, Some(4));

    // The mix, as without unmixed audio: everyone who talks at the end, not Ada.
    let mix = botmedia::wav::Wav::read(&mix_path).unwrap();
    assert_eq!((mix.sample_rate, mix.channels), (16_000, 1));
    let last_second = &mix.samples[mix.samples.len() - 16_000..];
    let (john, ada, hedy) = (
        amplitude(last_second, 440.0),
        amplitude(last_second, 660.0),
        amplitude(last_second, 880.0),
    );
    assert!(
        john > 4000.0 && hedy > 4000.0 && ada < 200.0,
        "mix: 440 Hz {john}, 660 Hz {ada}, 880 Hz {hedy}"
    );

    // One file per speaker, each as long as the mix; Linus never spoke, so has none.
    let mut names: Vec<String> = recording.tracks.iter().map(|t| t.label()).collect();
    names.sort();
    assert_eq!(names, ["Ada", "Hedy", "John"], "{:?}", recording.tracks);
    let mix_ms = mix.samples.len() as u64 / 16;
    for (name, hz) in TONES {
        let track = recording.tracks.iter().find(|t| t.label() == name).unwrap();
        assert_eq!(
            track.path,
            dir.join(format!("meeting.{name}.wav")),
            "{name}'s file"
        );
        let wav = botmedia::wav::Wav::read(&track.path).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
        assert_eq!(
            wav.samples.len(),
            mix.samples.len(),
            "{name}'s file and the mix"
        );
        let segments: Vec<_> = recording
            .segments
            .iter()
            .filter(|s| s.source_id == track.source_id)
            .collect();
        assert!(
            !segments.is_empty(),
            "{name} spoke: {:?}",
            recording.segments
        );
        // Where the timeline says they spoke, their file holds their voice and nobody
        // else's.
        for s in &segments {
            let spoke = &wav.samples[(s.start_ms * 16) as usize..(s.end_ms * 16) as usize];
            for (other, other_hz) in TONES {
                let a = amplitude(spoke, other_hz);
                if other == name {
                    assert!(a > 4000.0, "{name} in {s:?}: {hz} Hz at {a}");
                } else {
                    assert!(a < 200.0, "{name} in {s:?}: {other}'s {other_hz} Hz at {a}");
                }
            }
        }
        // Everyone talked from the media's start; John and Hedy to the end, Ada stopped
        // about two seconds in and her file is silent from then on.
        let first = segments[0];
        assert!(first.start_ms < 1_500, "{name} from {first:?}");
        let last = segments[segments.len() - 1];
        if name == "Ada" {
            assert!(
                (1_000..mix_ms - 1_000).contains(&last.end_ms),
                "Ada until {last:?} of {mix_ms} ms"
            );
            let after = &wav.samples[((last.end_ms + 200) * 16) as usize..];
            let peak = after.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            assert!(peak < 100, "Ada's file after she stopped: peak {peak}");
        } else {
            assert!(
                last.end_ms + 100 >= mix_ms,
                "{name} until {last:?} of {mix_ms} ms"
            );
            assert_eq!(
                segments.len(),
                1,
                "{name} spoke without a pause: {segments:?}"
            );
        }
    }

    // The timeline on disk says the same, naming participants.
    let timeline: Value =
        serde_json::from_slice(&std::fs::read(recording.timeline.as_ref().unwrap()).unwrap())
            .unwrap();
    assert_eq!(timeline["mix"], "meeting.wav");
    let segments = timeline["segments"].as_array().unwrap();
    assert_eq!(segments.len(), recording.segments.len());
    for (json, s) in segments.iter().zip(&recording.segments) {
        let track = recording
            .tracks
            .iter()
            .find(|t| t.source_id == s.source_id)
            .unwrap();
        assert_eq!(json["source_id"], s.source_id);
        assert_eq!(json["start_ms"], s.start_ms);
        assert_eq!(json["end_ms"], s.end_ms);
        assert_eq!(json["name"], track.name.as_deref().unwrap());
        assert!(
            json["participant"].as_str().is_some_and(|p| !p.is_empty()),
            "{json}"
        );
    }
    let files: Vec<&str> = timeline["participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["wav"].as_str())
        .collect();
    assert_eq!(files.len(), 3, "{timeline}");
    std::fs::remove_dir_all(&dir).unwrap();
    stop(emu, bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorder_records_the_mix_alone_from_a_service_without_unmixed_audio() {
    let mut config = speaking_meeting();
    config.scenario.settings.unmixed_audio = false;
    let (emu, bot, source, dir) = meeting_recording(config, "mixonly").await;
    let mix_path = dir.join("meeting.wav");
    let recording = tokio::time::timeout(
        WAIT,
        recorder::record(
            &bot,
            &source,
            &mix_path,
            Some(Duration::from_secs(3)),
            recorder::DEFAULT_UNMIXED,
        ),
    )
    .await
    .expect("the recorder stops after --seconds")
    .unwrap();
    // Told that none come, it writes the mix and nothing else.
    assert_eq!(recording.unmixed_offered, Some(0));
    assert!(recording.tracks.is_empty() && recording.timeline.is_none());
    assert!(recording.segments.is_empty());
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["meeting.wav"]);
    let mix = botmedia::wav::Wav::read(&mix_path).unwrap();
    let last_second = &mix.samples[mix.samples.len() - 16_000..];
    for (name, hz) in TONES {
        let a = amplitude(last_second, hz);
        assert!(a > 4000.0, "{name}'s {hz} Hz in the mix at {a}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    stop(emu, bot).await;
}

/// The amplitude of the `hz` component of 16 kHz `samples` (Goertzel).
fn amplitude(samples: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 16_000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() * 2.0 / samples.len() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ivr_transfers_on_1_and_hangs_up_on_2_or_silence() {
    let (emu, bot) = start().await;
    let ivr = Arc::new(ivr::Ivr {
        prompt: ivr::beep().repeat(3),
        transfer_to: ivr::COLLEAGUE.into(),
        timeout: Duration::from_secs(3),
    });
    let _server = Task(tokio::spawn({
        let bot = bot.clone();
        async move { ivr::serve(&bot, ivr).await }
    }));
    for (key, result) in [
        (Some("1"), TRANSFERRED),
        (Some("2"), ENDED_BY_BOT),
        (None, ENDED_BY_BOT),
    ] {
        let id = emu
            .place_incoming_call(JOHN, bot.callback_url(), None)
            .unwrap();
        match key {
            Some(key) => {
                established(&emu, &id).await;
                post(
                    &emu,
                    &format!("/emulator/calls/{id}/tone"),
                    json!({ "tone": key }),
                )
                .await
            }
            // The IVR sends nothing but its prompt (watched from the start: it is short).
            None => {
                wait_for("the prompt", || async {
                    emulated_call(&emu, &id)
                        .await
                        .filter(|c| bot_level(c) > 0.3)
                })
                .await;
            }
        }
        let got = ended(&emu, &id).await;
        assert!(got.starts_with(result), "key {key:?}: {got}");
    }
    stop(emu, bot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_answers_up_to_max_calls_and_rejects_the_next() {
    let (emu, bot) = start().await;
    let _server = Task(tokio::spawn({
        let bot = bot.clone();
        async move { answerer::serve(&bot, 2).await }
    }));
    let ring = || {
        emu.place_incoming_call(JOHN, bot.callback_url(), None)
            .unwrap()
    };
    let (first, second) = (ring(), ring());
    established(&emu, &first).await;
    established(&emu, &second).await;
    let third = ring();
    assert!(ended(&emu, &third).await.starts_with(REJECTED));
    // John says 440 Hz and the answerer echoes him.
    wait_for("the answerer's echo", || async {
        emulated_call(&emu, &first)
            .await
            .filter(|c| bot_level(c) > 0.3)
    })
    .await;
    // A call that ends frees its place.
    post(&emu, &format!("/emulator/calls/{first}/hangup"), json!({})).await;
    ended(&emu, &first).await;
    wait_for("the bot to see the call end", || async {
        (bot.calls().len() == 1).then_some(())
    })
    .await;
    // ... and the answerer's task for it to return (right after).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = ring();
    established(&emu, &fourth).await;
    assert_eq!(
        emulated_call(&emu, &second).await.unwrap()["state"],
        "established"
    );
    stop(emu, bot).await;
}
