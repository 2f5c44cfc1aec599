//! The in-process echo bot of the speech tests: a session on `platform` whose every
//! received frame is sent straight back, as `examples/echo_bot.rs` does. Included by path
//! (`#[path = "common/echo.rs"]`) so a test takes only this piece of the harness.

use std::time::Instant;

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketItem, MediaPlatform, MediaSession};
use tokio::task::JoinHandle;

/// The engine's own view of the call at one moment, read by the echo bot from its socket
/// (`AudioSocket::quality`): what the engine's jitter buffer and send path were doing.
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // each test including this file reads its own subset
pub struct EngineSample {
    /// Seconds since the first frame reached the bot.
    pub at_s: f64,
    /// The pipeline's counters and gauges then.
    pub pipeline: botmedia::CallStats,
}

/// Starts the echo; returns the session's WHIP-style URL (`{mpUri}/sessions/{id}`) for a
/// far end to POST its offer to, and the bot task, which hands the session back when the
/// leg ends.
#[allow(dead_code)] // not every test including this file uses it
pub fn start(platform: &MediaPlatform) -> (String, JoinHandle<MediaSession>) {
    let (url, bot) = start_sampled(platform, 0);
    let bot = tokio::spawn(async move { bot.await.expect("echo bot").0 });
    (url, bot)
}

/// [`start`], with the engine's view of the call sampled every `every` frames received
/// (none when 0), handed back with the session.
#[allow(dead_code)] // not every test including this file uses it
pub fn start_sampled(
    platform: &MediaPlatform,
    every: u32,
) -> (String, JoinHandle<(MediaSession, Vec<EngineSample>)>) {
    let mut session = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect("session");
    let blob = session.blob();
    let url = format!(
        "{}/sessions/{}",
        blob.mp_uri,
        blob.mp_media_session_id.expose()
    );
    let bot = tokio::spawn(async move {
        let socket = session.audio_socket();
        let mut samples = Vec::new();
        let mut first: Option<Instant> = None;
        let mut frames = 0u32;
        while let Some(item) = socket.next().await {
            if let AudioSocketItem::Frame(frame) = item {
                // A full send queue drops the frame, as examples/echo_bot does.
                let _ = socket.send(frame.pcm);
                let t0 = *first.get_or_insert_with(Instant::now);
                frames += 1;
                if every > 0 && frames.is_multiple_of(every) {
                    samples.push(EngineSample {
                        at_s: t0.elapsed().as_secs_f64(),
                        pipeline: socket.quality().pipeline,
                    });
                }
            }
        }
        (session, samples)
    });
    (url, bot)
}
