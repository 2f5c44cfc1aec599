//! Load testing: many concurrent app-hosted calls between a bot on this platform and the
//! embedded emulator, on loopback, with the bot's own costs measured.
//!
//! The emulator's participants say `load`: each sends one pre-encoded second of Opus in a
//! loop and only counts what it hears, so the emulator does no codec work and what the
//! figures show is the bot's. The bot side is the real one: a [`MediaPlatform`], a media
//! session per call created through the Graph calling API, a frame callback per call, and a
//! driver thread sending a speech-like signal on every socket.
//!
//! Measured, over a window after a warm-up:
//! - CPU by thread group (from `/proc/self/task/*/schedstat`): the bot's pipeline threads
//!   and its network runtime, the driver, the emulator's runtime. The bot's cores per call
//!   give the calls per core.
//! - Tick lateness per call and frame: when the pipeline handed the frame to the bot,
//!   minus its 20 ms deadline (includes the calls ticked before it on its thread).
//! - Deadline misses: call ticks the pipeline flagged late (past its late-tick threshold).
//! - End-to-end latency: a 1 kHz probe leaves the emulator on every whole second of the
//!   media clock; the time until the bot's frame plays its onset (network, jitter buffer,
//!   decode, tick alignment).
//! - Loss and concealment from the pipeline's counters; RSS per call; platform health.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audio_pipeline::{
    CallStats, OpusConfig, Pcm16K, PipelineConfig, PlatformHealth, ReceivedFrame, SAMPLES_PER_FRAME,
};
use botmedia::emulator::scenario::{
    Answer, DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, Faults, Scenario, User, Voice,
};
use botmedia::emulator::{Emulator, EmulatorConfig};
use media_session::AudioSocketSettings;
use serde::Serialize;
use signalling::token::SecretString;
use signalling::{CallRequest, CommunicationsClient, CommunicationsSettings, Credentials};

use botmedia::{MediaPlatform, MediaPlatformSettings, MediaSession, SessionError};

/// 100 ns ticks per second and per 16 kHz sample.
const TICKS_PER_SECOND: u64 = 10_000_000;
const TICKS_PER_SAMPLE: u64 = 625;
/// Probe detection looks at frames in this part of each second only (the probe leaves on
/// the whole second; it arrives well within this).
const PROBE_WINDOW: u64 = 6 * TICKS_PER_SECOND / 10;
const PROBE_HZ: f32 = 1_000.0;
/// Frames the driver keeps queued on each socket.
const SEND_AHEAD: usize = 2;
/// How long calls may take to connect media, per call on top of a base.
const CONNECT_BASE: Duration = Duration::from_secs(20);
const CONNECT_PER_CALL: Duration = Duration::from_millis(300);

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Concurrent calls.
    pub calls: usize,
    /// Length of the measurement window.
    pub duration: Duration,
    /// Time between the last call connecting and the window opening.
    pub warmup: Duration,
    /// Times the whole cycle (connect, measure, hang up) runs on the same platform;
    /// more than one is a soak, and resources are compared between the first and last.
    pub cycles: usize,
    /// Calls being set up at once.
    pub setup_concurrency: usize,
    /// Pause between two batches of call set-ups (a slow ramp lets the platform's health,
    /// measured over one-second windows, follow the load).
    pub ramp: Duration,
    /// Network faults on the way to the bot, for the first `faulty_calls` calls.
    pub faults: Option<Faults>,
    /// How many calls get `faults` (all when larger than `calls`).
    pub faulty_calls: usize,
    /// Faults of call `i`, overriding `faults` for the calls it covers.
    pub per_call_faults: Vec<Option<Faults>>,
    /// The bot's pipeline: threads, priority, health thresholds.
    pub pipeline: PipelineConfig,
    /// A bot's leg that hears nothing (no RTP, no RTCP) for this long counts as dead.
    pub media_timeout: Duration,
    /// Unmixed speaker streams each call asks for (0..=4); the load participant sends its
    /// loop on each of them too, so every stream is decoded.
    pub unmixed_streams: u8,
    /// The bot's legs share one UDP socket per network pump (shared-UDP mode).
    pub shared_udp: bool,
    /// The bot's legs run on the lean media path (the default), or the whole stack.
    pub lean_media: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            calls: 10,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            cycles: 1,
            setup_concurrency: 8,
            ramp: Duration::ZERO,
            faults: None,
            faulty_calls: usize::MAX,
            per_call_faults: Vec::new(),
            pipeline: PipelineConfig::default(),
            media_timeout: Duration::from_secs(10),
            unmixed_streams: 0,
            shared_udp: false,
            lean_media: true,
        }
    }
}

/// Why the load test could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A part failed to start or a request failed.
    #[error("{step}: {message}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The options make no sense.
    #[error("invalid load options: {0}")]
    Options(&'static str),
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> LoadError {
    move |e| LoadError::Step {
        step,
        message: e.to_string(),
    }
}

/// What the load test is doing, for a progress line.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Progress {
    /// Cycle, from 1.
    pub cycle: usize,
    /// What is happening.
    pub phase: Phase,
    /// Calls whose media is connected.
    pub connected: usize,
    /// Seconds into the measurement window.
    pub seconds: f64,
    /// The platform's health now.
    pub health: PlatformHealth,
    /// Cores the bot used over the last second.
    pub bot_cores: f64,
    /// Worst frame lateness so far in the window, ms.
    pub max_lateness_ms: f64,
    /// Frames handed over later than the late-tick threshold, so far in the window.
    pub deadline_misses: u64,
    /// Threads, descriptors and memory of the process now.
    pub resources: Resources,
}

/// A phase of a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Phase {
    /// Creating calls and connecting media.
    Connecting,
    /// Calls are up, before the window.
    WarmingUp,
    /// In the measurement window.
    Measuring,
    /// Hanging up.
    HangingUp,
    /// The cycle's calls have ended and the pipeline has freed them.
    Ended,
}

/// p50, p99 and max of a distribution, in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Samples.
    pub count: u64,
}

