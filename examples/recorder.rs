//! A recorder: places a call (to a user, or into a meeting) or answers the next incoming
//! call, and writes what the call hears to a WAV file (16 kHz mono) until the call ends,
//! `--seconds` pass or Ctrl-C.
//!
//! In a meeting it also asks for unmixed audio (the dominant speakers apart, beside the
//! mix) and writes, next to the mix's file `STEM.wav`:
//!
//! - `STEM.NAME.wav` for each participant heard on a speaker stream, `NAME` their display
//!   name (or participant id) with anything but letters, digits, `-` and `_` made `_`.
//!   Every file starts and ends with the mix's: where the participant was not on a speaker
//!   stream it holds silence, so the files can be laid over each other and over the mix.
//! - `STEM.timeline.json`, who spoke when: `segments` of `{participant, name, source_id,
//!   start_ms, end_ms}` in milliseconds from the recording's start, sorted by start. A
//!   segment starts with the first frame a speaker is on a stream with speech (a level
//!   above -60 dBov and audio above -55 dBFS) and ends with the last such frame once they
//!   have been off every stream or silent for [`HANGOVER_MS`] (500 ms: longer than the
//!   pauses between words, shorter than a turn). `participant` is the roster's
//!   participant id (`null` when the roster never listed the source id); `participants`
//!   lists each file with its source id.
//!
//! A service without unmixed audio (or a call that is no meeting) is said so, and the mix
//! alone is recorded.
//!
//! Start a local calling service (`botmedia emulator`, on http://127.0.0.1:8440), then:
//!
//! ```text
//! # John, who says a 440 Hz tone:
//! cargo run --example recorder -- --user 112f7296-5fa4-42ca-bae8-6a692b15d4b8 --seconds 5
//! # the emulator's demo meeting (John and Ada, 440 and 660 Hz): meeting.wav, meeting.John.wav,
//! # meeting.Ada.wav and meeting.timeline.json
//! cargo run --example recorder -- --meeting 19:meeting_Y2FsbGluZy1ib3QtZGVtbw@thread.v2 \
//!     --organizer 112f7296-5fa4-42ca-bae8-6a692b15d4b8 --seconds 5 --out meeting.wav
//! # the next call to the bot: it prints the callback URL to ring (see examples/ivr.rs):
//! cargo run --example recorder -- --answer
//! ```
//!
//! Other flags: `--out FILE` (default `call.wav`), `--unmixed N` (speaker streams to ask
//! for, 1 to 4, default 4; 0 records the mix only), `--message ID` (a meeting's message id,
//! default `0`), `--tenant ID` (the organizer's tenant, default the bot's), `--emulator URL`.
//! Without `--emulator`, `BOTMEDIA_*` variables are read when `BOTMEDIA_EMULATOR` or
//! `BOTMEDIA_APP_ID` is set.

use std::collections::HashMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use botmedia::wav::WavRecorder;
use botmedia::{
    AudioSocketEvent, Bot, BotCall, BotSettings, CallEvent, CallItem, CallRequest, Pcm16K,
    ReceivedFrame, Speakers, UnmixedFrame,
};

type BoxError = Box<dyn Error + Send + Sync>;

/// What to record.
#[derive(Clone, Debug)]
pub enum Source {
    /// Call this user.
    User(String),
    /// Join this meeting.
    Meeting {
        /// Its chat thread (`19:meeting_...@thread.v2`).
        thread: String,
        /// Its message id (`0` for a scheduled meeting).
        message: String,
        /// The organizer's user id.
        organizer: String,
        /// The organizer's tenant.
        tenant: String,
    },
    /// Answer the next call that rings the bot.
    Answer,
}

/// What `--help` prints.
const USAGE: &str = "recorder (--user ID | --meeting THREAD_ID --organizer ID [--message ID] [--tenant ID] | --answer)
         [--out FILE] [--unmixed N] [--seconds N] [--emulator URL]
