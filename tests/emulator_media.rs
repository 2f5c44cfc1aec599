//! App-hosted media end to end: the emulator (the local calling service) connects real
//! WebRTC legs to a bot's `MediaPlatform` over 127.0.0.1 and plays a conference server:
//! tones, echo, several speakers as CSRCs, DTMF both ways, hang-up, media failures.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use botmedia::session::AudioSocketSettings;
use botmedia::{
    AudioSocket, AudioSocketEvent, MediaPlatform, MediaSession, Pcm16K, ReceivedFrame, SendStatus,
    Tone,
};
use emulator::Emulator;
use emulator::scenario::{Answer, Scenario, User, Voice};
use emulator::wav::Wav;
use serde_json::{Value, json};

#[path = "common/platform.rs"]
mod platform;
use platform::{
    app_token, create_call, emulator_state, http_client, meeting_join, pump, start_emulator,
    start_platform,
};

const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
const ADA: &str = "98da8a1a-1b87-452c-a713-65d3f10b5555";
const GRACE: &str = "550fae72-d251-43ec-868c-373732c2704f";

/// The machine has 2 cores shared by real-time threads: one media test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone, Default)]
struct Hook(Arc<Mutex<Vec<Value>>>);

async fn callback(State(hook): State<Hook>, body: axum::Json<Value>) -> StatusCode {
    hook.0.lock().expect("hook lock").push(body.0);
    StatusCode::ACCEPTED
}

struct Fixture {
    emu: Emulator,
    platform: MediaPlatform,
    hook: Hook,
    callback_url: String,
    http: reqwest::Client,
    token: String,
    server: tokio::task::JoinHandle<()>,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(Scenario::default()).await
    }

    async fn start_with(mut scenario: Scenario) -> Self {
        scenario.settings.time_scale = 10.0;
        let emu = start_emulator(scenario).await;
        let platform = start_platform().await;
        let hook = Hook::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let callback_url = format!("http://{}/callback", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .route("/callback", axum::routing::post(callback))
            .with_state(hook.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = http_client();
        let token = app_token(&emu, &http).await;
        Self {
            emu,
            platform,
            hook,
            callback_url,
            http,
            token,
            server,
        }
    }

    fn session(&self) -> MediaSession {
        self.platform
            .create_session(AudioSocketSettings::default(), None)
            .expect("session")
    }

    /// Creates an app-hosted call to `users` (one: peer-to-peer, more: a group call).
    async fn call(&self, users: &[&str], media_config: Value) -> String {
        let targets: Vec<Value> = users
            .iter()
            .map(|u| {
                json!({
                    "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                    "identity": { "@odata.type": "#microsoft.graph.identitySet",
                        "user": { "@odata.type": "#microsoft.graph.identity", "id": u } }
                })
            })
            .collect();
        let body = json!({
            "@odata.type": "#microsoft.graph.call",
            "callbackUri": self.callback_url,
            "targets": targets,
            "requestedModalities": ["audio"],
            "mediaConfig": media_config,
        });
        let call = create_call(&self.emu, &self.http, &self.token, &body).await;
        call["id"].as_str().expect("id").to_owned()
    }

    fn call_url(&self, id: &str) -> String {
        format!("{}/communications/calls/{id}", self.emu.graph_url())
    }

    /// `GET …/participants` of the call, as the app sees it.
    async fn participants(&self, call: &str) -> Value {
        self.http
            .get(format!("{}/participants", self.call_url(call)))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("participants")
            .json()
            .await
            .expect("participants json")
    }

    /// The `sourceId` of the participant who is `user`.
    async fn source_id(&self, call: &str, user: &str) -> u32 {
        let list = self.participants(call).await;
        list["value"]
            .as_array()
            .expect("value")
            .iter()
            .find(|p| p["info"]["identity"]["user"]["id"] == user)
            .and_then(|p| p["mediaStreams"][0]["sourceId"].as_str())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no sourceId for {user} in {list:#}"))
    }

    async fn dashboard(&self) -> Value {
        emulator_state(&self.emu, &self.http).await
    }

    /// Waits (bounded) until the call's state is `state`; returns the call resource.
    async fn wait_state(&self, call: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got: Value = self
                .http
                .get(self.call_url(call))
                .bearer_auth(&self.token)
                .send()
                .await
                .expect("get call")
                .json()
                .await
                .expect("call json");
            if got["state"] == state {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "call never reached {state}: {got:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) {
        self.platform.shutdown().await;
        self.emu.shutdown().await;
        self.server.abort();
        let _ = self.server.await;
    }
}

/// Pumps silence until the socket reports Active (bounded). Returns every event read on
/// the way, Active included: a participant may join, and the first dominant speaker be
/// named, before the socket is seen active, and that event comes only once.
async fn until_active(socket: &mut AudioSocket) -> Vec<AudioSocketEvent> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let (_, events) = pump(socket, Duration::from_millis(100), |_| Pcm16K::SILENCE).await;
        seen.extend(events);
        if seen.contains(&AudioSocketEvent::SendStatusChanged(SendStatus::Active)) {
            return seen;
        }
    }
    panic!("the socket never became active: {seen:?}");
}

