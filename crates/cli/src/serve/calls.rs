//! The calls `botmedia serve` runs: one task per call playing its behaviour, and the
//! registry the API and the drain read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use botmedia::graph::CallHandle;
use botmedia::recording::SpeakerRecorder;
use botmedia::session::AudioSocketSettings;
use botmedia::wav::WavRecorder;
use botmedia::{AudioSocketEvent, Bot, BotCall, CallEvent, CallId, CallItem, Pcm16K};
use tokio::sync::watch;

use super::config::{Behaviour, Repeat, ServeConfig};

/// Who started a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// It rang the bot.
    Incoming,
    /// The bot placed it (`POST /calls`).
    Outgoing,
}

impl Direction {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "incoming",
            Direction::Outgoing => "outgoing",
        }
    }
}

/// One running call as the registry holds it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Hangs the call up, reads its state.
    pub handle: CallHandle,
    /// Who started it.
    pub direction: Direction,
    /// What the bot does in it.
    pub behaviour: Behaviour,
    /// When the bot took it on.
    pub started: Instant,
    /// The WAV file it records to, for `record`.
    pub recording: Option<PathBuf>,
    /// Whether it records each speaker beside the mix (a recorded meeting that asked for
    /// unmixed audio): `STEM.NAME.wav` files and `STEM.timeline.json`.
    pub speakers: bool,
    /// Its media pipeline's counters, while it has media.
    pub media: Option<botmedia::CallObserver>,
}

impl Entry {
    /// Frames received so far: rises every 20 ms while media flows.
    pub fn frames(&self) -> u64 {
        self.media.as_ref().map_or(0, |m| m.stats().frames_received)
    }
}

/// The running calls. A `watch` so the drain can wait for it to empty without polling.
#[derive(Clone, Debug)]
pub struct Registry {
    calls: Arc<watch::Sender<BTreeMap<CallId, Entry>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            calls: Arc::new(watch::Sender::new(BTreeMap::new())),
        }
    }
}

impl Registry {
    /// The running calls, by id.
    pub fn snapshot(&self) -> Vec<(CallId, Entry)> {
        self.calls
            .borrow()
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect()
    }

    /// One call.
    pub fn get(&self, id: &CallId) -> Option<Entry> {
        self.calls.borrow().get(id).cloned()
    }

    /// How many calls run.
    pub fn len(&self) -> usize {
        self.calls.borrow().len()
    }

    /// Whether no call runs.
    pub fn is_empty(&self) -> bool {
        self.calls.borrow().is_empty()
    }

    /// Waits until no call runs, or `timeout` passed; true when none runs.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let mut rx = self.calls.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(BTreeMap::is_empty))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn insert(&self, id: CallId, entry: Entry) {
        self.calls.send_modify(|m| {
            m.insert(id, entry);
        });
    }

    fn remove(&self, id: &CallId) {
        self.calls.send_if_modified(|m| m.remove(id).is_some());
    }
}

/// What every call's task reads of the configuration.
#[derive(Debug)]
pub struct CallContext {
    /// The running calls.
    pub registry: Registry,
    record_dir: PathBuf,
    record_greeting: bool,
    record_unmixed: u8,
    prompt: Option<Arc<[Pcm16K]>>,
    repeat: Repeat,
    max_call: Option<Duration>,
}

impl CallContext {
    /// The context of `config`'s calls.
    pub fn new(config: &ServeConfig) -> Self {
        Self {
            registry: Registry::default(),
            record_dir: config.record_dir.clone(),
            record_greeting: config.record_greeting,
            record_unmixed: config.record_unmixed,
            prompt: config.prompt.as_ref().map(|p| p.frames.clone()),
            repeat: config.play_repeat,
            max_call: config.max_call,
        }
    }

