//! One WebRTC leg, whichever end opened it: the endpoint answers a service's offer
//! ([`negotiate()`]), the service side offers ([`crate::service`]); both then run the same
//! task ([`run()`]) that moves RTP between the peer connection and a [`NetworkPort`], sends
//! tones, watches the transport and reports.
//!
//! - [`peer`]: the peer connection both ends build (codecs, interceptors, ICE settings, the
//!   local track, waiting for ICE gathering);
//! - [`negotiate`](mod@negotiate): the answering end, from an offer to the answer sent back;
//! - [`ports`]: the UDP ports leased from ICE port ranges;
//! - [`timeline`]: the RTP sequence and timestamp space of the sent stream;
//! - [`run`](mod@run): the leg task;
//! - [`control`]: the owner's side of a running leg, as its handle sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::bridge::NetworkPort;
use crate::config::IceAddress;
use crate::dtmf::Tone;
use crate::events::{EndReason, EndpointEvent, FailureReason};

mod control;
mod negotiate;
mod peer;
pub(crate) mod ports;
mod run;
mod timeline;

pub(crate) use control::LegControl;
pub(crate) use negotiate::{NegotiateError, Negotiation, negotiate};
pub(crate) use peer::{
    PcEvent, SetupError, await_gathering, build_peer_connection, opus_codec, opus_track,
    telephone_event_codec,
};
pub(crate) use run::run;

/// The RTP clock rate of Opus, and of the telephone-event stream sent beside it.
const OPUS_CLOCK: u32 = 48_000;

/// Per-leg settings taken from the endpoint configuration.
#[derive(Clone, Debug)]
pub(crate) struct LegSettings {
    pub(crate) ice_addresses: Vec<IceAddress>,
    pub(crate) gathering_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) media_timeout: Duration,
}

/// What the session's owner sees of its leg, shared with the leg task.
#[derive(Debug, Default)]
pub(crate) struct LegShared {
    pub(crate) active: AtomicBool,
    pub(crate) telephone_event: AtomicBool,
    pub(crate) ended: AtomicBool,
    /// Inbound packets dropped because the pipeline's queue was full.
    pub(crate) inbound_dropped: AtomicU64,
}

/// A tone the bot asked to send.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ToneRequest {
    pub(crate) tone: Tone,
    pub(crate) duration: Duration,
}

/// Everything the leg task owns.
pub(crate) struct Leg {
    pub(crate) link: Box<dyn NetworkPort>,
    pub(crate) events: mpsc::Sender<EndpointEvent>,
    pub(crate) tones: mpsc::Receiver<ToneRequest>,
    pub(crate) stop: mpsc::Receiver<EndReason>,
    pub(crate) shared: Arc<LegShared>,
    pub(crate) settings: LegSettings,
    pub(crate) label: String,
    /// Marks the session finished; runs before the final event so that whoever sees the
    /// event also sees the session refuse new legs.
    pub(crate) on_end: Option<Box<dyn FnOnce() + Send>>,
}

/// How a leg ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LegOutcome {
    Ended(EndReason),
    Failed(FailureReason),
}

/// A random value, for an SSRC or a random start of the RTP timeline (RFC 3550 §5.1).
fn rand_u32() -> u32 {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
