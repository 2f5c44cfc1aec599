//! Real media for app-hosted calls: the emulator connects to the blob's `mpUri` as the
//! service side of the leg and behaves like a conference server towards the bot.
//!
//! One audio pipeline (one thread) and one conference thread per emulator, started with the
//! first app-hosted call. Each call gets a pipeline call whose network half is bridged to a
//! [`ServiceLeg`] and whose bot half the conference thread drives (see [`conference`]).
//!
//! This module knows nothing of calls or Graph: [`crate::calls`] builds the roster it mixes
//! ([`ParticipantSpec`]) and holds each call's [`MediaLink`]. The dependency runs one way,
//! calls to media.

mod conference;
mod faults;
mod load;
pub(crate) mod remote;
pub(crate) mod voice;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audio_pipeline::mix::{AudioLevel, MixError};
use audio_pipeline::{
    AdmissionError, CallConfig, CallHandle, Pipeline, PipelineConfig, Realtime, StartError,
};
use media_endpoint::service::{CloseError, ConnectError, ServiceLeg, ServiceLegConfig};
use media_endpoint::{EndpointEvent, Tone, ToneError};
use media_session::Blob;
use tokio::sync::mpsc;

use crate::scenario::Voice;
use crate::state::lock;
use conference::{Conference, ConferenceShared, ConferenceThread};
pub(crate) use voice::VoiceSource;

/// How long a DTMF key press from the dashboard lasts.
pub(crate) const TONE_DURATION: Duration = Duration::from_millis(160);
/// Frames the conference may queue ahead of the pipeline: bounds the added delay.
const SEND_QUEUE_FRAMES: usize = 4;
/// Levels quieter than this show as 0 on the dashboard.
const METER_FLOOR_DB: f32 = 60.0;
/// How far a meter falls per 20 ms frame: full scale to zero in one second.
const METER_FALL_PER_FRAME: f32 = 0.02;

/// A participant's current audio level for the dashboard, 0 to 1, written by the
/// conference thread.
#[derive(Clone, Debug, Default)]
pub(crate) struct Meter(Arc<AtomicU32>);

