//! Remote participants: a person in a browser, or a local audio device, who joins an
//! emulator call over WebRTC. Their leg is answered by the emulator's own media endpoint
//! (started with the first join, ICE on 127.0.0.1); their audio comes from a pipeline call
//! into the conference like a synthetic voice, and the conference sends them what everyone
//! else says (the mix minus themself).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use audio_pipeline::{BotHalf, CallHandle, Pcm16K, SAMPLES_PER_FRAME};
use media_endpoint::{
    EndpointConfig, EndpointEvent, MediaEndpoint, RegisterError, SessionHandle, SessionHooks,
};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

use super::{MediaError, MediaHub};
use crate::state::lock;

/// Received frames a remote participant may have waiting: the pipeline's tick and the
/// conference's drift apart, so two frames sometimes arrive in one conference tick.
const RING_FRAMES: usize = 3;
/// Events of one remote leg the watcher has not read yet.
const EVENT_QUEUE: usize = 64;

/// A remote participant's side of its pipeline call, handed to the conference once.
#[derive(Clone, Default)]
pub(crate) struct RemoteVoice(Arc<Mutex<Option<BotHalf>>>);

impl std::fmt::Debug for RemoteVoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteVoice")
    }
}

impl RemoteVoice {
    /// The conference takes the call's bot half when the participant first appears.
    pub(crate) fn take(&self) -> Option<RemoteEar> {
        lock(&self.0).take().map(RemoteEar::new)
    }
}

/// What the conference thread holds for a remote participant: frames from them, a
/// place to send what they hear. No allocation after construction.
pub(crate) struct RemoteEar {
    bot: BotHalf,
    ring: [[i16; SAMPLES_PER_FRAME]; RING_FRAMES],
    head: usize,
    len: usize,
}

impl std::fmt::Debug for RemoteEar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteEar")
            .field("waiting", &self.len)
            .finish_non_exhaustive()
    }
}

impl RemoteEar {
    fn new(bot: BotHalf) -> Self {
        Self {
            bot,
            ring: [[0; SAMPLES_PER_FRAME]; RING_FRAMES],
            head: 0,
            len: 0,
        }
    }

    /// The participant's next frame (silence when none arrived).
    pub(crate) fn next(&mut self, out: &mut [i16; SAMPLES_PER_FRAME]) {
        while let Some(f) = self.bot.try_recv() {
            if self.len == RING_FRAMES {
                // The oldest frame goes: the delay stays bounded.
                self.head = (self.head + 1) % RING_FRAMES;
                self.len -= 1;
            }
            self.ring[(self.head + self.len) % RING_FRAMES] = f.pcm.samples;
            self.len += 1;
        }
        if self.len == 0 {
            out.fill(0);
            return;
        }
        *out = self.ring[self.head];
        self.head = (self.head + 1) % RING_FRAMES;
        self.len -= 1;
    }

    /// Queues what the participant hears; a full queue (their leg is behind) drops it.
    pub(crate) fn send(&mut self, frame: &[i16; SAMPLES_PER_FRAME]) {
        let _ = self.bot.try_send(Pcm16K { samples: *frame });
    }
}

/// The remote participants the hub knows, and the endpoint their legs arrive at.
#[derive(Debug, Default)]
pub(crate) struct Remotes {
    voices: Mutex<HashMap<String, RemoteVoice>>,
    endpoint: tokio::sync::Mutex<Option<MediaEndpoint>>,
}

impl Remotes {
    /// The voice of participant `key` if they are remote.
    pub(crate) fn voice(&self, key: &str) -> Option<RemoteVoice> {
        lock(&self.voices).get(key).cloned()
    }

    /// Whether participant `key` joined over WebRTC.
    pub(crate) fn contains(&self, key: &str) -> bool {
        lock(&self.voices).contains_key(key)
    }

    /// Forgets participant `key` (their leg ended).
    pub(crate) fn forget(&self, key: &str) {
        lock(&self.voices).remove(key);
    }

    /// Stops the endpoint (every remote leg ends).
    pub(crate) fn shutdown(&self) {
        if let Ok(mut ep) = self.endpoint.try_lock() {
            // Dropping the endpoint stops its listener and ends its legs.
            ep.take();
        }
        lock(&self.voices).clear();
    }
}

/// Why a remote participant could not join.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum JoinError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error("the emulator's WebRTC endpoint could not start: {0}")]
    Bind(#[from] media_endpoint::BindError),
    #[error("the emulator's WebRTC endpoint refused the session: {0}")]
    Register(#[from] RegisterError),
    #[error("the emulator's WebRTC endpoint could not be reached: {0}")]
    Unreachable(#[from] reqwest::Error),
    /// The offer was refused (400 for a bad SDP offer).
    #[error("the SDP offer was refused ({status}): {reason}")]
    Refused { status: u16, reason: String },
}

/// A joined remote participant's leg. Dropping it ends the leg and its pipeline call;
/// the owner also calls [`Remotes::forget`].
pub(crate) struct RemoteLeg {
    /// The SDP answer for the participant.
    pub answer: String,
    /// What the leg reports (connected, failed, ended).
    pub events: mpsc::Receiver<EndpointEvent>,
    session: SessionHandle,
    call: CallHandle,
}

impl std::fmt::Debug for RemoteLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLeg")
            .field("active", &self.session.is_active())
            .finish_non_exhaustive()
    }
}

impl RemoteLeg {
    /// The pipeline call's counters (packets from the participant, concealment).
    pub(crate) fn stats(&self) -> audio_pipeline::CallStats {
        self.call.stats()
    }
}

/// Answers `offer` for participant `key`: a pipeline call bridged to a session of the
/// emulator's endpoint. The conference hears them once the roster lists `key`.
pub(crate) async fn join(
    hub: &MediaHub,
    key: &str,
    offer: axum::body::Bytes,
) -> Result<RemoteLeg, JoinError> {
    let call = hub.add_call()?;
    let (tx, events) = mpsc::channel(EVENT_QUEUE);
    let session_id = MediaSessionId::random();
    let (session, url) = {
        let mut ep = hub.remotes.endpoint.lock().await;
        if ep.is_none() {
            // The whole stack, not the lean path: browsers on this machine reach the join
            // page's legs on 127.0.0.1, and Firefox pairs none of its candidates with a
            // loopback one, so only the checks a full ICE agent sends connect it.
            let config = EndpointConfig::new(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .with_lean_media(false);
            *ep = Some(MediaEndpoint::bind(config).await?);
        }
        let Some(ep) = ep.as_ref() else {
            return Err(JoinError::Media(MediaError::ShutDown));
        };
        let hooks = SessionHooks::new(ContextId::random(), call.network, tx);
        let session = ep.register(session_id, hooks)?;
        let url = format!("{}/sessions/{}", ep.mp_uri(), session_id.expose());
        (session, url)
    };
    let http = reqwest::Client::builder().no_proxy().build()?;
    let response = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer)
        .send()
        .await?;
    let status = response.status();
    let text = response.text().await?;
    if status != reqwest::StatusCode::CREATED {
        return Err(JoinError::Refused {
            status: status.as_u16(),
            reason: text.trim().to_owned(),
        });
    }
    let voice = RemoteVoice(Arc::new(Mutex::new(Some(call.bot))));
    lock(&hub.remotes.voices).insert(key.to_owned(), voice);
    Ok(RemoteLeg {
        answer: text,
        events,
        session,
        call: call.handle,
    })
}
