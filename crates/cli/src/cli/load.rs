//! `botmedia load`: N concurrent app-hosted calls against the embedded emulator, with the
//! bot's CPU, tick lateness, latency, loss and memory measured.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::CliError;
use botmedia::emulator::scenario::Faults;
use botmedia_cli::load::{LoadOptions, Phase, Progress, run};

#[derive(Args)]
pub(super) struct LoadArgs {
    /// Concurrent calls.
    #[arg(long, default_value_t = 10)]
    calls: usize,
    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seconds between the last call connecting and the window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Runs connect / measure / hang up this many times (a soak); resources are compared
    /// between the first cycle and the last.
    #[arg(long, default_value_t = 1)]
    cycles: usize,
    /// Calls set up at once.
    #[arg(long, default_value_t = 8)]
    setup_concurrency: usize,
    /// Pause between batches of call set-ups, ms (a slow ramp for overload runs).
    #[arg(long, default_value_t = 0)]
    ramp_ms: u64,
    /// Bot pipeline threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Network loss on the way to the bot, percent.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Mean loss burst length, packets (1: independent losses).
    #[arg(long, default_value_t = 1.0)]
    burst: f64,
    /// Added jitter (uniform, order kept), ms.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u32,
    /// Packets reordered, percent.
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Packets duplicated, percent.
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    /// The faulty peers stop sending this many ms into the call.
    #[arg(long)]
    silent_after_ms: Option<u64>,
    /// ... for this long (default: for good).
    #[arg(long)]
    silent_for_ms: Option<u64>,
    /// The faulty peers' media legs end abruptly this many ms into the call.
    #[arg(long)]
    vanish_after_ms: Option<u64>,
    /// How many calls get the faults (default: all).
    #[arg(long)]
    faulty_calls: Option<usize>,
    /// Each call asks for this many unmixed speaker streams (0 to 4), and gets the load
    /// loop on each of them: the bot decodes 1 + N streams per call.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=4))]
    unmixed: u8,
    /// The bot's legs share one UDP socket per network pump (shared-UDP mode) instead of
    /// binding sockets of their own; the report then shows the batched sends.
    #[arg(long)]
    shared_udp: bool,
    /// The bot's legs run the WebRTC stack's whole peer connection instead of the lean
    /// media path (ICE lite, DTLS and SRTP done by the leg from the stack's parts), for a
    /// side by side.
    #[arg(long)]
    whole_stack: bool,
    /// Prints the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Drives a running fleet (`botmedia fleet`) through its front instead of an embedded
    /// emulator and bot: places the calls there, holds them for --seconds and reports
    /// where they landed and whether their media flowed.
    #[arg(long, value_name = "URL")]
    fleet: Option<String>,
    /// With --fleet: the user the calls go to (the emulator's echoing Grace by default).
    #[arg(long, value_name = "ID", requires = "fleet")]
    user: Option<String>,
}

