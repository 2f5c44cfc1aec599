//! The sessions the endpoint accepts legs for, and the state of each one's leg.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

use crate::bridge::NetworkPort;
use crate::dtmf::Tone;
use crate::error::{RegisterError, ToneError};
use crate::events::{EndReason, EndpointEvent};
use crate::leg::{LegControl, LegShared, ToneRequest};

/// What the endpoint needs to serve a session's leg.
#[non_exhaustive]
pub struct SessionHooks {
    /// The session's audio source context: the `a=msid` track id of what the bot sends.
    pub source_context: ContextId,
    /// The call's network half in the pipeline (an [`audio_pipeline::NetworkHalf`]).
    pub link: Box<dyn NetworkPort>,
    /// Where the leg's events go. The endpoint never waits on it: when full, events are dropped.
    pub events: mpsc::Sender<EndpointEvent>,
    /// The session's unmixed render contexts, in stream order: an offered sendonly audio
    /// m-line whose track id is the k-th of them carries unmixed speaker stream k + 1
    /// (see [`crate::InboundRtp::stream`]). Empty: the session takes the mix only.
    pub unmixed_contexts: Vec<ContextId>,
}

impl SessionHooks {
    /// Hooks for one session.
    pub fn new(
        source_context: ContextId,
        link: impl NetworkPort,
        events: mpsc::Sender<EndpointEvent>,
    ) -> Self {
        Self {
            source_context,
            link: Box::new(link),
            events,
            unmixed_contexts: Vec::new(),
        }
    }

    /// The same hooks for a session that asked for unmixed speaker streams with these
    /// render contexts (in stream order).
    pub fn with_unmixed_contexts(mut self, contexts: Vec<ContextId>) -> Self {
        self.unmixed_contexts = contexts;
        self
    }
}

impl std::fmt::Debug for SessionHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHooks")
            .field("source_context", &self.source_context)
            .field("unmixed_contexts", &self.unmixed_contexts)
            .finish_non_exhaustive()
    }
}

/// The id of one leg (one accepted offer), the last segment of its `Location`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegId(uuid::Uuid);

impl LegId {
    pub(crate) fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.simple(), f)
    }
}

pub(crate) struct Pending {
    pub(crate) hooks: SessionHooks,
    pub(crate) tones: mpsc::Receiver<ToneRequest>,
}

enum LegState {
    Waiting(Box<Pending>),
    Negotiating,
    Live {
        leg: LegId,
        stop: mpsc::Sender<EndReason>,
    },
    /// Asked to end (its stop is queued); ending.
    Stopping,
    Finished,
}

struct Slot {
    state: LegState,
    shared: Arc<LegShared>,
}

/// Why a session cannot take a leg now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimError {
    Unknown,
    Finished,
    Busy,
}

