//! The demo, the main job: a bot against the embedded emulator, with real media.
//!
//! It starts the emulator and a media platform, signs in with the emulator's built-in app,
//! and places two app-hosted calls: one to Grace, who echoes, to measure the loop latency of
//! the whole media path (bot -> engine -> WebRTC -> emulator -> WebRTC -> engine -> bot), and
//! one joining the scenario's meeting, where John and Ada hum 440 Hz and 660 Hz, to show the
//! mix, the active speakers and the dominant speaker, and (asking for unmixed meeting audio)
//! each of them on a speaker stream of their own. Then it hangs up and reports.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use botmedia::emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Scenario};
use botmedia::emulator::{Emulator, EmulatorConfig};
use media_session::AudioSocketSettings;
use signalling::calls::CallEvent;
use signalling::model::CallState;
use signalling::token::SecretString;
use signalling::{CallRequest, CommunicationsClient, CommunicationsSettings, Credentials};

use botmedia::wav::WavRecorder;
use botmedia::{
    AudioSocketEvent, AudioSocketItem, MediaPlatform, MediaPlatformSettings, MediaSession, Pcm16K,
};

/// Samples per second of `Pcm16K`.
const RATE: f32 = 16_000.0;
/// The echo probe: a 1 kHz burst of this many frames, every `PROBE_PERIOD` frames.
const PROBE_FRAMES: u64 = 5;
const PROBE_PERIOD: u64 = 50;
const PROBE_HZ: f32 = 1_000.0;

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// How long both calls stay up.
    pub duration: Duration,
    /// Print a progress line every second.
    pub progress: bool,
    /// Emulator scenario (the built-in one by default).
    pub scenario: Scenario,
    /// Where to write what the bot heard, `echo.wav` and `meeting.wav` (16 kHz mono);
    /// nothing is written when `None`.
    pub record_dir: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(8),
            progress: true,
            scenario: Scenario::default(),
            record_dir: None,
        }
    }
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A part failed to start or a request failed.
    #[error("{step}: {message}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> DemoError {
    move |e| DemoError::Step {
        step,
        message: e.to_string(),
    }
}

/// One speaker as the meeting's unmixed streams carried them.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct UnmixedSeen {
    /// Their source id (the CSRC of their audio in the mix too).
    pub source_id: u32,
    /// The speaker stream they were last on.
    pub stream: u8,
    /// Frames with an entry of theirs.
    pub frames: u64,
    /// Of those, frames in which 440 Hz / 660 Hz stood out.
    pub tone_frames: (u64, u64),
}

/// What the demo measured.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    /// Echo call: loop delays of the probes, in ms.
    pub echo_delays_ms: Vec<f32>,
    /// Echo call: frames received / sent / concealed.
    pub echo_frames: (u64, u64, u64),
    /// Meeting: frames in which 440 Hz / 660 Hz stood out.
    pub meeting_tone_frames: (u64, u64),
    /// Meeting: frames received.
    pub meeting_frames: u64,
    /// Meeting: the CSRCs (participants' sourceIds) seen as active speakers.
    pub active_speakers: Vec<u32>,
    /// Meeting: dominant speaker changes seen.
    pub dominant_changes: Vec<Option<u32>>,
    /// Meeting: speaker streams the service offered (of the 4 asked for).
    pub unmixed_offered: Option<u8>,
    /// Meeting: each source id heard on an unmixed speaker stream, in the order first heard.
    pub unmixed: Vec<UnmixedSeen>,
    /// Call states each call went through.
    pub states: Vec<Vec<String>>,
    /// How each call ended (`code/subcode`).
    pub results: Vec<String>,
    /// The recordings written: what the bot heard on each call, and its seconds.
    pub recordings: Vec<(PathBuf, f64)>,
}

impl DemoReport {
    /// A delay percentile in ms (`q` in 0..=1).
    pub fn echo_delay_percentile(&self, q: f32) -> Option<f32> {
        let mut d = self.echo_delays_ms.clone();
        if d.is_empty() {
            return None;
        }
        d.sort_by(f32::total_cmp);
        Some(d[((d.len() - 1) as f32 * q).round() as usize])
    }
}

