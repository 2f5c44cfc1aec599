//! One 20 ms tick of the mixer with N = 2, 5, 10 loud sources: push every frame (level,
//! gain, f32 sum), finish (limiter, active and dominant speakers).
//!
//! `cargo bench -p audio-pipeline --bench mix`

use std::hint::black_box;

use audio_pipeline::mix::{FRAME_SAMPLES, Mixer, MixerConfig, SourceId};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mix_tick_20ms");
    for n in [2u32, 5, 10] {
        let mut mixer = Mixer::new(MixerConfig::default()).expect("valid config");
        for id in 0..n {
            mixer.add_source(SourceId(id)).expect("capacity");
        }
        let frames: Vec<[i16; FRAME_SAMPLES]> = (0..n)
            .map(|i| {
                std::array::from_fn(|s| {
                    let x = (s as f32 * 0.05 * (i + 1) as f32).sin();
                    (x * 30_000.0) as i16
                })
            })
            .collect();
        let mut out = [0i16; FRAME_SAMPLES];
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                for (id, f) in frames.iter().enumerate() {
                    mixer
                        .push(SourceId(id as u32), black_box(f))
                        .expect("known source");
                }
                mixer.finish(black_box(&mut out))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
