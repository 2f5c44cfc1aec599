//! Shared harness of the browser and device tests: an emulator whose meeting is empty, a
//! bot that joins it with app-hosted media and plays a tone while recording what it hears.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::time::{Duration, Instant};

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketItem, MediaPlatform, MediaSession, Pcm16K};
use emulator::Emulator;
use emulator::scenario::{Lobby, Scenario};
use serde_json::Value;
use tokio::sync::watch;

use super::platform::{
    app_token, create_call, emulator_state, http_client, meeting_join, start_emulator,
    start_platform,
};

/// What the bot heard: 16 kHz samples and, per frame, the active speakers and the unmixed
/// speaker streams' entries (source id and samples).
#[derive(Debug, Default)]
pub struct Heard {
    pub samples: Vec<i16>,
    pub speakers: Vec<Vec<u32>>,
    pub unmixed: Vec<Vec<(u32, [i16; 320])>>,
}

impl Heard {
    /// The indexes of the frames whose mix lists `source_id` as an active speaker.
    pub fn frames_listing(&self, source_id: u32) -> Vec<usize> {
        self.speakers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.contains(&source_id))
            .map(|(i, _)| i)
            .collect()
    }
}

pub struct Meeting {
    pub emu: Emulator,
    pub platform: MediaPlatform,
    pub http: reqwest::Client,
    pub token: String,
    pub call_id: String,
    stop: watch::Sender<bool>,
    bot: tokio::task::JoinHandle<Heard>,
}

/// Starts the emulator (its first meeting emptied, no lobby) and a bot that joins that
/// meeting, asking for unmixed meeting audio, and plays `bot_hz` while recording what it
/// hears.
pub async fn start(bot_hz: f64) -> Meeting {
    let mut scenario = Scenario::default();
    scenario.meetings[0].participants.clear();
    scenario.meetings[0].lobby = Lobby::Nobody;
    let meeting = scenario.meetings[0].clone();
    let emu = start_emulator(scenario).await;
    let platform = start_platform().await;
    let http = http_client();
    let token = app_token(&emu, &http).await;
    let session: MediaSession = platform
        .create_session(
            AudioSocketSettings::default().with_unmixed_meeting_audio(4),
            None,
        )
        .expect("session");
    // Notifications are not needed: the bot follows its media socket.
    let body = meeting_join(
        &meeting,
        &format!("{}/unused-callback", emu.base_url()),
        session.app_hosted_media_config(),
    );
    let call = create_call(&emu, &http, &token, &body).await;
    let call_id = call["id"].as_str().expect("id").to_owned();
    let (stop, stopped) = watch::channel(false);
    let bot = tokio::spawn(run_bot(session, bot_hz, stopped));
    let m = Meeting {
        emu,
        platform,
        http,
        token,
        call_id,
        stop,
        bot,
    };
    m.wait_established().await;
    m
}

/// The next 20 ms of a sine at `hz` (amplitude 8000), continuing from `phase` (in cycles).
pub fn tone_frame(hz: f64, phase: &mut f64) -> Pcm16K {
    let mut out = Pcm16K::SILENCE;
    for s in out.samples.iter_mut() {
        *s = (8_000.0 * (std::f64::consts::TAU * *phase).sin()) as i16;
        *phase = (*phase + hz / 16_000.0).fract();
    }
    out
}

/// Answers every received frame with the next 20 ms of the tone, until stopped.
async fn run_bot(mut session: MediaSession, hz: f64, mut stopped: watch::Receiver<bool>) -> Heard {
    let socket = session.audio_socket();
    let mut heard = Heard::default();
    let mut phase = 0.0f64;
    loop {
        tokio::select! {
            item = socket.next() => match item {
                Some(AudioSocketItem::Frame(f)) => {
                    let out = tone_frame(hz, &mut phase);
                    // Media before Active is discarded; a full queue drops the frame.
                    let _ = socket.send(out);
                    heard.samples.extend_from_slice(&f.pcm.samples);
                    heard.speakers.push(f.active_speakers.ids().to_vec());
                    heard
                        .unmixed
                        .push(f.unmixed.iter().map(|u| (u.source_id, u.pcm.samples)).collect());
                }
                Some(AudioSocketItem::Event(_)) => {}
                None => break,
            },
            _ = stopped.changed() => break,
        }
    }
    drop(session);
    heard
}