/// CPU time by thread group over the window, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CpuSeconds {
    /// The bot's pipeline threads (jitter buffer, decode, encode, pacing, the callback).
    pub bot_pipeline: f64,
    /// The bot's network side: its media endpoint's pump threads (WebRTC legs, SRTP) and
    /// its runtime (HTTP, signalling, the calls' event loops).
    pub bot_network: f64,
    /// Of which the pump threads.
    pub bot_pumps: f64,
    /// The load driver (the bot application sending frames).
    pub driver: f64,
    /// The emulator's runtime and threads.
    pub emulator: f64,
    /// Everything else in the process.
    pub other: f64,
}

/// Figures of a group of calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CallFigures {
    /// Calls in the group.
    pub calls: usize,
    /// Frames handed to the bot.
    pub frames: u64,
    /// Frames concealed (loss, lateness, delay changes).
    pub concealed: u64,
    /// Lost packets rebuilt from in-band FEC.
    pub fec_recovered: u64,
    /// Packets received.
    pub packets: u64,
    /// Unmixed speaker frames handed to the bot (entries of its frames).
    pub unmixed_frames: u64,
    /// Duplicate packets the jitter buffer dropped (SRTP's replay check drops most
    /// duplicates before they get there).
    pub duplicates: u64,
    /// Packets that came after their playout time.
    pub late_packets: u64,
    /// Packets the link lost on the way in (RTP sequence gaps), per the last reports.
    pub link_lost: u64,
    /// Concealed frames as a share of frames, percent.
    pub concealed_percent: f64,
    /// FEC-recovered frames as a share of frames, percent.
    pub fec_percent: f64,
    /// Call ticks flagged late.
    pub deadline_misses: u64,
    /// Calls whose media leg had ended by the end of the window (the peer vanished or
    /// went silent past the media timeout); their pipeline calls kept running.
    pub ended_legs: usize,
    /// Frames handed over later than the late-tick threshold after their deadline.
    pub late_frames: u64,
    /// Frame lateness: when the bot got the frame, minus its 20 ms deadline (the tick's
    /// lateness plus the calls ticked before it on its thread), ms.
    pub lateness_ms: Percentiles,
    /// End-to-end latency of the probe, ms.
    pub latency_ms: Percentiles,
}

/// Threads, file descriptors and memory of the process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resources {
    /// Threads.
    pub threads: usize,
    /// Open file descriptors.
    pub fds: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Heap in use: what the allocator has handed out and not had back (glibc's
    /// `mallinfo2`, arenas and mmapped blocks), KiB. Growth here is memory held by the
    /// program; RSS growing while this holds is the allocator keeping freed pages.
    pub heap_kib: u64,
    /// Tasks alive on the runtime that read these figures (the bot's, in the load
    /// tool): a task per call that never ends shows here first.
    pub tasks: usize,
}

/// Samples of the platform's health over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthSeen {
    /// Samples at Normal.
    pub normal: u64,
    /// Samples at HeavilyLoaded.
    pub heavily_loaded: u64,
    /// Samples at Overloaded.
    pub overloaded: u64,
}

/// What a load test measured (the last cycle's window; resources across cycles).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct LoadReport {
    /// Calls asked for.
    pub calls: usize,
    /// Calls whose media connected (last cycle).
    pub connected: usize,
    /// Sessions the platform refused, over all cycles.
    pub refused: usize,
    /// Why sessions were refused: each error and how often.
    pub refusals: BTreeMap<String, usize>,
    /// Calls that failed otherwise (create or media), over all cycles.
    pub failed: usize,
    /// Cycles run.
    pub cycles: usize,
    /// Window length, s.
    pub seconds: f64,
    /// Cores of the machine.
    pub cores: usize,
    /// The bot's pipeline threads.
    pub pipeline_threads: usize,
    /// The bot's encoder settings.
    pub encoder: EncoderSettings,
    /// Unmixed speaker streams each call asked for.
    pub unmixed_streams: u8,
    /// CPU by thread group.
    pub cpu: CpuSeconds,
    /// Cores the bot (pipeline + network) used.
    pub bot_cores: f64,
    /// The bot's CPU per call, percent of a core.
    pub cpu_per_call_percent: f64,
    /// Calls one core carries at that cost.
    pub calls_per_core: f64,
    /// The bot's network pumps: wake-ups per call per second over the window (a datagram,
    /// a pipeline tick with packets to send, a timer), and datagrams in and out per call
    /// per second.
    pub network: NetworkFigures,
    /// Of which the pipeline alone.
    pub pipeline_calls_per_core: f64,
    /// Tick lateness: when a pipeline thread's tick handed over its first frame, minus
    /// the tick's deadline, ms.
    pub tick_lateness_ms: Percentiles,
    /// All calls.
    pub all: CallFigures,
    /// Calls without faults.
    pub clean: CallFigures,
    /// Calls with faults, when some had them.
    pub impaired: Option<CallFigures>,
    /// Each connected call's figures, by call index.
    pub per_call: Vec<(usize, CallFigures)>,
    /// Resident memory added per call (bot and emulator legs together), KiB.
    pub rss_per_call_kib: f64,
    /// Admission at the end of the window: the cost of one call per tick it projects
    /// with, microseconds (measured, or the assumption before any measurement).
    pub admission_call_cost_us: f64,
    /// Calls the platform would hold in all at that cost (running plus room left).
    pub admission_capacity: usize,
    /// Health over the window.
    pub health: HealthSeen,
    /// The worst health seen.
    pub worst_health: Option<String>,
    /// Resources before the first cycle's calls (or after the first cycle, for a soak).
    pub resources_before: Resources,
    /// Resources after the last cycle's calls ended.
    pub resources_after: Resources,
    /// Load on the machine from other processes during the window (1-minute load average).
    pub load_average: f64,
}

/// The encoder settings the pipeline uses for every call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EncoderSettings {
    /// Bitrate, b/s.
    pub bitrate_bps: u32,
    /// Complexity 0..=10.
    pub complexity: u8,
    /// In-band FEC.
    pub inband_fec: bool,
    /// DTX.
    pub dtx: bool,
}

impl From<OpusConfig> for EncoderSettings {
    fn from(c: OpusConfig) -> Self {
        Self {
            bitrate_bps: c.bitrate_bps,
            complexity: c.complexity,
            inband_fec: c.inband_fec,
            dtx: c.dtx,
        }
    }
}

/// A fixed-bucket histogram written from the pipeline threads without locks or allocation.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    width: u64,
    max: AtomicU64,
}

