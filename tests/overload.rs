//! Overload: past its limits the platform reports HeavilyLoaded, then Overloaded; while
//! Overloaded new media sessions are refused with an error that says so, and the calls
//! already running keep being ticked. The limits are set so that any work crosses them,
//! which makes the states reachable on any machine without timing anything.

use std::time::{Duration, Instant};

use botmedia::pipeline::{HealthThresholds, PipelineConfig, Realtime};
use botmedia::session::AudioSocketSettings;
use botmedia::{MediaPlatform, MediaPlatformSettings, PlatformHealth, SessionError};

fn settings(health: HealthThresholds) -> MediaPlatformSettings {
    let mut s = MediaPlatformSettings::default();
    s.pipeline = PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        health,
        ..PipelineConfig::default()
    };
    s
}

/// Waits (bounded) until the platform reports `want`.
async fn reach(platform: &MediaPlatform, want: PlatformHealth) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if platform.health() == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavily_loaded_still_admits_new_sessions() {
    let platform = MediaPlatform::start(settings(HealthThresholds {
        heavy_busy_fraction: 0.0,
        overloaded_busy_fraction: f32::INFINITY,
        overloaded_lateness: botmedia::Ticks::from_millis(1_000_000),
        ..HealthThresholds::default()
    }))
    .await
    .expect("platform");
    let _first = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect("first session");
    assert!(reach(&platform, PlatformHealth::HeavilyLoaded).await);
    let _second = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect("HeavilyLoaded admits");
    assert_eq!(platform.active_calls(), 2);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_refuses_new_sessions_and_keeps_ticking_running_calls() {
    let platform = MediaPlatform::start(settings(HealthThresholds {
        heavy_busy_fraction: 0.0,
        overloaded_busy_fraction: 0.0,
        ..HealthThresholds::default()
    }))
    .await
    .expect("platform");
    // Admitted before the first health window closes.
    let mut running = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect("a session before any load figure");
    assert!(reach(&platform, PlatformHealth::Overloaded).await);

    let refused = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect_err("Overloaded refuses");
    assert!(
        matches!(refused, SessionError::Admission(ref a) if a.health() == Some(PlatformHealth::Overloaded)),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(text.contains("overloaded"), "{text}");
    assert_eq!(
        platform.active_calls(),
        1,
        "the refused session left nothing behind"
    );

    // The running call is still ticked: its frame count keeps growing.
    let before = running.audio_socket().quality().pipeline.frames_received;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = before;
    while after <= before + 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = running.audio_socket().quality().pipeline.frames_received;
    }
    assert!(after > before + 10, "frames {before} -> {after}");
    drop(running);
    platform.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_past_the_projected_capacity_are_refused_before_any_overload() {
    // One thread with 10 ms of budget and an assumed 6 ms per call: room for one call.
    // Sessions do not send before their media connects, so nothing replaces the
    // assumption with a measurement during the test.
    let platform = MediaPlatform::start(settings(HealthThresholds {
        admission_busy_fraction: 0.5,
        assumed_call_cost: botmedia::Ticks::from_millis(6),
        ..HealthThresholds::default()
    }))
    .await
    .expect("platform");
    assert_eq!(platform.capacity().room, 1);
    let _first = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect("within capacity");
    assert_eq!(platform.health(), PlatformHealth::Overloaded);
    let refused = platform
        .create_session(AudioSocketSettings::default(), None)
        .expect_err("past capacity");
    let text = refused.to_string();
    assert!(
        matches!(refused, SessionError::Admission(ref a) if a.health() == Some(PlatformHealth::Overloaded)),
        "{refused:?}"
    );
    assert!(
        text.contains("at capacity") && text.contains("6000 us"),
        "{text}"
    );
    assert_eq!(
        platform.active_calls(),
        1,
        "the refused session left nothing"
    );
    platform.shutdown().await;
}
