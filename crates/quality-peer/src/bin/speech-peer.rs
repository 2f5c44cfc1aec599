//! `speech-peer`: the independent far end of the speech-quality harness.
//!
//! Opens a leg at a session URL, sends a 48 kHz mono WAV as Opus with seeded impairments,
//! writes the echo to a 16 kHz WAV and prints one JSON line with what happened. Example:
//! `speech-peer --url http://127.0.0.1:PORT/MediaProcessor/sessions/ID --input speech48k.wav
//! --output echo16k.wav --loss 10 --burst 3 --jitter-ms 40`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use quality_peer::{Impairment, PeerConfig};

/// Sends speech to an echo engine over WebRTC and records what comes back.
#[derive(Parser, Debug)]
#[command(name = "speech-peer")]
struct Args {
    /// The session URL: {mpUri}/sessions/{mpMediaSessionId}.
    #[arg(long)]
    url: String,
    /// The speech to send: mono 16-bit WAV at 48 kHz.
    #[arg(long)]
    input: PathBuf,
    /// Where the echo is written: mono 16-bit WAV at 16 kHz from the send start.
    #[arg(long)]
    output: PathBuf,
    /// Send only the first N seconds of the input.
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds of silence sent after the input while the echo finishes.
    #[arg(long, default_value_t = 1.5)]
    tail: f64,
    /// Packets lost on the way to the engine, percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Mean loss burst in packets (Gilbert-Elliott); without it losses are independent.
    #[arg(long)]
    burst: Option<f64>,
    /// Each packet is delayed by a uniform 0..J ms (packets reorder).
    #[arg(long, default_value_t = 0)]
    jitter_ms: u32,
    /// Seed of the losses and delays.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Opus bitrate, bits per second.
    #[arg(long, default_value_t = 96_000)]
    bitrate: i32,
    /// Turn in-band FEC off.
    #[arg(long)]
    no_fec: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = PeerConfig::new(args.url, args.input, args.output);
    config.max_input_seconds = args.seconds;
    config.tail = Duration::from_secs_f64(args.tail.max(0.0));
    config.bitrate = args.bitrate;
    config.fec = !args.no_fec;
    config.impairment = Impairment {
        loss_percent: args.loss,
        mean_burst: args.burst,
        jitter_ms: args.jitter_ms,
        seed: args.seed,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("speech-peer: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(quality_peer::run(config)) {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("speech-peer: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("speech-peer: {e}");
            ExitCode::FAILURE
        }
    }
}