    /// Whether `behaviour` can run here (`play` needs a prompt).
    pub fn can_run(&self, behaviour: Behaviour) -> bool {
        match behaviour {
            Behaviour::Play => self.prompt.is_some(),
            Behaviour::Reject => false,
            Behaviour::Echo | Behaviour::Record => true,
        }
    }

    /// The audio settings of a call with `behaviour`, when it needs its own: a recorded
    /// meeting asks for `record.unmixed` speaker streams. `None`: the bot's. A call that is
    /// no meeting has nobody to unmix.
    pub fn audio(
        &self,
        bot: &Bot,
        behaviour: Behaviour,
        meeting: bool,
    ) -> Option<AudioSocketSettings> {
        (behaviour == Behaviour::Record && meeting && self.record_unmixed > 0).then(|| {
            bot.audio_settings()
                .with_unmixed_meeting_audio(self.record_unmixed)
        })
    }

    /// Registers `call` and starts its task; returns its id. `speakers`: the call asked for
    /// unmixed audio to record each speaker ([`Self::audio`] gave it settings).
    pub fn start(
        self: &Arc<Self>,
        mut call: BotCall,
        direction: Direction,
        behaviour: Behaviour,
        speakers: bool,
    ) -> CallId {
        let id = call.id().clone();
        let recording =
            (behaviour == Behaviour::Record).then(|| recording_path(&self.record_dir, &id));
        let speakers = speakers && recording.is_some();
        let media = call.media_session().map(|s| s.observer());
        self.registry.insert(
            id.clone(),
            Entry {
                handle: call.graph().clone(),
                direction,
                behaviour,
                started: Instant::now(),
                recording: recording.clone(),
                speakers,
                media,
            },
        );
        tracing::info!(call = %id, direction = direction.as_str(), behaviour = behaviour.as_str(), "call started");
        let ctx = self.clone();
        tokio::spawn(async move {
            let _unregister = Unregister {
                registry: ctx.registry.clone(),
                id: call.id().clone(),
            };
            run(call, behaviour, recording, speakers, &ctx).await;
        });
        id
    }
}

/// Takes the call out of the registry when its task ends, however it ends.
struct Unregister {
    registry: Registry,
    id: CallId,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        self.registry.remove(&self.id);
    }
}

/// `{dir}/{call id}.wav`, the id kept to characters safe in a file name.
fn recording_path(dir: &Path, id: &CallId) -> PathBuf {
    let name: String = id
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.wav"))
}

/// Frames still sent after a `play once` prompt's last one before hanging up, so what was
/// queued leaves (20 ms each).
const TAIL_FRAMES: u32 = 15;

