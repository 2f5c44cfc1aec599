//! Latency and CPU of the bot's media path, measured on echo calls through loopback peers.
//!
//! For each count of concurrent calls it starts a [`MediaPlatform`] running that many echo
//! sessions (every received frame is sent straight back through the `AudioSocket`), and as
//! many service-side peers ([`ServiceLeg`], the WebRTC offerer a calling service runs),
//! each sending a pre-encoded Opus tone burst (100 ms of 1 kHz every second) over
//! 127.0.0.1. After a warm-up it measures for `--seconds` and prints:
//!
//! * receive: a packet's arrival at the endpoint (`RtpMeta::arrival`, stamped as the leg
//!   task takes it from webrtc-rs) to its frame reaching the bot (`recv_frame`/`next`
//!   taking it); from the pipeline's own histograms (`AudioSocket::latency`);
//! * send: the bot's `send` to the packet leaving the pipeline (the leg task taking it
//!   to write it to webrtc-rs); same histograms;
//! * echo loop: at the peer, from a burst's first packet being handed to its leg for
//!   sending to the echoed burst's onset in the packets coming back (arrival of the packet
//!   plus the onset's offset in its decoded audio), so it includes webrtc-rs both ways
//!   and both Opus codec delays, but not the peer's own jitter buffer or playout;
//! * CPU: time on CPU of each thread over the window (`/proc/self/task/*/schedstat`),
//!   grouped: `audio-pipeline-*` (decode, jitter buffer, encode, pacing) and `bot-rt`
//!   (the endpoint: webrtc-rs ICE/DTLS/SRTP/RTCP and UDP, the leg tasks, the echo tasks)
//!   make the bot's media path; `peer-rt` is the loopback peers (webrtc-rs, no codec:
//!   their audio is pre-encoded and decoded after the window).
//!
//! Run: `cargo run --release --example latency -- --calls 1,10,30 --seconds 20`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use audio_pipeline::{CallConfig, CallLatency, ManualCall, Pcm16K, SAMPLES_PER_FRAME, Ticks};
use botmedia::session::AudioSocketSettings;
use botmedia::{AudioSocketEvent, AudioSocketItem, MediaPlatform, MediaPlatformSettings};
use media_endpoint::service::{ServiceLeg, ServiceLegConfig};
use media_endpoint::{InboundRtp, NetworkPort, OutboundAudio, PushError};

/// Frames in one period of the probe signal: 1 s.
const PERIOD_FRAMES: usize = 50;
/// Frames of tone at the start of each period: 100 ms.
const BURST_FRAMES: usize = 5;
const TONE_HZ: f64 = 1_000.0;
const TONE_AMPLITUDE: f64 = 8_000.0;
/// White noise under the tone, in sample units (about -42 dBFS).
const NOISE_AMPLITUDE: i64 = 400;
/// A sample above this (after a quiet stretch) is a burst onset.
const ONSET_THRESHOLD: u16 = 2_000;
/// Quiet needed before an onset counts: 300 ms of samples.
const QUIET_SAMPLES: usize = 4_800;
const FRAME: Duration = Duration::from_millis(20);

struct Options {
    calls: Vec<usize>,
    seconds: u64,
    warmup: u64,
    /// Echo every frame even when earlier ones still wait in the send queue.
    keep_backlog: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        calls: vec![1, 10, 30],
        seconds: 20,
        warmup: 5,
        keep_backlog: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--calls" => {
                o.calls = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<usize>()
                            .map_err(|e| format!("--calls: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => o.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--keep-backlog" => o.keep_backlog = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.calls.contains(&0) || o.seconds == 0 {
        return Err("--calls and --seconds must be positive".into());
    }
    Ok(o)
}

/// One period of the probe signal, Opus-encoded once by the pipeline's own encoder.
fn encode_probe() -> Result<Vec<Vec<u8>>, Box<dyn std::error::Error>> {
    let (mut encoder, call) = ManualCall::new(CallConfig::default())?;
    let (mut bot, mut net) = (call.bot, call.network);
    let mut now = audio_pipeline::now();
    let mut out = Vec::with_capacity(PERIOD_FRAMES);
    let mut noise: u64 = 0x2545_f491_4f6c_dd1d;
    for f in 0..PERIOD_FRAMES {
        let mut pcm = Pcm16K::SILENCE;
        for (i, s) in pcm.samples.iter_mut().enumerate() {
            // A noise floor well under the onset threshold keeps the codecs working as on
            // live audio (digital silence encodes and decodes far cheaper).
            noise = noise
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let floor = ((noise >> 33) as i64 % (2 * NOISE_AMPLITUDE + 1) - NOISE_AMPLITUDE) as f64;
            let n = (f * SAMPLES_PER_FRAME + i) as f64;
            let tone = if f < BURST_FRAMES {
                TONE_AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * n / 16_000.0).sin()
            } else {
                0.0
            };
            *s = (tone + floor) as i16;
        }
        bot.try_send(pcm).map_err(|e| e.to_string())?;
        encoder.tick(now, false);
        now += Ticks::from_millis(20);
        let packet = net.pop_packet().ok_or("the encoder produced no packet")?;
        out.push(packet.payload().to_vec());
    }
    Ok(out)
}

/// Finds tone-burst onsets in a stream of frames: the first loud sample after a quiet
/// stretch.
struct OnsetDetector {
    quiet: usize,
}

impl OnsetDetector {
    fn new() -> Self {
        Self {
            quiet: QUIET_SAMPLES,
        }
    }

