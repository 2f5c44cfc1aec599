//! `botmedia emulator`: run the local calling service on its own, for bots in other
//! processes (or other languages) to call.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use botmedia::emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, Scenario, Voice};
use botmedia::emulator::{Emulator, EmulatorConfig};
use clap::Args;

use super::CliError;

#[derive(Args)]
pub(super) struct EmulatorArgs {
    /// Address to listen on (loopback by default: the dashboard's actions are not
    /// authenticated).
    #[arg(long, default_value = "127.0.0.1:8440")]
    listen: SocketAddr,
    /// Scenario file (TOML, or JSON by extension); the built-in one when absent.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Speed-up of every emulator timer (overrides the scenario's settings.time_scale).
    #[arg(long)]
    time_scale: Option<f64>,
    /// Stop after this many seconds (runs until Ctrl-C otherwise).
    #[arg(long)]
    seconds: Option<u64>,
}

pub(super) fn run(args: EmulatorArgs) -> Result<ExitCode, CliError> {
    let mut scenario = match &args.scenario {
        Some(path) => Scenario::load(path).map_err(|e| CliError::Usage(e.to_string()))?,
        None => Scenario::default(),
    };
    if let Some(scale) = args.time_scale {
        scenario.settings.time_scale = scale;
        scenario
            .validate()
            .map_err(|e| CliError::Usage(e.to_string()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        let emu = Emulator::start(EmulatorConfig {
            listen: args.listen,
            scenario,
        })
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
        // A closed standard output (a reader that went away) must not stop the service.
        let _ = writeln!(std::io::stdout().lock(), "{}", banner(&emu));
        match args.seconds {
            Some(s) => tokio::time::sleep(std::time::Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        emu.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

/// What the emulator prints when it starts: its address first (scripts read that line),
/// then the scenario's endpoints, apps (with the built-in secret when it is the built-in
/// app), people, phone numbers and meetings, and a command that calls it.
fn banner(emu: &Emulator) -> String {
    let base = emu.base_url();
    let mut out = format!("botmedia emulator listening on {base}\n");
    for line in emu.describe().lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
        if line.starts_with("App ") && line.contains(DEFAULT_APP_ID) {
            let builtin = emu
                .scenario()
                .apps
                .iter()
                .any(|a| a.app_id == DEFAULT_APP_ID && a.secret == DEFAULT_APP_SECRET);
            if builtin {
                out.push_str(&format!(
                    "              its secret is the built-in `{DEFAULT_APP_SECRET}`\n"
                ));
            }
        }
        if line.starts_with("Tokens ") {
            out.push_str(&format!(
                "  OpenID      {}\n",
                emu.openid_configuration_url()
            ));
        }
    }
    let callee = emu
        .scenario()
        .users
        .iter()
        .find(|u| matches!(u.says, Voice::Echo))
        .or_else(|| emu.scenario().users.first());
    if let Some(user) = callee {
        let emulator = if base == botmedia::BotSettings::LOCAL_EMULATOR {
            String::new()
        } else {
            format!(" --emulator {base}")
        };
        out.push_str(&format!(
            "  Try         botmedia call{emulator} --user {} --record out.wav  (calls {})",
            user.id, user.display_name
        ));
    }
    out.trim_end().to_owned()
}
