//! The engine the benches run: a bot's [`MediaPlatform`] (pipeline threads, media endpoint
//! on its own runtime) with N media sessions, each connected over loopback to a
//! [`ServiceLeg`], the calling service's side of a leg (the emulator's media, without its
//! Graph API). Each service leg sends a 20 ms Opus packet per tick and counts what it gets;
//! a driver thread keeps every bot socket one frame ahead, as a speaking bot does.
//!
//! Threads are named by side, so CPU time can be told apart from `/proc/self/task`:
//! `audio-pipeline-*` (the bot's pipeline), `bm-net-*` (the network pumps driving the bot's
//! legs) and `bot-net` (the bot's runtime: its HTTP listener), `svc-net*` (the service's
//! legs and runtime), `bench-driver`.

#![allow(dead_code)] // each bench uses its own part of the harness

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use botmedia::endpoint::service::{ServiceLeg, ServiceLegConfig};
use botmedia::endpoint::{InboundRtp, NetworkPort, OutboundAudio, PushError};
use botmedia::pipeline::{CallConfig, FRAME_DURATION, ManualCall, SAMPLES_PER_FRAME, Ticks};
use botmedia::session::AudioSocketSettings;
use botmedia::{
    CallObserver, CallStats, MediaPlatform, MediaPlatformSettings, MediaSession, Pcm16K,
    ReceivedFrame,
};

/// One tick of media.
pub const TICK: Duration = Duration::from_millis(20);

/// Thread groups whose CPU time the benches report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The bot's pipeline threads: jitter buffer, decode, encode, pacing.
    Pipeline,
    /// The bot's network side: the pumps driving its WebRTC legs (ICE, DTLS, SRTP, RTP) and
    /// the runtime of its HTTP listener.
    BotNetwork,
    /// The service's legs: the same WebRTC stack on the other side of the wire.
    ServiceNetwork,
    /// The thread that sends the bot's frames.
    Driver,
    /// Everything else (criterion, the main thread).
    Other,
}

fn group_of(comm: &str) -> Group {
    match comm {
        c if c.starts_with("audio-pipeline") => Group::Pipeline,
        c if c.starts_with("bot-net") || c.starts_with("bm-net") => Group::BotNetwork,
        c if c.starts_with("svc-net") => Group::ServiceNetwork,
        c if c.starts_with("bench-driver") => Group::Driver,
        _ => Group::Other,
    }
}

/// CPU time per thread group so far, from `/proc/self/task/*/schedstat` (ns on CPU), as
/// `botmedia load` reads it.
pub fn cpu_by_group() -> BTreeMap<Group, u64> {
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
        *groups.entry(group_of(comm.trim())).or_insert(0) += ns;
    }
    groups
}

/// CPU time of the calling thread so far, from `/proc/thread-self/schedstat`: on a shared
/// machine, what a routine costs is its CPU time, not the wall time others stretch.
pub fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0u64);
    Duration::from_nanos(ns)
}