    /// The sample offset of an onset in `pcm`, if one starts there.
    fn feed(&mut self, pcm: &Pcm16K) -> Option<usize> {
        let mut onset = None;
        for (i, s) in pcm.samples.iter().enumerate() {
            if s.unsigned_abs() < ONSET_THRESHOLD {
                self.quiet += 1;
                continue;
            }
            if self.quiet >= QUIET_SAMPLES && onset.is_none() {
                onset = Some(i);
            }
            self.quiet = 0;
        }
        onset
    }
}

fn samples_to_ticks(samples: usize) -> Ticks {
    Ticks::from_micros(samples as u64 * 1_000_000 / 16_000)
}

/// A packet that came back to a peer.
struct Echoed {
    arrival: Ticks,
    seq: u16,
    rtp_timestamp: u32,
    payload: Vec<u8>,
}

#[derive(Default)]
struct ProbeLog {
    /// When each burst's first packet was handed to the leg.
    burst_sent: Vec<Ticks>,
    echoed: Vec<Echoed>,
}

/// The peer's side of the bridge: sends the probe every 20 ms (in the leg's own 5 ms
/// polls) and logs what comes back.
struct ProbePort {
    probe: Arc<Vec<OutboundAudio>>,
    next_frame: usize,
    next_due: Option<Instant>,
    active: Arc<std::sync::atomic::AtomicBool>,
    log: Arc<Mutex<ProbeLog>>,
}

impl NetworkPort for ProbePort {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        let arrival = audio_pipeline::now();
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.echoed.push(Echoed {
            arrival,
            seq: packet.seq,
            rtp_timestamp: packet.rtp_timestamp,
            payload: packet.payload.to_vec(),
        });
        Ok(())
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        if !self.active.load(std::sync::atomic::Ordering::Acquire) {
            self.next_due = None;
            return None;
        }
        let now = Instant::now();
        let due = *self.next_due.get_or_insert(now);
        if now < due {
            return None;
        }
        // After a stall, start again from now rather than bursting old frames.
        self.next_due = Some(if now - due > 3 * FRAME {
            now + FRAME
        } else {
            due + FRAME
        });
        let frame = self.next_frame % PERIOD_FRAMES;
        self.next_frame += 1;
        if frame == 0 {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.burst_sent.push(audio_pipeline::now());
        }
        Some(self.probe[frame].clone())
    }

    fn set_send_active(&self, active: bool) {
        self.active
            .store(active, std::sync::atomic::Ordering::Release);
    }

    fn set_remote_fraction_lost(&self, _fraction: u8) {}
}