impl Histogram {
    fn new(width: u64, buckets: usize) -> Self {
        Self {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            width,
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, v: u64) {
        let i = ((v / self.width) as usize).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(v, Ordering::Relaxed);
    }

    fn add_to(&self, counts: &mut Vec<u64>, max: &mut u64) {
        counts.resize(self.buckets.len(), 0);
        for (c, b) in counts.iter_mut().zip(self.buckets.iter()) {
            *c += b.load(Ordering::Relaxed);
        }
        *max = (*max).max(self.max.load(Ordering::Relaxed));
    }
}

/// Percentiles of merged bucket counts (`width` ticks per bucket), in ms; a percentile is
/// its bucket's upper edge, never above the true max.
fn percentiles(counts: &[u64], max: u64, width: u64) -> Percentiles {
    let total: u64 = counts.iter().sum();
    let ms = |ticks: u64| ticks as f64 / 10_000.0;
    if total == 0 {
        return Percentiles::default();
    }
    let at = |q: f64| {
        let rank = ((total as f64 * q).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return ms(((i as u64 + 1) * width).min(max));
            }
        }
        ms(max)
    };
    Percentiles {
        p50: at(0.5),
        p99: at(0.99),
        max: ms(max),
        count: total,
    }
}

/// One call's measurements, written by its frame callback.
struct CallProbe {
    lateness: Histogram,
    latency: Histogram,
}

impl CallProbe {
    fn new() -> Self {
        Self {
            // 50 us buckets up to 100 ms; 1 ms buckets up to 2 s.
            lateness: Histogram::new(500, 2_000),
            latency: Histogram::new(10_000, 2_000),
        }
    }
}

/// Relative power of `hz` in a frame, 0 for a frame quieter than 1e4.
fn tone_share(pcm: &[i16], hz: f32) -> f32 {
    crate::tone::tone_share(pcm, hz, 1e4)
}

/// Pipeline threads told apart by the phase of their deadlines (each thread's deadlines
/// are its start plus whole ticks): at most this many.
const MAX_THREADS: usize = 64;

/// Tick lateness per pipeline thread: the first frame a thread hands over for a deadline
/// comes from the first call it ticks, so its lateness is the tick's (wake-up after the
/// deadline, plus that one call's receive work). Lock-free and allocation-free.
struct TickClock {
    phases: [AtomicU64; MAX_THREADS],
    last: [AtomicU64; MAX_THREADS],
    lateness: Histogram,
}

impl TickClock {
    fn new() -> Self {
        Self {
            phases: std::array::from_fn(|_| AtomicU64::new(0)),
            last: std::array::from_fn(|_| AtomicU64::new(0)),
            lateness: Histogram::new(500, 2_000),
        }
    }

    fn on_frame(&self, deadline: u64, now: u64) {
        // +1: zero marks a free slot.
        let phase = deadline % audio_pipeline::FRAME_DURATION.0 + 1;
        for (slot, last) in self.phases.iter().zip(&self.last) {
            let owner = match slot.compare_exchange(0, phase, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => phase,
                Err(current) => current,
            };
            if owner == phase {
                if last.fetch_max(deadline, Ordering::AcqRel) < deadline {
                    self.lateness.record(now.saturating_sub(deadline));
                }
                return;
            }
        }
    }
}

/// The per-frame work of the bot: lateness always, the probe's onset near whole seconds.
fn frame_callback(
    probe: Arc<CallProbe>,
    ticks: Arc<TickClock>,
    measuring: Arc<AtomicBool>,
) -> impl FnMut(&ReceivedFrame) + Send + 'static {
    let mut high = false;
    move |frame: &ReceivedFrame| {
        let now = audio_pipeline::now();
        if !measuring.load(Ordering::Relaxed) {
            return;
        }
        ticks.on_frame(frame.timestamp.0, now.0);
        probe
            .lateness
            .record(now.0.saturating_sub(frame.timestamp.0));
        let into_second = now.0 % TICKS_PER_SECOND;
        if into_second >= PROBE_WINDOW {
            high = false;
            return;
        }
        let share = tone_share(&frame.pcm.samples, PROBE_HZ);
        let is_high = share > 0.5;
        if is_high && !high {
            let onset = frame
                .pcm
                .samples
                .iter()
                .position(|s| s.unsigned_abs() > 2_000)
                .unwrap_or(0) as u64;
            probe.latency.record(into_second + onset * TICKS_PER_SAMPLE);
        }
        high = is_high;
    }
}

/// One second of the bot's speech-like signal (harmonics under a syllable envelope).
fn speech_loop() -> Vec<Pcm16K> {
    (0..50)
        .map(|i| {
            let mut f = Pcm16K::SILENCE;
            for (n, s) in f.samples.iter_mut().enumerate() {
                let t = (i * SAMPLES_PER_FRAME + n) as f64 / 16_000.0;
                let envelope = 0.5 + 0.5 * (std::f64::consts::TAU * 3.0 * t).sin();
                let v: f64 = [180.0, 360.0, 540.0, 900.0, 1_400.0]
                    .iter()
                    .enumerate()
                    .map(|(k, hz)| (std::f64::consts::TAU * hz * t).sin() / (k as f64 + 1.0))
                    .sum();
                *s = (0.08 * envelope * v * 32_767.0).round() as i16;
            }
            f
        })
        .collect()
}

/// Runs the bot's sending side: every socket kept `SEND_AHEAD` frames ahead.
struct Driver {
    stop: Arc<AtomicBool>,
    snapshot: Arc<Snapshot>,
    handle: std::thread::JoinHandle<Vec<MediaSession>>,
}

/// A request to the driver for every call's counters (it holds the sockets).
#[derive(Default)]
struct Snapshot {
    wanted: AtomicBool,
    stats: std::sync::Mutex<Vec<CallStats>>,
}

