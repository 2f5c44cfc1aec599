//! A recorder: places a call (to a user, or into a meeting) or answers the next incoming
//! call, and writes what the call hears to a WAV file (16 kHz mono) until the call ends,
//! `--seconds` pass or Ctrl-C.
//!
//! Start a local calling service (`botmedia emulator`, on http://127.0.0.1:8440), then:
//!
//! ```text
//! # John, who says a 440 Hz tone:
//! cargo run --example recorder -- --user 112f7296-5fa4-42ca-bae8-6a692b15d4b8 --seconds 5
//! # the emulator's demo meeting (John and Ada, 440 and 660 Hz):
//! cargo run --example recorder -- --meeting 19:meeting_Y2FsbGluZy1ib3QtZGVtbw@thread.v2 \
//!     --organizer 112f7296-5fa4-42ca-bae8-6a692b15d4b8 --seconds 5 --out meeting.wav
//! # the next call to the bot: it prints the callback URL to ring (see examples/ivr.rs):
//! cargo run --example recorder -- --answer
//! ```
//!
//! Other flags: `--out FILE` (default `call.wav`), `--message ID` (a meeting's message id,
//! default `0`), `--tenant ID` (the organizer's tenant, default the bot's), `--emulator URL`.
//! Without `--emulator`, `BOTMEDIA_*` variables are read when `BOTMEDIA_EMULATOR` or
//! `BOTMEDIA_APP_ID` is set.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use botmedia::wav::WavRecorder;
use botmedia::{Bot, BotCall, BotSettings, CallEvent, CallItem, CallRequest};

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
         [--out FILE] [--seconds N] [--emulator URL]
Records what a call hears to a WAV file (default call.wav).";

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
    let bot = Bot::start(settings).await?;
    let written = record(&bot, &source, &out, seconds.map(Duration::from_secs)).await?;
    println!("wrote {written:.2} s to {}", out.display());
    bot.shutdown().await;
    Ok(())
}

/// Records one call from `source` into `out` until it ends or `limit` passes (then hangs
/// up). Returns the seconds written.
pub async fn record(
    bot: &Bot,
    source: &Source,
    out: &Path,
    limit: Option<Duration>,
) -> Result<f64, BoxError> {
    let mut wav = WavRecorder::create(out)?;
    let mut call = connect(bot, source).await?;
    println!("recording call {} to {}", call.id(), out.display());
    let recording = async {
        while let Some(item) = call.next().await {
            match item {
                CallItem::Frame(frame) => wav.write_frame(&frame.pcm)?,
                CallItem::Call(CallEvent::StateChanged { to, .. }) => println!("call {to}"),
                _ => {} // the roster, media events
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
    Ok(samples as f64 / 16_000.0)
}

async fn connect(bot: &Bot, source: &Source) -> Result<BotCall, BoxError> {
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
            return Ok(incoming.answer().await?);
        }
    };
    Ok(bot.call(request).await?)
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
