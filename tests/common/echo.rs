//! The in-process echo bot of the speech tests: a session on `platform` whose every
//! received frame is sent straight back, as `examples/echo_bot.rs` does. Included by path
//! (`#[path = "common/echo.rs"]`) so a test takes only this piece of the harness.

use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketItem, MediaPlatform, MediaSession};
use tokio::task::JoinHandle;

/// Starts the echo; returns the session's WHIP-style URL (`{mpUri}/sessions/{id}`) for a
/// far end to POST its offer to, and the bot task, which hands the session back when the
/// leg ends.
pub fn start(platform: &MediaPlatform) -> (String, JoinHandle<MediaSession>) {
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
        while let Some(item) = socket.next().await {
            if let AudioSocketItem::Frame(frame) = item {
                // A full send queue drops the frame, as examples/echo_bot does.
                let _ = socket.send(frame.pcm);
            }
        }
        session
    });
    (url, bot)
}
