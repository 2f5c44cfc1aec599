//! An echo bot: calls a user through Graph and sends back every frame it hears.
//!
//! Start a local calling service in one terminal (`botmedia emulator`, on
//! http://127.0.0.1:8440) and run the bot in another:
//!
//! ```text
//! cargo run --example echo_bot -- [--emulator URL] [--user ID] [--seconds N]
//! ```
//!
//! `--user` defaults to Grace, the emulator's user who echoes: the call then carries silence
//! until she says something else (the dashboard's "speak a WAV", or
//! `POST /emulator/calls/{id}/participants/{participant}/say {"tone": 500}`). Without
//! `--emulator`, `BOTMEDIA_*` variables are read when `BOTMEDIA_EMULATOR` or `BOTMEDIA_APP_ID`
//! is set (the real service: see `BotSettings::from_vars`).

use std::error::Error;
use std::time::Duration;

use botmedia::{AudioSocketEvent, Bot, BotError, BotSettings, CallEvent, CallItem, CallRequest};

/// Grace, the emulator's scenario user who echoes what she hears.
pub const ECHO_USER: &str = "550fae72-d251-43ec-868c-373732c2704f";

/// What `--help` prints.
const USAGE: &str = "echo_bot [--emulator URL] [--user ID] [--seconds N]
Calls a user (default Grace, the emulator's echo) and echoes what it hears.";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let user = arg(&args, "--user").unwrap_or(ECHO_USER);
    let seconds = arg(&args, "--seconds").map(str::parse).transpose();
    let seconds = seconds.map_err(|e| format!("--seconds: {e}"))?;
    let bot = Bot::start(BotSettings::emulator_or_env(arg(&args, "--emulator"))?).await?;
    let (heard, echoed) = echo(&bot, user, seconds.map(Duration::from_secs)).await?;
    println!("heard {heard} frames, echoed {echoed}");
    bot.shutdown().await;
    Ok(())
}

/// Calls `user` and echoes until the call ends, `limit` passes or Ctrl-C (then hangs up).
/// Returns the frames heard and echoed.
pub async fn echo(bot: &Bot, user: &str, limit: Option<Duration>) -> Result<(u64, u64), BotError> {
    let mut call = bot.call(CallRequest::peer_to_peer(user, None)).await?;
    println!("calling {user}: call {}", call.id());
    let (mut heard, mut echoed) = (0, 0);
    let echo = async {
        while let Some(item) = call.next().await {
            match item {
                CallItem::Frame(frame) => {
                    heard += 1;
                    // A full send queue hands the frame back: the far side stopped draining.
                    echoed += u64::from(call.send(frame.pcm).is_ok());
                }
                CallItem::Call(CallEvent::RosterChanged(roster)) => {
                    let (joined, left) = (roster.added.len(), roster.removed.len());
                    println!("roster: {joined} joined, {left} left");
                }
                CallItem::Media(AudioSocketEvent::QualityUpdated(_)) => {} // every few seconds
                other => println!("{other:?}"),
            }
        }
    };
    let ended = tokio::select! {
        () = echo => true,
        () = stop(limit) => false,
    };
    if !ended {
        println!("hanging up");
        call.end().await?; // hangs up, and waits until the service confirms
    }
    Ok((heard, echoed))
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