#[derive(Default)]
pub(crate) struct Registry {
    slots: Mutex<HashMap<MediaSessionId, Slot>>,
    closed: std::sync::atomic::AtomicBool,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<MediaSessionId, Slot>> {
        // A panic while holding this lock cannot leave a slot half-updated (every update is a
        // single assignment), so a poisoned map is still consistent.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn register(
        self: &Arc<Self>,
        id: MediaSessionId,
        hooks: SessionHooks,
    ) -> Result<SessionHandle, RegisterError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RegisterError::Closed);
        }
        let mut slots = self.lock();
        if slots.contains_key(&id) {
            return Err(RegisterError::AlreadyRegistered { session: id });
        }
        let (control, tones) = LegControl::new(4);
        slots.insert(
            id,
            Slot {
                state: LegState::Waiting(Box::new(Pending { hooks, tones })),
                shared: Arc::clone(control.shared()),
            },
        );
        tracing::debug!(session = %id, "media session registered");
        Ok(SessionHandle {
            id,
            registry: Arc::downgrade(self),
            control,
        })
    }

    /// Takes a waiting session's hooks for a new leg.
    pub(crate) fn claim(
        &self,
        id: &MediaSessionId,
    ) -> Result<(Box<Pending>, Arc<LegShared>), ClaimError> {
        let mut slots = self.lock();
        let slot = slots.get_mut(id).ok_or(ClaimError::Unknown)?;
        match std::mem::replace(&mut slot.state, LegState::Negotiating) {
            LegState::Waiting(p) => Ok((p, Arc::clone(&slot.shared))),
            other => {
                let err = match other {
                    LegState::Finished => ClaimError::Finished,
                    _ => ClaimError::Busy,
                };
                slot.state = other;
                Err(err)
            }
        }
    }

    /// Whether `id` could take a leg now, without claiming it.
    pub(crate) fn check(&self, id: &MediaSessionId) -> Result<(), ClaimError> {
        match self.lock().get(id).map(|s| &s.state) {
            None => Err(ClaimError::Unknown),
            Some(LegState::Waiting(_)) => Ok(()),
            Some(LegState::Finished) => Err(ClaimError::Finished),
            Some(_) => Err(ClaimError::Busy),
        }
    }

    /// Puts the hooks back after a failed negotiation.
    pub(crate) fn unclaim(&self, id: &MediaSessionId, pending: Box<Pending>) {
        if let Some(slot) = self.lock().get_mut(id) {
            slot.state = LegState::Waiting(pending);
        }
    }

    /// Records the running leg; false when the session was unregistered meanwhile.
    pub(crate) fn go_live(
        &self,
        id: &MediaSessionId,
        leg: LegId,
        stop: mpsc::Sender<EndReason>,
    ) -> bool {
        match self.lock().get_mut(id) {
            Some(slot) => {
                slot.state = LegState::Live { leg, stop };
                true
            }
            None => false,
        }
    }

    /// Marks the session finished once its leg ended.
    pub(crate) fn finish(&self, id: &MediaSessionId) {
        if let Some(slot) = self.lock().get_mut(id) {
            slot.state = LegState::Finished;
        }
    }

    /// Asks a live leg to end; false when `leg` is not the session's live leg (or was
    /// already asked to end: a second DELETE finds nothing to end).
    pub(crate) fn stop_leg(&self, id: &MediaSessionId, leg: LegId, reason: EndReason) -> bool {
        let mut slots = self.lock();
        let Some(slot) = slots.get_mut(id) else {
            return false;
        };
        match &slot.state {
            LegState::Live { leg: live, stop } if *live == leg => {
                // Capacity 1 and one sender per leg: a full channel already holds a stop.
                // The leg reads the queued stop before it sees the sender gone.
                let _ = stop.try_send(reason);
                slot.state = LegState::Stopping;
                true
            }
            _ => false,
        }
    }

    fn unregister(&self, id: &MediaSessionId) {
        if let Some(slot) = self.lock().remove(id)
            && let LegState::Live { stop, .. } = slot.state
        {
            let _ = stop.try_send(EndReason::Closed);
        }
    }

    /// Refuses new sessions and ends every leg.
    pub(crate) fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, slot) in self.lock().drain() {
            if let LegState::Live { stop, .. } = slot.state {
                let _ = stop.try_send(EndReason::Closed);
            }
        }
    }
}

/// A registered session. Dropping it unregisters the session and ends its leg.
#[derive(Debug)]
pub struct SessionHandle {
    id: MediaSessionId,
    registry: std::sync::Weak<Registry>,
    control: LegControl,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sessions", &self.lock().len())
            .finish()
    }
}

impl SessionHandle {
    /// The session's id.
    pub fn id(&self) -> &MediaSessionId {
        &self.id
    }

    /// Whether the session's leg is connected (send status Active).
    pub fn is_active(&self) -> bool {
        self.control.is_active()
    }

    /// Received packets dropped because the pipeline's inbound queue was full.
    pub fn inbound_dropped(&self) -> u64 {
        self.control.inbound_dropped()
    }

    /// Sends a DTMF tone (RFC 4733) of `duration` (clamped to 40 ms..5 s); the audio it
    /// overlaps is not sent.
    pub fn send_tone(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        self.control.send_tone(tone, duration)
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.unregister(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::QueueLink;

    #[test]
    fn a_leg_is_stopped_once_and_a_second_stop_finds_nothing() {
        let registry = Arc::new(Registry::default());
        let id = MediaSessionId::random();
        let (_far, port) = QueueLink::new(4);
        let (events, _events_rx) = mpsc::channel(4);
        let _handle = registry
            .register(id, SessionHooks::new(ContextId::random(), port, events))
            .expect("registered");
        let (_pending, _shared) = registry.claim(&id).expect("claimed");
        let leg = LegId::random();
        let (stop, mut stop_rx) = mpsc::channel(1);
        assert!(registry.go_live(&id, leg, stop));
        assert!(!registry.stop_leg(&id, LegId::random(), EndReason::Deleted));

        assert!(registry.stop_leg(&id, leg, EndReason::Deleted));
        // The leg has not finished yet; a second DELETE has nothing left to end.
        assert!(!registry.stop_leg(&id, leg, EndReason::Deleted));
        // The leg still gets its stop, and a new leg is refused until it finished.
        assert_eq!(stop_rx.try_recv().ok(), Some(EndReason::Deleted));
        assert!(matches!(registry.check(&id), Err(ClaimError::Busy)));
        registry.finish(&id);
        assert!(matches!(registry.check(&id), Err(ClaimError::Finished)));
    }
}
