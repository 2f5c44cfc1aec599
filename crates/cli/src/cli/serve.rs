//! `botmedia serve`: a long-lived bot from a TOML file and `BOTMEDIA_*` variables.

use std::path::PathBuf;
use std::process::ExitCode;

use botmedia_cli::serve::{self, config::ServeConfig};
use clap::Args;

use super::CliError;

#[derive(Args)]
pub(super) struct ServeArgs {
    /// Config file (TOML; see crates/cli/serve.example.toml). Without it, everything comes
    /// from BOTMEDIA_* variables, which override the file's values anyway.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub(super) fn run(args: ServeArgs) -> Result<ExitCode, CliError> {
    let config = ServeConfig::load(args.config.as_deref())
        .map_err(|e| CliError::Usage(format!("bad configuration: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(serve::serve(config))
        .map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