/// Relative power of `hz` in a frame, 0 for a frame quieter than 1e3.
fn tone_share(pcm: &[i16], hz: f32) -> f32 {
    crate::tone::tone_share(pcm, hz, 1e3)
}

fn probe_frame(index: u64) -> Pcm16K {
    let mut frame = Pcm16K::SILENCE;
    if index % PROBE_PERIOD < PROBE_FRAMES {
        for (i, s) in frame.samples.iter_mut().enumerate() {
            let t = (index * 320 + i as u64) as f32 / RATE;
            *s = ((2.0 * std::f32::consts::PI * PROBE_HZ * t).sin() * 8_000.0) as i16;
        }
    }
    frame
}

fn tone_frame(index: u64, hz: f32, amplitude: f32) -> Pcm16K {
    let mut frame = Pcm16K::SILENCE;
    for (i, s) in frame.samples.iter_mut().enumerate() {
        let t = (index * 320 + i as u64) as f32 / RATE;
        *s = ((2.0 * std::f32::consts::PI * hz * t).sin() * amplitude) as i16;
    }
    frame
}

/// Echo probe bookkeeping: sample positions of the probes sent, onsets detected.
#[derive(Default)]
struct EchoMeter {
    sent_frames: u64,
    received_samples: u64,
    /// Received-stream sample position when each probe left.
    pending: Option<u64>,
    delays_ms: Vec<f32>,
}

impl EchoMeter {
    /// One received frame: send the next probe frame back, detect the probe's return.
    fn on_frame(&mut self, pcm: &[i16; 320], session: &mut MediaSession) {
        if self.pending.is_some() && tone_share(pcm, PROBE_HZ) > 0.3 {
            // Sample-accurate onset: the first sample above a quarter of the probe's level.
            let onset = pcm
                .iter()
                .position(|s| s.unsigned_abs() > 2_000)
                .unwrap_or(0) as u64;
            if let Some(sent_at) = self.pending.take() {
                let delay = (self.received_samples + onset).saturating_sub(sent_at);
                self.delays_ms.push(delay as f32 / 16.0);
            }
        }
        self.received_samples += 320;
        let index = self.sent_frames;
        if session.audio_socket().send(probe_frame(index)).is_ok() {
            if index.is_multiple_of(PROBE_PERIOD) && session.audio_socket().is_active() {
                self.pending = Some(self.received_samples);
            }
            self.sent_frames += 1;
        }
    }
}

struct Running {
    call: signalling::Call,
    session: MediaSession,
    states: Vec<String>,
}

async fn drain_call_events(run: &mut Running) {
    while let Some(e) = run.call.try_next_event() {
        if let CallEvent::StateChanged { to, .. } = e {
            run.states.push(to.as_str().to_owned());
        }
    }
}