/// `--fleet`: the calls go through a fleet's front.
fn run_fleet(args: &LoadArgs, front: &str) -> Result<ExitCode, CliError> {
    use botmedia_cli::fleet::load::{FleetLoadOptions, run as run_fleet_load};
    let user = args
        .user
        .clone()
        .unwrap_or_else(|| "550fae72-d251-43ec-868c-373732c2704f".to_owned());
    let mut options = FleetLoadOptions::new(
        front,
        args.calls,
        Duration::from_secs_f64(args.seconds),
        user,
    );
    options.setup_concurrency = args.setup_concurrency;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    let report = runtime
        .block_on(run_fleet_load(options))
        .map_err(CliError::Usage)?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Usage(format!("cannot write the report: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    if report.total().established == 0 {
        eprintln!("load failed: no call connected");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_line(p: &Progress) {
    let line = match p.phase {
        Phase::Connecting => format!(
            "cycle {}: {} calls placed, health {:?}",
            p.cycle, p.connected, p.health
        ),
        Phase::WarmingUp => format!("cycle {}: {} calls up, warming up", p.cycle, p.connected),
        Phase::Measuring => format!(
            "cycle {} t={:>4.1}s  {} calls  health {:?}  bot {:.2} cores  max frame lateness {:.2} ms  late frames {}",
            p.cycle,
            p.seconds,
            p.connected,
            p.health,
            p.bot_cores,
            p.max_lateness_ms,
            p.deadline_misses
        ),
        Phase::HangingUp => format!("cycle {}: hanging up {} calls", p.cycle, p.connected),
        Phase::Ended => format!(
            "cycle {}: ended; threads {}, fds {}, RSS {:.1} MiB, heap in use {:.1} MiB, bot tasks {}",
            p.cycle,
            p.resources.threads,
            p.resources.fds,
            p.resources.rss_kib as f64 / 1024.0,
            p.resources.heap_kib as f64 / 1024.0,
            p.resources.tasks
        ),
        _ => return,
    };
    // Progress goes to stderr so that --json output stays clean.
    let _ = writeln!(std::io::stderr(), "{line}");
}

pub(super) fn run_load(args: LoadArgs) -> Result<ExitCode, CliError> {
    if args.calls == 0 || args.calls > 2_000 {
        return Err(CliError::Usage("--calls must be between 1 and 2000".into()));
    }
    if !(0.1..=86_400.0).contains(&args.seconds) || !(0.0..=3_600.0).contains(&args.warmup) {
        return Err(CliError::Usage(
            "--seconds must be between 0.1 and 86400, --warmup between 0 and 3600".into(),
        ));
    }
    if args.cycles == 0 || args.setup_concurrency == 0 {
        return Err(CliError::Usage(
            "--cycles and --setup-concurrency must be at least 1".into(),
        ));
    }
    if let Some(front) = &args.fleet {
        if !(front.starts_with("http://") || front.starts_with("https://")) {
            return Err(CliError::Usage(format!(
                "--fleet `{front}` is not an http(s) URL like http://127.0.0.1:9400"
            )));
        }
        return run_fleet(&args, front);
    }
    let mut options = LoadOptions::default();
    options.calls = args.calls;
    options.duration = Duration::from_secs_f64(args.seconds);
    options.warmup = Duration::from_secs_f64(args.warmup);
    options.cycles = args.cycles;
    options.setup_concurrency = args.setup_concurrency;
    options.ramp = Duration::from_millis(args.ramp_ms);
    options.unmixed_streams = args.unmixed;
    options.shared_udp = args.shared_udp;
    options.lean_media = !args.whole_stack;
    if let Some(t) = args.threads {
        if t == 0 || t > 64 {
            return Err(CliError::Usage("--threads must be between 1 and 64".into()));
        }
        options.pipeline.threads = t;
    }
    let faults = Faults {
        loss_percent: args.loss,
        burst_length: args.burst,
        jitter_ms: args.jitter_ms,
        reorder_percent: args.reorder,
        duplicate_percent: args.duplicate,
        silent_after_ms: args.silent_after_ms,
        silent_for_ms: args.silent_for_ms,
        vanish_after_ms: args.vanish_after_ms,
        ..Faults::default()
    };
    if faults != Faults::default() {
        // The scenario's own checks name a bad value.
        let mut probe = botmedia::emulator::scenario::Scenario::default();
        probe.users[0].says = botmedia::emulator::scenario::Voice::Impaired {
            voice: Box::new(botmedia::emulator::scenario::Voice::Load),
            faults: faults.clone(),
        };
        probe
            .validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
        options.faults = Some(faults);
        options.faulty_calls = args.faulty_calls.unwrap_or(usize::MAX);
    }
    let report = run(options, progress_line).map_err(|e| CliError::Usage(e.to_string()))?;
    if args.json {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Usage(format!("cannot write the report: {e}")))?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    if report.connected == 0 {
        eprintln!("load failed: no call connected");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
