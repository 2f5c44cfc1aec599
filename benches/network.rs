//! (c) N legs pumped per tick: N calls (10, 50) connected over loopback to service legs
//! (the emulator's media side), Opus both ways at 20 ms. The figure is the CPU time of the
//! bot's network side (its pump threads and runtime) per call and 20 ms tick: its WebRTC
//! legs receiving, decrypting and queueing one packet and taking, encrypting and sending
//! another, with their timers and RTCP. `service/N` is the same stack on the service's side in the same run, for a ratio.
//! `bot_shared/N` is the bot's side in shared-UDP mode (one socket per pump, batched sends);
//! `bot_lean/N` and `bot_lean_shared/N` are its legs on the lean media path (ICE lite,
//! DTLS and SRTP done by the leg), with sockets of their own and shared.
//! Issue 14's target for the bot's side is 15 us.
//!
//! `cargo bench -p botmedia --bench network` (about a minute).

mod common;

use std::time::Duration;

use common::{Engine, Group, Measure};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

/// Real time each sample covers: 50 ticks.
const WINDOW: Duration = Duration::from_secs(1);

fn legs_per_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("network");
    // Each sample is one window of real time whatever the iteration count (the figure is a
    // cost per call tick, scaled by criterion's count): one warm-up window, ten samples.
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(11 * WINDOW);
    for calls in [10, 50] {
        for (shared, lean) in [(false, false), (true, false), (false, true), (true, true)] {
            let engine = Engine::start_with(calls, Measure::Nothing, shared, lean);
            let measured: &[(&str, Group)] = match (shared, lean) {
                (false, false) => &[
                    ("bot", Group::BotNetwork),
                    ("service", Group::ServiceNetwork),
                ],
                (true, false) => &[("bot_shared", Group::BotNetwork)],
                (false, true) => &[("bot_lean", Group::BotNetwork)],
                (true, true) => &[("bot_lean_shared", Group::BotNetwork)],
            };
            for &(name, group) in measured {
                g.bench_with_input(BenchmarkId::new(name, calls), &engine, |b, e| {
                    b.iter_custom(|iters| e.cpu_per_call_tick(group, WINDOW) * iters as u32)
                });
            }
            engine.check_flowing();
        }
    }
    g.finish();
}

criterion_group!(benches, legs_per_tick);
criterion_main!(benches);
