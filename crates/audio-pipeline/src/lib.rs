//! 20 ms audio frames on dedicated real-time threads: wait-free queues, jitter buffer,
//! Opus, resampling and mixing. No async and no network in this crate.

pub mod mix;
pub mod resample;
