//! The endpoint against a real WebRTC peer (webrtc-rs) playing the calling service, over
//! HTTP and UDP on 127.0.0.1, with each leg on the lean media path (ICE lite, DTLS and
//! SRTP done by the leg): the cases of `cases/webrtc_peer.rs`, as `webrtc_peer.rs` runs
//! them on the whole stack.

mod common;

/// The legs run on the lean media path.
const LEAN_MEDIA: bool = true;

include!("cases/webrtc_peer.rs");
