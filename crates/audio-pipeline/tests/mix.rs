//! Mixer behaviour: no overflow artefacts with many loud sources, levels, active-speaker
//! ordering, dominant-speaker hysteresis, mix-minus, and no allocation per tick.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use audio_pipeline::mix::{
    AudioLevel, FRAME_SAMPLES, Gain, Limiter, MixError, Mixer, MixerConfig, SourceId, rms_dbov,
};
use audio_pipeline::resample::analysis::fit_sine;

struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-initialised thread local.
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

/// Frame `tick` of a sine of `hz` with peak `amp` (i16 units) at 16 kHz.
fn sine_frame(hz: f64, amp: f64, tick: usize) -> [i16; FRAME_SAMPLES] {
    std::array::from_fn(|i| {
        let n = (tick * FRAME_SAMPLES + i) as f64;
        (amp * (2.0 * std::f64::consts::PI * hz * n / 16_000.0).sin()).round() as i16
    })
}

fn constant(v: i16) -> [i16; FRAME_SAMPLES] {
    [v; FRAME_SAMPLES]
}

#[test]
fn ten_full_scale_sources_neither_wrap_nor_clip() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in 0..10 {
        mixer.add_source(SourceId(id)).unwrap();
    }
    let mut out = [0i16; FRAME_SAMPLES];
    let mut recorded = Vec::new();
    for tick in 0..50 {
        for id in 0..10 {
            mixer
                .push(SourceId(id), &sine_frame(440.0, 32_767.0, tick))
                .unwrap();
        }
        let t = mixer.finish(&mut out);
        assert_eq!(t.contributors, 10);
        let frame_in = sine_frame(440.0, 1.0, tick);
        for (o, i) in out.iter().zip(frame_in) {
            // In phase with the inputs: a wrapped sum would flip sign.
            assert!(
                i32::from(*o) * i32::from(i) >= 0,
                "sign flip at tick {tick}"
            );
        }
        let peak = out.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak <= (0.95 * 32_767.0f32).ceil() as u16, "peak {peak}");
        recorded.extend(out.iter().map(|&s| s as f32 / 32_768.0));
    }
    // After the first frame the limiter holds a steady gain: the output is a clean sine.
    let steady = &recorded[FRAME_SAMPLES * 2..];
    let fit = fit_sine(steady, 440.0, 16_000.0);
    assert!(fit.sinad_db() > 60.0, "SINAD {}", fit.sinad_db());
    assert!(fit.amplitude > 0.9, "amplitude {}", fit.amplitude);
}

#[test]
fn limiter_leaves_quiet_mixes_untouched_and_recovers() {
    let mut lim = Limiter::new(0.95);
    let mut out = [0i16; FRAME_SAMPLES];
    let quiet: Vec<f32> = (0..FRAME_SAMPLES).map(|i| (i as f32) - 160.0).collect();
    assert_eq!(lim.process(&quiet, &mut out), 1.0);
    assert!(out.iter().zip(&quiet).all(|(o, q)| f32::from(*o) == *q));
    let loud = [100_000.0f32; FRAME_SAMPLES];
    let g = lim.process(&loud, &mut out);
    assert!(out.iter().all(|&o| o <= 31_129 && o > 0));
    assert!((g - 0.95 * 32_767.0 / 100_000.0).abs() < 1e-4);
    // Quiet again: the gain climbs back towards 1 over a few frames, never jumping.
    let mut last = g;
    for _ in 0..40 {
        let now = lim.process(&quiet, &mut out);
        assert!(now >= last && now <= 1.0);
        last = now;
    }
    assert!(last > 0.99, "gain {last}");
}

