//! Errors of the facade: starting the platform, creating sessions.

use media_session::AudioFormat;

/// Why the media platform could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlatformError {
    /// The pipeline threads could not start.
    #[error("cannot start the pipeline: {0}")]
    Pipeline(#[from] audio_pipeline::StartError),
    /// The media endpoint could not listen.
    #[error("cannot start the media endpoint: {0}")]
    Endpoint(#[from] media_endpoint::BindError),
    /// The endpoint's `mpUri` is not usable in a blob.
    #[error("the media endpoint's URI is unusable: {0}")]
    MpUri(#[from] media_session::SessionError),
}

/// Why a media session could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The settings are invalid.
    #[error(transparent)]
    Settings(#[from] media_session::SessionError),
    /// The platform has no audio path for this format yet.
    #[error("audio format {0} is not supported by this platform yet; use Pcm16K")]
    UnsupportedFormat(AudioFormat),
    /// The session has neither a render nor a source context.
    #[error("the session has no audio direction")]
    NoDirection,
    /// The pipeline refused the call (overloaded, full, shut down).
    #[error("the pipeline refused the session: {0}")]
    Admission(#[from] audio_pipeline::AdmissionError),
    /// The endpoint refused the session.
    #[error("the media endpoint refused the session: {0}")]
    Register(#[from] media_endpoint::RegisterError),
}
