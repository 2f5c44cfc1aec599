//! The pipeline threads end to end: two calls bridged back to back, admission, removal,
//! send status, back-pressure.

mod common;

use audio_pipeline::{
    AdmissionError, CallConfig, FrameSource, HealthThresholds, Pcm16K, Pipeline, PipelineConfig,
    PlatformHealth, Realtime, ReceivedFrame, SendError, Ticks,
};
use common::{Rng, Tone, wait_until};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(threads: usize) -> PipelineConfig {
    PipelineConfig {
        threads,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    }
}

/// Power of `freq` in `x` (Goertzel) relative to the total power, in dB.
fn tone_ratio_db(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 16_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    let mut total = 0.0f64;
    for &v in x {
        let v = f64::from(v);
        total += v * v;
        let s = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let tone = 2.0 * power / x.len() as f64;
    10.0 * (tone / total.max(1.0)).log10()
}

/// Bot A sends a 440 Hz tone; the network between A and B loses 10 % of packets and
/// reorders some; bot B hears the tone, with FEC and PLC filling the holes.
#[test]
fn tone_crosses_two_bridged_calls_through_loss_and_reordering() {
    let pipeline = Pipeline::start(config(2)).unwrap();
    // Bot A keeps 100 ms queued on purpose; left standing, that queue would be absorbed
    // (periods cut out of the tone, each shifting its phase a little, which this narrow
    // Goertzel measure counts as power lost). This test is about the network path.
    let cfg_a = CallConfig {
        send_queue_target: Ticks::ZERO,
        ..CallConfig::default()
    };
    let mut a = pipeline.add_call(cfg_a).unwrap();
    let heard: Arc<Mutex<Vec<ReceivedFrame>>> = Arc::new(Mutex::new(Vec::with_capacity(400)));
    let mut b = pipeline.add_call(CallConfig::default()).unwrap();
    a.network.set_remote_loss_percent(10);

    let mut tone = Tone::new(440.0, 8000.0);
    let mut rng = Rng(42);
    let mut held = None;
    let mut next_seq: u16 = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        while a.bot.send_capacity_left() > 45 {
            a.bot.try_send(tone.frame()).unwrap();
        }
        while let Some(mut p) = a.network.pop_packet() {
            // Numbered here, as the network side numbers what it sends, lost packets too.
            p.meta.seq = next_seq;
            next_seq = next_seq.wrapping_add(1);
            if rng.unit() < 0.10 {
                continue;
            }
            p.meta.arrival = audio_pipeline::now();
            // Swap some neighbours: reordering by one place.
            if held.is_none() && rng.unit() < 0.1 {
                held = Some(p);
                continue;
            }
            b.network.push_packet(p).unwrap();
            if let Some(h) = held.take() {
                b.network.push_packet(h).unwrap();
            }
        }
        while let Some(f) = b.bot.try_recv() {
            heard.lock().unwrap().push(f);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let heard = heard.lock().unwrap();
    assert!(heard.len() >= 150, "frames heard: {}", heard.len());
    // Skip the start (buffering) and measure the rest.
    let tail = &heard[heard.len() / 2..];
    let samples: Vec<i16> = tail.iter().flat_map(|f| f.pcm.samples).collect();
    let ratio = tone_ratio_db(&samples, 440.0);
    assert!(
        ratio > -3.0,
        "440 Hz is {ratio:.1} dB of the received signal"
    );
    let stats = b.handle.stats();
    assert!(stats.concealed + stats.fec_recovered > 0, "{stats:?}");
    assert!(stats.packets_received > 100, "{stats:?}");
    assert!(
        tail.iter()
            .all(|f| f.source != FrameSource::NoSignal && !f.is_silence)
    );
    // Timestamps are 20 ms apart.
    for w in heard.windows(2) {
        assert_eq!(w[1].timestamp - w[0].timestamp, Ticks::from_millis(20));
    }
    let sa = a.handle.stats();
    assert!(
        sa.frames_sent >= 150 && sa.remote_loss_percent == 10,
        "{sa:?}"
    );
}

#[test]
fn callback_receives_every_frame_on_the_pipeline_thread() {
    let pipeline = Pipeline::start(config(1)).unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c2 = Arc::clone(&count);
    let mut cfg = CallConfig::default().with_frame_callback(move |f| {
        assert_eq!(f.source, FrameSource::NoSignal);
        c2.fetch_add(1, Ordering::Relaxed);
    });
    cfg.receive_queue_frames = 0;
    let call = pipeline.add_call(cfg).unwrap();
    assert!(wait_until(Duration::from_secs(2), || count
        .load(Ordering::Relaxed)
        >= 10));
    assert_eq!(call.handle.stats().receive_queue_full, 0);
}

#[test]
fn full_send_queue_hands_the_frame_back() {
    let pipeline = Pipeline::start(config(1)).unwrap();
    let cfg = CallConfig {
        send_queue_frames: 2,
        ..CallConfig::default()
    };
    let mut call = pipeline.add_call(cfg).unwrap();
    let mut loud = Pcm16K::SILENCE;
    loud.samples[0] = 1234;
    let mut refused = None;
    for _ in 0..10 {
        if let Err(e) = call.bot.try_send(loud) {
            refused = Some(e);
            break;
        }
    }
    match refused {
        Some(SendError::Full(f)) => assert_eq!(f.samples[0], 1234),
        other => panic!("expected Full, got {other:?}"),
    }
    drop(call.handle);
    assert!(wait_until(Duration::from_secs(2), || matches!(
        call.bot.try_send(loud),
        Err(SendError::Removed(_))
    )));
}

#[test]
fn inactive_send_status_discards_media() {
    let pipeline = Pipeline::start(config(1)).unwrap();
    let cfg = CallConfig {
        send_active: false,
        ..CallConfig::default()
    };
    let mut call = pipeline.add_call(cfg).unwrap();
    for _ in 0..10 {
        call.bot.try_send(Pcm16K::SILENCE).unwrap();
    }
    assert!(wait_until(Duration::from_secs(2), || call
        .handle
        .stats()
        .discarded_inactive
        >= 10));
    assert!(call.network.pop_packet().is_none());
    call.network.set_send_active(true);
    assert!(wait_until(Duration::from_secs(2), || call
        .network
        .pop_packet()
        .is_some()));
    assert_eq!(call.handle.stats().discarded_inactive, 10);
}

#[test]
fn removing_calls_frees_them_and_the_others_keep_ticking() {
    let pipeline = Pipeline::start(config(2)).unwrap();
    let calls: Vec<_> = (0..6)
        .map(|_| pipeline.add_call(CallConfig::default()).unwrap())
        .collect();
    assert_eq!(pipeline.calls(), 6);
    let mut calls = calls.into_iter();
    let keep = calls.next().unwrap();
    let before = keep.handle.stats().frames_received;
    for c in calls {
        c.handle.remove();
    }
    assert!(wait_until(Duration::from_secs(2), || pipeline.calls() == 1));
    assert!(wait_until(Duration::from_secs(2), || keep
        .handle
        .stats()
        .frames_received
        >= before + 10));
}

#[test]
fn overloaded_platform_refuses_new_calls_and_keeps_running_existing_ones() {
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        // Any work at all counts as overload.
        health: HealthThresholds {
            overloaded_busy_fraction: -1.0,
            ..HealthThresholds::default()
        },
        ..PipelineConfig::default()
    })
    .unwrap();
    let call = pipeline.add_call(CallConfig::default()).unwrap();
    assert!(wait_until(Duration::from_secs(3), || pipeline.health()
        == PlatformHealth::Overloaded));
    let err = pipeline.add_call(CallConfig::default()).unwrap_err();
    assert!(matches!(err, AdmissionError::Overloaded), "{err}");
    assert_eq!(err.health(), Some(PlatformHealth::Overloaded));
    assert!(err.to_string().contains("overloaded"));
    let before = call.handle.stats().frames_received;
    assert!(wait_until(Duration::from_secs(2), || call
        .handle
        .stats()
        .frames_received
        >= before + 10));
}

