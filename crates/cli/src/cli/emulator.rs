//! `botmedia emulator`: run the local calling service on its own, for bots in other
//! processes (or other languages) to call.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, Scenario};
use emulator::{Emulator, EmulatorConfig};

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
        let app = emu.scenario().apps.first().cloned();
        println!("botmedia emulator listening on {}", emu.base_url());
        println!("  dashboard        {}/", emu.base_url());
        println!(
            "  Graph API        {}  (and {}/beta)",
            emu.graph_url(),
            emu.base_url()
        );
        if let Some(app) = &app {
            println!("  token endpoint   {}", emu.token_url(&app.tenant_id));
            println!(
                "  app              {} (tenant {}){}",
                app.app_id,
                app.tenant_id,
                if app.app_id == DEFAULT_APP_ID && app.secret == DEFAULT_APP_SECRET {
                    format!(", built-in secret `{DEFAULT_APP_SECRET}`")
                } else {
                    String::new()
                }
            );
        }
        println!("  OpenID config    {}", emu.openid_configuration_url());
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
