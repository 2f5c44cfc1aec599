//! `botmedia blob`: make or check a media session blob.

use std::process::ExitCode;

use clap::Args;
use media_session::{
    AudioFormat, AudioSocketSettings, Blob, MediaPlatformSettings, MediaSession, StreamDirection,
};

use super::{CliError, read_input};

#[derive(Args)]
pub(super) struct BlobArgs {
    /// Where the media endpoint listens: http(s)://HOST:PORT/MediaProcessor.
    #[arg(long, default_value = "http://127.0.0.1:8445/MediaProcessor")]
    mp_uri: String,
    /// Which ways audio flows, from the bot's side.
    #[arg(long, default_value = "sendrecv", value_parser = ["sendrecv", "sendonly", "recvonly"])]
    audio: String,
    /// PCM format of the bot's frames (Pcm44KStereo only with --audio sendonly).
    #[arg(long, default_value = "Pcm16K", value_parser = ["Pcm16K", "Pcm44KStereo"])]
    format: String,
    /// Id of the call the session is for, when known.
    #[arg(long)]
    call_id: Option<String>,
    /// Also print the blob embedded in an appHostedMediaConfig.
    #[arg(long, conflicts_with = "parse")]
    media_config: bool,
    /// Check a blob from FILE (or - for standard input) instead of making one. Accepts the
    /// JSON object, a JSON string holding it, or the spec's escaped form.
    #[arg(long, value_name = "FILE")]
    parse: Option<String>,
}

pub(super) fn run(args: BlobArgs) -> Result<ExitCode, CliError> {
    if let Some(path) = args.parse {
        let text = read_input(&path)?;
        return Ok(match Blob::parse_printed(&text) {
            Ok(blob) => {
                println!("{}", pretty(&blob.to_value()));
                eprintln!(
                    "valid blob: format {}, {} render and {} source audio context(s), session {}",
                    blob.supported_audio_format,
                    blob.audio_render_contexts.len(),
                    blob.audio_source_contexts.len(),
                    blob.mp_media_session_id,
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("invalid blob in {path}: {e}");
                ExitCode::from(1)
            }
        });
    }
    let direction: StreamDirection = args.audio.parse().map_err(CliError::Usage)?;
    let format: AudioFormat = args.format.parse().map_err(CliError::Usage)?;
    let platform =
        MediaPlatformSettings::new(&args.mp_uri).map_err(|e| CliError::Usage(e.to_string()))?;
    let session = MediaSession::new(
        &platform,
        &AudioSocketSettings::new(direction, format),
        args.call_id.as_deref(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    if args.media_config {
        println!("{}", pretty(&session.app_hosted_media_config()));
    } else {
        println!("{}", session.blob().to_json());
    }
    Ok(ExitCode::SUCCESS)
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}
