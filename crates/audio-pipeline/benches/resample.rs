//! Resampling one 20 ms frame, 48k -> 16k and 16k -> 48k: this crate's fixed path on each
//! kernel, rubato's `Fft` (both sides fixed) and, with `--features soxr-bench`, libsoxr
//! "high" quality, all in the same run. Before timing, the same quality figures
//! (stopband >= 8.5 kHz, passband ripple 0-7 kHz, 16k -> 48k -> 16k round-trip SINAD) are
//! printed for each engine, measured by the same code.
//!
//! `cargo bench -p audio-pipeline --bench resample --features soxr-bench`

use std::hint::black_box;

use audio_pipeline::resample::analysis::{attenuation_db, fit_sine, gain_db, rms, sine};
use audio_pipeline::resample::{Downsampler48To16, Kernel, Upsampler16To48};
use criterion::{Criterion, criterion_group, criterion_main};
use rubato::Resampler as _;
use rubato::audioadapter_buffers::direct::SequentialSlice;

/// One streaming mono engine, fed 20 ms chunks; returns the samples written.
trait Engine {
    fn name(&self) -> String;
    fn step(&mut self, input: &[f32], output: &mut [f32]) -> usize;
}

struct OursDown(Downsampler48To16);
struct OursUp(Upsampler16To48);
struct RubatoFft(rubato::Fft<f32>, &'static str);

impl Engine for OursDown {
    fn name(&self) -> String {
        format!("botmedia fixed ({})", self.0.kernel())
    }
    fn step(&mut self, input: &[f32], output: &mut [f32]) -> usize {
        self.0.process(input, output).expect("sized")
    }
}

impl Engine for OursUp {
    fn name(&self) -> String {
        format!("botmedia fixed ({})", self.0.kernel())
    }
    fn step(&mut self, input: &[f32], output: &mut [f32]) -> usize {
        self.0.process(input, output).expect("sized")
    }
}

impl RubatoFft {
    fn new(from: usize, to: usize) -> Self {
        let fft = rubato::Fft::<f32>::new(from, to, from / 50, 1, rubato::FixedSync::Both)
            .expect("valid rates");
        RubatoFft(fft, "rubato Fft (FixedSync::Both)")
    }
}

impl Engine for RubatoFft {
    fn name(&self) -> String {
        self.1.to_string()
    }
    fn step(&mut self, input: &[f32], output: &mut [f32]) -> usize {
        let frames_out = self.0.output_frames_next();
        let buf_in = SequentialSlice::new(input, 1, input.len()).expect("sized");
        let mut buf_out = SequentialSlice::new_mut(output, 1, frames_out).expect("sized");
        self.0
            .process_into_buffer(&buf_in, &mut buf_out, None)
            .expect("sized")
            .1
    }
}

#[cfg(feature = "soxr-bench")]
struct Soxr(soxr::Soxr<soxr::format::Mono<f32>>);

#[cfg(feature = "soxr-bench")]
impl Soxr {
    fn new(from: f64, to: f64) -> Self {
        let quality = soxr::params::QualitySpec::new(soxr::params::QualityRecipe::high());
        let runtime = soxr::params::RuntimeSpec::new(1);
        Soxr(soxr::Soxr::new_with_params(from, to, quality, runtime).expect("libsoxr"))
    }
}

#[cfg(feature = "soxr-bench")]
impl Engine for Soxr {
    fn name(&self) -> String {
        "libsoxr high (HQ, 20-bit)".to_string()
    }
    fn step(&mut self, input: &[f32], output: &mut [f32]) -> usize {
        self.0
            .process(input, output)
            .expect("libsoxr")
            .output_frames
    }
}

fn down_engines() -> Vec<Box<dyn Engine>> {
    let mut v: Vec<Box<dyn Engine>> = Vec::new();
    for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        v.push(Box::new(OursDown(
            Downsampler48To16::with_kernel(k).expect("available"),
        )));
    }
    v.push(Box::new(RubatoFft::new(48_000, 16_000)));
    #[cfg(feature = "soxr-bench")]
    v.push(Box::new(Soxr::new(48_000.0, 16_000.0)));
    v
}

fn up_engines() -> Vec<Box<dyn Engine>> {
    let mut v: Vec<Box<dyn Engine>> = Vec::new();
    for k in Kernel::ALL.into_iter().filter(|k| k.is_available()) {
        v.push(Box::new(OursUp(
            Upsampler16To48::with_kernel(k).expect("available"),
        )));
    }
    v.push(Box::new(RubatoFft::new(16_000, 48_000)));
    #[cfg(feature = "soxr-bench")]
    v.push(Box::new(Soxr::new(16_000.0, 48_000.0)));
    v
}