impl Meter {
    /// 0 to 1: -60 dBov and below is 0, full scale is 1.
    pub(crate) fn level(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Rises at once, falls by [`METER_FALL_PER_FRAME`]: the dashboard polls twice a
    /// second, and a meter showing only the last 20 ms would flicker with speech.
    fn set(&self, level: AudioLevel) {
        let v = ((METER_FLOOR_DB - f32::from(level.value())) / METER_FLOOR_DB).clamp(0.0, 1.0);
        // One writer (the conference thread): load and store need no compare-exchange.
        let shown = v.max(self.level() - METER_FALL_PER_FRAME);
        self.0.store(shown.max(0.0).to_bits(), Ordering::Relaxed);
    }

    /// Back to zero at once (the participant left).
    fn clear(&self) {
        self.0.store(0f32.to_bits(), Ordering::Relaxed);
    }
}

/// One roster entry as the conference sees it.
#[derive(Clone, Debug)]
pub(crate) struct ParticipantSpec {
    /// The participant id.
    pub key: String,
    /// `mediaStreams[0].sourceId`: the CSRC the bot sees when this participant speaks.
    pub source_id: u32,
    pub voice: VoiceSource,
    /// Hears the conference (not in the lobby).
    pub hears: bool,
    /// Is heard (not in the lobby, not muted).
    pub heard: bool,
    pub is_bot: bool,
    pub meter: Meter,
    /// Network faults on the way from this participant to the bot.
    pub faults: Option<crate::scenario::Faults>,
}

/// Why media could not be connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum MediaError {
    #[error("the emulator's audio pipeline could not start: {0}")]
    Pipeline(#[from] StartError),
    #[error("the conference thread could not start: {0}")]
    Thread(#[source] std::io::Error),
    #[error("the audio pipeline refused the call: {0}")]
    Admission(#[from] AdmissionError),
    #[error("the mixer could not be built: {0}")]
    Mixer(#[from] MixError),
    #[error("the bot's media endpoint could not be connected: {0}")]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Load(#[from] load::LoadError),
    #[error("the emulator has shut down")]
    ShutDown,
}

struct Engine {
    pipeline: Pipeline,
    conferences: ConferenceThread,
}

/// The emulator's media side, shared by every call.
pub(crate) struct MediaHub {
    engine: Mutex<Option<Engine>>,
    stopped: std::sync::atomic::AtomicBool,
    /// Whether this emulator sends unmixed speaker streams to bots that ask (a service
    /// without them offers the mix only).
    unmixed_audio: std::sync::atomic::AtomicBool,
    /// WAV voices at 16 kHz, read once per file.
    wavs: Mutex<HashMap<PathBuf, Arc<[i16]>>>,
    /// People and devices who joined over WebRTC (`/join`).
    pub(crate) remotes: remote::Remotes,
}

impl std::fmt::Debug for MediaHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaHub")
            .field("started", &lock(&self.engine).is_some())
            .finish_non_exhaustive()
    }
}

impl MediaHub {
    pub(crate) fn new() -> Self {
        Self {
            engine: Mutex::new(None),
            stopped: std::sync::atomic::AtomicBool::new(false),
            unmixed_audio: std::sync::atomic::AtomicBool::new(true),
            wavs: Mutex::new(HashMap::new()),
            remotes: remote::Remotes::default(),
        }
    }

    /// Plays a service with (the default) or without unmixed meeting audio, for the calls
    /// connected from now on.
    pub(crate) fn set_unmixed_audio(&self, supported: bool) {
        self.unmixed_audio.store(supported, Ordering::Release);
    }

    /// Prepares a voice for the conference; a WAV file is read and resampled once.
    pub(crate) fn prepare(&self, voice: &Voice) -> Result<VoiceSource, voice::VoiceError> {
        if let Voice::Wav(path) = voice.base() {
            if let Some(samples) = lock(&self.wavs).get(path) {
                return Ok(VoiceSource::Wav(Arc::clone(samples)));
            }
            let samples = voice::load_16k(path)?;
            lock(&self.wavs).insert(path.clone(), Arc::clone(&samples));
            return Ok(VoiceSource::Wav(samples));
        }
        VoiceSource::prepare(voice)
    }

    fn add_call(&self) -> Result<audio_pipeline::Call, MediaError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(MediaError::ShutDown);
        }
        let mut engine = lock(&self.engine);
        if engine.is_none() {
            let pipeline = Pipeline::start(PipelineConfig {
                threads: 1,
                realtime: Realtime::Off,
                // No admission by load: the emulator's capacity is the scenario's
                // `max_app_hosted_calls`. Most legs of a load run bypass the codec and
                // never measure a cost to project, and this thread runs at normal
                // priority, so on a busy test machine its ticks wake late: refusing calls
                // for that would fail the tests, not protect anyone's media.
                admit_by_load: false,
                // As many legs as `botmedia load` may ask for (2000), on the one thread.
                max_calls_per_thread: 2048,
                ..PipelineConfig::default()
            })?;
            let conferences = ConferenceThread::start().map_err(MediaError::Thread)?;
            *engine = Some(Engine {
                pipeline,
                conferences,
            });
        }
        let Some(e) = engine.as_ref() else {
            return Err(MediaError::ShutDown);
        };
        // The wire SSRC and payload type are the leg's: it renumbers what the pipeline
        // encodes into the negotiated stream.
        let config = CallConfig {
            send_active: false,
            send_queue_frames: SEND_QUEUE_FRAMES,
            ..CallConfig::default()
        };
        Ok(e.pipeline.add_call(config)?)
    }

    /// Opens the service side of the leg at the blob's `mpUri` and starts mixing for the
    /// bot with `roster`. `events` hears what the leg reports.
    pub(crate) async fn connect(
        &self,
        blob: &Blob,
        roster: Vec<ParticipantSpec>,
        events: mpsc::Sender<EndpointEvent>,
    ) -> Result<MediaLink, MediaError> {
        let url = format!(
            "{}/sessions/{}",
            blob.mp_uri.trim_end_matches('/'),
            blob.mp_media_session_id.expose()
        );
        let call = self.add_call()?;
        // The blob's render contexts after the mix's are the bot's unmixed speaker streams;
        // an emulator playing a service without unmixed audio offers the mix only.
        let speaker_contexts: Vec<_> = if self.unmixed_audio.load(Ordering::Acquire) {
            blob.audio_render_contexts
                .iter()
                .skip(1)
                .take(audio_pipeline::MAX_UNMIXED_STREAMS)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let mut speaker_calls = Vec::with_capacity(speaker_contexts.len());
        for _ in &speaker_contexts {
            speaker_calls.push(self.add_call()?);
        }
        let (speaker_nets, speaker_bots, speaker_handles) = speaker_calls.into_iter().fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |(mut nets, mut bots, mut handles), c| {
                nets.push(c.network);
                bots.push(c.bot);
                handles.push(c.handle);
                (nets, bots, handles)
            },
        );
        let (port, route, path) = load::RoutedPort::new(call.network, speaker_nets);
        let load = route.follow(&roster);
        let config = ServiceLegConfig::default().with_speaker_streams(speaker_contexts);
        let leg = ServiceLeg::connect_over(&url, config, port, path, events).await?;
        if load {
            // A load participant alone with the bot: no conference, no codec here.
            return Ok(MediaLink {
                leg,
                conference: None,
                call: Mutex::new(None),
                speaker_calls: Mutex::new(Vec::new()),
                route,
            });
        }
        let conference = Conference::new(call.bot, speaker_bots, roster)?;
        let shared = conference.shared();
        match lock(&self.engine).as_ref() {
            Some(e) => e.conferences.add(conference),
            None => return Err(MediaError::ShutDown),
        }
        Ok(MediaLink {
            leg,
            conference: Some(shared),
            call: Mutex::new(Some(call.handle)),
            speaker_calls: Mutex::new(speaker_handles),
            route,
        })
    }

