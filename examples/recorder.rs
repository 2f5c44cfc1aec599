//! A recorder: places a call (to a user, or into a meeting) or answers the next incoming
//! call, and writes what the call hears to a WAV file (16 kHz mono) until the call ends,
//! `--seconds` pass or Ctrl-C.
//!
//! In a meeting it also asks for unmixed audio (the dominant speakers apart, beside the
//! mix) and writes, with [`botmedia::recording::SpeakerRecorder`], next to the mix's file
//! `STEM.wav`: `STEM.NAME.wav` for each participant heard on a speaker stream (as long as
//! the mix, silent where they were not on a stream) and `STEM.timeline.json`, who spoke
//! when (see [`botmedia::recording`] for the files and what counts as speech).
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

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use botmedia::recording::{Segment, Track};
use botmedia::recording::{SpeakerRecorder, SpeakerRecording};
use botmedia::wav::WavRecorder;
use botmedia::{AudioSocketEvent, Bot, BotCall, BotSettings, CallEvent, CallItem, CallRequest};

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
    let mut speakers: Option<SpeakerRecorder> = None;
    let mut offered = None;
    let recording = async {
        while let Some(item) = call.next().await {
            match item {
                CallItem::Frame(frame) => {
                    wav.write_frame(&frame.pcm)?;
                    if let Some(s) = speakers.as_mut() {
                        s.write(&frame, call.speakers())?;
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
                    if n > 0 && speakers.is_none() {
                        // Participants' files start where the mix's does.
                        speakers = Some(SpeakerRecorder::beside(&wav, n));
                    }
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
    let speakers = speakers.map(SpeakerRecorder::finish).transpose()?;
    let timeline = speakers.as_ref().map(SpeakerRecording::write_timeline);
    let (tracks, segments) = speakers.map_or_else(Default::default, |s| (s.tracks, s.segments));
    Ok(Recording {
        seconds: samples as f64 / 16_000.0,
        unmixed_offered: offered,
        tracks,
        timeline: timeline.transpose()?,
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