impl Meeting {
    async fn wait_established(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.emu.call_state(&self.call_id).as_deref() == Some("established") {
                let state = self.state().await;
                let call = state["calls"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["id"] == self.call_id.as_str()));
                if call.is_some_and(|c| c["mediaConnected"] == true) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the bot never joined the meeting"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /emulator/state`.
    pub async fn state(&self) -> Value {
        emulator_state(&self.emu, &self.http).await
    }

    /// The roster entry whose display name is `name`, once it is there (bounded).
    pub async fn wait_participant(&self, name: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some(p) = self.participant(name).await {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never joined: {:#}",
                self.state().await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The roster entry whose display name is `name`, if it is there.
    pub async fn participant(&self, name: &str) -> Option<Value> {
        let state = self.state().await;
        state["calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == self.call_id.as_str()))
            .and_then(|c| c["participants"].as_array())
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["participant"]["info"]["identity"]["guest"]["displayName"] == name)
                    .cloned()
            })
    }

    /// Whether the participant is still in the roster.
    pub async fn has_participant(&self, pid: &str) -> bool {
        let state = self.state().await;
        state["calls"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == self.call_id.as_str()))
            .and_then(|c| c["participants"].as_array())
            .is_some_and(|ps| ps.iter().any(|p| p["participant"]["id"] == pid))
    }

    /// Log lines of the emulator's event log that contain `needle`.
    pub async fn log_lines(&self, needle: &str) -> Vec<String> {
        let state = self.state().await;
        state["log"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|e| e["text"].as_str())
                    .filter(|t| t.contains(needle))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the bot (returning what it heard), the platform and the emulator.
    pub async fn stop(self) -> Heard {
        let _ = self.stop.send(true);
        let heard = self.bot.await.expect("bot task");
        self.platform.shutdown().await;
        self.emu.shutdown().await;
        heard
    }
}

/// Runs `f` to completion on a fresh two-thread Tokio runtime (the tests' `#[test]` entries
/// are synchronous: they may first re-run themselves in a namespace or a child process).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Checks that the bot heard `who` (a browser, a device) as an active speaker, its
/// `source_id` in the frames' speakers, for at least 3 s (150 frames), and that in those
/// frames, skipping the first second, `hz` holds more than 0.7 of the energy. Returns that
/// share.
pub fn assert_heard_as_speaker(heard: &Heard, source_id: u32, hz: f64, who: &str) -> f64 {
    let frames = heard.frames_listing(source_id);
    println!(
        "bot: {} frames heard, {} list the {who}'s sourceId {source_id}",
        heard.speakers.len(),
        frames.len()
    );
    assert!(
        frames.len() >= 150,
        "the {who} was an active speaker for at least 3 s"
    );
    let (first, last) = (frames[0], frames[frames.len() - 1]);
    // Skip the first second of the speaker's audio (the jitter buffer and the start).
    let window = &heard.samples[(first + 50) * 320..(last + 1) * 320];
    let share = tone_share(window, hz);
    println!(
        "bot heard {hz} Hz: share {share:.3}, level {:.1} dBFS",
        dbfs(window)
    );
    assert!(
        share > 0.7,
        "the bot heard the {who}'s tone (share {share:.3})"
    );
    share
}

/// Checks that the speaker `source_id`, while the mix listed them, also came on an unmixed
/// speaker stream of their own, attributed to them, carrying their tone `hz`; and that no
/// stream carried anyone else. Returns the share of the mix's frames listing them that had
/// their stream.
pub fn assert_unmixed_as_speaker(heard: &Heard, source_id: u32, hz: f64, who: &str) -> f64 {
    let listed = heard.frames_listing(source_id);
    assert!(!listed.is_empty(), "the {who} was never an active speaker");
    for (n, entries) in heard.unmixed.iter().enumerate() {
        for (id, _) in entries {
            assert_eq!(
                *id, source_id,
                "frame {n}: a stream carried {id}, not the {who}"
            );
        }
    }
    let with_stream = listed
        .iter()
        .filter(|&&i| heard.unmixed[i].iter().any(|(id, _)| *id == source_id))
        .count();
    let coverage = with_stream as f64 / listed.len() as f64;
    // Their stream's audio after its first second: the tone, as in the mix.
    let stream: Vec<i16> = heard
        .unmixed
        .iter()
        .flat_map(|e| e.iter().filter(|(id, _)| *id == source_id))
        .skip(50)
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    let share = tone_share(&stream, hz);
    println!(
        "bot: the {who}'s own stream in {with_stream} of {} frames naming them; {hz} Hz share {share:.3}",
        listed.len()
    );
    assert!(
        coverage > 0.9,
        "the {who} had a stream in {with_stream} of {} frames",
        listed.len()
    );
    assert!(
        share > 0.7,
        "the {who}'s stream carried their tone (share {share:.3})"
    );
    coverage
}

/// Share of the signal's energy at `hz` (Goertzel at 16 kHz; 1 for a pure tone at `hz`).
pub fn tone_share(x: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 16_000.0;
    let (mut s1, mut s2, mut energy) = (0.0, 0.0, 0.0);
    for &v in x {
        let v = f64::from(v);
        let s = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
        energy += v * v;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * power / (x.len() as f64 * f64::max(energy, 1e-9))
}

/// RMS level in dBFS.
pub fn dbfs(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    10.0 * (e / x.len().max(1) as f64 / (32_768.0 * 32_768.0) + 1e-12).log10()
}

/// A mono 16-bit WAV file of a sine tone.
pub fn write_tone_wav(path: &std::path::Path, hz: f64, rate: u32, seconds: f64, amplitude: f64) {
    let n = (f64::from(rate) * seconds) as usize;
    let samples = (0..n)
        .map(|i| {
            (amplitude * 32_767.0 * (std::f64::consts::TAU * hz * i as f64 / f64::from(rate)).sin())
                as i16
        })
        .collect();
    emulator::wav::Wav {
        sample_rate: rate,
        channels: 1,
        samples,
    }
    .write(path)
    .expect("write the WAV file");
}