/// Echo loop delays of one peer: decodes what came back (offline, with the pipeline's
/// decoder and jitter buffer replayed on the recorded arrival times), finds each burst's
/// onset and pairs it with the burst sent just before.
fn echo_delays(
    log: &ProbeLog,
    from: Ticks,
    to: Ticks,
) -> Result<Vec<Ticks>, Box<dyn std::error::Error>> {
    let (mut decoder, call) = ManualCall::new(CallConfig::default())?;
    let (mut bot, mut net) = (call.bot, call.network);
    let mut packets = log.echoed.iter().peekable();
    let Some(first) = packets.peek() else {
        return Ok(Vec::new());
    };
    let mut now = first.arrival;
    let mut detector = OnsetDetector::new();
    let mut onsets = Vec::new();
    let end = log.echoed.last().map_or(now, |p| p.arrival) + Ticks::from_millis(200);
    while now < end {
        while let Some(p) = packets.next_if(|p| p.arrival <= now) {
            let meta = audio_pipeline::RtpMeta {
                seq: p.seq,
                rtp_timestamp: p.rtp_timestamp,
                ssrc: 7,
                arrival: p.arrival,
                ..audio_pipeline::RtpMeta::default()
            };
            let packet = audio_pipeline::EncodedPacket::new(meta, &p.payload)?;
            net.push_packet(packet).map_err(|e| e.to_string())?;
        }
        decoder.tick(now, false);
        now += Ticks::from_millis(20);
        while let Some(frame) = bot.try_recv() {
            if let (Some(i), Some(arrival)) = (detector.feed(&frame.pcm), frame.arrival) {
                onsets.push(arrival + samples_to_ticks(i));
            }
        }
    }
    let mut delays = Vec::new();
    for onset in onsets {
        let Some(sent) = log.burst_sent.iter().rev().find(|&&s| s <= onset) else {
            continue;
        };
        if *sent >= from && onset <= to {
            delays.push(onset.saturating_sub(*sent));
        }
    }
    Ok(delays)
}

/// CPU time per thread, in ns, by thread id: (name, ns).
fn thread_cpu() -> HashMap<u32, (String, u64)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let ns = std::fs::read_to_string(path.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        if let Some(ns) = ns {
            out.insert(tid, (name.trim().to_owned(), ns));
        }
    }
    out
}

fn group(name: &str) -> &'static str {
    if name.starts_with("audio-pipeline-reaper") {
        "bot pipeline reaper"
    } else if name.starts_with("audio-pipeline") {
        "bot pipeline"
    } else if name.starts_with("bot-rt") {
        "bot endpoint (tokio)"
    } else if name.starts_with("peer-rt") {
        "peers (tokio)"
    } else {
        "other"
    }
}

fn cpu_by_group(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
) -> Vec<(&'static str, u64)> {
    let mut sums: HashMap<&'static str, u64> = HashMap::new();
    for (tid, (name, ns)) in after {
        let start = before.get(tid).map_or(0, |(_, b)| *b);
        *sums.entry(group(name)).or_default() += ns.saturating_sub(start);
    }
    let mut v: Vec<_> = sums.into_iter().collect();
    v.sort();
    v
}

fn ms(t: Option<Ticks>) -> String {
    t.map_or("-".into(), |t| {
        format!("{:.1}", t.0 as f64 / Ticks::PER_MILLI as f64)
    })
}

fn percentile(sorted: &[Ticks], q: f64) -> Option<Ticks> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[idx])
}

