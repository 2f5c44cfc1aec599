//! (a) A call tick through the facade: a [`botmedia::MediaPlatform`] with N sessions, each
//! connected over loopback to a service leg sending speech while the bot speaks back; the
//! figure is the bot's pipeline threads' CPU time per call and 20 ms tick (receive: jitter
//! buffer, decode; send: pacing, encode; the queues between). `manual/1` is the same call
//! tick on the pipeline alone ([`botmedia::pipeline::ManualCall`], no threads), measured
//! in the same run: the ratio is what the platform's threads and queues add.
//!
//! `cargo bench -p botmedia --bench call_tick` (about a minute).

mod common;

use std::hint::black_box;
use std::time::Duration;

use botmedia::pipeline::{CallConfig, EncodedPacket, FRAME_DURATION, ManualCall, RtpMeta, Ticks};
use common::{Engine, Group, Measure};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};

/// Real time each sample covers: 50 ticks.
const WINDOW: Duration = Duration::from_secs(1);

fn through_the_facade(c: &mut Criterion) {
    let mut g = c.benchmark_group("call_tick");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    manual(&mut g);
    // Each sample is one window of real time whatever the iteration count (the figure is a
    // cost per call tick, scaled by criterion's count): one warm-up window, ten samples.
    g.sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(11 * WINDOW);
    for calls in [1, 10, 50] {
        let engine = Engine::start(calls, Measure::Nothing);
        g.bench_with_input(BenchmarkId::new("pipeline", calls), &engine, |b, e| {
            b.iter_custom(|iters| e.cpu_per_call_tick(Group::Pipeline, WINDOW) * iters as u32)
        });
        engine.check_flowing();
    }
    g.finish();
}

/// The same call's tick on the pipeline alone, with the service's packets and the bot's
/// speech: both directions, no threads, the calling thread's CPU time.
fn manual(g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let speech = common::speech();
    let packets = common::service_packets();
    let (mut call, mut halves) = ManualCall::new(CallConfig::default()).expect("call");
    // As the service's receiver reports say on loopback: no loss, so no FEC data to code.
    halves.network.set_remote_fraction_lost(0);
    let mut i = 0u64;
    let mut tick = move || {
        let meta = RtpMeta {
            seq: i as u16,
            rtp_timestamp: (i * 960) as u32,
            ssrc: 7,
            arrival: Ticks(1 + i * FRAME_DURATION.0),
            ..RtpMeta::default()
        };
        let p = EncodedPacket::new(meta, &packets[(i % 50) as usize]).expect("packet");
        halves.network.push_packet(p).expect("queued");
        halves
            .bot
            .try_send(speech[(i % 50) as usize])
            .expect("queued");
        call.tick(Ticks(1 + i * FRAME_DURATION.0), false);
        black_box(halves.network.pop_packet());
        black_box(halves.bot.try_recv());
        i += 1;
    };
    // CPU time, as the platform's figures are.
    g.bench_function(BenchmarkId::new("manual", 1), |b| {
        b.iter_custom(|iters| {
            let start = common::thread_cpu();
            for _ in 0..iters {
                tick();
            }
            common::thread_cpu() - start
        })
    });
}

criterion_group!(benches, through_the_facade);
criterion_main!(benches);
