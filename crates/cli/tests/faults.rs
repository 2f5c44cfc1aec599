//! Network faults on the emulator's media legs, through `botmedia_cli::load`: under each the
//! bot's call keeps running, its concealment counters move, and the clean call beside it
//! is untouched.

use std::time::Duration;

use botmedia::emulator::scenario::Faults;
use botmedia_cli::load::{CallFigures, LoadOptions, LoadReport, run};

fn run_with(per_call: Vec<Option<Faults>>) -> LoadReport {
    let mut options = LoadOptions::default();
    // A vanished peer is noticed when nothing arrives for this long.
    options.media_timeout = Duration::from_secs(2);
    options.calls = per_call.len();
    options.per_call_faults = per_call;
    options.duration = Duration::from_secs(4);
    options.warmup = Duration::from_secs(1);
    options.pipeline.threads = 1;
    let report = run(options, |_| {}).expect("load runs");
    eprintln!("{}", report.table());
    assert_eq!(report.failed, 0, "{report:?}");
    report
}

fn call(r: &LoadReport, i: usize) -> CallFigures {
    r.per_call
        .iter()
        .find(|(index, _)| *index == i)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("call {i} is missing: {r:?}"))
}

#[test]
fn loss_bursts_jitter_reordering_and_duplicates_are_concealed_and_stay_in_their_call() {
    let r = run_with(vec![
        Some(Faults {
            loss_percent: 15.0,
            burst_length: 2.0,
            ..Faults::default()
        }),
        Some(Faults {
            jitter_ms: 30,
            reorder_percent: 5.0,
            duplicate_percent: 5.0,
            ..Faults::default()
        }),
        None,
    ]);
    let (lossy, jumbled, clean) = (call(&r, 0), call(&r, 1), call(&r, 2));
    for f in [&lossy, &jumbled, &clean] {
        assert!(f.frames > 100 && f.ended_legs == 0, "{f:?}");
    }
    // Loss: frames concealed or rebuilt from FEC, far more than on the clean call.
    let repaired = lossy.concealed + lossy.fec_recovered;
    assert!(repaired > 10, "{lossy:?}");
    assert!(
        repaired > 3 * (clean.concealed + clean.fec_recovered),
        "{lossy:?} vs {clean:?}"
    );
    // Jitter, reordering and duplicates (SRTP's replay check drops those) keep media flowing.
    assert!(jumbled.packets > 100, "{jumbled:?}");
}

#[test]
fn a_peer_that_goes_silent_or_vanishes_leaves_the_bots_call_running() {
    let r = run_with(vec![
        Some(Faults {
            silent_after_ms: Some(1_500),
            silent_for_ms: Some(1_000),
            ..Faults::default()
        }),
        Some(Faults {
            vanish_after_ms: Some(1_000),
            ..Faults::default()
        }),
        None,
    ]);
    let (silent, vanished, clean) = (call(&r, 0), call(&r, 1), call(&r, 2));
    // Silence: the jitter buffer conceals, then plays no-signal frames; the leg stays up.
    assert!(silent.concealed > 0 && silent.ended_legs == 0, "{silent:?}");
    // Vanished: the leg ended, the bot's pipeline call still produced frames.
    assert_eq!(vanished.ended_legs, 1, "{vanished:?}");
    assert!(vanished.frames > 100, "{vanished:?}");
    assert_eq!(clean.ended_legs, 0, "{clean:?}");
    assert!(clean.frames > 100 && clean.packets > 100, "{clean:?}");
}
