//! Unmixed meeting audio end to end: a bot joins an emulated meeting asking for four
//! unmixed speaker streams, over real WebRTC and Opus on 127.0.0.1. Three participants hum
//! different tones, a fourth is silent. Every frame's unmixed entries are checked against
//! the participants' `sourceId`s and tones; then a speaker stops and the silent one starts,
//! and the streams follow. A service without unmixed audio still sends the mix and tells.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketEvent, Pcm16K, ReceivedFrame};
use emulator::Emulator;
use emulator::scenario::{Lobby, Scenario, User, Voice};
use serde_json::{Value, json};

#[path = "common/platform.rs"]
mod platform;
use platform::{
    app_token, create_call, emulator_state, http_client, meeting_join, pump, start_emulator,
    start_platform,
};

/// One media test at a time: the machine's two cores carry real-time threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The speakers' names and tones; "Dee" is silent until told to speak [`DEE_HZ`].
const SPEAKERS: [(&str, f64); 3] = [("Ann", 440.0), ("Ben", 660.0), ("Cal", 880.0)];
const DEE_HZ: f64 = 550.0;

fn user(n: usize, name: &str, says: Voice) -> User {
    User {
        id: format!("00000000-0000-4000-8000-00000000000{n}"),
        display_name: name.to_owned(),
        tenant_id: None,
        says,
        answer: Default::default(),
    }
}

/// A meeting holding Ann, Ben and Cal (tones) and Dee (silent), nobody in the lobby.
fn scenario(unmixed_audio: bool) -> Scenario {
    let mut scenario = Scenario::default();
    scenario.settings.time_scale = 10.0;
    scenario.settings.unmixed_audio = unmixed_audio;
    let mut users: Vec<User> = SPEAKERS
        .iter()
        .enumerate()
        .map(|(i, (name, hz))| {
            user(
                i + 1,
                name,
                Voice::Tone {
                    hz: *hz,
                    dbfs: -12.0,
                },
            )
        })
        .collect();
    users.push(user(4, "Dee", Voice::Silence));
    scenario.meetings[0].participants = users.iter().map(|u| u.id.clone()).collect();
    scenario.meetings[0].lobby = Lobby::Nobody;
    scenario.users.extend(users);
    scenario
}

struct Bed {
    emu: Emulator,
    platform: botmedia::MediaPlatform,
    http: reqwest::Client,
    session: botmedia::MediaSession,
    call: String,
}

async fn join(unmixed_audio: bool) -> Bed {
    let scenario = scenario(unmixed_audio);
    let meeting = scenario.meetings[0].clone();
    let emu = start_emulator(scenario).await;
    let platform = start_platform().await;
    let http = http_client();
    let token = app_token(&emu, &http).await;
    let session = platform
        .create_session(
            AudioSocketSettings::default().with_unmixed_meeting_audio(4),
            None,
        )
        .expect("session");
    let body = meeting_join(
        &meeting,
        &format!("{}/unused-callback", emu.base_url()),
        session.app_hosted_media_config(),
    );
    let call = create_call(&emu, &http, &token, &body).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    Bed {
        emu,
        platform,
        http,
        session,
        call,
    }
}

impl Bed {
    async fn state(&self) -> Value {
        emulator_state(&self.emu, &self.http).await
    }

