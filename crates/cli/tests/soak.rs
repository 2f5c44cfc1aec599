//! Soak, short: cycles of concurrent calls on one platform (connect, carry media, hang up)
//! leave threads, file descriptors and memory where the first cycle left them. The full
//! run (`botmedia load --cycles ...`) and its figures are in the README.

use std::time::Duration;

use botmedia_cli::load::{LoadOptions, run};

#[test]
fn call_cycles_leave_threads_descriptors_and_memory_where_they_were() {
    let mut options = LoadOptions::default();
    options.calls = 3;
    options.cycles = 4;
    options.duration = Duration::from_secs(1);
    options.warmup = Duration::from_millis(200);
    options.pipeline.threads = 1;
    let report = run(options, |_| {}).expect("soak runs");
    eprintln!("{}", report.table());
    assert_eq!((report.failed, report.refused), (0, 0), "{report:?}");
    assert_eq!(report.connected, 3);
    let (a, b) = (report.resources_before, report.resources_after);
    // Measured after cycle 1 and after cycle 4: three more cycles of three calls each.
    // A leak of one thread or socket per call would add 9; a little slack covers the
    // runtimes' idle blocking threads.
    assert!(b.threads <= a.threads + 2, "threads {a:?} -> {b:?}");
    assert!(b.fds <= a.fds + 2, "descriptors {a:?} -> {b:?}");
    // Nine calls' worth of legs is about 50 MiB; allocator slack is far less.
    assert!(b.rss_kib <= a.rss_kib + 16 * 1024, "RSS {a:?} -> {b:?}");
    // The heap in use, without the allocator's slack: the emulator in the same process
    // keeps its last 200 ended calls and 500 log entries (about 65 KiB a call here); a
    // leaked pipeline call (codecs, jitter slots, queues) or media leg costs more than
    // twice that.
    assert!(
        b.heap_kib <= a.heap_kib + 9 * 128,
        "heap in use {a:?} -> {b:?}"
    );
    // No task of the bot's (a call's state machine, a leg's) outlives its call.
    assert!(b.tasks <= a.tasks, "bot tasks {a:?} -> {b:?}");
}
