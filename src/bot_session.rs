//! A media session as the bot holds it: the session description (blob, contexts) and its
//! audio socket. Dropping it ends the leg and frees the call's pipeline resources.

use media_session::{Blob, ContextId, MediaSessionId};

use crate::socket::AudioSocket;

/// One call's media: its blob for the calling service and its audio socket.
#[derive(Debug)]
pub struct MediaSession {
    description: media_session::MediaSession,
    socket: AudioSocket,
}

impl MediaSession {
    pub(crate) fn new(description: media_session::MediaSession, socket: AudioSocket) -> Self {
        Self {
            description,
            socket,
        }
    }

    /// The session id (redacted in `Debug` and `Display`).
    pub fn id(&self) -> &MediaSessionId {
        self.description.id()
    }

    /// The blob describing the session.
    pub fn blob(&self) -> Blob {
        self.description.blob()
    }

    /// The `mediaConfig` of a create-call or answer request for this session.
    pub fn app_hosted_media_config(&self) -> serde_json::Value {
        self.description.app_hosted_media_config()
    }

    /// The context of what the bot receives.
    pub fn audio_render_context(&self) -> Option<ContextId> {
        self.description.audio_render_context()
    }

    /// The context of what the bot sends.
    pub fn audio_source_context(&self) -> Option<ContextId> {
        self.description.audio_source_context()
    }

    /// The session description (settings, contexts).
    pub fn description(&self) -> &media_session::MediaSession {
        &self.description
    }

    /// A reader of the session's pipeline counters and latency that does not own the
    /// session (for metrics).
    pub fn observer(&self) -> audio_pipeline::CallObserver {
        self.socket.observer()
    }

    /// The audio socket, for what needs no `&mut` (DTMF, send status).
    pub fn socket(&self) -> &AudioSocket {
        &self.socket
    }

    /// The audio socket.
    pub fn audio_socket(&mut self) -> &mut AudioSocket {
        &mut self.socket
    }

    /// Splits into the description and the socket (the socket owns the media resources).
    pub fn into_parts(self) -> (media_session::MediaSession, AudioSocket) {
        (self.description, self.socket)
    }
}
