//! Events a session's leg reports to its owner.

use crate::dtmf::Tone;
use crate::quality::QualityData;

/// Send status of a session, as in the anchor's `AudioSendStatusChanged`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// The transport is connected: media sent now reaches the peer.
    Active,
    /// Not connected: media sent now is discarded.
    Inactive,
}

/// Why a leg failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// ICE or DTLS failed.
    TransportFailed,
    /// The leg did not connect within the connect timeout.
    ConnectTimeout,
    /// Neither RTP nor RTCP arrived within the media timeout.
    PeerSilent,
}

/// Why a leg ended without failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The service deleted the leg (`DELETE` on its `Location`).
    Deleted,
    /// The session was unregistered or the endpoint shut down.
    Closed,
    /// The peer said goodbye (RTCP BYE for its stream, or a closed DTLS association).
    PeerLeft,
}

/// What happens on a session's leg.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum EndpointEvent {
    /// A leg was negotiated (the answer is on its way).
    LegCreated,
    /// Right after [`EndpointEvent::LegCreated`] of a session that asked for unmixed
    /// speaker streams: how many the service's offer carries. Fewer than requested (0 from
    /// a service without unmixed audio) means those streams will not come; the mix does.
    UnmixedStreams {
        /// Streams the session asked for (its unmixed render contexts).
        requested: u8,
        /// Streams the service offered, each named by one of those contexts.
        offered: u8,
    },
    /// The send status changed.
    SendStatus(SendStatus),
    /// A DTMF tone arrived (RFC 4733), once per event.
    ToneReceived(Tone),
    /// New link quality figures (after each receiver report from the peer).
    Quality(QualityData),
    /// The leg failed; its resources are freed and the session is finished.
    StreamFailure(FailureReason),
    /// The leg ended; the session is finished.
    LegEnded(EndReason),
}
