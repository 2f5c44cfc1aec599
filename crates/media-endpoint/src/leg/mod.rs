//! One WebRTC leg, whichever end opened it: the endpoint answers a service's offer
//! ([`negotiate()`]), the service side offers ([`crate::service`]); both then hand the
//! negotiated peer connection to the same sans-IO [`LegCore`], which moves RTP between it and
//! a [`NetworkPort`], sends tones, watches the transport and reports, driven by a
//! [`pump`] thread.
//!
//! - [`peer`]: the peer connection both ends build (codecs, interceptors, ICE settings, the
//!   leg's sockets and host candidates, the local Opus track);
//! - [`negotiate`](mod@negotiate): the answering end, from an offer to the answer sent back;
//! - [`ports`]: the UDP ports leased from ICE port ranges;
//! - [`timeline`]: the RTP sequence and timestamp space of the sent stream;
//! - [`core`](mod@core): the leg itself, without I/O;
//! - [`pump`]: the threads that drive legs on their sockets;
//! - [`recv`]: batched reads of a leg's socket, stamped with the kernel's receive time;
//! - [`send`]: batched sends from a shared socket;
//! - [`mux`]: which leg a datagram on a pump's shared socket belongs to;
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
pub(crate) mod core;
mod flight;
mod lean;
pub(crate) mod mux;
mod negotiate;
mod peer;
pub(crate) mod ports;
pub(crate) mod pump;
mod recv;
mod send;
pub(crate) mod sim;
pub(crate) mod srtp;
mod timeline;

pub(crate) use control::LegControl;
pub(crate) use core::{LegCore, Negotiation};
pub(crate) use negotiate::{NegotiateError, negotiate};
pub(crate) use peer::{
    SetupError, add_host_candidates, bind_sockets, build_peer_connection, local_addrs, opus_codec,
    opus_track, telephone_event_codec,
};

/// The RTP clock rate of Opus, and of the telephone-event stream sent beside it.
const OPUS_CLOCK: u32 = 48_000;

/// Per-leg settings taken from the endpoint configuration.
#[derive(Clone, Debug)]
pub(crate) struct LegSettings {
    pub(crate) ice_addresses: Vec<IceAddress>,
    pub(crate) connect_timeout: Duration,
    pub(crate) media_timeout: Duration,
    /// Legs use their pump's shared sockets instead of sockets of their own.
    pub(crate) shared_udp: bool,
    /// Legs run on the lean media path ([`lean`]) once answered.
    pub(crate) lean_media: bool,
}

/// What the session's owner sees of its leg, shared with the leg.
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

/// Everything the leg owns beside its peer connection.
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

/// Starts a negotiated leg on a network pump.
pub(crate) fn start(now: std::time::Instant, pool: pump::PoolKind, mut neg: Negotiation, leg: Leg) {
    let sockets = std::mem::take(&mut neg.sockets);
    // The pump gives the port its waker as it takes the leg; until then, polled.
    let core = LegCore::new(now, neg, leg, false);
    pump::start(pool, core, sockets);
}

/// A random value, for an SSRC or a random start of the RTP timeline (RFC 3550 §5.1).
fn rand_u32() -> u32 {
    let u = uuid::Uuid::new_v4();
    let b = u.as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}