/// Plays `behaviour` until the call terminates; with `speakers`, records each speaker
/// beside `recording` once the service's unmixed audio starts.
async fn run(
    mut call: BotCall,
    behaviour: Behaviour,
    recording: Option<PathBuf>,
    speakers: bool,
    ctx: &CallContext,
) {
    let id = call.id().clone();
    let mut recorder = recording.and_then(|path| {
        let made = std::fs::create_dir_all(&ctx.record_dir).and_then(|()| WavRecorder::create(&path));
        match made {
            Ok(r) => {
                tracing::info!(call = %id, path = %path.display(), "recording");
                Some(r)
            }
            Err(e) => {
                tracing::error!(call = %id, path = %path.display(), error = %e, "cannot record; hanging up");
                hang_up(&call, "the recording cannot be written");
                None
            }
        }
    });
    // Play from the prompt: `play`, or a recording's greeting (once, without hanging up).
    let (prompt, repeat) = match behaviour {
        Behaviour::Play => (ctx.prompt.clone(), Some(ctx.repeat)),
        Behaviour::Record if ctx.record_greeting => (ctx.prompt.clone(), None),
        _ => (None, None),
    };
    let mut speaker_recorder: Option<SpeakerRecorder> = None;
    let mut position = 0usize;
    let mut tail: Option<u32> = None;
    let deadline = ctx.max_call.map(|d| tokio::time::Instant::now() + d);
    let mut hung_up = false;
    loop {
        let item = tokio::select! {
            item = call.next() => item,
            () = sleep_until(deadline), if !hung_up => {
                tracing::info!(call = %id, "the call reached max_call_seconds");
                hang_up(&call, "max_call_seconds");
                hung_up = true;
                continue;
            }
        };
        let Some(item) = item else { break };
        match item {
            CallItem::Frame(frame) => {
                if let Some(r) = recorder.as_mut()
                    && let Err(e) = r.write_frame(&frame.pcm)
                {
                    tracing::error!(call = %id, error = %e, "recording stopped");
                    recorder = None;
                    speaker_recorder = None;
                }
                if let Some(s) = speaker_recorder.as_mut()
                    && let Err(e) = s.write(&frame, call.speakers())
                {
                    // Its files stay `.part`: misaligned from here on.
                    tracing::error!(call = %id, error = %e, "recording the speakers stopped");
                    speaker_recorder = None;
                }
                if behaviour == Behaviour::Echo {
                    let _ = call.send(frame.pcm);
                    continue;
                }
                let Some(frames) = prompt.as_deref() else {
                    continue;
                };
                if let Some(left) = tail.as_mut() {
                    *left = left.saturating_sub(1);
                    if *left == 0 && !hung_up {
                        tracing::info!(call = %id, "prompt played; hanging up");
                        hang_up(&call, "prompt played");
                        hung_up = true;
                    }
                    continue;
                }
                if position < frames.len() {
                    // One frame out per frame in: the received stream paces the prompt.
                    let _ = call.send(frames[position]);
                    position += 1;
                }
                if position == frames.len() {
                    match repeat {
                        Some(Repeat::Loop) => position = 0,
                        Some(Repeat::Once) => tail = Some(TAIL_FRAMES),
                        None => {}
                    }
                }
            }
            CallItem::Media(AudioSocketEvent::UnmixedAudio { requested, offered }) => {
                tracing::info!(call = %id, requested, offered, "unmixed audio");
                if speakers
                    && offered > 0
                    && speaker_recorder.is_none()
                    && let Some(mix) = recorder.as_ref()
                {
                    speaker_recorder = Some(SpeakerRecorder::beside(mix, offered));
                }
            }
            CallItem::Call(CallEvent::StateChanged { to, .. }) => {
                tracing::info!(call = %id, state = %to, "call state");
            }
            CallItem::Call(CallEvent::Terminated { result }) => {
                tracing::info!(
                    call = %id,
                    code = ?result.as_ref().and_then(|r| r.code.get()).and_then(|c| c.as_i64()),
                    "call terminated"
                );
            }
            _ => {}
        }
    }
    if let Some(r) = recorder {
        let path = r.path().to_owned();
        match r.finish() {
            Ok(samples) => tracing::info!(
                call = %id,
                path = %path.display(),
                seconds = samples as f64 / 16_000.0,
                "recording finished"
            ),
            Err(e) => {
                tracing::error!(call = %id, path = %path.display(), error = %e, "recording not finished")
            }
        }
    }
    if let Some(s) = speaker_recorder {
        // Counts only: the participants' names are personal data.
        match s.finish().and_then(|r| Ok((r.write_timeline()?, r))) {
            Ok((timeline, r)) => tracing::info!(
                call = %id,
                timeline = %timeline.display(),
                speakers = r.tracks.len(),
                segments = r.segments.len(),
                "speakers recorded"
            ),
            Err(e) => tracing::error!(call = %id, error = %e, "speakers' recording not finished"),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Hangs up without stalling the call's loop: its `terminated` arrives through the stream.
pub fn hang_up(handle: &CallHandle, why: &'static str) {
    let handle = handle.clone();
    tokio::spawn(async move {
        if let Err(e) = handle.hang_up().await {
            tracing::warn!(call = %handle.id(), why, error = %e, "hanging up failed");
        }
    });
}
