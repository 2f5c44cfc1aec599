//! An echo bot: one media session whose received audio is sent straight back.
//!
//! It prints the session's blob (what a create-call or answer request carries in
//! `appHostedMediaConfig.blob`) and echoes every frame until the leg ends or Ctrl-C.
//! Run: `cargo run --example echo_bot`; `--seconds N` stops it after N seconds.

use std::time::Duration;

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketEvent, AudioSocketItem, MediaPlatform, MediaPlatformSettings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = std::env::args()
        .skip_while(|a| a != "--seconds")
        .nth(1)
        .map(|s| s.parse::<u64>())
        .transpose()
        .map_err(|e| format!("--seconds: {e}"))?;
    let platform = MediaPlatform::start(MediaPlatformSettings::default()).await?;
    let mut session = platform.create_session(AudioSocketSettings::default(), None)?;
    println!("{}", session.blob().to_json());
    eprintln!(
        "echo bot ready; the service posts its SDP offer to {}/sessions/<mpMediaSessionId>",
        platform.mp_uri()
    );
    let socket = session.audio_socket();
    let run = async {
        while let Some(item) = socket.next().await {
            match item {
                // A full send queue means the far side stopped draining: drop the frame.
                AudioSocketItem::Frame(frame) => drop(socket.send(frame.pcm)),
                AudioSocketItem::Event(AudioSocketEvent::QualityUpdated(_)) => {}
                AudioSocketItem::Event(event) => eprintln!("event: {event:?}"),
            }
        }
    };
    match seconds {
        Some(s) => {
            let _ = tokio::time::timeout(Duration::from_secs(s), run).await;
        }
        None => {
            tokio::select! {
                _ = run => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
    }
    let stats = session.audio_socket().quality();
    eprintln!(
        "frames in {}, out {}, concealed {}, FEC-recovered {}",
        stats.pipeline.frames_received,
        stats.pipeline.frames_sent,
        stats.pipeline.concealed,
        stats.pipeline.fec_recovered
    );
    drop(session);
    platform.shutdown().await;
    Ok(())
}