impl Driver {
    fn start(mut sessions: Vec<MediaSession>) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let snapshot = Arc::new(Snapshot::default());
        let snap = Arc::clone(&snapshot);
        let handle = std::thread::Builder::new()
            .name("load-driver".into())
            .spawn(move || {
                let speech = speech_loop();
                let mut positions = vec![0usize; sessions.len()];
                // Each queue's capacity: what it reports while still empty.
                let capacities: Vec<usize> = sessions
                    .iter_mut()
                    .map(|s| s.audio_socket().send_capacity())
                    .collect();
                let start = Instant::now();
                let mut tick = 0u32;
                while !flag.load(Ordering::Acquire) {
                    for ((s, pos), cap) in sessions.iter_mut().zip(&mut positions).zip(&capacities)
                    {
                        let socket = s.audio_socket();
                        // Frames sent before Active are discarded: wait for it.
                        if !socket.is_active() {
                            continue;
                        }
                        while socket.send_capacity() + SEND_AHEAD > *cap {
                            if socket.send(speech[*pos % speech.len()]).is_err() {
                                break;
                            }
                            *pos += 1;
                        }
                    }
                    if snap.wanted.load(Ordering::Acquire) {
                        let stats = sessions
                            .iter_mut()
                            .map(|s| s.audio_socket().quality().pipeline)
                            .collect();
                        *snap.stats.lock().unwrap_or_else(|e| e.into_inner()) = stats;
                        snap.wanted.store(false, Ordering::Release);
                    }
                    tick += 1;
                    let next = start + Duration::from_millis(10) * tick;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                sessions
            })
            .map_err(step("starting the driver thread"))?;
        Ok(Self {
            stop,
            snapshot,
            handle,
        })
    }

    /// Every call's counters now, in session order (empty if the driver did not answer).
    async fn stats(&self) -> Vec<CallStats> {
        self.snapshot.wanted.store(true, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.snapshot.wanted.load(Ordering::Acquire) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        std::mem::take(
            &mut *self
                .snapshot
                .stats
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    fn stop(self) -> Vec<MediaSession> {
        self.stop.store(true, Ordering::Release);
        self.handle.join().unwrap_or_default()
    }
}

/// What the bot's network pumps did over the window, per call per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct NetworkFigures {
    /// Pump threads.
    pub pumps: usize,
    /// Times a pump woke from its wait.
    pub wakeups: f64,
    /// Datagrams read.
    pub datagrams_in: f64,
    /// Datagrams sent.
    pub datagrams_out: f64,
    /// System calls that sent them.
    pub send_calls: f64,
    /// Shared sockets open (0: every leg has its own).
    pub shared_sockets: usize,
    /// Legs on the lean media path at the end of the window.
    pub lean_legs: usize,
    /// Datagrams a shared socket dropped as nobody's, over the window (not per call).
    pub unrouted: u64,
    /// Peer addresses that moved between legs of a shared socket, over the window.
    pub path_conflicts: u64,
}

impl NetworkFigures {
    fn between(
        a: &botmedia::endpoint::NetworkStats,
        b: &botmedia::endpoint::NetworkStats,
        calls: f64,
        seconds: f64,
    ) -> NetworkFigures {
        let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / calls.max(1.0) / seconds.max(1e-9);
        NetworkFigures {
            pumps: b.pumps,
            wakeups: per(a.wakeups, b.wakeups),
            datagrams_in: per(a.datagrams_in, b.datagrams_in),
            datagrams_out: per(a.datagrams_out, b.datagrams_out),
            send_calls: per(a.send_calls, b.send_calls),
            shared_sockets: b.shared_sockets,
            lean_legs: b.lean_legs,
            unrouted: b.datagrams_unrouted.saturating_sub(a.datagrams_unrouted),
            path_conflicts: b.path_conflicts.saturating_sub(a.path_conflicts),
        }
    }
}

/// CPU time per thread group, from `/proc/self/task/*/schedstat` (ns on CPU).
fn cpu_by_group() -> BTreeMap<&'static str, u64> {
    let mut groups = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for t in tasks.flatten() {
        let path = t.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0u64);
        let group = match comm.trim() {
            c if c.starts_with("audio-pipeline") => "bot_pipeline",
            c if c.starts_with("bot-net") => "bot_network",
            c if c.starts_with("bm-net") => "bot_pumps",
            c if c.starts_with("load-driver") => "driver",
            // The emulator's runtime and the pumps of its service legs.
            c if c.starts_with("emulator") || c.starts_with("svc-net") => "emulator",
            _ => "other",
        };
        *groups.entry(group).or_insert(0) += ns;
    }
    groups
}

fn cpu_delta(
    before: &BTreeMap<&'static str, u64>,
    after: &BTreeMap<&'static str, u64>,
) -> CpuSeconds {
    // A thread that ended in between takes its time with it: clamp at zero.
    let d = |k: &str| {
        after
            .get(k)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(k).copied().unwrap_or(0)) as f64
            / 1e9
    };
    CpuSeconds {
        bot_pipeline: d("bot_pipeline"),
        bot_network: d("bot_network") + d("bot_pumps"),
        bot_pumps: d("bot_pumps"),
        driver: d("driver"),
        emulator: d("emulator"),
        other: d("other"),
    }
}

/// Heap in use per glibc, KiB.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 takes no arguments, only reads the allocator's statistics under
    // its own locks, and returns a plain struct by value.
    let info = unsafe { libc::mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

/// Heap in use: not known without glibc.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use_kib() -> u64 {
    0
}

/// Threads, descriptors, RSS and heap in use of this process.
pub fn resources() -> Resources {
    let count = |dir: &str| std::fs::read_dir(dir).map_or(0, |d| d.count());
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0);
    Resources {
        threads: count("/proc/self/task"),
        fds: count("/proc/self/fd"),
        heap_kib: heap_in_use_kib(),
        tasks: tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks()),
        rss_kib,
    }
}

/// Resources once closing legs have let go of their sockets: the WebRTC stack closes a
/// leg's sockets from its tasks, some time after the leg ended. Read when the descriptor
/// count has held for a second, or after 20 s.
async fn settled_resources() -> Resources {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = resources();
    let mut steady = 0;
    while Instant::now() < deadline && steady < 4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = resources();
        steady = if now.fds == last.fds && now.threads == last.threads {
            steady + 1
        } else {
            0
        };
        last = now;
    }
    last
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// The id of load participant `i`.
fn load_user_id(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012x}")
}

impl LoadOptions {
    /// The faults of call `i`.
    fn faults_of(&self, i: usize) -> Option<Faults> {
        match self.per_call_faults.get(i) {
            Some(f) => f.clone(),
            None => self.faults.clone().filter(|_| i < self.faulty_calls),
        }
    }
}