    /// Display name -> (participant id, source id) of everyone but the bot, once all four
    /// are in the roster (bounded).
    async fn roster(&self) -> BTreeMap<String, (String, u32)> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.state().await;
            let people: BTreeMap<String, (String, u32)> = state["calls"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["id"] == self.call.as_str())
                .flat_map(|c| c["participants"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["isBot"] != true)
                .filter_map(|p| {
                    let p = &p["participant"];
                    let name = p["info"]["identity"]["user"]["displayName"].as_str()?;
                    let source = p["mediaStreams"][0]["sourceId"].as_str()?.parse().ok()?;
                    Some((name.to_owned(), (p["id"].as_str()?.to_owned(), source)))
                })
                .collect();
            if people.len() == 4 {
                return people;
            }
            assert!(
                Instant::now() < deadline,
                "the meeting never filled: {state:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The source id on each of the bot's speaker streams, as the dashboard shows it.
    async fn speaker_streams(&self) -> Vec<Option<u32>> {
        let state = self.state().await;
        state["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == self.call.as_str())
            .and_then(|c| c["speakerStreams"].as_array())
            .map(|s| s.iter().map(|v| v.as_u64().map(|v| v as u32)).collect())
            .unwrap_or_default()
    }

    async fn say(&self, pid: &str, what: Value) {
        let r = self
            .http
            .post(format!(
                "{}/emulator/calls/{}/participants/{pid}/say",
                self.emu.base_url(),
                self.call
            ))
            .json(&what)
            .send()
            .await
            .expect("say");
        assert_eq!(r.status(), 204);
    }

    async fn stop(self) {
        drop(self.session);
        self.platform.shutdown().await;
        self.emu.shutdown().await;
    }
}

/// Share of the signal's energy at `hz` (Goertzel; 1 for a pure tone at `hz`).
fn tone_share(x: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 16_000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    2.0 * power / (x.len() as f64 * energy.max(1e-9))
}

fn rms(x: &[i16]) -> f64 {
    (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Per-frame attribution: for every unmixed entry with sound in it, whether its dominant
/// tone among all the meeting's tones is its speaker's. Frames within two of a change of
/// speaker on their stream are not judged (the switch settling). Returns (right, judged)
/// and, per stream, the speakers it carried in order.
fn attribution(
    frames: &[ReceivedFrame],
    tones: &BTreeMap<u32, f64>,
) -> (usize, usize, Vec<Vec<u32>>) {
    let mut on: Vec<Vec<u32>> = vec![Vec::new(); 5];
    let mut since_change = [usize::MAX; 5];
    let (mut right, mut judged) = (0, 0);
    let mut wrong = Vec::new();
    for (n, f) in frames.iter().enumerate() {
        for u in f.unmixed.iter() {
            let s = usize::from(u.stream);
            if on[s].last() != Some(&u.source_id) {
                on[s].push(u.source_id);
                since_change[s] = 0;
            } else {
                since_change[s] = since_change[s].saturating_add(1);
            }
            if since_change[s] < 2 || rms(&u.pcm.samples) < 300.0 {
                continue;
            }
            judged += 1;
            let heard = tones
                .iter()
                .max_by(|a, b| {
                    tone_share(&u.pcm.samples, *a.1).total_cmp(&tone_share(&u.pcm.samples, *b.1))
                })
                .map(|(id, _)| *id);
            if heard == Some(u.source_id) {
                right += 1;
            } else if wrong.len() < 5 {
                wrong.push((n, u.stream, u.source_id, heard));
            }
        }
    }
    if !wrong.is_empty() {
        eprintln!("misattributed (frame, stream, said, heard): {wrong:?}");
    }
    (right, judged, on)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_speaker_arrives_on_a_stream_of_their_own_and_the_streams_follow_the_speakers() {
    let _serial = SERIAL.lock().await;
    let mut bed = join(true).await;
    let people = bed.roster().await;
    let source = |name: &str| people[name].1;
    let mut tones: BTreeMap<u32, f64> = SPEAKERS.iter().map(|(n, hz)| (source(n), *hz)).collect();
    tones.insert(source("Dee"), DEE_HZ);

    let socket = bed.session.audio_socket();
    let (warm, events) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert!(
        events.contains(&AudioSocketEvent::UnmixedAudio {
            requested: 4,
            offered: 4
        }),
        "{events:?}"
    );
    let (frames, _) = pump(socket, Duration::from_secs(3), |_| Pcm16K::SILENCE).await;
    assert!(frames.len() >= 100, "{} frames in 3 s", frames.len());

    // Every entry is one of the three speakers, never the silent one, each on a stream of
    // their own that does not change.
    let (right, judged, on) = attribution(&frames, &tones);
    let speakers: Vec<u32> = SPEAKERS.iter().map(|(n, _)| source(n)).collect();
    for f in &frames {
        assert!(
            f.unmixed.get(source("Dee")).is_none(),
            "the silent one got a stream"
        );
        assert!(
            f.unmixed.iter().all(|u| speakers.contains(&u.source_id)),
            "{:?}",
            f.unmixed
        );
    }
    let mut carried: Vec<u32> = on.iter().flatten().copied().collect();
    carried.sort_unstable();
    let mut want = speakers.clone();
    want.sort_unstable();
    assert_eq!(
        carried, want,
        "each speaker on exactly one stream, for good: {on:?}"
    );
    let present = frames
        .iter()
        .map(|f| {
            speakers
                .iter()
                .filter(|&&s| f.unmixed.get(s).is_some())
                .count()
        })
        .sum::<usize>();
    assert!(
        present * 10 >= frames.len() * 3 * 9,
        "speakers present in {present} of {} speaker-frames",
        frames.len() * 3
    );
    println!("settled meeting: {right} of {judged} entries carry their speaker's tone");
    assert_eq!(right, judged, "every judged entry is its speaker's");
    assert!(
        judged >= frames.len() * 2,
        "{judged} judged of {} frames",
        frames.len()
    );
    // The dashboard shows the same assignment.
    let shown = bed.speaker_streams().await;
    for (s, carried) in on.iter().enumerate().skip(1) {
        if let Some(&id) = carried.last() {
            assert_eq!(shown.get(s - 1).copied().flatten(), Some(id), "{shown:?}");
        }
    }

    // The mix is the mix: all three tones, the three listed as active speakers.
    let tail = &frames[frames.len() - 50..];
    let mix: Vec<i16> = tail.iter().flat_map(|f| f.pcm.samples).collect();
    for (name, hz) in SPEAKERS {
        let share = tone_share(&mix, hz);
        assert!(share > 0.15, "{name}'s {hz} Hz in the mix: {share:.2}");
    }
    let listed = tail.iter().filter(|f| {
        let mut ids = f.active_speakers.ids().to_vec();
        ids.sort_unstable();
        ids == want
    });
    assert!(listed.count() >= 40, "the mix lists the three speakers");

    // Ann stops and Dee starts: Dee gets a stream, Ann's frees once her level has decayed,
    // Ben and Cal keep theirs.
    bed.say(&people["Ann"].0, json!({ "silence": true })).await;
    bed.say(&people["Dee"].0, json!({ "tone": DEE_HZ })).await;
    let socket = bed.session.audio_socket();
    let (switch, _) = pump(socket, Duration::from_secs(3), |_| Pcm16K::SILENCE).await;
    let (right, judged, after) = attribution(&switch, &tones);
    println!(
        "after the switch: {right} of {judged} entries carry their speaker's tone; streams {after:?}"
    );
    assert_eq!(
        right, judged,
        "every judged entry after the switch is its speaker's"
    );
    let last_second = &switch[switch.len() - 50..];
    for f in last_second {
        assert!(
            f.unmixed.get(source("Ann")).is_none(),
            "Ann still on a stream: {:?}",
            f.unmixed
        );
    }
    let dee = last_second
        .iter()
        .filter(|f| f.unmixed.get(source("Dee")).is_some())
        .count();
    assert!(dee >= 45, "Dee on a stream in {dee} of 50 frames");
    for name in ["Ben", "Cal"] {
        let stream = |frames: &[ReceivedFrame]| {
            frames
                .iter()
                .rev()
                .find_map(|f| f.unmixed.get(source(name)).map(|u| u.stream))
        };
        assert_eq!(
            stream(&frames),
            stream(last_second),
            "{name} keeps their stream"
        );
    }
    let _ = warm;
    bed.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_unmixed_audio_sends_the_mix_and_says_so() {
    let _serial = SERIAL.lock().await;
    let mut bed = join(false).await;
    let people = bed.roster().await;
    let socket = bed.session.audio_socket();
    let (_, events) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert!(
        events.contains(&AudioSocketEvent::UnmixedAudio {
            requested: 4,
            offered: 0
        }),
        "{events:?}"
    );
    let (frames, _) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert!(frames.iter().all(|f| f.unmixed.is_empty()));
    let tail = &frames[frames.len() - 50..];
    let mix: Vec<i16> = tail.iter().flat_map(|f| f.pcm.samples).collect();
    for (name, hz) in SPEAKERS {
        let share = tone_share(&mix, hz);
        assert!(share > 0.15, "{name}'s {hz} Hz in the mix: {share:.2}");
    }
    assert!(
        tail.iter()
            .any(|f| f.active_speakers.ids().contains(&people["Ann"].1)),
        "the mix still names its speakers"
    );
    assert!(bed.speaker_streams().await.is_empty());
    bed.stop().await;
}
