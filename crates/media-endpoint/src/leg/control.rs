//! The owner's side of a running leg.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{LegShared, ToneRequest};
use crate::dtmf::Tone;
use crate::error::ToneError;

/// The owner's side of a leg, whichever end opened it: the state the leg publishes and
/// the queue tones reach it through. The bot's [`SessionHandle`](crate::SessionHandle) and
/// the service's [`ServiceLeg`](crate::service::ServiceLeg) both wrap one.
#[derive(Debug)]
pub(crate) struct LegControl {
    shared: Arc<LegShared>,
    tones: mpsc::Sender<ToneRequest>,
}

impl LegControl {
    /// A control for a leg not started yet, and the receiving end of its tone queue, which
    /// holds `tone_queue` tones waiting while one plays.
    pub(crate) fn new(tone_queue: usize) -> (LegControl, mpsc::Receiver<ToneRequest>) {
        let (tones, rx) = mpsc::channel(tone_queue);
        let shared = Arc::new(LegShared::default());
        (LegControl { shared, tones }, rx)
    }

    /// The state the leg publishes (it gets a clone of this).
    pub(crate) fn shared(&self) -> &Arc<LegShared> {
        &self.shared
    }

    pub(crate) fn is_active(&self) -> bool {
        self.shared.active.load(Ordering::Acquire)
    }

    pub(crate) fn has_ended(&self) -> bool {
        self.shared.ended.load(Ordering::Acquire)
    }

    pub(crate) fn inbound_dropped(&self) -> u64 {
        self.shared.inbound_dropped.load(Ordering::Relaxed)
    }

    /// Queues a tone for the leg; refused when the leg ended, is not connected, did
    /// not negotiate telephone-event, or has a full queue.
    pub(crate) fn send_tone(&self, tone: Tone, duration: Duration) -> Result<(), ToneError> {
        if self.has_ended() {
            return Err(ToneError::Ended);
        }
        if !self.is_active() {
            return Err(ToneError::NotActive);
        }
        if !self.shared.telephone_event.load(Ordering::Acquire) {
            return Err(ToneError::NotNegotiated);
        }
        self.tones
            .try_send(ToneRequest { tone, duration })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ToneError::Busy,
                mpsc::error::TrySendError::Closed(_) => ToneError::Ended,
            })
    }
}