    /// Stops the conference thread and the pipeline; later connections are refused.
    pub(crate) fn shutdown(&self) {
        self.stopped.store(true, Ordering::Release);
        self.remotes.shutdown();
        let engine = lock(&self.engine).take();
        if let Some(e) = engine {
            drop(e.conferences);
            e.pipeline.shutdown();
        }
    }
}

impl Drop for MediaHub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// One call's media: the leg to the bot, its conference, its pipeline call. Dropping it
/// ends all three (the endpoint is not told; [`MediaLink::close`] tells it).
pub(crate) struct MediaLink {
    leg: ServiceLeg,
    /// None for a load participant (no conference, no pipeline call).
    conference: Option<Arc<ConferenceShared>>,
    call: Mutex<Option<CallHandle>>,
    /// The pipeline calls encoding the bot's unmixed speaker streams, stream 1 first.
    speaker_calls: Mutex<Vec<CallHandle>>,
    /// Where the leg's audio comes from and the faults on its way, per the roster.
    route: Arc<load::RouteControl>,
}

impl std::fmt::Debug for MediaLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaLink")
            .field("leg", &self.leg)
            .finish_non_exhaustive()
    }
}

impl MediaLink {
    /// The conference follows this roster from its next tick.
    pub(crate) fn set_roster(&self, roster: Vec<ParticipantSpec>) {
        if self.route.follow(&roster) {
            // The leg now plays the load loop: the conference and its codec can go.
            if let Some(c) = &self.conference {
                c.close();
            }
            drop(lock(&self.call).take());
            lock(&self.speaker_calls).clear();
        } else if let Some(c) = &self.conference {
            c.set_roster(roster);
        }
    }

    /// A participant presses a key: RFC 4733 towards the bot.
    pub(crate) fn send_tone(&self, tone: Tone) -> Result<(), ToneError> {
        self.leg.send_tone(tone, TONE_DURATION)
    }

    /// The pipeline call's counters (jitter buffer, concealment, frames both ways).
    pub(crate) fn stats(&self) -> audio_pipeline::CallStats {
        lock(&self.call)
            .as_ref()
            .map(CallHandle::stats)
            .unwrap_or_default()
    }

    /// The source id on each unmixed speaker stream the bot gets (stream 1 first; `None`:
    /// nobody on it now). Empty when the bot takes the mix only.
    pub(crate) fn speaker_streams(&self) -> Vec<Option<u32>> {
        let streams = lock(&self.speaker_calls).len();
        match &self.conference {
            Some(c) if streams > 0 => c.speaker_streams(streams),
            _ => Vec::new(),
        }
    }

    /// Ends the leg (with a `DELETE` at the endpoint) and the conference.
    pub(crate) async fn close(self) -> Result<(), CloseError> {
        if let Some(c) = &self.conference {
            c.close();
        }
        self.leg.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_rises_at_once_and_falls_slowly() {
        let m = Meter::default();
        m.set(AudioLevel::new(12).expect("level"));
        assert!((m.level() - 0.8).abs() < 1e-6);
        m.set(AudioLevel::SILENCE);
        assert!((m.level() - 0.78).abs() < 1e-6, "{}", m.level());
        for _ in 0..60 {
            m.set(AudioLevel::SILENCE);
        }
        assert_eq!(m.level(), 0.0);
        m.set(AudioLevel::new(30).expect("level"));
        assert!((m.level() - 0.5).abs() < 1e-6);
        m.clear();
        assert_eq!(m.level(), 0.0);
    }
}
