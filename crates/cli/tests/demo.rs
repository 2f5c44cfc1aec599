//! The main job end to end: the demo's bot against the embedded emulator, real WebRTC and
//! Opus over 127.0.0.1. Media must flow both ways on both calls and both calls must end
//! with the bot's hang-up code.

use std::time::Duration;

use botmedia_cli::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_calls_carry_media_both_ways_and_end_cleanly() {
    let report = run(DemoOptions {
        duration: Duration::from_secs(4),
        progress: false,
        ..DemoOptions::default()
    })
    .await
    .expect("demo runs");
    // Echo call: probes went out and came back.
    assert!(!report.echo_delays_ms.is_empty(), "{report:?}");
    let p50 = report.echo_delay_percentile(0.5).unwrap();
    assert!(p50 > 0.0 && p50 < 2_000.0, "{report:?}");
    assert!(report.echo_frames.1 > 50, "frames sent: {report:?}");
    // Meeting: both hummed tones heard, two active speakers, a dominant one.
    assert!(
        report.meeting_tone_frames.0 > 50 && report.meeting_tone_frames.1 > 50,
        "{report:?}"
    );
    assert_eq!(report.active_speakers.len(), 2, "{report:?}");
    assert!(
        report.dominant_changes.iter().any(Option::is_some),
        "{report:?}"
    );
    for (states, result) in report.states.iter().zip(&report.results) {
        assert!(states.iter().any(|s| s == "established"), "{states:?}");
        assert_eq!(
            states.last().map(String::as_str),
            Some("terminated"),
            "{states:?}"
        );
        assert_eq!(result, "200/7000");
    }
}