/// One second of speech-like signal (harmonics under a syllable envelope), the bot's.
pub fn speech() -> Vec<Pcm16K> {
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

/// What the service sends, one Opus packet per tick: a second of [`speech`] encoded by the
/// pipeline's own encoder at the bot's default settings.
pub fn service_packets() -> Vec<Vec<u8>> {
    encode(&speech())
}

fn encode(frames: &[Pcm16K]) -> Vec<Vec<u8>> {
    let (mut call, mut halves) = ManualCall::new(CallConfig::default()).expect("encoder");
    let mut out = Vec::with_capacity(frames.len());
    let mut now = Ticks(1);
    // Twice round, keeping the second: the encoder has settled by then.
    for frame in frames.iter().chain(frames) {
        halves.bot.try_send(*frame).expect("queued");
        call.tick(now, false);
        now += FRAME_DURATION;
        while let Some(p) = halves.network.pop_packet() {
            out.push(p.payload().to_vec());
        }
    }
    out.split_off(out.len() - frames.len())
}

/// Latency samples in 100 ns ticks, written by the media path's hooks, read by a bench.
pub struct Probe {
    /// When the service's leg took the packet tagged with each audio level (0..100).
    sent_at: [AtomicU64; 100],
    /// When the bot's driver sent the first frame of its cycle (the loud one).
    cycle_sent: AtomicU64,
    /// The ring the hooks write to, and every sample taken from it so far.
    samples: std::sync::Mutex<(rtrb::Consumer<u64>, Vec<u64>)>,
}

impl Probe {
    /// Waits for `n` latency samples (each at most `patience` apart) and returns their sum.
    pub fn sum_of(&self, n: u64, patience: Duration) -> Duration {
        let mut guard = self.samples.lock().expect("samples");
        let (rx, all) = &mut *guard;
        let mut sum = 0u64;
        let mut got = 0;
        let mut last = Instant::now();
        while got < n {
            match rx.pop() {
                Ok(v) => {
                    sum += v;
                    all.push(v);
                    got += 1;
                    last = Instant::now();
                }
                Err(_) => {
                    assert!(
                        last.elapsed() < patience,
                        "no latency sample in {patience:?}"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        Duration::from_nanos(sum * 100)
    }

    /// Percentiles `qs` (0..=1) of every sample taken so far, in milliseconds, and the count.
    pub fn percentiles_ms(&self, qs: &[f64]) -> (Vec<f64>, usize) {
        let mut all = self.samples.lock().expect("samples").1.clone();
        all.sort_unstable();
        let at = |q: f64| {
            let i = ((q * all.len() as f64).ceil() as usize).clamp(1, all.len().max(1)) - 1;
            all.get(i).map_or(f64::NAN, |&v| v as f64 / 10_000.0)
        };
        (qs.iter().map(|&q| at(q)).collect(), all.len())
    }
}

impl Probe {
    /// Drops what was measured so far and not yet taken (set-up, warm-up).
    pub fn clear(&self) {
        let mut guard = self.samples.lock().expect("samples");
        while guard.0.pop().is_ok() {}
    }
}

fn probe() -> (Arc<Probe>, rtrb::Producer<u64>) {
    let (tx, rx) = rtrb::RingBuffer::new(4096);
    let probe = Probe {
        sent_at: std::array::from_fn(|_| AtomicU64::new(0)),
        cycle_sent: AtomicU64::new(0),
        samples: std::sync::Mutex::new((rx, Vec::new())),
    };
    (Arc::new(probe), tx)
}

/// What the benches measure on the media path, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// CPU only.
    Nothing,
    /// Service leg takes a packet -> the bot gets the frame decoded from it.
    Receive,
    /// The bot sends a frame -> the service leg gets its packet.
    Send,
}

/// The service's end of one leg: paces its packets itself (one per 20 ms, asked for by the
/// leg task every 5 ms) and counts what it receives.
struct ServicePort {
    packets: Arc<Vec<Vec<u8>>>,
    next: usize,
    due: Option<Instant>,
    active: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    /// Tags packets with audio levels and stamps when each left (receive latency).
    tag: Option<Arc<Probe>>,
    /// Finds the bot's loud frame among silence by its size (send latency).
    watch: Option<(Arc<Probe>, rtrb::Producer<u64>, bool)>,
}

/// Opus packets of digital silence are 8 bytes, of speech 30 and more: a packet above this is the
/// loud frame of the send-latency cycle (its FEC copy rides in the next, which is skipped).
const LOUD_PAYLOAD: usize = 16;

impl NetworkPort for ServicePort {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Some((probe, tx, in_burst)) = &mut self.watch {
            let loud = packet.payload.len() > LOUD_PAYLOAD;
            if loud && !*in_burst {
                let sent = probe.cycle_sent.load(Ordering::Acquire);
                let _ = tx.push(botmedia::pipeline::now().0.saturating_sub(sent));
            }
            *in_burst = loud;
        }
        Ok(())
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        if !self.active.load(Ordering::Acquire) {
            self.due = None;
            return None;
        }
        let now = Instant::now();
        let due = *self.due.get_or_insert(now);
        if now < due {
            return None;
        }
        // After a stall, start again from now rather than bursting old packets.
        self.due = Some(if now - due > 3 * TICK {
            now + TICK
        } else {
            due + TICK
        });
        let i = self.next;
        self.next += 1;
        let payload = self.packets[i % self.packets.len()].clone().into();
        let level = self.tag.as_ref().map(|probe| {
            let level = (i % 100) as u8;
            probe.sent_at[usize::from(level)].store(botmedia::pipeline::now().0, Ordering::Release);
            level
        });
        Some(OutboundAudio::new(payload, level))
    }

    fn set_send_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
    }

    fn set_remote_fraction_lost(&self, _fraction: u8) {}
}

/// The bot's frame handler: counts frames and, measuring receive latency, stamps the first
/// frame played from each tagged packet.
fn on_frame(
    frames: Arc<AtomicU64>,
    measure: Option<(Arc<Probe>, rtrb::Producer<u64>)>,
) -> impl FnMut(&ReceivedFrame) + Send + 'static {
    let mut last = None;
    let mut measure = measure;
    move |frame: &ReceivedFrame| {
        frames.fetch_add(1, Ordering::Relaxed);
        if let Some((probe, tx)) = &mut measure
            && frame.audio_level != last
        {
            last = frame.audio_level;
            if let Some(level) = frame.audio_level.filter(|l| *l < 100) {
                let sent = probe.sent_at[usize::from(level)].load(Ordering::Acquire);
                let _ = tx.push(botmedia::pipeline::now().0.saturating_sub(sent));
            }
        }
    }
}

/// A bot platform with `calls` sessions connected to service legs, media flowing both ways.
pub struct Engine {
    pub calls: usize,
    pub probe: Option<Arc<Probe>>,
    platform: Option<MediaPlatform>,
    legs: Vec<ServiceLeg>,
    driver: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    frames: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    /// The bots' pipeline counters, read while the driver owns the sessions.
    observers: Vec<CallObserver>,
    bot_rt: tokio::runtime::Runtime,
    svc_rt: tokio::runtime::Runtime,
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Engine {
    /// Starts the platform, connects `calls` legs and waits until media flows on all.
    pub fn start(calls: usize, measure: Measure) -> Engine {
        Engine::start_with(calls, measure, false, false)
    }

    /// [`Engine::start`], the bot's legs sharing one UDP socket per pump when `shared_udp`,
    /// and on the lean media path when `lean_media`.
    pub fn start_with(
        calls: usize,
        measure: Measure,
        shared_udp: bool,
        lean_media: bool,
    ) -> Engine {
        let bot_rt = runtime("bot-net");
        let svc_rt = runtime("svc-net");
        let mut settings = MediaPlatformSettings::default();
        settings.shared_udp = shared_udp;
        settings.lean_media = lean_media;
        // Shared benchmark machines: measure the cost, do not refuse calls over it.
        settings.pipeline.admit_by_load = false;
        let platform = bot_rt
            .block_on(MediaPlatform::start(settings))
            .expect("platform");
        let (probe, tx) = match measure {
            Measure::Nothing => (None, None),
            _ => {
                let (probe, tx) = probe();
                (Some(probe), Some(tx))
            }
        };
        let mut tx = tx;
        let packets = Arc::new(service_packets());
        let frames = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let mut sessions = Vec::with_capacity(calls);
        let mut legs = Vec::with_capacity(calls);
        for i in 0..calls {
            // Only the first call measures latency; the others are load.
            let first = i == 0;
            let receive = (first && measure == Measure::Receive).then(|| {
                (
                    Arc::clone(probe.as_ref().expect("probe")),
                    tx.take().expect("tx"),
                )
            });
            let session = platform
                .create_session_with_callback(
                    AudioSocketSettings::default(),
                    None,
                    on_frame(Arc::clone(&frames), receive),
                )
                .expect("session");
            let url = format!("{}/sessions/{}", platform.mp_uri(), session.id().expose());
            let port = ServicePort {
                packets: Arc::clone(&packets),
                next: 0,
                due: None,
                active: Arc::default(),
                received: Arc::clone(&received),
                tag: (first && measure == Measure::Receive)
                    .then(|| Arc::clone(probe.as_ref().expect("probe"))),
                watch: (first && measure == Measure::Send).then(|| {
                    (
                        Arc::clone(probe.as_ref().expect("probe")),
                        tx.take().expect("tx"),
                        false,
                    )
                }),
            };
            let leg = svc_rt
                .block_on(async move {
                    let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(64);
                    tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
                    ServiceLeg::connect(&url, ServiceLegConfig::default(), port, events_tx).await
                })
                .expect("service leg");
            sessions.push(session);
            legs.push(leg);
        }
        let deadline = Instant::now() + Duration::from_secs(10 + calls as u64 / 5);
        while !(legs.iter().all(ServiceLeg::is_active)
            && sessions.iter().all(|s| s.socket().is_active()))
        {
            assert!(Instant::now() < deadline, "legs did not connect");
            std::thread::sleep(Duration::from_millis(10));
        }
        let bot_frames = if measure == Measure::Send {
            // A loud frame, then silence: the service finds the loud one's packet by size.
            let mut cycle = vec![Pcm16K::SILENCE; 5];
            cycle[0] = speech()[12];
            cycle
        } else {
            speech()
        };
        // Checked every millisecond when the send latency is measured, so a frame is queued
        // within 1 ms of the pacer taking the last; every 5 ms otherwise, as a bot would.
        let poll = Duration::from_millis(if measure == Measure::Send { 1 } else { 5 });
        let observers = sessions.iter().map(MediaSession::observer).collect();
        let driver = Driver::start(sessions, bot_frames, probe.clone(), poll);
        let engine = Engine {
            calls,
            probe,
            platform: Some(platform),
            legs,
            driver: Some(driver),
            frames,
            received,
            observers,
            bot_rt,
            svc_rt,
        };
        // Past connection set-up, the jitter buffers' first adaptation and encoder start.
        std::thread::sleep(Duration::from_secs(2));
        engine.check_flowing();
        engine
    }

    /// Panics unless frames reach the bots and packets reach the service at about one per
    /// call and tick, and prints what the pipeline made of the calls since the last check:
    /// a figure per call tick is only worth its ticks (the bots' frames sent, not silence
    /// filled in; packets decoded, not concealed).
    pub fn check_flowing(&self) {
        let (f0, r0, t0) = (self.frames(), self.received(), Instant::now());
        std::thread::sleep(Duration::from_millis(500));
        let ticks = t0.elapsed().as_secs_f64() / TICK.as_secs_f64() * self.calls as f64;
        let (f, r) = (self.frames() - f0, self.received() - r0);
        assert!(
            f as f64 > 0.8 * ticks,
            "{f} frames in {ticks:.0} call ticks"
        );
        assert!(
            r as f64 > 0.8 * ticks,
            "{r} packets in {ticks:.0} call ticks"
        );
        let mut total = CallStats::default();
        for o in &self.observers {
            total.add_counters(&o.stats());
        }
        eprintln!(
            "{} calls so far: {} frames sent by the bots ({} ticks without one), {} received \
             ({} concealed), {} late call ticks",
            self.calls,
            total.frames_sent,
            total.underruns,
            total.frames_received,
            total.concealed,
            total.late_ticks
        );
    }

    /// Frames handed to the bots so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Packets the service received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// CPU time of `group` per call and 20 ms tick over `window` of real time.
    pub fn cpu_per_call_tick(&self, group: Group, window: Duration) -> Duration {
        let (before, t0) = (cpu_by_group(), Instant::now());
        std::thread::sleep(window);
        let (after, elapsed) = (cpu_by_group(), t0.elapsed());
        let ns = after.get(&group).copied().unwrap_or(0) - before.get(&group).copied().unwrap_or(0);
        let call_ticks = elapsed.as_secs_f64() / TICK.as_secs_f64() * self.calls as f64;
        Duration::from_secs_f64(ns as f64 / 1e9 / call_ticks)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.driver.take() {
            stop.store(true, Ordering::Release);
            let _ = handle.join();
        }
        let legs = std::mem::take(&mut self.legs);
        self.svc_rt.block_on(async move {
            for leg in legs {
                let _ = leg.close().await;
            }
        });
        if let Some(platform) = self.platform.take() {
            self.bot_rt.block_on(platform.shutdown());
        }
    }
}

/// The bot's sending side: every socket kept one frame ahead of the pacer, checked every
/// `poll`. With a probe, the time the first frame of each cycle is queued is recorded.
struct Driver;

impl Driver {
    fn start(
        mut sessions: Vec<MediaSession>,
        frames: Vec<Pcm16K>,
        probe: Option<Arc<Probe>>,
        poll: Duration,
    ) -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("bench-driver".into())
            .spawn(move || {
                let mut positions = vec![0usize; sessions.len()];
                let capacities: Vec<usize> = sessions
                    .iter_mut()
                    .map(|s| s.audio_socket().send_capacity())
                    .collect();
                let start = Instant::now();
                let mut step = 0u32;
                while !flag.load(Ordering::Acquire) {
                    for (i, ((s, pos), cap)) in sessions
                        .iter_mut()
                        .zip(&mut positions)
                        .zip(&capacities)
                        .enumerate()
                    {
                        let socket = s.audio_socket();
                        // Into an empty queue only: the frame leaves on the next tick.
                        if socket.send_capacity() < *cap {
                            continue;
                        }
                        let k = *pos % frames.len();
                        if socket.send(frames[k]).is_ok() {
                            if i == 0
                                && k == 0
                                && let Some(probe) = &probe
                            {
                                probe
                                    .cycle_sent
                                    .store(botmedia::pipeline::now().0, Ordering::Release);
                            }
                            *pos += 1;
                        }
                    }
                    step += 1;
                    let next = start + poll * step;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                drop(sessions);
            })
            .expect("driver thread");
        (stop, handle)
    }
}