/// The emulator's scenario: one `load` user per call, impaired as the options say.
fn scenario(options: &LoadOptions) -> Scenario {
    let mut s = Scenario::default();
    s.meetings.clear();
    s.users = (0..options.calls)
        .map(|i| {
            let says = match options.faults_of(i) {
                Some(f) => Voice::Impaired {
                    voice: Box::new(Voice::Load),
                    faults: Faults {
                        seed: f.seed.wrapping_add(i as u64),
                        ..f
                    },
                },
                None => Voice::Load,
            };
            User {
                id: load_user_id(i),
                display_name: format!("Load {i}"),
                tenant_id: None,
                says,
                answer: Answer::AfterMs(0),
            }
        })
        .collect();
    s
}

struct Bot {
    platform: MediaPlatform,
    client: CommunicationsClient,
    webhook: tokio::task::JoinHandle<()>,
}

async fn start_bot(emu: &Emulator, options: &LoadOptions) -> Result<Bot, LoadError> {
    let mut settings = MediaPlatformSettings::default();
    settings.pipeline = options.pipeline.clone();
    settings.media_timeout = options.media_timeout;
    settings.shared_udp = options.shared_udp;
    settings.lean_media = options.lean_media;
    let platform = MediaPlatform::start(settings)
        .await
        .map_err(step("starting the media platform"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(step("binding the webhook"))?;
    let url = format!(
        "http://{}/callback",
        listener.local_addr().map_err(step("webhook address"))?
    );
    let mut s = CommunicationsSettings::new(
        DEFAULT_APP_ID,
        DEFAULT_TENANT,
        Credentials::Secret(SecretString::new(DEFAULT_APP_SECRET)),
        url,
    );
    s.graph_url = emu.graph_url();
    s.authority = emu.authority();
    s.openid_configuration_url = emu.openid_configuration_url();
    let client = CommunicationsClient::new(s).map_err(step("building the calling client"))?;
    let router = client.webhook_router();
    let webhook = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(Bot {
        platform,
        client,
        webhook,
    })
}

struct Placed {
    session: MediaSession,
    call: signalling::Call,
    probe: Arc<CallProbe>,
    impaired: bool,
    index: usize,
}

/// A connected call while the driver holds its session: the call, its probe, whether it
/// has faults.
type Running = (signalling::Call, Arc<CallProbe>, bool, usize);

/// Outcome of placing one call.
enum Placement {
    Placed(Box<Placed>),
    Refused(SessionError),
    Failed(String),
}

async fn place(
    platform: MediaPlatform,
    client: CommunicationsClient,
    unmixed_streams: u8,
    index: usize,
    impaired: bool,
    ticks: Arc<TickClock>,
    measuring: Arc<AtomicBool>,
) -> Placement {
    let probe = Arc::new(CallProbe::new());
    let session = match platform.create_session_with_callback(
        AudioSocketSettings::default().with_unmixed_meeting_audio(unmixed_streams),
        None,
        frame_callback(Arc::clone(&probe), ticks, measuring),
    ) {
        Ok(s) => s,
        Err(e) => return Placement::Refused(e),
    };
    let request = CallRequest::peer_to_peer(&load_user_id(index), Some("Load"))
        .app_hosted(session.description());
    match client.calls().create(&request).await {
        Ok(call) => Placement::Placed(Box::new(Placed {
            session,
            call,
            probe,
            impaired,
            index,
        })),
        Err(e) => Placement::Failed(format!("creating call {index}: {e}")),
    }
}

/// Runs the load test; `progress` hears about once a second.
pub fn run(options: LoadOptions, progress: impl FnMut(&Progress)) -> Result<LoadReport, LoadError> {
    if options.calls == 0 {
        return Err(LoadError::Options("calls must be at least 1"));
    }
    if options.cycles == 0 {
        return Err(LoadError::Options("cycles must be at least 1"));
    }
    if options.setup_concurrency == 0 {
        return Err(LoadError::Options("setup concurrency must be at least 1"));
    }
    if usize::from(options.unmixed_streams) > audio_pipeline::MAX_UNMIXED_STREAMS {
        return Err(LoadError::Options("unmixed streams must be 0 to 4"));
    }
    // Two runtimes with named threads, so CPU time is told apart by thread name.
    let emu_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("emulator-rt")
        .enable_all()
        .build()
        .map_err(step("starting the emulator's runtime"))?;
    let bot_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bot-net")
        .enable_all()
        .build()
        .map_err(step("starting the bot's runtime"))?;
    let emu = emu_rt
        .block_on(Emulator::start(EmulatorConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            scenario: scenario(&options),
        }))
        .map_err(step("starting the emulator"))?;
    let result = bot_rt.block_on(run_cycles(&emu, &options, progress));
    emu_rt.block_on(emu.shutdown());
    drop(bot_rt);
    drop(emu_rt);
    result
}

async fn run_cycles(
    emu: &Emulator,
    options: &LoadOptions,
    mut progress: impl FnMut(&Progress),
) -> Result<LoadReport, LoadError> {
    let pipeline_threads = options.pipeline.threads;
    let bot = start_bot(emu, options).await?;
    let mut report = LoadReport {
        calls: options.calls,
        cycles: options.cycles,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        pipeline_threads,
        encoder: OpusConfig::default().into(),
        unmixed_streams: options.unmixed_streams,
        resources_before: resources(),
        ..LoadReport::default()
    };
    for cycle in 1..=options.cycles {
        run_cycle(&bot, options, cycle, &mut report, &mut progress).await?;
        if cycle == 1 && options.cycles > 1 {
            // The first cycle warms up allocator arenas, lazy statics and thread pools:
            // a leak is what grows after it.
            report.resources_before = settled_resources().await;
        }
    }
    report.resources_after = settled_resources().await;
    bot.webhook.abort();
    bot.platform.shutdown().await;
    Ok(report)
}

async fn run_cycle(
    bot: &Bot,
    options: &LoadOptions,
    cycle: usize,
    report: &mut LoadReport,
    progress: &mut impl FnMut(&Progress),
) -> Result<(), LoadError> {
    let measuring = Arc::new(AtomicBool::new(false));
    let ticks = Arc::new(TickClock::new());
    let rss_base = resources().rss_kib;
    let mut placed = Vec::with_capacity(options.calls);
    let faulty = (0..options.calls)
        .filter(|&i| options.faults_of(i).is_some())
        .count();
    let report_progress = |progress: &mut dyn FnMut(&Progress), phase, connected| {
        progress(&Progress {
            cycle,
            phase,
            connected,
            seconds: 0.0,
            health: bot.platform.health(),
            bot_cores: 0.0,
            max_lateness_ms: 0.0,
            deadline_misses: 0,
            resources: resources(),
        })
    };
    // Place calls in batches.
    let mut index = 0;
    while index < options.calls {
        let end = (index + options.setup_concurrency).min(options.calls);
        let mut set = tokio::task::JoinSet::new();
        for i in index..end {
            set.spawn(place(
                bot.platform.clone(),
                bot.client.clone(),
                options.unmixed_streams,
                i,
                options.faults_of(i).is_some(),
                Arc::clone(&ticks),
                Arc::clone(&measuring),
            ));
        }
        while let Some(done) = set.join_next().await {
            match done {
                Ok(Placement::Placed(p)) => placed.push(*p),
                Ok(Placement::Refused(e)) => {
                    report.refused += 1;
                    *report.refusals.entry(e.to_string()).or_insert(0) += 1;
                }
                Ok(Placement::Failed(e)) => {
                    report.failed += 1;
                    tracing::warn!("{e}");
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!("placing a call: {e}");
                }
            }
        }
        index = end;
        report_progress(progress, Phase::Connecting, placed.len());
        if index < options.calls && !options.ramp.is_zero() {
            tokio::time::sleep(options.ramp).await;
        }
    }
    // Wait for media on every placed call.
    let deadline = Instant::now() + CONNECT_BASE + CONNECT_PER_CALL * options.calls as u32;
    loop {
        let active = placed
            .iter_mut()
            .map(|p| p.session.audio_socket().is_active())
            .filter(|&up| up)
            .count();
        let ended = placed
            .iter_mut()
            .map(|p| p.session.audio_socket().is_ended() || p.call.is_terminated())
            .filter(|&gone| gone)
            .count();
        if active + ended >= placed.len() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = placed.len();
    let mut dropped = Vec::new();
    placed.retain_mut(|p| {
        let up = p.session.audio_socket().is_active();
        if !up {
            dropped.push(p.call.handle().clone());
        }
        up
    });
    report.failed += before - placed.len();
    for h in dropped {
        let _ = h.hang_up().await;
    }
    report.connected = placed.len();
    report_progress(progress, Phase::WarmingUp, placed.len());

    let mut sessions = Vec::with_capacity(placed.len());
    let mut rest: Vec<Running> = Vec::with_capacity(placed.len());
    for p in placed {
        sessions.push(p.session);
        rest.push((p.call, p.probe, p.impaired, p.index));
    }
    let driver = Driver::start(sessions)?;
    tokio::time::sleep(options.warmup).await;

    // The window.
    let rss_steady = resources().rss_kib;
    let start = driver.stats().await;
    let cpu_start = cpu_by_group();
    let net_start = botmedia::endpoint::network_stats();
    let started = Instant::now();
    measuring.store(true, Ordering::Release);
    let mut health = HealthSeen::default();
    let mut worst = PlatformHealth::Normal;
    let mut last_cpu = cpu_start.clone();
    let mut next_progress = Duration::from_secs(1);
    while started.elapsed() < options.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let h = bot.platform.health();
        worst = worst.max(h);
        match h {
            PlatformHealth::Normal => health.normal += 1,
            PlatformHealth::HeavilyLoaded => health.heavily_loaded += 1,
            PlatformHealth::Overloaded => health.overloaded += 1,
        }
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            let now_cpu = cpu_by_group();
            let d = cpu_delta(&last_cpu, &now_cpu);
            last_cpu = now_cpu;
            let (mut counts, mut max) = (Vec::new(), 0);
            for (_, probe, _, _) in &rest {
                probe.lateness.add_to(&mut counts, &mut max);
            }
            let late = counts
                .get(lateness_bucket(options)..)
                .map_or(0, |c| c.iter().sum());
            progress(&Progress {
                cycle,
                phase: Phase::Measuring,
                connected: rest.len(),
                seconds: started.elapsed().as_secs_f64(),
                health: h,
                bot_cores: d.bot_pipeline + d.bot_network,
                max_lateness_ms: max as f64 / 10_000.0,
                deadline_misses: late,
                resources: resources(),
            });
        }
    }
    let cpu_end = cpu_by_group();
    let net_end = botmedia::endpoint::network_stats();
    let seconds = started.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Release);
    report.load_average = load_average();
    let mut sessions = driver.stop();

    // Figures.
    report.seconds = seconds;
    report.cpu = cpu_delta(&cpu_start, &cpu_end);
    let bot_s = report.cpu.bot_pipeline + report.cpu.bot_network;
    report.bot_cores = bot_s / seconds;
    let n = sessions.len().max(1) as f64;
    report.network = NetworkFigures::between(&net_start, &net_end, n, seconds);
    report.cpu_per_call_percent = 100.0 * report.bot_cores / n;
    report.calls_per_core = if bot_s > 0.0 {
        n / report.bot_cores
    } else {
        0.0
    };
    report.pipeline_calls_per_core = if report.cpu.bot_pipeline > 0.0 {
        n * seconds / report.cpu.bot_pipeline
    } else {
        0.0
    };
    report.rss_per_call_kib = rss_steady.saturating_sub(rss_base) as f64 / n;
    report.health = health;
    report.worst_health = Some(format!("{worst:?}"));
    let capacity = bot.platform.capacity();
    report.admission_call_cost_us = capacity.call_cost.as_nanos() as f64 / 1_000.0;
    report.admission_capacity = capacity.calls + capacity.room;
    let quality: Vec<(botmedia::Quality, bool)> = sessions
        .iter_mut()
        .map(|s| {
            let q = s.audio_socket().quality();
            (q, s.audio_socket().is_ended())
        })
        .collect();
    let late_bucket = lateness_bucket(options);
    let zero = CallStats::default();
    let group = |want: Option<bool>, only: Option<usize>| {
        let mut f = CallFigures::default();
        let (mut lat, mut lat_max, mut e2e, mut e2e_max) = (Vec::new(), 0, Vec::new(), 0);
        for (i, ((q, ended), (_, probe, impaired, index))) in quality.iter().zip(&rest).enumerate()
        {
            if want.is_some_and(|w| w != *impaired) || only.is_some_and(|o| o != *index) {
                continue;
            }
            f.calls += 1;
            f.ended_legs += usize::from(*ended);
            add_stats(&mut f, &q.pipeline, start.get(i).unwrap_or(&zero));
            f.link_lost += q.link.inbound_lost;
            probe.lateness.add_to(&mut lat, &mut lat_max);
            probe.latency.add_to(&mut e2e, &mut e2e_max);
        }
        let frames = f.frames.max(1) as f64;
        f.concealed_percent = 100.0 * f.concealed as f64 / frames;
        f.fec_percent = 100.0 * f.fec_recovered as f64 / frames;
        f.lateness_ms = percentiles(&lat, lat_max, 500);
        f.late_frames = lat.get(late_bucket..).map_or(0, |c| c.iter().sum());
        f.latency_ms = percentiles(&e2e, e2e_max, 10_000);
        f
    };
    let (mut tick_counts, mut tick_max) = (Vec::new(), 0);
    ticks.lateness.add_to(&mut tick_counts, &mut tick_max);
    report.tick_lateness_ms = percentiles(&tick_counts, tick_max, 500);
    report.all = group(None, None);
    report.clean = group(Some(false), None);
    report.impaired = (faulty > 0).then(|| group(Some(true), None));
    let mut indices: Vec<usize> = rest.iter().map(|r| r.3).collect();
    indices.sort_unstable();
    report.per_call = indices
        .into_iter()
        .map(|i| (i, group(None, Some(i))))
        .collect();

    report_progress(progress, Phase::HangingUp, rest.len());
    let mut set = tokio::task::JoinSet::new();
    for (call, _, _, _) in &rest {
        let h = call.handle().clone();
        set.spawn(async move { h.hang_up().await });
    }
    while set.join_next().await.is_some() {}
    drop(sessions);
    drop(rest);
    // Let the legs' tasks and the pipeline's reaper finish before resources are read.
    let settle = Instant::now() + Duration::from_secs(5);
    while bot.platform.active_calls() > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    report_progress(progress, Phase::Ended, 0);
    Ok(())
}