#[test]
fn levels_follow_rfc6464() {
    assert_eq!(AudioLevel::of_samples(&constant(0)), AudioLevel::SILENCE);
    assert_eq!(AudioLevel::of_samples(&[]), AudioLevel::SILENCE);
    // A full-scale sine is -3 dBov; a -20 dBFS sine -23 dBov.
    assert_eq!(
        AudioLevel::of_samples(&sine_frame(1_000.0, 32_767.0, 0)).value(),
        3
    );
    assert_eq!(
        AudioLevel::of_samples(&sine_frame(1_000.0, 3_276.7, 0)).value(),
        23
    );
    assert_eq!(AudioLevel::of_samples(&constant(i16::MIN)), AudioLevel::MAX);
    assert!((rms_dbov(&constant(16_384)) + 6.02).abs() < 0.01);
    assert!(AudioLevel::new(3).unwrap() > AudioLevel::new(40).unwrap());
    assert_eq!(AudioLevel::new(128), None);
    assert_eq!(AudioLevel::from_dbov(-300.0), AudioLevel::SILENCE);
    assert_eq!(AudioLevel::from_dbov(5.0), AudioLevel::MAX);

    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    mixer.add_source(SourceId(7)).unwrap();
    mixer.set_gain(SourceId(7), Gain::from_db(-20.0)).unwrap();
    // The level is the source's own, before its gain; the mix carries the gain.
    let level = mixer.push(SourceId(7), &constant(10_000)).unwrap();
    assert_eq!(level, AudioLevel::from_dbov(rms_dbov(&constant(10_000))));
    let mut out = [0i16; FRAME_SAMPLES];
    mixer.finish(&mut out);
    assert_eq!(out[100], 1_000);
    assert_eq!(mixer.level(SourceId(7)), Some(level));
}

fn config() -> MixerConfig {
    MixerConfig {
        dominant_hold_ticks: 5,
        dominant_margin_db: 3.0,
        ..MixerConfig::default()
    }
}

/// Push constant frames of the given amplitudes (0 = push nothing) and finish one tick.
fn tick(mixer: &mut Mixer, amps: &[(u32, i16)]) -> audio_pipeline::mix::MixTick {
    for &(id, amp) in amps {
        if amp != 0 {
            mixer.push(SourceId(id), &constant(amp)).unwrap();
        }
    }
    mixer.finish(&mut [0i16; FRAME_SAMPLES])
}

#[test]
fn active_speakers_are_the_loudest_four_above_threshold() {
    let mut mixer = Mixer::new(config()).unwrap();
    for id in 1..=6 {
        mixer.add_source(SourceId(id)).unwrap();
    }
    // Source 6 is below the -50 dBov threshold (10/32768 = -70 dBov).
    let amps = [
        (1, 1_000),
        (2, 8_000),
        (3, 3_000),
        (4, 20_000),
        (5, 500),
        (6, 10),
    ];
    tick(&mut mixer, &amps);
    let ids: Vec<u32> = mixer.active_speakers().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [4, 2, 3, 1]);
    // Two silent ticks later the smoothed levels have decayed but the order holds.
    tick(&mut mixer, &[]);
    tick(&mut mixer, &[]);
    let ids: Vec<u32> = mixer.active_speakers().iter().map(|a| a.id.0).collect();
    assert_eq!(ids, [4, 2, 3, 1]);
    assert!(
        mixer
            .active_speakers()
            .iter()
            .all(|a| a.level == AudioLevel::SILENCE)
    );
    // Long silence: nobody is active any more.
    for _ in 0..60 {
        tick(&mut mixer, &[]);
    }
    assert!(mixer.active_speakers().is_empty());
}

#[test]
fn dominant_speaker_has_hysteresis() {
    let mut mixer = Mixer::new(config()).unwrap();
    mixer.add_source(SourceId(1)).unwrap();
    mixer.add_source(SourceId(2)).unwrap();
    // A speaks alone: dominant after exactly hold_ticks = 5 ticks.
    for t in 1..=5 {
        let r = tick(&mut mixer, &[(1, 4_000)]);
        if t < 5 {
            assert_eq!(r.dominant_changed, None, "tick {t}");
        } else {
            assert_eq!(
                r.dominant_changed.map(|c| (c.from, c.to)),
                Some((None, SourceId(1)))
            );
        }
    }
    // B is louder but by less than the margin (2 dB): A stays, however long.
    let b_small = (4_000.0 * 10f64.powf(2.0 / 20.0)) as i16;
    for _ in 0..30 {
        let r = tick(&mut mixer, &[(1, 4_000), (2, b_small)]);
        assert_eq!(r.dominant_changed, None);
    }
    assert_eq!(mixer.dominant_speaker(), Some(SourceId(1)));
    // B louder by 6 dB for 4 ticks (< hold), then as loud as A for one tick: no change.
    for _ in 0..4 {
        tick(&mut mixer, &[(1, 4_000), (2, 8_000)]);
    }
    tick(&mut mixer, &[(1, 8_000), (2, 8_000)]);
    assert_eq!(mixer.dominant_speaker(), Some(SourceId(1)));
    // B stays 6 dB above A's frames. A's smoothed level falls 1.5 dB a tick from B's level,
    // so B leads by the 3 dB margin from the 2nd tick on, and takes over hold = 5 ticks
    // later: on the 6th.
    let mut changed_at = None;
    for t in 1..=20 {
        let r = tick(&mut mixer, &[(1, 4_000), (2, 8_000)]);
        if let Some(c) = r.dominant_changed {
            assert_eq!((c.from, c.to), (Some(SourceId(1)), SourceId(2)));
            changed_at = Some(t);
            break;
        }
    }
    assert_eq!(changed_at, Some(6));
    // B falls silent: it stays dominant (no one else qualifies), then A takes over after
    // speaking for hold ticks once B's smoothed level has decayed under A's minus margin.
    for _ in 0..3 {
        tick(&mut mixer, &[]);
    }
    assert_eq!(mixer.dominant_speaker(), Some(SourceId(2)));
    let mut changed_at = None;
    for t in 1..=20 {
        let r = tick(&mut mixer, &[(1, 4_000)]);
        if r.dominant_changed.is_some() {
            changed_at = Some(t);
            break;
        }
    }
    assert!(changed_at.is_some_and(|t| t >= 5), "{changed_at:?}");
    assert_eq!(mixer.dominant_speaker(), Some(SourceId(1)));
    // Removing the dominant speaker clears it.
    mixer.remove_source(SourceId(1)).unwrap();
    assert_eq!(mixer.dominant_speaker(), None);
}

