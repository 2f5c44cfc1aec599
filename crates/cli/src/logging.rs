//! The command line's logs: `tracing` events on standard error, filtered by `RUST_LOG`,
//! as text or JSON lines. Standard output stays the commands' own (blob JSON, check verdicts,
//! load tables, call events), so it can be piped whatever the logs say.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter of a service (`botmedia emulator`, `botmedia serve`) when `RUST_LOG` is unset:
/// botmedia's own crates at INFO (one line per emulator request, calls placed and ended),
/// everything else at WARN but the WebRTC stack's ICE and DTLS, whose warnings on every
/// leg's setup are normal there (no candidate pair yet, no server name on loopback).
pub const SERVICE_DEFAULT: &str = "warn,rtc_ice=error,rtc_dtls=error,botmedia=info,\
botmedia_cli=info,emulator=info,signalling=info,media_endpoint=info,media_session=info,\
audio_pipeline=info";

/// The filter of a tool whose standard output is the point (`demo`, `call`, `load`,
/// `blob`, `check`) when `RUST_LOG` is unset: warnings and errors only (ICE and DTLS as
/// in [`SERVICE_DEFAULT`]).
pub const TOOL_DEFAULT: &str = "warn,rtc_ice=error,rtc_dtls=error";

/// The environment variable naming the log format when `--log-format` is not given.
pub const FORMAT_VAR: &str = "BOTMEDIA_LOG_FORMAT";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colored on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
}

impl LogFormat {
    /// Reads `text` or `json` (any case, surrounding spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Why logging could not be set up as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoggingError {
    /// `BOTMEDIA_LOG_FORMAT` names no format.
    #[error("{FORMAT_VAR}: `{0}` is neither `text` nor `json`")]
    Format(String),
    /// `RUST_LOG` is not a filter.
    #[error("RUST_LOG: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
}

/// The format asked for: `flag` when given, else `BOTMEDIA_LOG_FORMAT`, else text.
pub fn format_from(flag: Option<LogFormat>, env: Option<&str>) -> Result<LogFormat, LoggingError> {
    match (flag, env.map(str::trim).filter(|v| !v.is_empty())) {
        (Some(f), _) => Ok(f),
        (None, Some(v)) => LogFormat::parse(v).ok_or_else(|| LoggingError::Format(v.to_owned())),
        (None, None) => Ok(LogFormat::Text),
    }
}

/// Installs the global subscriber: `RUST_LOG`'s filter when set, `default_filter` otherwise,
/// writing to standard error. Call once, before anything logs; a second call does nothing.
pub fn init(format: LogFormat, default_filter: &str) -> Result<(), LoggingError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::new(default_filter),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already set (a test that calls twice).
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_over_the_variable_and_bad_values_are_named() {
        assert_eq!(
            format_from(Some(LogFormat::Text), Some("json")).unwrap(),
            LogFormat::Text
        );
        assert_eq!(format_from(None, Some(" JSON ")).unwrap(), LogFormat::Json);
        assert_eq!(format_from(None, Some("")).unwrap(), LogFormat::Text);
        assert_eq!(format_from(None, None).unwrap(), LogFormat::Text);
        let e = format_from(None, Some("xml")).unwrap_err().to_string();
        assert!(
            e.contains("BOTMEDIA_LOG_FORMAT") && e.contains("`xml`"),
            "{e}"
        );
    }

    #[test]
    fn the_default_filters_parse() {
        for f in [SERVICE_DEFAULT, TOOL_DEFAULT] {
            EnvFilter::try_new(f).unwrap();
        }
    }
}