/// Checks that the frames list exactly `want` (in any order) as active speakers, allowing
/// a few frames with no speakers at all: on a loaded 2-core machine a pipeline tick of the
/// bot may find its jitter buffer empty, and such a frame carries no CSRCs. Nobody else
/// may ever be listed.
fn assert_speakers(frames: &[ReceivedFrame], want: &[u32], what: &str) {
    let mut want = want.to_vec();
    want.sort_unstable();
    let mut listed = 0;
    for f in frames {
        let mut ids = f.active_speakers.ids().to_vec();
        ids.sort_unstable();
        if ids == want {
            listed += 1;
        } else {
            assert!(ids.is_empty(), "{what}: {want:?} expected, got {f:?}");
        }
    }
    assert!(
        listed * 10 >= frames.len() * 9,
        "{what}: {want:?} listed in {listed} of {} frames",
        frames.len()
    );
}

fn samples(frames: &[ReceivedFrame]) -> Vec<f64> {
    frames
        .iter()
        .flat_map(|f| f.pcm.samples.iter().map(|&s| f64::from(s)))
        .collect()
}

/// Share of the signal's energy at `hz` (Goertzel; 1 for a pure tone at `hz`).
fn tone_share(x: &[f64], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 16_000.0;
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s = v + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let energy: f64 = x.iter().map(|v| v * v).sum();
    2.0 * power / (x.len() as f64 * energy.max(1e-9))
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    xy / (xx.sqrt() * yy.sqrt()).max(1e-9)
}

/// The delay (in samples) at which `received[start..start + len]` best matches `sent`,
/// searched over `lags`, and the correlation there.
fn best_lag(
    sent: &[f64],
    received: &[f64],
    start: usize,
    len: usize,
    lags: std::ops::Range<usize>,
) -> (usize, f64) {
    let win = &received[start..start + len];
    lags.filter(|&lag| lag <= start)
        .map(|lag| (lag, correlation(win, &sent[start - lag..start - lag + len])))
        .fold((0, f64::MIN), |b, c| if c.1 > b.1 { c } else { b })
}

/// Phase-continuous tone bursts: 20 ms each, the frequency hopping pseudo-randomly
/// between 300 and 3400 Hz, so every stretch of the signal is unlike every other.
fn hopping_tone(frames: usize) -> Vec<Pcm16K> {
    let mut state = 0x2545_f491_u32;
    let mut phase = 0.0f64;
    (0..frames)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let hz = 300.0 + f64::from(state % 3100);
            let mut f = Pcm16K::SILENCE;
            for s in f.samples.iter_mut() {
                *s = (6_000.0 * (std::f64::consts::TAU * phase).sin()) as i16;
                phase = (phase + hz / 16_000.0).fract();
            }
            f
        })
        .collect()
}

