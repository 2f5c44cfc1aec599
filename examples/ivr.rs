//! An IVR: answers every call, plays a prompt, then waits for a key. "1" transfers the call
//! to a colleague, "2" or silence until `--timeout` hangs up.
//!
//! Start a local calling service (`botmedia emulator`, on http://127.0.0.1:8440), run
//!
//! ```text
//! cargo run --example ivr -- [--prompt FILE.wav] [--transfer-to USER_ID] [--timeout SECONDS]
//! ```
//!
//! and ring it as John (440 Hz) with the callback URL it prints:
//!
//! ```text
//! curl -X POST http://127.0.0.1:8440/emulator/incoming -H 'content-type: application/json' \
//!     -d '{"from": "112f7296-5fa4-42ca-bae8-6a692b15d4b8", "callbackUri": "CALLBACK_URL"}'
//! ```
//!
//! Press keys with the dashboard's "send DTMF" (http://127.0.0.1:8440/), or
//! `POST /emulator/calls/{id}/tone {"tone": "1"}`.
//!
//! The prompt is any WAV file (a beep when there is none); the bot sends it itself, one frame
//! per frame it receives (app-hosted media has no `playPrompt`). Keys come in the media as
//! RFC 4733 events; a service that reports them through Graph instead (after
//! `subscribeToTone`) is heard too. `--transfer-to` defaults to Ada, a user of the emulator's
//! scenario; `--timeout` to 10 s after the answer. `--emulator URL` and the `BOTMEDIA_*`
//! variables work as in the echo bot.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use botmedia::graph::calls::invite_user;
use botmedia::{
    AudioSocketEvent, Bot, BotSettings, CallEvent, CallItem, IncomingBotCall, Pcm16K, Tone,
};
use tokio::time::Instant;

type BoxError = Box<dyn Error + Send + Sync>;

/// Ada, a user of the emulator's scenario.
pub const COLLEAGUE: &str = "98da8a1a-1b87-452c-a713-65d3f10b5555";

/// What the IVR does with each call.
#[derive(Debug)]
pub struct Ivr {
    /// The prompt's 20 ms frames.
    pub prompt: Vec<Pcm16K>,
    /// Who "1" transfers to (a user id).
    pub transfer_to: String,
    /// How long after the answer a key may come.
    pub timeout: Duration,
}

/// What `--help` prints.
const USAGE: &str =
    "ivr [--prompt FILE.wav] [--transfer-to USER_ID] [--timeout SECONDS] [--emulator URL]
Answers calls, plays the prompt; key 1 transfers, key 2 or the timeout hangs up.";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let ivr = Ivr {
        prompt: match arg(&args, "--prompt") {
            Some(file) => botmedia::wav::Wav::read_frames(Path::new(file))?,
            None => beep(),
        },
        transfer_to: arg(&args, "--transfer-to").unwrap_or(COLLEAGUE).into(),
        timeout: match arg(&args, "--timeout").unwrap_or("10").parse() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(e) => return Err(format!("--timeout: {e}").into()),
        },
    };
    let bot = Bot::start(BotSettings::emulator_or_env(arg(&args, "--emulator"))?).await?;
    println!("answering calls at {}", bot.callback_url());
    tokio::select! {
        () = serve(&bot, Arc::new(ivr)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    bot.shutdown().await;
    Ok(())
}

/// Answers the bot's calls until it stops, each in a task of its own (aborted when this
/// future is dropped).
pub async fn serve(bot: &Bot, ivr: Arc<Ivr>) {
    let mut calls = tokio::task::JoinSet::new();
    while let Some(incoming) = bot.next_incoming().await {
        let ivr = ivr.clone();
        calls.spawn(async move {
            if let Err(e) = handle(incoming, &ivr).await {
                println!("call failed: {e}");
            }
        });
        while calls.try_join_next().is_some() {} // reap the finished ones
    }
}

async fn handle(incoming: IncomingBotCall, ivr: &Ivr) -> Result<(), BoxError> {
    let mut call = incoming.answer().await?;
    let id = call.id().clone();
    println!("{id}: answered, playing the prompt");
    let mut prompt = ivr.prompt.iter();
    let deadline = Instant::now() + ivr.timeout;
    let key = loop {
        let Ok(item) = tokio::time::timeout_at(deadline, call.next()).await else {
            break None;
        };
        let tone = match item {
            // Received frames come every 20 ms: they pace the prompt.
            Some(CallItem::Frame(_)) => {
                if let Some(frame) = prompt.next() {
                    let _ = call.send(*frame);
                }
                continue;
            }
            Some(CallItem::Media(AudioSocketEvent::ToneReceived(tone))) => tone,
            Some(CallItem::Call(CallEvent::Tone(info))) => {
                match info.tone.get().and_then(|t| graph_key(t.as_str())) {
                    Some(tone) => tone,
                    None => continue,
                }
            }
            Some(CallItem::Call(CallEvent::Terminated { .. })) | None => {
                println!("{id}: the caller hung up");
                return Ok(());
            }
            Some(_) => continue,
        };
        match tone {
            Tone::Tone1 | Tone::Tone2 => break Some(tone),
            other => println!("{id}: key {other} does nothing"),
        }
    };
    if key == Some(Tone::Tone1) {
        println!("{id}: key 1, transferring to {}", ivr.transfer_to);
        call.transfer(&invite_user(&ivr.transfer_to, None), None)
            .await?;
    } else {
        let why = if key.is_some() {
            "key 2"
        } else {
            "no key in time"
        };
        println!("{id}: {why}, hanging up");
        call.hang_up().await?;
    }
    // Until the call ends: dropping it earlier would hang up a transfer under way.
    while let Some(item) = call.next().await {
        if let CallItem::Call(CallEvent::StateChanged { to, .. }) = item {
            println!("{id}: {to}");
        }
    }
    Ok(())
}

/// The keypad key of a Graph `tone` (`tone1`, `star`, `pound`...).
fn graph_key(tone: &str) -> Option<Tone> {
    let key = match tone {
        "star" => '*',
        "pound" => '#',
        t => t.strip_prefix("tone")?.chars().next()?,
    };
    Tone::from_char(key)
}

/// Two 1 kHz beeps of 200 ms, 100 ms apart, at -12 dBFS.
pub fn beep() -> Vec<Pcm16K> {
    let mut frames = vec![Pcm16K::SILENCE; 25];
    for (n, frame) in frames.iter_mut().enumerate() {
        if !(0..10).contains(&n) && !(15..25).contains(&n) {
            continue;
        }
        for (i, s) in frame.samples.iter_mut().enumerate() {
            let t = (n * 320 + i) as f32 / 16_000.0;
            *s = (8_000.0 * (std::f32::consts::TAU * 1_000.0 * t).sin()) as i16;
        }
    }
    frames
}

/// The value after `name` on the command line.
fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}