#[test]
fn mix_minus_removes_own_voice() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in 1..=3 {
        mixer.add_source(SourceId(id)).unwrap();
    }
    mixer.push(SourceId(1), &constant(1_000)).unwrap();
    mixer.push(SourceId(2), &constant(200)).unwrap();
    mixer.push(SourceId(3), &constant(30)).unwrap();
    let mut out = [0i16; FRAME_SAMPLES];
    mixer.finish(&mut out);
    assert_eq!(out[0], 1_230);
    let mut lim = Limiter::new(0.95);
    mixer.mix_minus(SourceId(1), &mut lim, &mut out).unwrap();
    assert_eq!(out[0], 230);
    mixer.mix_minus(SourceId(3), &mut lim, &mut out).unwrap();
    assert_eq!(out[0], 1_200);
}

#[test]
fn errors_name_what_is_wrong() {
    let mut mixer = Mixer::new(MixerConfig {
        max_sources: 2,
        ..MixerConfig::default()
    })
    .unwrap();
    mixer.add_source(SourceId(1)).unwrap();
    assert_eq!(
        mixer.add_source(SourceId(1)),
        Err(MixError::Duplicate { id: SourceId(1) })
    );
    mixer.add_source(SourceId(2)).unwrap();
    assert_eq!(
        mixer.add_source(SourceId(3)),
        Err(MixError::Full { capacity: 2 })
    );
    let f = constant(1);
    assert_eq!(
        mixer.push(SourceId(9), &f),
        Err(MixError::UnknownSource { id: SourceId(9) })
    );
    mixer.push(SourceId(1), &f).unwrap();
    assert_eq!(
        mixer.push(SourceId(1), &f),
        Err(MixError::AlreadyPushed { id: SourceId(1) })
    );
    assert_eq!(
        Mixer::new(MixerConfig {
            max_active: 16,
            ..MixerConfig::default()
        })
        .err(),
        Some(MixError::Config {
            field: "max_active"
        })
    );
    assert!(
        Mixer::new(MixerConfig {
            limiter_ceiling: f32::NAN,
            ..MixerConfig::default()
        })
        .is_err()
    );
}

#[test]
fn steady_state_ticks_do_not_allocate() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in 0..10 {
        mixer.add_source(SourceId(id)).unwrap();
    }
    let frames: Vec<[i16; FRAME_SAMPLES]> = (0..10)
        .map(|i| sine_frame(200.0 + 100.0 * i as f64, 20_000.0, 0))
        .collect();
    let mut out = [0i16; FRAME_SAMPLES];
    let mut lim = Limiter::new(0.95);
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..100 {
        for (id, f) in frames.iter().enumerate() {
            mixer.push(SourceId(id as u32), f).unwrap();
        }
        mixer.finish(&mut out);
        mixer.mix_minus(SourceId(3), &mut lim, &mut out).unwrap();
    }
    assert_eq!(ALLOCATIONS.with(Cell::get) - before, 0);
}
