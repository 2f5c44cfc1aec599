//! A media endpoint with one registered session whose bot echoes every frame: for trying the
//! endpoint with another WebRTC implementation (a browser, aiortc, str0m, pion).
//!
//! ```text
//! cargo run -p media-endpoint --example echo_endpoint -- [LISTEN_ADDR] [SECONDS]
//! ```
//!
//! It prints the URL to POST an offer to, runs for SECONDS (default 60), logs the events and
//! prints the call's counters at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audio_pipeline::{CallConfig, Pipeline, PipelineConfig, Realtime};
use media_endpoint::{EndpointConfig, EndpointEvent, MediaEndpoint, SessionHooks, Tone};
use media_session::{ContextId, MediaSessionId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8445".to_owned());
    let seconds: u64 = match args.next() {
        Some(s) => s.parse()?,
        None => 60,
    };

    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    })?;
    let cfg = CallConfig {
        send_active: false,
        ..CallConfig::default()
    };
    let call = pipeline.add_call(cfg)?;
    let (handle, network, mut bot) = (call.handle, call.network, call.bot);

    let stop = Arc::new(AtomicBool::new(false));
    let stop_bot = Arc::clone(&stop);
    let bot_thread = std::thread::spawn(move || {
        while !stop_bot.load(Ordering::Relaxed) {
            while let Some(frame) = bot.try_recv() {
                let _ = bot.try_send(frame.pcm);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let endpoint = MediaEndpoint::bind(EndpointConfig::new(listen.parse()?)).await?;
    let (tx, mut events) = tokio::sync::mpsc::channel(256);
    let session = MediaSessionId::random();
    let session_handle =
        endpoint.register(session, SessionHooks::new(ContextId::random(), network, tx))?;
    println!("{}/sessions/{}", endpoint.mp_uri(), session.expose());

    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(event)) => {
                tracing::info!(?event, "event");
                // Answer every received digit with a '#', to show DTMF both ways.
                if let EndpointEvent::ToneReceived(_) = event
                    && let Err(e) =
                        session_handle.send_tone(Tone::Pound, Duration::from_millis(120))
                {
                    tracing::warn!(error = %e, "could not send a tone");
                }
                if matches!(
                    event,
                    EndpointEvent::StreamFailure(_) | EndpointEvent::LegEnded(_)
                ) {
                    break;
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    println!("{:?}", handle.stats());
    stop.store(true, Ordering::Relaxed);
    let _ = bot_thread.join();
    drop(session_handle);
    endpoint.shutdown().await;
    drop(handle);
    pipeline.shutdown();
    Ok(())
}
