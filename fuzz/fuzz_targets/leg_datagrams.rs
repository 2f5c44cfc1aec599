#![no_main]
//! The endpoint's leg fed hostile datagrams in simulated time: raw bytes, datagrams shaped
//! for each branch of the demultiplexer, and arbitrary RTP the connected peer's stack
//! protects with SRTP (header fields, CSRCs, payload types, header extensions), between
//! the passing of time. No panic, and the leg keeps running or ends with one final event.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    media_endpoint::fuzzing::leg_datagrams(data);
});
