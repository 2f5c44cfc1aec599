//! `botmedia_cli::load` end to end: a few concurrent app-hosted calls against the embedded
//! emulator's load participants, with every figure of the report filled from real media.

use std::time::Duration;

use botmedia_cli::load::{LoadOptions, Phase, run};

/// `calls` calls measured for 2 s after 1 s, on one pipeline thread.
fn short(calls: usize) -> LoadOptions {
    let mut options = LoadOptions::default();
    options.calls = calls;
    options.duration = Duration::from_secs(2);
    options.warmup = Duration::from_secs(1);
    options.pipeline.threads = 1;
    options
}

#[test]
fn a_short_load_run_measures_the_bots_calls() {
    let options = short(3);
    let mut phases = Vec::new();
    let mut ended = None;
    let report = run(options, |p| {
        phases.push(p.phase);
        if p.phase == Phase::Ended {
            ended = Some(p.resources);
        }
    })
    .expect("load runs");
    eprintln!("{}", report.table());

    assert_eq!((report.connected, report.refused, report.failed), (3, 0, 0));
    assert!(phases.contains(&Phase::Measuring), "{phases:?}");
    assert_eq!(phases.last(), Some(&Phase::Ended));
    let ended = ended.expect("the cycle's end was reported");
    assert!(
        ended.threads > 0 && ended.fds > 0 && ended.rss_kib > 0,
        "{ended:?}"
    );
    // Admission projected with a cost it measured from the three sending calls, and
    // the one pipeline thread has room for more than three such calls.
    assert!(report.admission_call_cost_us > 0.0);
    assert!(
        report.admission_capacity > 3,
        "{}",
        report.admission_capacity
    );
    // Media flowed into every call and the callback saw the window's frames.
    assert_eq!(report.per_call.len(), 3);
    for (i, f) in &report.per_call {
        assert!(f.frames > 50 && f.packets > 50, "call {i}: {f:?}");
        assert!(f.lateness_ms.count > 0, "call {i}: {f:?}");
    }
    // The probe that leaves the emulator each second was heard.
    assert!(report.all.latency_ms.count >= 1, "{:?}", report.all);
    assert!(report.all.latency_ms.p50 > 0.0);
    // CPU was attributed to the bot's threads and turned into calls per core.
    assert!(report.cpu.bot_pipeline > 0.0 && report.cpu.bot_network > 0.0);
    assert!(report.calls_per_core > 0.0 && report.cpu_per_call_percent > 0.0);
    assert!(report.health.normal + report.health.heavily_loaded + report.health.overloaded > 0);
    assert!(report.impaired.is_none());
    assert_eq!(report.encoder.complexity, 5);

    let json = serde_json::to_value(&report).expect("json");
    assert!(json["calls_per_core"].as_f64().is_some_and(|v| v > 0.0));
    assert!(json["all"]["lateness_ms"]["p99"].is_number());
    assert!(report.table().contains("calls per core"));
}

#[test]
fn a_load_run_on_shared_udp_batches_the_sends() {
    let mut options = short(4);
    options.shared_udp = true;
    let report = run(options, |_| {}).expect("load runs");
    eprintln!("{}", report.table());
    assert_eq!((report.connected, report.failed), (4, 0));
    let n = report.network;
    assert!(
        n.shared_sockets >= 1 && n.shared_sockets <= n.pumps,
        "{n:?}"
    );
    // Four calls' packets of a tick leave in one system call: fewer calls than datagrams.
    assert!(n.datagrams_out > 40.0, "{n:?}");
    assert!(n.send_calls < n.datagrams_out / 2.0, "{n:?}");
    assert_eq!(n.path_conflicts, 0, "{n:?}");
    for (i, f) in &report.per_call {
        assert!(f.frames > 50 && f.packets > 50, "call {i}: {f:?}");
    }
    assert!(report.table().contains("shared socket"));
}

#[test]
fn a_load_run_on_the_lean_media_path_carries_every_call() {
    let mut options = short(4);
    options.lean_media = true;
    let report = run(options, |_| {}).expect("load runs");
    eprintln!("{}", report.table());
    assert_eq!((report.connected, report.failed), (4, 0));
    let n = report.network;
    assert_eq!(n.lean_legs, 4, "{n:?}");
    assert!(n.datagrams_in > 40.0 && n.datagrams_out > 40.0, "{n:?}");
    for (i, f) in &report.per_call {
        assert!(f.frames > 50 && f.packets > 50, "call {i}: {f:?}");
    }
    assert!(report.table().contains("4 leg(s) on the lean media path"));
}