/// The histogram bucket from which a frame counts as a deadline miss: the pipeline's
/// late-tick threshold.
fn lateness_bucket(options: &LoadOptions) -> usize {
    (options.pipeline.health.late_tick.0 / 500) as usize
}

/// Adds the counters of the window: now minus its start.
fn add_stats(f: &mut CallFigures, s: &CallStats, start: &CallStats) {
    f.frames += s.frames_received.saturating_sub(start.frames_received);
    f.concealed += s.concealed.saturating_sub(start.concealed);
    f.fec_recovered += s.fec_recovered.saturating_sub(start.fec_recovered);
    f.packets += s.packets_received.saturating_sub(start.packets_received);
    f.unmixed_frames += s.unmixed_frames.saturating_sub(start.unmixed_frames);
    f.duplicates += s.duplicate_packets.saturating_sub(start.duplicate_packets);
    f.late_packets += s.late_packets.saturating_sub(start.late_packets);
    f.deadline_misses += s.late_ticks.saturating_sub(start.late_ticks);
}

impl LoadReport {
    /// The report as a table for a terminal.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let pct = |p: &Percentiles| format!("{:.2} / {:.2} / {:.2}", p.p50, p.p99, p.max);
        let _ = writeln!(
            t,
            "calls              {} connected of {} ({} refused, {} failed), {} cycle(s), window {:.1} s",
            self.connected, self.calls, self.refused, self.failed, self.cycles, self.seconds
        );
        let _ = writeln!(
            t,
            "machine            {} cores, load average {:.2}; bot pipeline threads {}",
            self.cores, self.load_average, self.pipeline_threads
        );
        let _ = writeln!(
            t,
            "encoder            Opus {} kb/s, complexity {}, FEC {}, DTX {}",
            self.encoder.bitrate_bps / 1000,
            self.encoder.complexity,
            if self.encoder.inband_fec { "on" } else { "off" },
            if self.encoder.dtx { "on" } else { "off" }
        );
        if self.unmixed_streams > 0 {
            let _ = writeln!(
                t,
                "unmixed audio      {} speaker streams per call, each carrying the load loop",
                self.unmixed_streams
            );
        }
        let c = &self.cpu;
        let per_call_tick =
            |s: f64| s * 1e6 / (self.seconds.max(1e-9) * 50.0) / self.connected.max(1) as f64;
        let _ = writeln!(
            t,
            "cpu (s)            bot pipeline {:.2}, bot network {:.2} (pumps {:.2}), driver {:.2}, emulator {:.2}, other {:.2}",
            c.bot_pipeline, c.bot_network, c.bot_pumps, c.driver, c.emulator, c.other
        );
        let _ = writeln!(
            t,
            "bot network        {} pump thread(s), {}, {}: {:.1} wake-ups, {:.1} datagrams in, {:.1} out in {:.1} send calls per call per second; cpu per call per 20 ms tick {:.1} us ({:.1} us in the pumps)",
            self.network.pumps,
            match self.network.lean_legs {
                0 => "the whole WebRTC stack per leg".to_owned(),
                n => format!("{n} leg(s) on the lean media path"),
            },
            match self.network.shared_sockets {
                0 => "a socket per leg".to_owned(),
                n => format!(
                    "{n} shared socket(s) ({} datagrams unrouted, {} path conflicts)",
                    self.network.unrouted, self.network.path_conflicts
                ),
            },
            self.network.wakeups,
            self.network.datagrams_in,
            self.network.datagrams_out,
            self.network.send_calls,
            per_call_tick(c.bot_network),
            per_call_tick(c.bot_pumps)
        );
        let _ = writeln!(
            t,
            "tick lateness      p50 / p99 / max {} ms over {} ticks",
            pct(&self.tick_lateness_ms),
            self.tick_lateness_ms.count
        );
        let _ = writeln!(
            t,
            "bot cpu            {:.3} cores, {:.2} % of a core per call -> {:.0} calls per core ({:.0} for the pipeline alone)",
            self.bot_cores,
            self.cpu_per_call_percent,
            self.calls_per_core,
            self.pipeline_calls_per_core
        );
        for (name, f) in [
            ("all calls", Some(&self.all)),
            ("faulty calls", self.impaired.as_ref()),
        ]
        .into_iter()
        .chain(
            self.impaired
                .as_ref()
                .map(|_| ("clean calls", Some(&self.clean))),
        ) {
            let Some(f) = f else { continue };
            let _ = writeln!(t, "{name} ({})", f.calls);
            let _ = writeln!(
                t,
                "  frame lateness   p50 / p99 / max {} ms over {} frames, {} later than 5 ms; deadline misses {}",
                pct(&f.lateness_ms),
                f.lateness_ms.count,
                f.late_frames,
                f.deadline_misses
            );
            let _ = writeln!(
                t,
                "  latency          p50 / p99 / max {} ms over {} probes (service -> bot frame)",
                pct(&f.latency_ms),
                f.latency_ms.count
            );
            let _ = writeln!(
                t,
                "  loss             {} packets in, {} lost on the link; {} frames, {:.2} % concealed, {:.2} % FEC-recovered; {} legs ended",
                f.packets, f.link_lost, f.frames, f.concealed_percent, f.fec_percent, f.ended_legs
            );
            if f.unmixed_frames > 0 {
                let _ = writeln!(
                    t,
                    "  unmixed          {} speaker frames ({:.2} per frame)",
                    f.unmixed_frames,
                    f.unmixed_frames as f64 / f.frames.max(1) as f64
                );
            }
        }
        let _ = writeln!(
            t,
            "memory             {:.0} KiB RSS per call (bot and emulator legs together)",
            self.rss_per_call_kib
        );
        let _ = writeln!(
            t,
            "admission          {:.1} us per call per tick -> room for {} calls in all",
            self.admission_call_cost_us, self.admission_capacity
        );
        let h = &self.health;
        let _ = writeln!(
            t,
            "health             worst {}; samples Normal {}, HeavilyLoaded {}, Overloaded {}",
            self.worst_health.as_deref().unwrap_or("-"),
            h.normal,
            h.heavily_loaded,
            h.overloaded
        );
        for (why, n) in &self.refusals {
            let _ = writeln!(t, "refused            {n} x {why}");
        }
        let (a, b) = (&self.resources_before, &self.resources_after);
        let _ = writeln!(
            t,
            "resources          threads {} -> {}, fds {} -> {}, RSS {} -> {} KiB, heap in use {} -> {} KiB, bot tasks {} -> {}",
            a.threads,
            b.threads,
            a.fds,
            b.fds,
            a.rss_kib,
            b.rss_kib,
            a.heap_kib,
            b.heap_kib,
            a.tasks,
            b.tasks
        );
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_buckets() {
        let h = Histogram::new(10, 100);
        for v in 0..100u64 {
            h.record(v * 10 + 5);
        }
        let (mut counts, mut max) = (Vec::new(), 0);
        h.add_to(&mut counts, &mut max);
        let p = percentiles(&counts, max, 10);
        assert_eq!(p.count, 100);
        assert!((p.p50 - 0.05).abs() < 1e-9, "{p:?}");
        assert!((p.p99 - 0.099).abs() < 1e-9, "{p:?}");
        assert!((p.max - 0.0995).abs() < 1e-9, "{p:?}");
        assert_eq!(percentiles(&[0, 0], 0, 10), Percentiles::default());
        // Values past the last bucket land in it; the max stays exact.
        h.record(5_000);
        h.add_to(&mut counts, &mut max);
        assert_eq!(max, 5_000);
    }

