//! Resampling quality measured, not assumed: passband ripple, stopband attenuation and the
//! SINAD of sines after a 16k -> X -> 16k round trip, for the fixed 48k <-> 16k path and for
//! the general (rubato) path; plus streaming, i16, channel mixing and zero allocation.
//!
//! Run with `--nocapture` to see the measured figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use audio_pipeline::resample::analysis::{attenuation_db, fit_sine, gain_db, rms, sine};
use audio_pipeline::resample::{
    Downsampler48To16, Kernel, Path, ResampleError, Resampler, SampleRate, Upsampler16To48,
};

/// Counts allocations per thread, so tests running in parallel do not see each other's.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread local
// (no allocation, no destructor).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

const AMPLITUDE: f64 = 0.5;

/// Feed `input` through `step` in chunks of `chunk` samples; `step` returns the samples it
/// wrote into the scratch buffer.
fn stream(
    input: &[f32],
    chunk: usize,
    out_per_chunk: usize,
    mut step: impl FnMut(&[f32], &mut [f32]) -> usize,
) -> Vec<f32> {
    let mut out = Vec::new();
    let mut scratch = vec![0.0f32; out_per_chunk];
    for c in input.chunks_exact(chunk) {
        let n = step(c, &mut scratch);
        out.extend_from_slice(&scratch[..n]);
    }
    out
}

/// A mono resampling engine under test, chunked as it likes.
trait Engine {
    fn run(&mut self, input: &[f32]) -> Vec<f32>;
}

struct Fixed<'a, T>(&'a mut T);

impl Engine for Fixed<'_, Downsampler48To16> {
    fn run(&mut self, input: &[f32]) -> Vec<f32> {
        stream(input, 960, 320, |i, o| self.0.process(i, o).unwrap())
    }
}

impl Engine for Fixed<'_, Upsampler16To48> {
    fn run(&mut self, input: &[f32]) -> Vec<f32> {
        stream(input, 320, 960, |i, o| self.0.process(i, o).unwrap())
    }
}

impl Engine for Resampler {
    fn run(&mut self, input: &[f32]) -> Vec<f32> {
        let (i, o) = (self.input_frames(), self.output_frames());
        stream(input, i, o, |a, b| self.process_f32(a, b).unwrap())
    }
}

/// Seconds of signal per measurement and seconds skipped at the start (filter fill).
const SECONDS: f64 = 0.5;
const SETTLE: f64 = 0.1;

fn settled(signal: &[f32], rate: f64) -> &[f32] {
    &signal[(SETTLE * rate) as usize..]
}

/// Gain in dB of a sine at `hz` through `engine`.
fn gain(engine: &mut dyn Engine, from: f64, to: f64, hz: f64) -> f64 {
    let input = sine(hz, from, AMPLITUDE, (SECONDS * from) as usize);
    let out = engine.run(&input);
    gain_db(&fit_sine(settled(&out, to), hz, to), AMPLITUDE)
}

/// Attenuation in dB of everything that comes out for a sine at `hz`.
fn attenuation(engine: &mut dyn Engine, from: f64, to: f64, hz: f64) -> f64 {
    let input = sine(hz, from, AMPLITUDE, (SECONDS * from) as usize);
    let out = engine.run(&input);
    attenuation_db(AMPLITUDE, rms(settled(&out, to)))
}

/// Passband ripple (max - min gain in dB) over `0..=top` Hz, and the gains' extremes.
fn ripple(make: &mut dyn FnMut() -> Box<dyn Engine>, from: f64, to: f64, top: f64) -> (f64, f64) {
    let mut min = f64::MAX;
    let mut max = f64::MIN;
    let mut hz = 50.0;
    while hz <= top {
        let g = gain(make().as_mut(), from, to, hz);
        min = min.min(g);
        max = max.max(g);
        hz += 150.0;
    }
    let g = gain(make().as_mut(), from, to, top);
    (min.min(g), max.max(g))
}

/// Worst (smallest) attenuation over `lo..=hi` Hz.
fn worst_stopband(
    make: &mut dyn FnMut() -> Box<dyn Engine>,
    from: f64,
    to: f64,
    lo: f64,
    hi: f64,
) -> f64 {
    let mut worst = f64::MAX;
    let mut hz = lo;
    while hz <= hi {
        worst = worst.min(attenuation(make().as_mut(), from, to, hz));
        hz += 137.0;
    }
    worst.min(attenuation(make().as_mut(), from, to, hi))
}