/// A silent call (not sending) that measures nothing, so the assumed cost stays in force.
fn silent_call() -> CallConfig {
    CallConfig {
        send_active: false,
        ..CallConfig::default()
    }
}

#[test]
fn admission_projects_the_cost_per_call_and_refuses_before_the_thread_is_overrun() {
    // 20 ms x 0.5 = 10 ms of budget per thread at an assumed 3 ms per call: 3 calls each.
    let pipeline = Pipeline::start(PipelineConfig {
        health: HealthThresholds {
            admission_busy_fraction: 0.5,
            assumed_call_cost: Ticks::from_millis(3),
            ..HealthThresholds::default()
        },
        ..config(2)
    })
    .unwrap();
    let capacity = pipeline.capacity();
    assert_eq!(capacity.room, 6, "{capacity:?}");
    assert!(!capacity.measured);
    assert_eq!(capacity.budget_per_thread, Ticks::from_millis(10));
    let mut calls: Vec<_> = (0..6)
        .map(|_| pipeline.add_call(silent_call()).expect("within budget"))
        .collect();
    // Both threads took three: the least loaded one is chosen each time.
    assert_eq!(pipeline.capacity().room, 0);
    assert_eq!(pipeline.health(), PlatformHealth::Overloaded);
    let err = pipeline.add_call(silent_call()).unwrap_err();
    assert!(
        matches!(
            err,
            AdmissionError::AtCapacity {
                calls: 6,
                call_cost_us: 3000,
                budget_us: 10_000
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.health(), Some(PlatformHealth::Overloaded));
    let text = err.to_string();
    assert!(
        text.contains("at capacity") && text.contains("3000 us"),
        "{text}"
    );
    assert_eq!(pipeline.calls(), 6, "the refused call left nothing behind");

    // The running calls keep being ticked.
    let before = calls[0].handle.stats().frames_received;
    assert!(wait_until(Duration::from_secs(2), || calls[0]
        .handle
        .stats()
        .frames_received
        >= before + 5));

    // One call ends: once it is freed there is room for exactly one again.
    drop(calls.pop());
    assert!(wait_until(Duration::from_secs(3), || pipeline.calls() == 5));
    assert_eq!(pipeline.capacity().room, 1);
    assert_ne!(pipeline.health(), PlatformHealth::Overloaded);
    calls.push(pipeline.add_call(silent_call()).expect("room again"));
    assert!(pipeline.add_call(silent_call()).is_err());
}

#[test]
fn without_admission_by_load_only_the_thread_limit_refuses() {
    // Limits that refuse anything by load, switched off: health is still reported.
    let pipeline = Pipeline::start(PipelineConfig {
        health: HealthThresholds {
            overloaded_busy_fraction: -1.0,
            admission_busy_fraction: 0.5,
            assumed_call_cost: Ticks::from_millis(20),
            ..HealthThresholds::default()
        },
        max_calls_per_thread: 3,
        admit_by_load: false,
        ..config(1)
    })
    .unwrap();
    let calls: Vec<_> = (0..3)
        .map(|_| pipeline.add_call(silent_call()).expect("admitted"))
        .collect();
    assert!(wait_until(Duration::from_secs(3), || pipeline.health()
        == PlatformHealth::Overloaded));
    let err = pipeline.add_call(silent_call()).unwrap_err();
    assert!(
        matches!(
            err,
            AdmissionError::Full {
                threads: 1,
                per_thread: 3
            }
        ),
        "{err:?}"
    );
    drop(calls);
}

#[test]
fn sending_calls_replace_the_assumed_cost_with_a_measured_one() {
    // An absurd assumption that would refuse a second call; the measurement lifts it.
    let pipeline = Pipeline::start(PipelineConfig {
        health: HealthThresholds {
            assumed_call_cost: Ticks::from_millis(100),
            heavy_lateness: Ticks::from_millis(200),
            overloaded_lateness: Ticks::from_millis(400),
            ..HealthThresholds::default()
        },
        ..config(1)
    })
    .unwrap();
    let _sending = pipeline.add_call(CallConfig::default()).unwrap();
    assert!(matches!(
        pipeline.add_call(silent_call()),
        Err(AdmissionError::AtCapacity { .. })
    ));
    assert!(wait_until(Duration::from_secs(5), || pipeline
        .capacity()
        .measured));
    let capacity = pipeline.capacity();
    let load = pipeline.thread_loads()[0];
    assert_eq!(capacity.call_cost, load.call_cost);
    assert!(
        capacity.call_cost > Ticks::ZERO && capacity.call_cost < Ticks::from_millis(10),
        "an Opus call costs well under 10 ms a tick: {capacity:?}"
    );
    assert!(capacity.room >= 1, "{capacity:?}");
    pipeline
        .add_call(silent_call())
        .expect("admitted at the measured cost");
}

#[test]
fn a_normal_platform_reports_normal_health_and_load() {
    let pipeline = Pipeline::start(PipelineConfig {
        health: HealthThresholds {
            // Tolerant lateness: this machine is shared with builds.
            heavy_lateness: Ticks::from_millis(200),
            overloaded_lateness: Ticks::from_millis(400),
            ..HealthThresholds::default()
        },
        ..config(1)
    })
    .unwrap();
    let _call = pipeline.add_call(CallConfig::default()).unwrap();
    assert!(wait_until(Duration::from_secs(3), || pipeline
        .thread_loads()[0]
        .ticks
        >= 50));
    assert_eq!(pipeline.health(), PlatformHealth::Normal);
    let load = pipeline.thread_loads()[0];
    assert_eq!(load.calls, 1);
    assert!(load.mean_busy < Ticks::from_millis(10), "{load:?}");
}

#[test]
fn invalid_settings_are_refused_by_name() {
    let pipeline = Pipeline::start(config(1)).unwrap();
    let mut cfg = CallConfig::default();
    cfg.opus.complexity = 11;
    let err = pipeline.add_call(cfg).unwrap_err();
    assert!(err.to_string().contains("complexity 11"), "{err}");
    let cfg = CallConfig {
        send_queue_frames: 0,
        ..CallConfig::default()
    };
    let err = pipeline.add_call(cfg).unwrap_err();
    assert!(err.to_string().contains("send_queue_frames"), "{err}");
    assert!(
        Pipeline::start(PipelineConfig {
            threads: 0,
            ..config(1)
        })
        .is_err()
    );
}

#[test]
fn realtime_request_runs_whether_or_not_it_is_granted() {
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        ..PipelineConfig::default()
    })
    .unwrap();
    let call = pipeline.add_call(CallConfig::default()).unwrap();
    assert!(wait_until(Duration::from_secs(2), || call
        .handle
        .stats()
        .frames_received
        >= 10));
}
