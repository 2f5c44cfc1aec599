//! An echo at the media layer, with no calling service: one app-hosted media session whose
//! bot sends back every frame it hears. It prints the session's blob (one line of JSON, the
//! keys the spec gives it) and waits; a far end POSTs its SDP offer to
//! `{mpUri}/sessions/{mpMediaSessionId}` (WHIP-style), talks, and hears itself. It ends on
//! Ctrl-C or when the far end deletes its leg.
//!
//! ```text
//! cargo run --release --example media_echo
//! ```
//!
//! `scripts/quality.sh` measures the engine's speech quality with it against independent
//! far ends (a webrtc-rs peer, Chromium).

use std::error::Error;
use std::io::Write;

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketItem, MediaPlatform, MediaPlatformSettings};

const USAGE: &str = "media_echo
Starts a media platform with one session, prints its blob and echoes what the far end sends.";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let platform = MediaPlatform::start(MediaPlatformSettings::default()).await?;
    let mut session = platform.create_session(AudioSocketSettings::default(), None)?;
    // The blob first, alone on its line: whoever started this reads it to connect.
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", session.blob().to_json())?;
    out.flush()?;
    drop(out);
    let echo = async {
        let socket = session.audio_socket();
        let (mut heard, mut echoed) = (0u64, 0u64);
        while let Some(item) = socket.next().await {
            if let AudioSocketItem::Frame(frame) = item {
                heard += 1;
                // A full send queue hands the frame back: the far end stopped draining.
                echoed += u64::from(socket.send(frame.pcm).is_ok());
            }
        }
        (heard, echoed)
    };
    tokio::select! {
        (heard, echoed) = echo => eprintln!("the far end left: heard {heard} frames, echoed {echoed}"),
        _ = tokio::signal::ctrl_c() => eprintln!("interrupted"),
    }
    platform.shutdown().await;
    Ok(())
}