/// Runs the demo.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let say = |line: String| {
        if options.progress {
            println!("{line}");
        }
    };
    let emu = Emulator::start(EmulatorConfig {
        listen: "127.0.0.1:0".parse().map_err(step("listen address"))?,
        scenario: options.scenario.clone(),
    })
    .await
    .map_err(step("starting the emulator"))?;
    say(format!(
        "emulator      {}  (dashboard at {}/)",
        emu.graph_url(),
        emu.base_url()
    ));
    say(emu
        .describe()
        .lines()
        .filter(|l| !l.starts_with("Graph API") && !l.starts_with("Dashboard"))
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n"));
    let platform = MediaPlatform::start(MediaPlatformSettings::default())
        .await
        .map_err(step("starting the media platform"))?;
    say(format!("media engine  {}", platform.mp_uri()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(step("binding the webhook"))?;
    let notification_url = format!(
        "http://{}/callback",
        listener.local_addr().map_err(step("webhook address"))?
    );
    let mut settings = CommunicationsSettings::new(
        DEFAULT_APP_ID,
        DEFAULT_TENANT,
        Credentials::Secret(SecretString::new(DEFAULT_APP_SECRET)),
        notification_url.clone(),
    );
    settings.graph_url = emu.graph_url();
    settings.authority = emu.authority();
    settings.openid_configuration_url = emu.openid_configuration_url();
    let client =
        CommunicationsClient::new(settings).map_err(step("building the calling client"))?;
    let router = client.webhook_router();
    let webhook = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    say(format!("bot webhook   {notification_url}"));

    let scenario = emu.scenario().clone();
    let echo_user = scenario
        .users
        .iter()
        .find(|u| matches!(u.says, botmedia::emulator::scenario::Voice::Echo))
        .ok_or_else(|| DemoError::Step {
            step: "scenario",
            message: "no user who echoes".into(),
        })?
        .clone();
    let meeting = scenario
        .meetings
        .first()
        .ok_or_else(|| DemoError::Step {
            step: "scenario",
            message: "no meeting".into(),
        })?
        .clone();

    let mut runs = Vec::new();
    for request in [
        CallRequest::peer_to_peer(&echo_user.id, Some(&echo_user.display_name)),
        CallRequest::join_meeting(
            &meeting.thread_id,
            &meeting.message_id,
            &meeting.organizer,
            DEFAULT_TENANT,
        ),
    ] {
        // The meeting's session asks for the speakers apart too.
        let audio = if runs.is_empty() {
            AudioSocketSettings::default()
        } else {
            AudioSocketSettings::default().with_unmixed_meeting_audio(4)
        };
        let session = platform
            .create_session(audio, None)
            .map_err(step("creating a media session"))?;
        let call = client
            .calls()
            .create(&request.app_hosted(session.description()))
            .await
            .map_err(step("creating a call"))?;
        say(format!(
            "call          {} created (app-hosted, session {}); listen in at {}?call={}",
            call.id(),
            session.id(),
            emu.join_url(),
            call.id()
        ));
        runs.push(Running {
            call,
            session,
            states: Vec::new(),
        });
    }

    let mut recorders = match &options.record_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(step("creating the recording directory"))?;
            vec![
                Some(WavRecorder::create(&dir.join("echo.wav")).map_err(step("recording"))?),
                Some(WavRecorder::create(&dir.join("meeting.wav")).map_err(step("recording"))?),
            ]
        }
        None => vec![None, None],
    };
    let mut echo = EchoMeter::default();
    let mut report = DemoReport::default();
    let (mut tone440, mut tone660, mut meeting_frames, mut meeting_sent) = (0u64, 0u64, 0u64, 0u64);
    let start = Instant::now();
    let mut next_progress = Duration::from_secs(1);
    while start.elapsed() < options.duration {
        for run in runs.iter_mut() {
            drain_call_events(run).await;
        }
        // Echo call: answer every received frame with the probe stream.
        let echo_session = &mut runs[0].session;
        while let Some(frame) = echo_session.audio_socket().try_recv_frame() {
            record(&mut recorders[0], &frame.pcm);
            echo.on_frame(&frame.pcm.samples, echo_session);
        }
        // Meeting: listen to the mix, hum a 550 Hz tone back.
        let meeting_run = &mut runs[1];
        while let Some(item) = next_now(meeting_run.session.audio_socket()) {
            match item {
                AudioSocketItem::Frame(frame) => {
                    record(&mut recorders[1], &frame.pcm);
                    meeting_frames += 1;
                    tone440 += u64::from(tone_share(&frame.pcm.samples, 440.0) > 0.1);
                    tone660 += u64::from(tone_share(&frame.pcm.samples, 660.0) > 0.1);
                    for id in frame.active_speakers.ids() {
                        if !report.active_speakers.contains(id) {
                            report.active_speakers.push(*id);
                        }
                    }
                    for entry in frame.unmixed.iter() {
                        let seen = match report
                            .unmixed
                            .iter_mut()
                            .position(|u| u.source_id == entry.source_id)
                        {
                            Some(i) => &mut report.unmixed[i],
                            None => {
                                report.unmixed.push(UnmixedSeen {
                                    source_id: entry.source_id,
                                    ..UnmixedSeen::default()
                                });
                                let last = report.unmixed.len() - 1;
                                &mut report.unmixed[last]
                            }
                        };
                        seen.stream = entry.stream;
                        seen.frames += 1;
                        seen.tone_frames.0 +=
                            u64::from(tone_share(&entry.pcm.samples, 440.0) > 0.5);
                        seen.tone_frames.1 +=
                            u64::from(tone_share(&entry.pcm.samples, 660.0) > 0.5);
                    }
                    let _ = meeting_run.session.audio_socket().send(tone_frame(
                        meeting_sent,
                        550.0,
                        3_000.0,
                    ));
                    meeting_sent += 1;
                }
                AudioSocketItem::Event(AudioSocketEvent::DominantSpeakerChanged {
                    current,
                    ..
                }) => {
                    report.dominant_changes.push(current);
                }
                AudioSocketItem::Event(AudioSocketEvent::UnmixedAudio { offered, .. }) => {
                    report.unmixed_offered = Some(offered);
                }
                AudioSocketItem::Event(_) => {}
            }
        }
        if start.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            let q = runs[0].session.audio_socket().quality();
            say(format!(
                "t={:>2}s  echo: {} in / {} out, concealed {}, last loop {}  |  meeting: {} frames, 440 Hz in {}, 660 Hz in {}, speakers {:?}, dominant {:?}",
                start.elapsed().as_secs(),
                q.pipeline.frames_received,
                q.pipeline.frames_sent,
                q.pipeline.concealed,
                echo.delays_ms
                    .last()
                    .map_or("-".into(), |d| format!("{d:.0} ms")),
                meeting_frames,
                tone440,
                tone660,
                report.active_speakers,
                report.dominant_changes.last().copied().flatten(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let q = runs[0].session.audio_socket().quality();
    report.echo_frames = (
        q.pipeline.frames_received,
        q.pipeline.frames_sent,
        q.pipeline.concealed,
    );
    report.echo_delays_ms = echo.delays_ms;
    report.meeting_tone_frames = (tone440, tone660);
    report.meeting_frames = meeting_frames;

    for rec in recorders.into_iter().flatten() {
        let (path, seconds) = (rec.path().to_owned(), rec.duration_secs());
        rec.finish().map_err(step("finishing a recording"))?;
        report.recordings.push((path, seconds));
    }

    for run in runs.iter_mut() {
        run.call
            .handle()
            .hang_up()
            .await
            .map_err(step("hanging up"))?;
    }
    for mut run in runs {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut result = "no terminated notification".to_owned();
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), run.call.next_event()).await {
                Ok(Some(CallEvent::StateChanged { to, .. })) => {
                    run.states.push(to.as_str().to_owned())
                }
                Ok(Some(CallEvent::Terminated { result: r })) => {
                    if run.states.last().map(String::as_str) != Some(CallState::Terminated.as_str())
                    {
                        run.states.push(CallState::Terminated.as_str().to_owned());
                    }
                    result = r.map_or("terminated".into(), |r| {
                        format!("{}/{}", code_text(&r.code), code_text(&r.subcode))
                    });
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {}
            }
        }
        report.states.push(run.states);
        report.results.push(result);
    }
    webhook.abort();
    emu.shutdown().await;
    platform.shutdown().await;
    Ok(report)
}

fn code_text(f: &signalling::model::Field<signalling::model::ResultCode>) -> String {
    f.get()
        .and_then(|c| c.as_i64())
        .map_or("-".into(), |c| c.to_string())
}

/// Appends a frame to a recording; a recording that fails stops (the demo goes on).
fn record(recorder: &mut Option<WavRecorder>, pcm: &Pcm16K) {
    if let Some(rec) = recorder
        && let Err(e) = rec.write_frame(pcm)
    {
        tracing::warn!(path = %rec.path().display(), error = %e, "the recording stopped");
        *recorder = None;
    }
}

/// The next frame or event if one is ready now.
fn next_now(socket: &mut botmedia::AudioSocket) -> Option<AudioSocketItem> {
    socket.poll_item()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_its_tone() {
        let f = tone_frame(3, 440.0, 8_000.0);
        assert!(tone_share(&f.samples, 440.0) > 0.9);
        assert!(tone_share(&f.samples, 660.0) < 0.05);
        assert_eq!(tone_share(&Pcm16K::SILENCE.samples, 440.0), 0.0);
        assert!(tone_share(&probe_frame(0).samples, PROBE_HZ) > 0.9);
        assert_eq!(probe_frame(PROBE_FRAMES).samples, Pcm16K::SILENCE.samples);
    }
}