Records what a call hears to a WAV file (default call.wav); in a meeting also one WAV per
participant (FILE's stem + .NAME.wav) and who spoke when (stem + .timeline.json), from up
to N unmixed speaker streams (default 4; 0: the mix only).";

/// Speaker streams asked for by default: all the anchor platform sends.
pub const DEFAULT_UNMIXED: u8 = 4;
/// How long a speaker must be off the streams or silent for their segment to end.
pub const HANGOVER_MS: u64 = 500;
/// A 20 ms frame in milliseconds.
const FRAME_MS: u64 = 20;
/// An entry whose level (-dBov) is above this is silence.
const SPEECH_LEVEL: u8 = 60;
/// An entry whose audio is below this (dBFS, RMS) is silence.
const SPEECH_DBFS: f64 = -55.0;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let settings = BotSettings::emulator_or_env(arg(&args, "--emulator"))?;
    let source = match (arg(&args, "--user"), arg(&args, "--meeting")) {
        _ if args.iter().any(|a| a == "--answer") => Source::Answer,
        (Some(user), None) => Source::User(user.into()),
        (None, Some(thread)) => Source::Meeting {
            thread: thread.into(),
            message: arg(&args, "--message").unwrap_or("0").into(),
            organizer: arg(&args, "--organizer")
                .ok_or("--meeting needs --organizer")?
                .into(),
            tenant: arg(&args, "--tenant").unwrap_or(&settings.tenant).into(),
        },
        _ => return Err("give --user ID, --meeting THREAD_ID --organizer ID, or --answer".into()),
    };
    let out = PathBuf::from(arg(&args, "--out").unwrap_or("call.wav"));
    let seconds = arg(&args, "--seconds").map(str::parse).transpose();
    let seconds = seconds.map_err(|e| format!("--seconds: {e}"))?;
    let unmixed = match arg(&args, "--unmixed").map(str::parse::<u8>) {
        None => DEFAULT_UNMIXED,
        Some(Ok(n)) if n <= 4 => n,
        Some(_) => return Err("--unmixed: a number of speaker streams from 0 to 4".into()),
    };
    let bot = Bot::start(settings).await?;
    let recording = record(
        &bot,
        &source,
        &out,
        seconds.map(Duration::from_secs),
        unmixed,
    )
    .await?;
    println!("wrote {:.2} s to {}", recording.seconds, out.display());
    for track in &recording.tracks {
        println!(
            "  {} ({}): {}",
            track.label(),
            track.source_id,
            track.path.display()
        );
    }
    if let Some(timeline) = &recording.timeline {
        let n = recording.segments.len();
        println!("  {n} speech segments: {}", timeline.display());
    }
    bot.shutdown().await;
    Ok(())
}

/// What [`record`] wrote.
#[derive(Debug)]
pub struct Recording {
    /// Seconds of the mix written (every participant's file has as many).
    pub seconds: f64,
    /// Unmixed speaker streams the service offered; `None` when none were asked for or the
    /// media never came up.
    pub unmixed_offered: Option<u8>,
    /// One file per source id heard on a speaker stream, in the order first heard.
    pub tracks: Vec<Track>,
    /// The timeline, when the service sent unmixed audio.
    pub timeline: Option<PathBuf>,
    /// Who spoke when, as in the timeline.
    pub segments: Vec<Segment>,
}

/// One participant's file.
#[derive(Clone, Debug)]
pub struct Track {
    /// The media source id whose entries it holds.
    pub source_id: u32,
    /// Their participant id, when the roster listed the source id.
    pub participant: Option<String>,
    /// Their display name, when the roster has one.
    pub name: Option<String>,
    /// The WAV file.
    pub path: PathBuf,
}

impl Track {
    /// The display name, else the participant id, else `source-N`.
    pub fn label(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.participant.clone())
            .unwrap_or_else(|| format!("source-{}", self.source_id))
    }
}

/// A stretch of speech by one speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The speaker's media source id.
    pub source_id: u32,
    /// From the recording's start, the first speech frame's start.
    pub start_ms: u64,
    /// From the recording's start, the last speech frame's end.
    pub end_ms: u64,
}