/// SINAD after 16k -> up -> down -> 16k, worst over a set of tones up to `top` Hz.
fn round_trip_sinad(
    make_up: &mut dyn FnMut() -> Box<dyn Engine>,
    make_down: &mut dyn FnMut() -> Box<dyn Engine>,
    top: f64,
) -> f64 {
    let mut worst = f64::MAX;
    for hz in [100.0, 440.0, 1_000.0, 2_500.0, 4_000.0, 5_500.0, top] {
        let input = sine(hz, 16_000.0, AMPLITUDE, (SECONDS * 16_000.0) as usize);
        let mid = make_up().run(&input);
        let back = make_down().run(&mid);
        let fit = fit_sine(settled(&back, 16_000.0), hz, 16_000.0);
        worst = worst.min(fit.sinad_db());
    }
    worst
}

#[test]
fn fixed_path_passband_stopband_round_trip() {
    let mut down = || -> Box<dyn Engine> {
        let r = Resampler::new(SampleRate::HZ_48000, 1, SampleRate::HZ_16000, 1).unwrap();
        assert_eq!(r.path(), Path::Fixed48To16);
        Box::new(r)
    };
    let mut up = || -> Box<dyn Engine> {
        let r = Resampler::new(SampleRate::HZ_16000, 1, SampleRate::HZ_48000, 1).unwrap();
        assert_eq!(r.path(), Path::Fixed16To48);
        Box::new(r)
    };
    let (lo, hi) = ripple(&mut down, 48_000.0, 16_000.0, 7_000.0);
    println!("fixed 48k->16k passband 0-7 kHz: {lo:.5} .. {hi:.5} dB");
    assert!(hi - lo < 0.01 && lo.abs() < 0.01 && hi.abs() < 0.01);

    let (ulo, uhi) = ripple(&mut up, 16_000.0, 48_000.0, 7_000.0);
    println!("fixed 16k->48k passband 0-7 kHz: {ulo:.5} .. {uhi:.5} dB");
    assert!(uhi - ulo < 0.01 && ulo.abs() < 0.01);

    let stop = worst_stopband(&mut down, 48_000.0, 16_000.0, 8_500.0, 23_900.0);
    println!("fixed 48k->16k stopband >= 8.5 kHz: worst {stop:.1} dB");
    assert!(stop > 120.0, "stopband {stop} dB");

    let sinad = round_trip_sinad(&mut up, &mut down, 7_000.0);
    println!("fixed 16k->48k->16k round trip, tones 100 Hz-7 kHz: worst SINAD {sinad:.1} dB");
    assert!(sinad > 110.0, "round trip SINAD {sinad} dB");
}

#[test]
fn general_path_44k1_passband_stopband_round_trip() {
    let mut down = || -> Box<dyn Engine> {
        Box::new(Resampler::new(SampleRate::HZ_44100, 1, SampleRate::HZ_16000, 1).unwrap())
    };
    let mut up = || -> Box<dyn Engine> {
        Box::new(Resampler::new(SampleRate::HZ_16000, 1, SampleRate::HZ_44100, 1).unwrap())
    };
    let (lo, hi) = ripple(&mut down, 44_100.0, 16_000.0, 7_000.0);
    println!("fft 44.1k->16k passband 0-7 kHz: {lo:.5} .. {hi:.5} dB");
    let stop = worst_stopband(&mut down, 44_100.0, 16_000.0, 8_500.0, 22_000.0);
    println!("fft 44.1k->16k stopband >= 8.5 kHz: worst {stop:.1} dB");
    let sinad = round_trip_sinad(&mut up, &mut down, 7_000.0);
    println!("fft 16k->44.1k->16k round trip: worst SINAD {sinad:.1} dB");
    assert!(hi - lo < 0.5, "ripple {lo}..{hi}");
    assert!(stop > 100.0, "stopband {stop} dB");
    assert!(sinad > 90.0, "round trip SINAD {sinad} dB");
}
