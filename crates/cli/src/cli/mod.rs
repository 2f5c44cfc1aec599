//! Command-line parsing and dispatch.

use std::io::Read;
use std::process::ExitCode;

use botmedia_cli::logging::{self, LogFormat};
use clap::{Parser, Subcommand};

mod blob;
mod call;
mod check;
mod demo;
mod emulator;
mod fleet;
mod load;
mod serve;

/// The largest input file the CLI reads, in bytes.
const MAX_INPUT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Parser)]
#[command(
    name = "botmedia",
    version,
    about = "App-hosted real-time media engine for calling bots"
)]
struct Cli {
    /// Log lines on standard error as `text` or `json` (default: BOTMEDIA_LOG_FORMAT, else
    /// text); RUST_LOG filters them.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prints a fresh media session blob, or checks one with --parse.
    Blob(blob::BlobArgs),
    /// Places one app-hosted call with a bot (to users, a phone or a meeting) against the
    /// emulator or Graph; plays, records or echoes its audio and prints its events.
    Call(Box<call::CallArgs>),
    /// Validates a create-call request: prints the normalized request and the permissions it
    /// needs, or Graph's error and a non-zero exit status.
    Check(check::CheckArgs),
    /// Runs the demo: a bot against the embedded emulator, two app-hosted calls with real
    /// media (an echo to measure the loop latency, a meeting with two speakers).
    Demo(demo::DemoArgs),
    /// Runs the local calling service (Graph API, tokens, notifications, dashboard).
    Emulator(emulator::EmulatorArgs),
    /// Runs several `serve` instances behind one front (the webhook's ingress and a
    /// fleet-wide API), as a Kubernetes StatefulSet runs them; drains them on SIGTERM.
    Fleet(fleet::FleetArgs),
    /// Load test: N concurrent app-hosted calls through the embedded emulator; reports the
    /// bot's CPU per call, tick lateness, latency, loss, memory and platform health.
    Load(load::LoadArgs),
    /// Runs a long-lived bot from a TOML file and BOTMEDIA_* variables: answers incoming
    /// calls (echo, record, play, reject), places calls through an HTTP API, drains on
    /// SIGTERM / Ctrl-C.
    Serve(serve::ServeArgs),
}

/// Runs the command line and maps outcomes to exit codes: 0 success, 1 input refused,
/// 2 usage or I/O error.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Blob(_)
        | Command::Call(_)
        | Command::Check(_)
        | Command::Demo(_)
        | Command::Load(_) => logging::TOOL_DEFAULT,
        // Services log one line per request and per call.
        _ => logging::SERVICE_DEFAULT,
    };
    let env_format = std::env::var(logging::FORMAT_VAR).ok();
    if let Err(e) = logging::format_from(cli.log_format, env_format.as_deref())
        .and_then(|format| logging::init(format, default_filter))
    {
        eprintln!("botmedia: {e}");
        return ExitCode::from(2);
    }
    let outcome = match cli.command {
        Command::Blob(args) => blob::run(args),
        Command::Call(args) => call::run(*args),
        Command::Check(args) => check::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Demo(args) => demo::run_demo(args),
        Command::Load(args) => load::run_load(args),
        Command::Serve(args) => serve::run(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("botmedia: {e}");
            ExitCode::from(2)
        }
    }
}

/// An error that stops a command before it judged its input.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { path: String, offset: usize },
    #[error("{0}")]
    Usage(String),
}

/// Reads a whole file, or standard input for `-`, bounded by [`MAX_INPUT_BYTES`].
fn read_input(path: &str) -> Result<String, CliError> {
    let read_err = |source| CliError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES + 1;
    if path == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
    } else {
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(limit)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
    }
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(CliError::TooLarge {
            path: path.to_owned(),
            max: MAX_INPUT_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|e| CliError::NotUtf8 {
        path: path.to_owned(),
        offset: e.utf8_error().valid_up_to(),
    })
}
