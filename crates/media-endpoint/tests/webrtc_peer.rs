//! The endpoint against a real WebRTC peer (webrtc-rs) playing the calling service, over
//! HTTP and UDP on 127.0.0.1, with each leg on the whole WebRTC stack. The cases are in
//! `cases/webrtc_peer.rs`; `webrtc_peer_lean.rs` runs them on the lean media path.

mod common;

/// The legs run the whole stack.
const LEAN_MEDIA: bool = false;

include!("cases/webrtc_peer.rs");
