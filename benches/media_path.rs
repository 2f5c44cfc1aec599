//! (b) The media path end to end, through the real legs and pipeline over loopback, one
//! call (`Engine` with one session and one service leg), timed per packet:
//!
//! - `receive`: the service's leg takes a packet to send -> the bot's frame callback gets
//!   the frame decoded from it. Includes the wire, the bot's leg (SRTP, RTP, queue), the
//!   jitter buffer's target delay and the wait for the tick that plays it.
//! - `send`: the bot queues a frame into an empty send queue -> the service's leg receives
//!   its packet. Includes the wait for the next tick (the bot queues within 1 ms of the
//!   pacer taking the previous frame, so about 19 ms), the encoder, the bot's leg (which
//!   drains its queue every 5 ms), SRTP and the wire.
//!
//! Percentiles are printed after each. `cargo bench -p botmedia --bench media_path`
//! (about 30 s).

mod common;

use std::time::Duration;

use common::{Engine, Measure};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};

fn end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("media_path");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(100));
    // A sample per packet (20 ms) received, a sample per loud frame (100 ms) sent.
    for (name, measure, time) in [
        ("receive", Measure::Receive, Duration::from_secs(6)),
        ("send", Measure::Send, Duration::from_secs(8)),
    ] {
        let engine = Engine::start(1, measure);
        let probe = engine.probe.clone().expect("probe");
        probe.clear();
        g.measurement_time(time);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| probe.sum_of(iters, Duration::from_secs(2)))
        });
        let (p, n) = probe.percentiles_ms(&[0.0, 0.5, 0.9, 0.99, 1.0]);
        if n == 0 {
            continue; // filtered out
        }
        eprintln!(
            "media_path/{name}: {n} packets, ms: min {:.1} p50 {:.1} p90 {:.1} p99 {:.1} max {:.1}",
            p[0], p[1], p[2], p[3], p[4]
        );
    }
    g.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
