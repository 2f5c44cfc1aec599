//! Errors of the endpoint's API.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read {path}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// A TLS file holds no usable PEM item of the expected kind.
    #[error("{path} holds no PEM {expected}")]
    TlsPem {
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate" or "private key".
        expected: &'static str,
    },
    /// rustls refused the certificate and key.
    #[error("the TLS certificate and key were refused")]
    TlsConfig(#[source] tokio_rustls::rustls::Error),
    /// No ICE address was configured.
    #[error("no ICE address configured: host candidates need at least one")]
    NoIceAddress,
    /// The base path is not of the form `/segment[/segment...]`.
    #[error("base path {path:?} must start with '/' and not end with one")]
    BasePath {
        /// The path given.
        path: String,
    },
}

/// Why a session could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The session id is already registered.
    #[error("media session {session} is already registered")]
    AlreadyRegistered {
        /// The session, redacted when displayed.
        session: media_session::MediaSessionId,
    },
    /// The endpoint has shut down.
    #[error("the media endpoint has shut down")]
    Closed,
}

/// Why a tone could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToneError {
    /// No connected leg: tones, like media, are not sent before the transport is active.
    #[error("the media session has no connected leg")]
    NotActive,
    /// The peer did not negotiate `telephone-event`.
    #[error("the peer did not negotiate telephone-event")]
    NotNegotiated,
    /// Too many tones are waiting to be sent.
    #[error("too many tones are waiting to be sent")]
    Busy,
    /// The session has ended.
    #[error("the media session has ended")]
    Ended,
}
