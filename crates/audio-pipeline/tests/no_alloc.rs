//! Steady state allocates, frees and logs nothing on the pipeline threads.
//!
//! A counting global allocator counts allocations made on threads the pipeline's start
//! hook marked; a tracing subscriber counts events on them. Eight calls (then a ninth
//! added and one removed mid-run) run 10 000 ticks each with loss, reordering,
//! duplicates, garbage payloads and a stray sequence jump. Every third call also
//! receives 4 unmixed speaker streams (lossy, switching speakers every 5 s).

mod common;

use audio_pipeline::{
    CallConfig, Csrcs, EncodedPacket, MAX_UNMIXED_STREAMS, OpusConfig, Pipeline, PipelineConfig,
    Realtime, RtpMeta, Ticks,
};
use common::{Rng, Tone};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

thread_local! {
    static PIPELINE_THREAD: Cell<bool> = const { Cell::new(false) };
}

static PIPE_ALLOCS: AtomicU64 = AtomicU64::new(0);
static PIPE_FREES: AtomicU64 = AtomicU64::new(0);
static PIPE_EVENTS: AtomicU64 = AtomicU64::new(0);
static MARKED_THREADS: AtomicU64 = AtomicU64::new(0);

fn on_pipeline_thread() -> bool {
    // `try_with`: during thread teardown the slot may be gone; those are not ticks.
    PIPELINE_THREAD.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees hold; the counting touches only atomics and a const-initialised
// thread-local `Cell<bool>`, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if on_pipeline_thread() {
            PIPE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's valid, non-zero-size layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if on_pipeline_thread() {
            PIPE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_pipeline_thread() {
            PIPE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` (via this allocator) with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if on_pipeline_thread() {
            PIPE_FREES.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` was allocated by `System` (via this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Counts every tracing event emitted on a pipeline thread.
struct EventCounter;

impl tracing::Subscriber for EventCounter {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        if on_pipeline_thread() {
            PIPE_EVENTS.fetch_add(1, Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// 1 s of a tone as Opus packets (complexity 0, FEC on), reused in a loop by every
/// stream so the feeder stays cheap.
fn payload_pool() -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_complexity(0).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(20).unwrap();
    let mut tone = Tone::new(300.0, 6000.0);
    (0..50)
        .map(|_| {
            let mut buf = [0u8; 1276];
            let n = enc.encode(&tone.frame().samples, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

struct Stream {
    call: audio_pipeline::Call,
    seq: u16,
    ts: u32,
    pushed: u64,
    held: Option<EncodedPacket>,
    frames_seen: Arc<AtomicU64>,
    /// Unmixed speaker streams the call receives beside the mix.
    unmixed: u8,
}

const TICKS: u64 = 10_000;

#[test]
fn steady_state_makes_no_allocation_free_or_log_on_pipeline_threads() {
    tracing::subscriber::set_global_default(EventCounter).unwrap();
    let pool = payload_pool();
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 2,
        max_calls_per_thread: 8,
        realtime: Realtime::Off,
        // 10 000 ticks in about 20 s instead of 200 s: media time still moves 20 ms/tick.
        tick_interval: Ticks::from_millis(2),
        // 2 ms ticks on a busy shared machine measure as overloaded; admission by load
        // has its own tests (tests/overload.rs), this one is about allocation.
        admit_by_load: false,
        on_thread_start: Some(Arc::new(|_| {
            PIPELINE_THREAD.with(|f| f.set(true));
            MARKED_THREADS.fetch_add(1, Ordering::Relaxed);
        })),
        ..PipelineConfig::default()
    })
    .unwrap();

    let opus = OpusConfig {
        complexity: 0,
        ..OpusConfig::default()
    };
    let add = |i: u32| {
        let frames_seen = Arc::new(AtomicU64::new(0));
        let seen = Arc::clone(&frames_seen);
        let mut cfg = CallConfig::default().with_frame_callback(move |f| {
            // Non-allocating work on the pipeline thread, like a real bot callback.
            if !f.is_silence {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            for e in &f.unmixed {
                std::hint::black_box(e.pcm.peak());
            }
        });
        cfg.opus = opus;
        if i % 3 == 2 {
            cfg.unmixed_streams = MAX_UNMIXED_STREAMS as u8;
        }
        let unmixed = cfg.unmixed_streams;
        // Half the calls also use the received-frame queue.
        if i % 2 == 1 {
            cfg.receive_queue_frames = 0;
        }
        Stream {
            call: pipeline.add_call(cfg).unwrap(),
            seq: (i as u16).wrapping_mul(7919).wrapping_add(65_000),
            ts: i.wrapping_mul(1_000_003),
            pushed: 0,
            held: None,
            frames_seen,
            unmixed,
        }
    };
    let mut streams: Vec<Stream> = (0..8).map(add).collect();
    let mut rng = Rng(7);
    let mut added_ninth = false;
    let mut removed_one = false;
    let mut garbage = 0u64;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);

    loop {
        let min_frames = streams
            .iter()
            .map(|s| s.call.handle.stats().frames_received)
            .min()
            .unwrap_or(0);
        if min_frames >= TICKS {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "too slow: {min_frames} ticks"
        );
        if !added_ninth && min_frames >= TICKS / 3 {
            streams.push(add(8));
            added_ninth = true;
        }
        if !removed_one && min_frames >= TICKS / 2 {
            let s = streams.remove(0);
            drop(s.call);
            removed_one = true;
        }
        for s in streams.iter_mut() {
            let received = s.call.handle.stats().frames_received;
            // Keep about three packets ahead of playout.
            while s.pushed < received + 3 {
                let meta = RtpMeta {
                    seq: s.seq,
                    rtp_timestamp: s.ts,
                    ssrc: 0xFEED,
                    ..RtpMeta::default()
                };
                let payload = &pool[(s.pushed % pool.len() as u64) as usize];
                let mut p = EncodedPacket::new(meta, payload).unwrap();
                // The speaker streams: each its own SSRC and speaker, the speakers moving
                // to the next stream every 250 packets, 5 % of packets lost.
                for k in 1..=s.unmixed {
                    if rng.unit() < 0.05 {
                        continue;
                    }
                    let mut speaker = Csrcs::new();
                    let turn = (s.pushed / 250) as u32;
                    speaker
                        .push(100 + (u32::from(k) + turn) % 5, Some(30))
                        .unwrap();
                    let meta = RtpMeta {
                        ssrc: 0xBEE0 + u32::from(k),
                        csrcs: speaker,
                        stream: k,
                        ..meta
                    };
                    let payload =
                        &pool[((s.pushed + 7 * u64::from(k)) % pool.len() as u64) as usize];
                    let _ = s
                        .call
                        .network
                        .push_packet(EncodedPacket::new(meta, payload).unwrap());
                }
                s.pushed += 1;
                s.seq = s.seq.wrapping_add(1);
                s.ts = s.ts.wrapping_add(960);
                let r = rng.unit();
                if r < 0.05 {
                    continue; // lost
                }
                if r < 0.06 {
                    // Garbage payload with a valid-looking header.
                    let junk: Vec<u8> = (0..40).map(|_| rng.next_u64() as u8).collect();
                    p.set_payload(&junk).unwrap();
                    garbage += 1;
                }
                if r > 0.999 {
                    // A stray packet far out of sequence.
                    let mut stray = p;
                    stray.meta.seq = stray.meta.seq.wrapping_add(20_000);
                    let _ = s.call.network.push_packet(stray);
                }
                let dup = rng.unit() < 0.03;
                if s.held.is_none() && rng.unit() < 0.05 {
                    s.held = Some(p); // delivered after the next one: reordered
                    continue;
                }
                let _ = s.call.network.push_packet(p);
                if dup {
                    let _ = s.call.network.push_packet(p);
                }
                if let Some(h) = s.held.take() {
                    let _ = s.call.network.push_packet(h);
                }
            }
            while s.call.bot.send_capacity_left() > 0 {
                let mut f = audio_pipeline::Pcm16K::SILENCE;
                f.samples[0] = 100;
                let _ = s.call.bot.try_send(f);
            }
            while s.call.network.pop_packet().is_some() {}
            while s.call.bot.try_recv().is_some() {}
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
    }

    let allocs = PIPE_ALLOCS.load(Ordering::Relaxed);
    let frees = PIPE_FREES.load(Ordering::Relaxed);
    let events = PIPE_EVENTS.load(Ordering::Relaxed);
    let stats: Vec<_> = streams.iter().map(|s| s.call.handle.stats()).collect();
    let loads = pipeline.thread_loads();
    let heard: u64 = streams
        .iter()
        .map(|s| s.frames_seen.load(Ordering::Relaxed))
        .sum();
    drop(streams);
    drop(pipeline);

    assert_eq!(
        MARKED_THREADS.load(Ordering::Relaxed),
        2,
        "hook ran on each thread"
    );
    assert_eq!(allocs, 0, "allocations on pipeline threads in steady state");
    assert_eq!(frees, 0, "frees on pipeline threads in steady state");
    assert_eq!(events, 0, "log events on pipeline threads in steady state");

    // The test must have exercised the hard paths.
    let total = |f: fn(&audio_pipeline::CallStats) -> u64| stats.iter().map(f).sum::<u64>();
    assert!(total(|s| s.concealed) > 100, "{stats:?}");
    // The receive path's time-scale modification and merges ran too.
    assert!(total(|s| s.merged_samples) > 0, "{stats:?}");
    assert!(
        total(|s| s.accelerated_samples + s.expanded_samples) > 0,
        "{stats:?}"
    );
    assert!(total(|s| s.duplicate_packets) > 100, "{stats:?}");
    assert!(total(|s| s.invalid_packets) > 0 && garbage > 0, "{stats:?}");
    assert!(total(|s| s.frames_sent) > 50_000, "{stats:?}");
    // Three calls (one added mid-run) decoded 4 lossy, switching speaker streams each.
    assert!(total(|s| s.unmixed_frames) > 2 * 4 * TICKS / 2, "{stats:?}");
    assert!(total(|s| s.unmixed_concealed) > 100, "{stats:?}");
    assert!(total(|s| s.unmixed_speaker_changes) > 50, "{stats:?}");
    assert!(loads.iter().all(|l| l.ticks >= TICKS), "{loads:?}");
    assert!(
        heard > 8 * TICKS / 2,
        "callbacks heard {heard} non-silent frames"
    );
}
