//! `botmedia fleet`: several `botmedia serve` instances behind one front on this machine.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use botmedia_cli::fleet::{self, FleetOptions, InstanceView};
use clap::Args;

use super::CliError;

#[derive(Args)]
pub(super) struct FleetArgs {
    /// How many `serve` instances.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// The front's address: the ingress for the webhook and the fleet's API.
    #[arg(long, default_value = "127.0.0.1:9400")]
    listen: SocketAddr,
    /// The `serve` config file every instance reads (BOTMEDIA_* variables pass through too).
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The local emulator the instances use (BOTMEDIA_EMULATOR).
    #[arg(long, value_name = "URL")]
    emulator: Option<String>,
    /// A UDP port range for ICE, LOW-HIGH, split evenly between the instances.
    #[arg(long, value_name = "LOW-HIGH", value_parser = parse_range)]
    ice_ports: Option<(u16, u16)>,
    /// Start an instance that dies (a signal or a non-zero exit) again, as a StatefulSet
    /// does.
    #[arg(long)]
    restart: bool,
}

fn parse_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not LOW-HIGH"))?;
    let port = |p: &str| -> Result<u16, String> {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port (1-65535)"))
    };
    let (low, high) = (port(low)?, port(high)?);
    if low > high {
        return Err(format!("{low} is above {high}"));
    }
    Ok((low, high))
}

pub(super) fn run(args: FleetArgs) -> Result<ExitCode, CliError> {
    let binary = std::env::current_exe()
        .map_err(|e| CliError::Usage(format!("cannot find the botmedia binary: {e}")))?;
    let mut options = FleetOptions::new(args.instances, args.listen, binary);
    options.config = args.config;
    options.emulator = args.emulator;
    options.ice_ports = args.ice_ports;
    options.restart = args.restart;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(fleet::run(options, banner))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

/// The front's address first (scripts read that line), then each instance.
fn banner(front: SocketAddr, instances: &[InstanceView]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "botmedia fleet listening on http://{front}");
    for i in instances {
        let _ = writeln!(
            out,
            "  {:<12} api {}  webhook {}  callback {}",
            i.id, i.api, i.webhook, i.callback_url
        );
    }
    let _ = writeln!(
        out,
        "  incoming    http://{front}/callback (the app's shared webhook: any ready instance)"
    );
    let _ = writeln!(
        out,
        "  instances   curl http://{front}/instances   (drain: POST /instances/ID/drain, kill: POST /instances/ID/kill)"
    );
    let _ = writeln!(
        out,
        "  place       curl -X POST http://{front}/calls -H 'content-type: application/json' -d '{{\"user\": \"550fae72-d251-43ec-868c-373732c2704f\"}}'"
    );
    let _ = out.flush();
}