async fn hang_up_and_see_the_socket_end(f: &Fixture, call: &str, socket: &mut AudioSocket) {
    let r = f
        .http
        .delete(f.call_url(call))
        .bearer_auth(&f.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    let (_, events) = pump(socket, Duration::from_secs(10), |_| Pcm16K::SILENCE).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AudioSocketEvent::Ended(_))),
        "the leg ends when the bot hangs up: {events:?}"
    );
    assert!(socket.is_ended());
    assert!(
        tokio::time::timeout(Duration::from_secs(2), socket.next())
            .await
            .expect("the socket is finished")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_john_hears_his_tone_with_his_source_id_and_carries_dtmf_both_ways() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start().await;
    let mut session = f.session();
    let call = f.call(&[JOHN], session.app_hosted_media_config()).await;
    let socket = session.audio_socket();
    until_active(socket).await;
    f.wait_state(&call, "established").await;
    let john = f.source_id(&call, JOHN).await;

    let (frames, _) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert!(frames.len() >= 80, "{} frames in 2 s", frames.len());
    let tail = &frames[frames.len() - 40..];
    let x = samples(tail);
    // Per 100 ms window (44 cycles of 440 Hz): a jitter buffer dropping or stretching a
    // frame breaks the phase once in a while, which a whole-signal Goertzel would punish.
    let shares: Vec<f64> = x
        .chunks_exact(1_600)
        .map(|w| tone_share(w, 440.0))
        .collect();
    let clean = shares.iter().filter(|s| **s > 0.95).count();
    assert!(
        clean * 4 >= shares.len() * 3,
        "440 Hz holds most of the energy in most windows: {shares:.3?}"
    );

    assert!(tone_share(&x, 660.0) < 0.01, "and no 660 Hz");
    assert_speakers(tail, &[john], "John is the active speaker");
    let level = tail
        .iter()
        .rev()
        .find_map(|f| f.active_speakers.levels().first().copied().flatten());
    assert!(
        level.is_some_and(|l| (10..=17).contains(&l)),
        "a -12 dBFS tone is about 15 -dBov, got {level:?}"
    );

    // The dashboard shows John's level.
    let state = f.dashboard().await;
    let c = state["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .find(|c| c["id"] == call.as_str())
        .expect("call on the dashboard");
    assert_eq!(c["media"], "app-hosted");
    assert_eq!(c["mediaConnected"], true);
    let john_level = c["participants"]
        .as_array()
        .expect("participants")
        .iter()
        .find(|p| p["participant"]["info"]["identity"]["user"]["id"] == JOHN)
        .and_then(|p| p["level"].as_f64())
        .expect("John's level");
    assert!(
        john_level > 0.6,
        "John's level on the dashboard {john_level}"
    );

    // DTMF from the far side (the dashboard's keypad) to the bot.
    let r = f
        .http
        .post(format!("{}/emulator/calls/{call}/tone", f.emu.base_url()))
        .json(&json!({ "tone": "5" }))
        .send()
        .await
        .expect("tone");
    assert_eq!(r.status(), 204);
    let (_, events) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert!(
        events.contains(&AudioSocketEvent::ToneReceived(Tone::Tone5)),
        "{events:?}"
    );
    // And from the bot to the service: it shows in the event log.
    socket
        .send_dtmf(Tone::Pound, Duration::from_millis(120))
        .expect("send dtmf");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let _ = pump(socket, Duration::from_millis(100), |_| Pcm16K::SILENCE).await;
        let log = f.dashboard().await["log"].clone();
        if log
            .as_array()
            .expect("log")
            .iter()
            .any(|e| e["text"] == "DTMF # from the bot")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no tone in the log: {log:#}");
    }

    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    drop(session);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_echoes_the_bot_and_the_round_trip_is_measured() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start().await;
    let mut session = f.session();
    let call = f.call(&[GRACE], session.app_hosted_media_config()).await;
    let socket = session.audio_socket();
    until_active(socket).await;
    let grace = f.source_id(&call, GRACE).await;

    let signal = hopping_tone(700);
    let (frames, _) = pump(socket, Duration::from_secs(11), |n| {
        signal.get(n).copied().unwrap_or(Pcm16K::SILENCE)
    })
    .await;
    assert!(frames.len() >= 500, "{} frames", frames.len());
    let sent: Vec<f64> = signal
        .iter()
        .flat_map(|f| f.samples.iter().map(|&s| f64::from(s)))
        .collect();
    let received = samples(&frames);
    // Where the echo is, from a 300 ms window over lags up to 1 s: the best of three
    // windows 6, 7.5 and 9 s in. Earlier, the two jitter buffers on the way are still
    // shrinking in 20 ms steps (each drops a packet), and a window holding a step
    // correlates at about 0.75 at its best lag.
    let (lag, c) = [96_000, 120_000, 144_000]
        .into_iter()
        .map(|start| best_lag(&sent, &received, start, 4_800, 0..16_000))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("three windows");
    assert!(c > 0.8, "echo correlation {c:.3} at {lag} samples");
    // Then per 40 ms window every 80 ms from 1 s to 10 s, from 100 ms below that settled
    // lag to 120 ms above it (the jitter buffers start at 60 ms and shrink in steps, so
    // the delay falls over the first seconds).
    let timed: Vec<(usize, f64)> = (16_000..160_000)
        .step_by(1_280)
        .filter(|s| s + 640 <= received.len())
        .map(|s| {
            let (l, c) = best_lag(
                &sent,
                &received,
                s,
                640,
                lag.saturating_sub(1_600)..lag + 1_920,
            );
            (s, l, c)
        })
        .filter(|(_, _, c)| *c > 0.6)
        .map(|(s, l, _)| (s, l as f64 / 16.0))
        .collect();
    assert!(timed.len() >= 90, "{} windows matched", timed.len());
    let quantiles = |from: usize| {
        let mut d: Vec<f64> = timed
            .iter()
            .filter(|(s, _)| *s >= from)
            .map(|(_, d)| *d)
            .collect();
        d.sort_by(f64::total_cmp);
        let q = |p: f64| d[((d.len() - 1) as f64 * p).round() as usize];
        (q(0.5), q(0.99), d.len())
    };
    let (p50, p99, n) = quantiles(0);
    let (s50, s99, sn) = quantiles(112_000);
    let bot = socket.quality().pipeline;
    eprintln!(
        "echo round trip through the emulator: 1-10 s p50 {p50:.1} ms, p99 {p99:.1} ms ({n} windows of 40 ms); 7-10 s p50 {s50:.1} ms, p99 {s99:.1} ms ({sn} windows); correlation {c:.3}; the bot's jitter buffer holds {} ms (target {} ms), concealed {}, underruns {}",
        bot.buffer_delay().as_millis(),
        bot.target_delay_ticks / 10_000,
        bot.concealed,
        bot.underruns,
    );
    assert_speakers(&frames[100..], &[grace], "Grace is the one speaking");

    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    let log = f.dashboard().await["log"].clone();
    let closed = log
        .as_array()
        .expect("log")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .find(|t| t.starts_with("media leg closed"))
        .expect("the emulator logs the leg's figures")
        .to_owned();
    eprintln!("emulator: {closed}");
    drop(session);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_lists_both_speakers_and_names_a_dominant_one() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start().await;
    let mut session = f.session();
    let call = f
        .call(&[JOHN, ADA], session.app_hosted_media_config())
        .await;
    let socket = session.audio_socket();
    // Both answer after 300 ms of emulated time (30 ms here), often before the socket is
    // seen active: the events read until then are kept, as the first dominant speaker
    // may be among them. Then wait for the roster to hold both.
    let mut events = until_active(socket).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (john, ada) = loop {
        let (_, more) = pump(socket, Duration::from_millis(100), |_| Pcm16K::SILENCE).await;
        events.extend(more);
        let list = f.participants(&call).await;
        if list["value"].as_array().is_some_and(|a| a.len() == 3) {
            break (
                f.source_id(&call, JOHN).await,
                f.source_id(&call, ADA).await,
            );
        }
        assert!(Instant::now() < deadline, "both users never joined");
    };
    let (frames, more) = pump(socket, Duration::from_secs(3), |_| Pcm16K::SILENCE).await;
    events.extend(more);
    let tail = &frames[frames.len() - 25..];
    assert_speakers(tail, &[john, ada], "both speakers are listed");
    // Median over 100 ms windows (44 and 66 cycles): robust to a jitter buffer's phase breaks.
    let x = samples(tail);
    let median = |hz: f64| {
        let mut v: Vec<f64> = x.chunks_exact(1_600).map(|w| tone_share(w, hz)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(440.0), median(660.0));
    assert!(
        a > 0.4 && b > 0.4,
        "the mix holds both tones equally: 440 Hz {a:.2}, 660 Hz {b:.2}"
    );
    let dominant = events.iter().find_map(|e| match e {
        AudioSocketEvent::DominantSpeakerChanged { current, .. } => *current,
        _ => None,
    });
    assert!(
        dominant.is_some_and(|d| d == john || d == ada),
        "a dominant speaker among {john} and {ada}: {events:?}"
    );

    // Ada hangs up (the dashboard's button): only John is left in the mix.
    let list = f.participants(&call).await;
    let ada_pid = list["value"]
        .as_array()
        .expect("value")
        .iter()
        .find(|p| p["info"]["identity"]["user"]["id"] == ADA)
        .and_then(|p| p["id"].as_str())
        .expect("Ada's participant id")
        .to_owned();
    let r = f
        .http
        .post(format!(
            "{}/emulator/calls/{call}/participants/{ada_pid}/hangup",
            f.emu.base_url()
        ))
        .send()
        .await
        .expect("hangup");
    assert_eq!(r.status(), 204);
    let (frames, _) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    let tail = &frames[frames.len() - 25..];
    assert_speakers(tail, &[john], "only John is left");
    assert!(tone_share(&samples(&tail[..20]), 660.0) < 0.01);

    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    drop(session);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_bot_waits_in_the_lobby_in_silence_until_admitted() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start().await;
    let meeting = f.emu.scenario().meetings[0].clone();
    let mut session = f.session();
    let mut body = meeting_join(&meeting, &f.callback_url, session.app_hosted_media_config());
    body["source"] = json!({ "@odata.type": "#microsoft.graph.participantInfo",
        "identity": { "@odata.type": "#microsoft.graph.identitySet",
            "guest": { "@odata.type": "#microsoft.graph.identity", "displayName": "Guest Bot",
                "id": "d7a3b999-17ac-4bca-9e77-e6a730d2ec2e" } } });
    let call = create_call(&f.emu, &f.http, &f.token, &body).await;
    let (call, me) = (
        call["id"].as_str().expect("id").to_owned(),
        call["myParticipantId"].as_str().expect("me").to_owned(),
    );
    let socket = session.audio_socket();
    until_active(socket).await;

    // In the lobby: media is up, but the bot hears nobody.
    let (frames, _) = pump(socket, Duration::from_secs(1), |_| Pcm16K::SILENCE).await;
    assert!(frames.len() >= 40);
    assert!(
        frames[10..]
            .iter()
            .all(|f| f.active_speakers.is_empty() && f.pcm.peak() < 100),
        "silence in the lobby: {:?}",
        frames.last()
    );
    let got: Value = f
        .http
        .get(f.call_url(&call))
        .bearer_auth(&f.token)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(got["state"], "establishing", "not established in the lobby");

    // Admitted: the meeting's two speakers are heard.
    let r = f
        .http
        .post(format!(
            "{}/emulator/calls/{call}/participants/{me}/admit",
            f.emu.base_url()
        ))
        .send()
        .await
        .expect("admit");
    assert_eq!(r.status(), 204);
    f.wait_state(&call, "established").await;
    let (john, ada) = (
        f.source_id(&call, JOHN).await,
        f.source_id(&call, ADA).await,
    );
    let (frames, _) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    assert_speakers(
        &frames[frames.len() - 25..],
        &[john, ada],
        "the meeting is heard",
    );

    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    drop(session);
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_that_cannot_connect_or_goes_away_ends_the_call() {
    let _serial = SERIAL.lock().await;
    let f = Fixture::start().await;

    // The session is gone before the service connects: 500/1005.
    let gone = f.session();
    let config = gone.app_hosted_media_config();
    drop(gone);
    let call = f.call(&[JOHN], config).await;
    let ended = f.wait_state(&call, "terminated").await;
    assert_eq!(ended["resultInfo"]["code"], 500, "{ended:#}");
    assert_eq!(ended["resultInfo"]["subcode"], 1005);

    // The bot's media disappears mid-call: 410/301005.
    let mut session = f.session();
    let call = f.call(&[JOHN], session.app_hosted_media_config()).await;
    until_active(session.audio_socket()).await;
    f.wait_state(&call, "established").await;
    drop(session);
    let ended = f.wait_state(&call, "terminated").await;
    assert_eq!(ended["resultInfo"]["code"], 410, "{ended:#}");
    assert_eq!(ended["resultInfo"]["subcode"], 301005);
    // The notification leaves after the state changes: wait for it, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let notified = f
            .hook
            .0
            .lock()
            .expect("hook")
            .iter()
            .any(|n| n["value"][0]["resourceData"]["resultInfo"]["subcode"] == 301005);
        if notified {
            break;
        }
        let seen: Vec<String> = f
            .hook
            .0
            .lock()
            .expect("hook")
            .iter()
            .map(|n| n["value"][0]["resourceData"]["resultInfo"].to_string())
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bot was not told; result infos notified: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_voice_at_44k1_stereo_is_heard_at_16k() {
    let _serial = SERIAL.lock().await;
    // 1.3 s of 700 Hz + 1900 Hz, 44.1 kHz stereo: the emulator loops it, resampled.
    let dir = std::env::temp_dir().join(format!("botmedia-emu-wav-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("two-tones.wav");
    let pcm: Vec<i16> = (0..57_330)
        .flat_map(|n| {
            let t = f64::from(n) / 44_100.0;
            let v = 6_000.0 * (std::f64::consts::TAU * 700.0 * t).sin()
                + 6_000.0 * (std::f64::consts::TAU * 1_900.0 * t).sin();
            [v as i16, v as i16]
        })
        .collect();
    Wav {
        sample_rate: 44_100,
        channels: 2,
        samples: pcm,
    }
    .write(&path)
    .expect("write wav");
    const READER: &str = "7f1c0b3e-5a47-4d6e-9a51-3c2f8e0d9b11";
    let mut scenario = Scenario::default();
    scenario.users.push(User {
        id: READER.into(),
        display_name: "Reader".into(),
        tenant_id: None,
        says: Voice::Wav(path.clone()),
        answer: Answer::AfterMs(300),
    });
    let f = Fixture::start_with(scenario).await;
    let mut session = f.session();
    let call = f.call(&[READER], session.app_hosted_media_config()).await;
    let socket = session.audio_socket();
    until_active(socket).await;
    let reader = f.source_id(&call, READER).await;
    let (frames, _) = pump(socket, Duration::from_secs(3), |_| Pcm16K::SILENCE).await;
    let tail = &frames[frames.len() - 100..];
    assert_speakers(tail, &[reader], "the reader speaks");
    let x = samples(tail);
    let median = |hz: f64| {
        let mut v: Vec<f64> = x.chunks_exact(1_600).map(|w| tone_share(w, hz)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, b) = (median(700.0), median(1_900.0));
    assert!(
        a > 0.4 && b > 0.4 && a + b > 0.9,
        "the WAV's two tones: 700 Hz {a:.2}, 1900 Hz {b:.2}"
    );
    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    drop(session);
    f.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_makes_a_participant_speak_a_wav() {
    let _serial = SERIAL.lock().await;
    let dir = std::env::temp_dir().join(format!("botmedia-emu-say-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("1900.wav");
    Wav {
        sample_rate: 16_000,
        channels: 1,
        samples: (0..16_000)
            .map(|n| {
                (8_000.0 * (std::f64::consts::TAU * 1_900.0 * f64::from(n) / 16_000.0).sin()) as i16
            })
            .collect(),
    }
    .write(&path)
    .expect("write wav");
    let f = Fixture::start().await;
    let john = f.emu.scenario().users[0].id.clone();
    let mut session = f.session();
    let call = f
        .call(&[john.as_str()], session.app_hosted_media_config())
        .await;
    let socket = session.audio_socket();
    until_active(socket).await;
    let state = f.dashboard().await;
    let pid = state["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == call.as_str())
        .and_then(|c| c["participants"].as_array())
        .and_then(|ps| {
            ps.iter()
                .find(|p| p["participant"]["info"]["identity"]["user"]["id"] == john.as_str())
        })
        .and_then(|p| p["participant"]["id"].as_str())
        .expect("John in the dashboard")
        .to_owned();
    let say = format!(
        "{}/emulator/calls/{call}/participants/{pid}/say",
        f.emu.base_url()
    );
    // A WAV that does not exist changes nothing.
    let r = f
        .http
        .post(&say)
        .json(&serde_json::json!({ "wav": "/nonexistent.wav" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = f
        .http
        .post(&say)
        .json(&serde_json::json!({ "tone": 1e9 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (before, _) = pump(socket, Duration::from_secs(1), |_| Pcm16K::SILENCE).await;
    let x = samples(&before[before.len() - 25..]);
    assert!(tone_share(&x, 440.0) > 0.5, "John hums 440 Hz first");
    let r = f
        .http
        .post(&say)
        .json(&serde_json::json!({ "wav": path.to_str().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (after, _) = pump(socket, Duration::from_secs(2), |_| Pcm16K::SILENCE).await;
    let x = samples(&after[after.len() - 50..]);
    assert!(
        tone_share(&x, 1_900.0) > 0.5,
        "then says the WAV: {:.2}",
        tone_share(&x, 1_900.0)
    );
    assert!(tone_share(&x, 440.0) < 0.1);
    hang_up_and_see_the_socket_end(&f, &call, socket).await;
    drop(session);
    f.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