fn run(engine: &mut dyn Engine, input: &[f32], chunk: usize, out_max: usize) -> Vec<f32> {
    let mut out = Vec::new();
    let mut scratch = vec![0.0f32; out_max];
    for c in input.chunks_exact(chunk) {
        let n = engine.step(c, &mut scratch);
        out.extend_from_slice(&scratch[..n]);
    }
    out
}

const AMP: f64 = 0.5;

/// Worst stopband attenuation >= 8.5 kHz, passband ripple 0-7 kHz, 48k -> 16k.
fn down_quality(make: &dyn Fn() -> Box<dyn Engine>) -> (f64, f64) {
    let mut worst = f64::MAX;
    let mut hz = 8_500.0;
    while hz < 24_000.0 {
        let out = run(make().as_mut(), &sine(hz, 48e3, AMP, 24_000), 960, 1_920);
        worst = worst.min(attenuation_db(AMP, rms(&out[1_600..])));
        hz += 137.0;
    }
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    let mut hz = 50.0;
    while hz <= 7_000.0 {
        let out = run(make().as_mut(), &sine(hz, 48e3, AMP, 24_000), 960, 1_920);
        let g = gain_db(&fit_sine(&out[1_600..], hz, 16e3), AMP);
        lo = lo.min(g);
        hi = hi.max(g);
        hz += 150.0;
    }
    (worst, hi - lo)
}

/// Worst SINAD of tones 100 Hz - 7 kHz after 16k -> 48k -> 16k through one engine kind.
fn round_trip(up: &dyn Fn() -> Box<dyn Engine>, down: &dyn Fn() -> Box<dyn Engine>) -> f64 {
    let mut worst = f64::MAX;
    for hz in [100.0, 440.0, 1_000.0, 2_500.0, 4_000.0, 5_500.0, 7_000.0] {
        let mid = run(up().as_mut(), &sine(hz, 16e3, AMP, 8_000), 320, 1_920);
        let back = run(down().as_mut(), &mid, 960, 1_920);
        worst = worst.min(fit_sine(&back[1_600..], hz, 16e3).sinad_db());
    }
    worst
}

fn quality_report() {
    let count = down_engines().len();
    println!("\nquality, same measurement for every engine (f32 in/out, tone at -6 dBFS):");
    println!(
        "{:<32} {:>22} {:>22} {:>26}",
        "engine", "48k->16k stopband", "passband ripple", "16k->48k->16k SINAD"
    );
    for i in 0..count {
        let down = move || down_engines().swap_remove(i);
        let up = move || up_engines().swap_remove(i);
        let name = down().name();
        let (stop, ripple) = down_quality(&down);
        let sinad = round_trip(&up, &down);
        println!(
            "{name:<32} {:>19.1} dB {:>19.5} dB {:>23.1} dB",
            stop, ripple, sinad
        );
    }
    println!();
}

fn bench(c: &mut Criterion) {
    quality_report();
    let input48 = sine(1_000.0, 48e3, AMP, 960);
    let input16 = sine(1_000.0, 16e3, AMP, 320);
    let mut group = c.benchmark_group("resample_48k_to_16k_20ms");
    for mut engine in down_engines() {
        let mut out = vec![0.0f32; 1_920];
        group.bench_function(engine.name(), |b| {
            b.iter(|| engine.step(black_box(&input48), black_box(&mut out)))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("resample_16k_to_48k_20ms");
    for mut engine in up_engines() {
        let mut out = vec![0.0f32; 3_840];
        group.bench_function(engine.name(), |b| {
            b.iter(|| engine.step(black_box(&input16), black_box(&mut out)))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("resample_i16_frame");
    let mut down = Downsampler48To16::new();
    let frame48 = vec![1_000i16; 960];
    let mut out16 = [0i16; 320];
    group.bench_function("botmedia 48k->16k i16 (960 -> 320)", |b| {
        b.iter(|| down.process_i16(black_box(&frame48), black_box(&mut out16)))
    });
    let mut general = audio_pipeline::resample::Resampler::new(
        audio_pipeline::resample::SampleRate::HZ_44100,
        2,
        audio_pipeline::resample::SampleRate::HZ_16000,
        1,
    )
    .expect("valid");
    let stereo = vec![1_000i16; 882 * 2];
    group.bench_function("botmedia 44.1k stereo->16k mono i16 (882x2 -> 320)", |b| {
        b.iter(|| general.process_i16(black_box(&stereo), black_box(&mut out16)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