/// Records one call from `source` into `out` (and, with `unmixed` speaker streams in a
/// meeting, one file per participant and a timeline beside it) until it ends or `limit`
/// passes (then hangs up).
pub async fn record(
    bot: &Bot,
    source: &Source,
    out: &Path,
    limit: Option<Duration>,
    unmixed: u8,
) -> Result<Recording, BoxError> {
    let mut wav = WavRecorder::create(out)?;
    let mut call = connect(bot, source, unmixed).await?;
    println!("recording call {} to {}", call.id(), out.display());
    let mut speakers = SpeakerTracks::new(out);
    let mut offered = None;
    let recording = async {
        while let Some(item) = call.next().await {
            match item {
                CallItem::Frame(frame) => {
                    wav.write_frame(&frame.pcm)?;
                    if offered.is_some_and(|n| n > 0) {
                        speakers.write(&frame, call.speakers())?;
                    }
                }
                CallItem::Media(AudioSocketEvent::UnmixedAudio {
                    requested,
                    offered: n,
                }) => {
                    offered = Some(n);
                    match n {
                        0 => println!(
                            "the service sends no unmixed audio (asked for {requested} streams): recording the mix only"
                        ),
                        n if n < requested => {
                            println!("unmixed audio: {n} speaker streams of {requested} asked for")
                        }
                        n => println!("unmixed audio: {n} speaker streams"),
                    }
                    // Participants' files start where the mix's does.
                    speakers.frames = wav.samples() / Pcm16K::SILENCE.samples.len() as u64;
                }
                CallItem::Call(CallEvent::StateChanged { to, .. }) => println!("call {to}"),
                _ => {} // the roster (BotCall keeps the speakers), other media events
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let ended = tokio::select! {
        r = recording => { r?; true }
        () = stop(limit) => false,
    };
    if !ended {
        call.end().await?; // hangs up, and waits until the service confirms
    }
    let samples = wav.finish()?;
    let (tracks, segments) = speakers.finish()?;
    let timeline = match offered {
        Some(n) if n > 0 => Some(write_timeline(out, offered, &tracks, &segments)?),
        _ => None,
    };
    Ok(Recording {
        seconds: samples as f64 / 16_000.0,
        unmixed_offered: offered,
        tracks,
        timeline,
        segments,
    })
}

async fn connect(bot: &Bot, source: &Source, unmixed: u8) -> Result<BotCall, BoxError> {
    let request = match source {
        Source::User(id) => CallRequest::peer_to_peer(id, None),
        Source::Meeting {
            thread,
            message,
            organizer,
            tenant,
        } => CallRequest::join_meeting(thread, message, organizer, tenant),
        Source::Answer => {
            println!("waiting for a call at {}", bot.callback_url());
            let incoming = bot.next_incoming().await.ok_or("the bot stopped")?;
            let audio = bot.audio_settings().with_unmixed_meeting_audio(unmixed);
            return Ok(incoming.answer_with(audio, None).await?);
        }
    };
    // Unmixed audio is a meeting's: a call to one person has nobody to unmix.
    let unmixed = if matches!(source, Source::Meeting { .. }) {
        unmixed
    } else {
        0
    };
    let audio = bot.audio_settings().with_unmixed_meeting_audio(unmixed);
    Ok(bot.call_with(request, audio, None).await?)
}

/// One file per source id heard on a speaker stream, kept as long as the mix's, and the
/// speech segments.
struct SpeakerTracks {
    /// The mix's file, beside which the participants' go.
    out: PathBuf,
    /// Frames written to every file so far (the mix's count once unmixed audio started).
    frames: u64,
    tracks: Vec<(Track, WavRecorder)>,
    /// Open segments by source id: (first speech frame, last speech frame).
    open: HashMap<u32, (u64, u64)>,
    segments: Vec<Segment>,
}

impl SpeakerTracks {
    fn new(out: &Path) -> SpeakerTracks {
        SpeakerTracks {
            out: out.to_owned(),
            frames: 0,
            tracks: Vec::new(),
            open: HashMap::new(),
            segments: Vec::new(),
        }
    }

    /// Writes frame `self.frames` to every participant's file (their entry, or silence)
    /// and moves the segments on.
    fn write(&mut self, frame: &ReceivedFrame, speakers: &Speakers) -> std::io::Result<()> {
        let now = self.frames;
        for entry in speakers.attribute(&frame.unmixed) {
            let id = entry.frame.source_id;
            match self.tracks.iter_mut().find(|(t, _)| t.source_id == id) {
                // The roster may name a source id after its audio came.
                Some((t, _)) if t.participant.is_none() => {
                    if let Some(s) = entry.speaker {
                        t.participant = Some(s.participant.to_string());
                        t.name = s.display_name.clone();
                    }
                }
                Some(_) => {}
                None => {
                    // Named after the participant at the end, when the roster has had its
                    // say; `.part` keeps the name apart from every final one.
                    let path = beside(&self.out, &format!("source-{id}.wav.part"));
                    let mut wav = WavRecorder::create(&path)?;
                    for _ in 0..now {
                        wav.write_frame(&Pcm16K::SILENCE)?;
                    }
                    let track = Track {
                        source_id: id,
                        participant: entry.speaker.map(|s| s.participant.to_string()),
                        name: entry.speaker.and_then(|s| s.display_name.clone()),
                        path,
                    };
                    self.tracks.push((track, wav));
                }
            }
            if speaking(entry.frame) {
                self.open
                    .entry(id)
                    .and_modify(|(_, last)| *last = now)
                    .or_insert((now, now));
            }
        }
        for (track, wav) in &mut self.tracks {
            match frame.unmixed.get(track.source_id) {
                Some(entry) => wav.write_frame(&entry.pcm)?,
                None => wav.write_frame(&Pcm16K::SILENCE)?,
            }
        }
        let hangover = HANGOVER_MS / FRAME_MS;
        let segments = &mut self.segments;
        self.open.retain(|&source_id, &mut (first, last)| {
            let over = now - last >= hangover;
            if over {
                segments.push(segment(source_id, first, last));
            }
            !over
        });
        self.frames += 1;
        Ok(())
    }

    /// Closes the files (renamed after their participants) and the open segments.
    fn finish(mut self) -> std::io::Result<(Vec<Track>, Vec<Segment>)> {
        for (source_id, (first, last)) in self.open.drain() {
            self.segments.push(segment(source_id, first, last));
        }
        self.segments.sort_by_key(|s| (s.start_ms, s.source_id));
        let mut tracks = Vec::with_capacity(self.tracks.len());
        let mut taken = Vec::new();
        for (mut track, wav) in self.tracks {
            wav.finish()?;
            let mut name = sanitize(&track.label());
            let mut n = 1;
            while taken.contains(&name) {
                n += 1;
                name = format!("{}-{n}", sanitize(&track.label()));
            }
            let path = beside(&self.out, &format!("{name}.wav"));
            std::fs::rename(&track.path, &path)?;
            track.path = path;
            taken.push(name);
            tracks.push(track);
        }
        Ok((tracks, self.segments))
    }
}

/// `DIR/STEM.tail` for `out` = `DIR/STEM.wav`.
fn beside(out: &Path, tail: &str) -> PathBuf {
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.{tail}"))
}

fn segment(source_id: u32, first: u64, last: u64) -> Segment {
    Segment {
        source_id,
        start_ms: first * FRAME_MS,
        end_ms: (last + 1) * FRAME_MS,
    }
}

/// Whether an entry carries speech: its level (when it has one) and its audio both above
/// the thresholds.
pub fn speaking(entry: &UnmixedFrame) -> bool {
    let loud = entry.level.is_none_or(|l| l <= SPEECH_LEVEL);
    let energy: f64 = entry
        .pcm
        .samples
        .iter()
        .map(|&s| f64::from(s) * f64::from(s))
        .sum();
    let rms = (energy / entry.pcm.samples.len() as f64).sqrt() / 32_768.0;
    loud && 20.0 * rms.max(1e-9).log10() > SPEECH_DBFS
}

/// A file-name part: letters, digits, `-` and `_`, others made `_`, at most 64.
pub fn sanitize(label: &str) -> String {
    let name: String = label
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() { "_".into() } else { name }
}

/// Writes `STEM.timeline.json` beside `out`; returns its path.
fn write_timeline(
    out: &Path,
    offered: Option<u8>,
    tracks: &[Track],
    segments: &[Segment],
) -> std::io::Result<PathBuf> {
    let track = |id: u32| tracks.iter().find(|t| t.source_id == id);
    let file_name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let json = serde_json::json!({
        "mix": file_name(out),
        "frame_ms": FRAME_MS,
        "hangover_ms": HANGOVER_MS,
        "unmixed_streams": offered,
        "participants": tracks.iter().map(|t| serde_json::json!({
            "participant": t.participant,
            "name": t.name,
            "source_id": t.source_id,
            "wav": file_name(&t.path),
        })).collect::<Vec<_>>(),
        "segments": segments.iter().map(|s| serde_json::json!({
            "participant": track(s.source_id).and_then(|t| t.participant.clone()),
            "name": track(s.source_id).and_then(|t| t.name.clone()),
            "source_id": s.source_id,
            "start_ms": s.start_ms,
            "end_ms": s.end_ms,
        })).collect::<Vec<_>>(),
    });
    let path = beside(out, "timeline.json");
    let text = serde_json::to_string_pretty(&json).map_err(std::io::Error::other)?;
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Waits `limit`, or for Ctrl-C when there is none.
async fn stop(limit: Option<Duration>) {
    match limit {
        Some(limit) => tokio::time::sleep(limit).await,
        None => drop(tokio::signal::ctrl_c().await),
    }
}

/// The value after `name` on the command line.
fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}
