//! The main job end to end: the demo's bot against the embedded emulator, real WebRTC and
//! Opus over 127.0.0.1. Media must flow both ways on both calls and both calls must end
//! with the bot's hang-up code.

use std::time::Duration;

use botmedia_cli::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_calls_carry_media_both_ways_and_end_cleanly() {
    let dir = std::env::temp_dir().join(format!("botmedia-demo-test-{}", std::process::id()));
    let report = run(DemoOptions {
        duration: Duration::from_secs(4),
        progress: false,
        record_dir: Some(dir.clone()),
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
    // Unmixed: each speaker on a stream of their own, carrying their tone and not the other's.
    assert_eq!(report.unmixed_offered, Some(4), "{report:?}");
    let mut speakers: Vec<u32> = report.unmixed.iter().map(|u| u.source_id).collect();
    speakers.sort_unstable();
    let mut listed = report.active_speakers.clone();
    listed.sort_unstable();
    assert_eq!(speakers, listed, "{report:?}");
    let tones: Vec<bool> = report
        .unmixed
        .iter()
        .map(|u| {
            let (a, b) = u.tone_frames;
            assert!(u.frames > 50 && a.max(b) * 10 >= u.frames * 9, "{u:?}");
            assert!(a.min(b) == 0, "one tone per speaker stream: {u:?}");
            a > b
        })
        .collect();
    assert!(
        tones.contains(&true) && tones.contains(&false),
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
    // What the bot heard on each call, as 16 kHz mono WAV files of about the calls' length.
    let names: Vec<_> = report.recordings.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(names, [dir.join("echo.wav"), dir.join("meeting.wav")]);
    for (path, seconds) in &report.recordings {
        let wav = botmedia::wav::Wav::read(path).expect("the recording reads back");
        assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
        let read = wav.samples.len() as f64 / 16_000.0;
        assert!(
            (read - seconds).abs() < 0.05 && (3.0..=5.0).contains(&read),
            "{read} s"
        );
        assert!(
            wav.samples.iter().any(|s| s.unsigned_abs() > 1_000),
            "{path:?} is silent"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