    #[test]
    fn tick_lateness_takes_each_threads_first_frame_per_deadline() {
        let clock = TickClock::new();
        let tick = audio_pipeline::FRAME_DURATION.0;
        // Thread A's deadlines at phase 1_000, thread B's at 7_000; three calls each.
        for k in 1..=3u64 {
            for (phase, late) in [(1_000, 300), (7_000, 900)] {
                let deadline = k * tick + phase;
                for call in 0..3u64 {
                    clock.on_frame(deadline, deadline + late + call * 1_000);
                }
            }
        }
        let (mut counts, mut max) = (Vec::new(), 0);
        clock.lateness.add_to(&mut counts, &mut max);
        let p = percentiles(&counts, max, 500);
        // Six ticks, each counted once with its first call's lateness.
        assert_eq!(p.count, 6);
        assert_eq!(max, 900);
    }

    #[test]
    fn the_probe_is_found_and_the_speech_is_not_taken_for_it() {
        let mut probe = Pcm16K::SILENCE;
        for (n, s) in probe.samples.iter_mut().enumerate() {
            *s = (8_000.0 * (std::f32::consts::TAU * PROBE_HZ * n as f32 / 16_000.0).sin()) as i16;
        }
        assert!(tone_share(&probe.samples, PROBE_HZ) > 0.9);
        assert!(
            speech_loop()
                .iter()
                .all(|f| tone_share(&f.samples, PROBE_HZ) < 0.5)
        );
        assert_eq!(tone_share(&Pcm16K::SILENCE.samples, PROBE_HZ), 0.0);
    }

    #[test]
    fn the_scenario_impairs_only_the_first_calls() {
        let f = Faults {
            loss_percent: 5.0,
            ..Faults::default()
        };
        let s = scenario(&LoadOptions {
            calls: 4,
            faults: Some(f),
            faulty_calls: 1,
            ..LoadOptions::default()
        });
        s.validate().expect("valid scenario");
        assert_eq!(s.users.len(), 4);
        assert!(s.users[0].says.faults().is_some());
        assert!(s.users[1..].iter().all(|u| u.says == Voice::Load));
        let ids: std::collections::BTreeSet<_> = s.users.iter().map(|u| &u.id).collect();
        assert_eq!(ids.len(), 4);
    }

    #[test]
    fn bad_options_are_refused() {
        for o in [
            LoadOptions {
                calls: 0,
                ..LoadOptions::default()
            },
            LoadOptions {
                cycles: 0,
                ..LoadOptions::default()
            },
            LoadOptions {
                setup_concurrency: 0,
                ..LoadOptions::default()
            },
            LoadOptions {
                unmixed_streams: 5,
                ..LoadOptions::default()
            },
        ] {
            assert!(matches!(run(o, |_| {}), Err(LoadError::Options(_))));
        }
    }
}