struct RunResult {
    latency: CallLatency,
    echo: Vec<Ticks>,
    /// Peer hands a burst's packet to its leg -> the bot's endpoint stamps its arrival.
    inbound: Vec<Ticks>,
    /// Where the onset falls in the bot's decoded frame (the codec's delay).
    bot_offsets: Vec<Ticks>,
    /// Packet arrival -> the media time of the tick that played it.
    to_tick: Vec<Ticks>,
    /// That tick's media time -> the bot taking the frame from its socket.
    to_bot: Vec<Ticks>,
    /// Median over calls of the jitter buffer target at the end.
    target_ms: f64,
    cpu: Vec<(&'static str, u64)>,
    window: Duration,
    frames_in: u64,
    concealed: u64,
    /// Frames the echo did not send because one still waited in the send queue.
    skipped: u64,
}

async fn run_calls(
    calls: usize,
    probe: Arc<Vec<OutboundAudio>>,
    peer_rt: tokio::runtime::Handle,
    o: &Options,
) -> Result<RunResult, Box<dyn std::error::Error>> {
    let platform = MediaPlatform::start(MediaPlatformSettings::default()).await?;
    let mut echoes = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..calls {
        let session = platform.create_session(AudioSocketSettings::default(), None)?;
        let url = format!("{}/sessions/{}", platform.mp_uri(), session.id().expose());
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let port = ProbePort {
            probe: Arc::clone(&probe),
            next_frame: 0,
            next_due: None,
            active: Arc::default(),
            log: Arc::clone(&log),
        };
        let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(64);
        let leg = peer_rt
            .spawn(async move {
                tokio::spawn(async move { while events_rx.recv().await.is_some() {} });
                ServiceLeg::connect(&url, ServiceLegConfig::default(), port, events_tx).await
            })
            .await??;
        peers.push((leg, log));
        echoes.push(session);
    }
    let t0 = Instant::now();
    let warm_end = t0 + Duration::from_secs(o.warmup);
    let end = warm_end + Duration::from_secs(o.seconds);
    let mut tasks = Vec::new();
    let keep_backlog = o.keep_backlog;
    for mut session in echoes {
        tasks.push(tokio::spawn(async move {
            let socket = session.audio_socket();
            let empty_queue = socket.send_capacity();
            let mut detector = OnsetDetector::new();
            // (arrival of the packet holding a burst's onset, onset offset in samples)
            let mut heard: Vec<(Ticks, usize)> = Vec::with_capacity(1_000);
            // Per frame in the window: (tick time - packet arrival, bot's take - tick time).
            let mut split: Vec<(Ticks, Ticks)> = Vec::with_capacity(2_000);
            let mut skipped = 0u64;
            let mut at_warm: Option<CallLatency> = None;
            loop {
                let now = Instant::now();
                if at_warm.is_none() && now >= warm_end {
                    at_warm = Some(socket.latency());
                }
                if now >= end {
                    break;
                }
                let left = end - now;
                match tokio::time::timeout(left, socket.next()).await {
                    // The pacer takes one frame per tick, as many as arrive: a frame that
                    // missed its tick (the bot late) would stay a lasting backlog, so
                    // this echo only sends into an empty queue unless told otherwise.
                    Ok(Some(AudioSocketItem::Frame(frame))) => {
                        if let (Some(i), Some(arrival)) = (detector.feed(&frame.pcm), frame.arrival)
                        {
                            heard.push((arrival, i));
                        }
                        if let (Some(arrival), Some(_)) = (frame.arrival, at_warm.as_ref()) {
                            split.push((
                                frame.timestamp.saturating_sub(arrival),
                                audio_pipeline::now().saturating_sub(frame.timestamp),
                            ));
                        }
                        let send = keep_backlog || socket.send_capacity() >= empty_queue;
                        if !send || socket.send(frame.pcm).is_err() {
                            skipped += 1;
                        }
                    }
                    Ok(Some(AudioSocketItem::Event(
                        e @ (AudioSocketEvent::Ended(_) | AudioSocketEvent::StreamFailure(_)),
                    ))) => eprintln!("  an echo session ended early: {e:?}"),
                    Ok(Some(AudioSocketItem::Event(_))) => {}
                    Ok(None) | Err(_) => {}
                }
                if socket.is_ended() {
                    break;
                }
            }
            let total = socket.latency();
            let stats = socket.quality().pipeline;
            let window = at_warm.map_or_else(CallLatency::default, |w| total.since(&w));
            (window, stats, skipped, heard, split, session)
        }));
    }
    tokio::time::sleep_until(warm_end.into()).await;
    let cpu_before = thread_cpu();
    let (win_from, measured_at) = (audio_pipeline::now(), Instant::now());
    tokio::time::sleep_until(end.into()).await;
    let cpu_after = thread_cpu();
    let (win_to, window) = (audio_pipeline::now(), measured_at.elapsed());
    let mut latency = CallLatency::default();
    let (mut frames_in, mut concealed, mut skipped) = (0, 0, 0);
    let mut sessions = Vec::new();
    let mut heard_by_call = Vec::new();
    let (mut split, mut targets) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, stats, s, heard, sp, session) = t.await?;
        heard_by_call.push(heard);
        split.extend(sp);
        targets.push(stats.target_delay_ticks);
        latency.merge(&l);
        skipped += s;
        frames_in += stats.frames_received;
        concealed += stats.concealed;
        sessions.push(session);
    }
    let mut echo = Vec::new();
    let (mut inbound, mut bot_offsets) = (Vec::new(), Vec::new());
    for ((leg, log), heard) in peers.into_iter().zip(&heard_by_call) {
        let _ = peer_rt.spawn(leg.close()).await;
        let log = log.lock().unwrap_or_else(PoisonError::into_inner);
        echo.extend(echo_delays(&log, win_from, win_to)?);
        // Peer to bot: a burst's first packet handed to the peer's leg, to the endpoint's
        // arrival stamp on the packet in whose audio the bot hears the onset.
        for &sent in log
            .burst_sent
            .iter()
            .filter(|&&s| s >= win_from && s <= win_to)
        {
            if let Some(&(arrival, offset)) = heard
                .iter()
                .find(|(a, _)| *a >= sent && a.saturating_sub(sent) < Ticks::from_millis(500))
            {
                inbound.push(arrival.saturating_sub(sent));
                bot_offsets.push(samples_to_ticks(offset));
            }
        }
    }
    inbound.sort();
    bot_offsets.sort();
    let mut to_tick: Vec<Ticks> = split.iter().map(|s| s.0).collect();
    let mut to_bot: Vec<Ticks> = split.iter().map(|s| s.1).collect();
    to_tick.sort();
    to_bot.sort();
    targets.sort();
    drop(sessions);
    platform.shutdown().await;
    echo.sort();
    Ok(RunResult {
        latency,
        echo,
        inbound,
        bot_offsets,
        to_tick,
        to_bot,
        target_ms: targets
            .get(targets.len() / 2)
            .map_or(0.0, |t| *t as f64 / 10_000.0),
        cpu: cpu_by_group(&cpu_before, &cpu_after),
        window,
        frames_in,
        concealed,
        skipped,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    // With signalling's `tls` feature every reqwest client of the build needs a rustls
    // provider installed first (ServiceLeg builds one); this installs ring.
    signalling::client::http_client()?;
    let bot_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bot-rt")
        .enable_all()
        .build()?;
    let peer_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("peer-rt")
        .enable_all()
        .build()?;
    let probe: Arc<Vec<OutboundAudio>> = Arc::new(
        encode_probe()?
            .into_iter()
            .map(|p| OutboundAudio::new(p.into(), None))
            .collect(),
    );
    println!(
        "calls | receive p50/p99 ms | send p50/p99 ms | echo loop p50/p99 ms (n) | bot CPU %core/call (pipeline + endpoint) | peers %core/call | concealed/frames | echo skipped"
    );
    for &calls in &o.calls {
        let r = bot_rt.block_on(run_calls(
            calls,
            Arc::clone(&probe),
            peer_rt.handle().clone(),
            &o,
        ))?;
        let pct = |g: &str| {
            let ns: u64 = r.cpu.iter().filter(|(n, _)| *n == g).map(|(_, v)| v).sum();
            ns as f64 / r.window.as_nanos() as f64 * 100.0 / calls as f64
        };
        let (pipe, endpoint, peers) = (
            pct("bot pipeline"),
            pct("bot endpoint (tokio)"),
            pct("peers (tokio)"),
        );
        println!(
            "{calls:>5} | {} / {} | {} / {} | {} / {} ({}) | {:.2} ({:.2} + {:.2}) | {:.2} | {}/{} | {}",
            ms(r.latency.receive.quantile(0.5)),
            ms(r.latency.receive.quantile(0.99)),
            ms(r.latency.send.quantile(0.5)),
            ms(r.latency.send.quantile(0.99)),
            ms(percentile(&r.echo, 0.5)),
            ms(percentile(&r.echo, 0.99)),
            r.echo.len(),
            pipe + endpoint,
            pipe,
            endpoint,
            peers,
            r.concealed,
            r.frames_in,
            r.skipped,
        );
        println!(
            "      peer->endpoint arrival (webrtc-rs, both stacks) p50/p99 {} / {} ms (n {}); onset offset in the bot's frame p50 {} ms",
            ms(percentile(&r.inbound, 0.5)),
            ms(percentile(&r.inbound, 0.99)),
            r.inbound.len(),
            ms(percentile(&r.bot_offsets, 0.5)),
        );
        println!(
            "      receive split: arrival->tick p50/p99 {} / {} ms, tick->bot p50/p99 {} / {} ms; jitter buffer target (median call) {:.1} ms",
            ms(percentile(&r.to_tick, 0.5)),
            ms(percentile(&r.to_tick, 0.99)),
            ms(percentile(&r.to_bot, 0.5)),
            ms(percentile(&r.to_bot, 0.99)),
            r.target_ms,
        );
        eprintln!(
            "  window {:.1} s; frames timed: receive {}, send {}; CPU by group (ms): {:?}",
            r.window.as_secs_f64(),
            r.latency.receive.count(),
            r.latency.send.count(),
            r.cpu
                .iter()
                .map(|(g, ns)| (*g, ns / 1_000_000))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
