//! An answering machine that talks back: answers every call that rings the bot (app-hosted
//! media), greets with a short tone, then echoes what it hears and logs the call's events.
//! Past `--max-calls` calls at once (default 4), it rejects new ones as busy.
//!
//! Start a local calling service (`botmedia emulator`, on http://127.0.0.1:8440), run
//!
//! ```text
//! cargo run --example answerer -- [--max-calls N] [--emulator URL]
//! ```
//!
//! and ring it as John (440 Hz) with the callback URL it prints:
//!
//! ```text
//! curl -X POST http://127.0.0.1:8440/emulator/incoming -H 'content-type: application/json' \
//!     -d '{"from": "112f7296-5fa4-42ca-bae8-6a692b15d4b8", "callbackUri": "CALLBACK_URL"}'
//! ```
//!
//! Without `--emulator`, `BOTMEDIA_*` variables are read when `BOTMEDIA_EMULATOR` or
//! `BOTMEDIA_APP_ID` is set.

use std::error::Error;

use botmedia::{
    AudioSocketEvent, Bot, BotCall, BotSettings, CallEvent, CallItem, Pcm16K, RejectReason,
};

type BoxError = Box<dyn Error + Send + Sync>;

/// What `--help` prints.
const USAGE: &str = "answerer [--max-calls N] [--emulator URL]
Answers calls (greets, then echoes); rejects those beyond --max-calls at once (default 4).";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let max_calls = arg(&args, "--max-calls").unwrap_or("4").parse();
    let max_calls = max_calls.map_err(|e| format!("--max-calls: {e}"))?;
    let bot = Bot::start(BotSettings::emulator_or_env(arg(&args, "--emulator"))?).await?;
    println!("answering calls at {}", bot.callback_url());
    tokio::select! {
        () = serve(&bot, max_calls) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    bot.shutdown().await;
    Ok(())
}

/// Answers the bot's calls until it stops, each in a task of its own (aborted when this
/// future is dropped), rejecting those beyond `max_calls` at once.
pub async fn serve(bot: &Bot, max_calls: usize) {
    let mut calls = tokio::task::JoinSet::new();
    while let Some(incoming) = bot.next_incoming().await {
        while calls.try_join_next().is_some() {} // reap the finished ones
        let id = incoming.id().map(ToString::to_string).unwrap_or_default();
        if calls.len() >= max_calls {
            println!("{id}: {max_calls} calls already, rejecting");
            if let Err(e) = incoming.reject(RejectReason::Busy).await {
                println!("{id}: rejecting failed: {e}");
            }
            continue;
        }
        calls.spawn(async move {
            match incoming.answer().await {
                Ok(call) => talk(call).await,
                Err(e) => println!("{id}: answering failed: {e}"),
            }
        });
    }
}

/// Greets, then echoes until the call ends.
async fn talk(mut call: BotCall) {
    let id = call.id().clone();
    println!("{id}: answered");
    let mut greeting = greeting().into_iter();
    while let Some(item) = call.next().await {
        match item {
            // One frame out per frame in (every 20 ms): the greeting first, then the echo.
            CallItem::Frame(frame) => {
                let _ = call.send(greeting.next().unwrap_or(frame.pcm));
            }
            CallItem::Call(CallEvent::RosterChanged(roster)) => {
                let (joined, left) = (roster.added.len(), roster.removed.len());
                println!("{id}: roster: {joined} joined, {left} left");
            }
            CallItem::Media(AudioSocketEvent::QualityUpdated(_)) => {}
            other => println!("{id}: {other:?}"),
        }
    }
}

/// 300 ms of 660 Hz at -12 dBFS.
fn greeting() -> Vec<Pcm16K> {
    (0..15)
        .map(|n| {
            let mut frame = Pcm16K::SILENCE;
            for (i, s) in frame.samples.iter_mut().enumerate() {
                let t = (n * 320 + i) as f32 / 16_000.0;
                *s = (8_000.0 * (std::f32::consts::TAU * 660.0 * t).sin()) as i16;
            }
            frame
        })
        .collect()
}

/// The value after `name` on the command line.
fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}
