//! `botmedia demo`: the main job, a bot against the embedded emulator with real media.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use botmedia::emulator::scenario::Scenario;
use clap::Args;

use super::CliError;
use botmedia_cli::demo::{DemoOptions, run};

#[derive(Args)]
pub(super) struct DemoArgs {
    /// How long the calls stay up, in seconds.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Emulator scenario file (the built-in one when absent).
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Where to write what the bot heard on each call (echo.wav, meeting.wav).
    #[arg(long, value_name = "DIR", default_value = "target/botmedia-demo")]
    record_dir: PathBuf,
    /// Write no recordings.
    #[arg(long, conflicts_with = "record_dir")]
    no_record: bool,
}

pub(super) fn run_demo(args: DemoArgs) -> Result<ExitCode, CliError> {
    if args.seconds == 0 || args.seconds > 3600 {
        return Err(CliError::Usage(
            "--seconds must be between 1 and 3600".into(),
        ));
    }
    let scenario = match &args.scenario {
        Some(p) => Scenario::load(p).map_err(|e| CliError::Usage(e.to_string()))?,
        None => Scenario::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    let report = runtime
        .block_on(run(DemoOptions {
            duration: Duration::from_secs(args.seconds),
            progress: true,
            scenario,
            record_dir: (!args.no_record).then_some(args.record_dir),
        }))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    println!();
    println!("summary");
    let ms = |q| {
        report
            .echo_delay_percentile(q)
            .map_or("-".to_owned(), |d| format!("{d:.0} ms"))
    };
    println!(
        "  echo call     {} frames in, {} out, {} concealed; loop delay p50 {} p99 {} over {} probes",
        report.echo_frames.0,
        report.echo_frames.1,
        report.echo_frames.2,
        ms(0.5),
        ms(0.99),
        report.echo_delays_ms.len()
    );
    println!(
        "  meeting       {} frames; 440 Hz heard in {}, 660 Hz in {}; active speakers {:?}; dominant speaker changes {:?}",
        report.meeting_frames,
        report.meeting_tone_frames.0,
        report.meeting_tone_frames.1,
        report.active_speakers,
        report.dominant_changes
    );
    let unmixed: Vec<String> = report
        .unmixed
        .iter()
        .map(|u| {
            format!(
                "source {} on stream {} in {} frames (440 Hz in {}, 660 Hz in {})",
                u.source_id, u.stream, u.frames, u.tone_frames.0, u.tone_frames.1
            )
        })
        .collect();
    println!(
        "  unmixed       {} speaker streams offered; {}",
        report.unmixed_offered.unwrap_or(0),
        if unmixed.is_empty() {
            "none heard".to_owned()
        } else {
            unmixed.join("; ")
        }
    );
    for (i, (states, result)) in report.states.iter().zip(&report.results).enumerate() {
        println!(
            "  call {}        states {} -> ended {result}",
            i + 1,
            states.join(" -> ")
        );
    }
    for (path, seconds) in &report.recordings {
        println!(
            "  recording     {} ({seconds:.1} s of what the bot heard)",
            path.display()
        );
    }
    let ok = !report.echo_delays_ms.is_empty()
        && report.meeting_tone_frames.0 > 0
        && report.meeting_tone_frames.1 > 0;
    if ok {
        println!("demo passed: media flowed both ways on both calls");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("demo failed: no echo measured or the meeting's tones were not heard");
        Ok(ExitCode::from(1))
    }
}
