//! A local audio device joins an emulator call as the far end: the microphone goes to the
//! call (the bot hears it), the call's mix (the bot and everyone else) goes to the speaker.
//!
//! ```text
//! cargo run --example device -- --list
//! cargo run --example device -- --emulator http://127.0.0.1:8440 [--call ID] [--seconds N]
//! ```
//!
//! The device runs at its own rate, channel count and buffer size; its audio threads
//! resample to and from 16 kHz mono in fixed 20 ms chunks into preallocated buffers and
//! hand samples through wait-free rings to a 20 ms worker that talks to the pipeline call.
//! The join is a WebRTC leg to the emulator's `POST /emulator/calls/{id}/join`.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audio_pipeline::resample::{ResampleError, Resampler, SampleRate};
use audio_pipeline::{CallConfig, Pcm16K, Pipeline, PipelineConfig, Realtime, SAMPLES_PER_FRAME};
use clap::Parser;
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};
use media_endpoint::service::{ServiceLeg, ServiceLegConfig};
use media_endpoint::{EndpointEvent, SendStatus};

/// Samples (16 kHz) each ring holds: 200 ms.
const RING_SAMPLES: usize = 3_200;
/// Playback starts (and restarts after running dry) with this much queued: 40 ms.
const PLAY_PREBUFFER: usize = 2 * SAMPLES_PER_FRAME;
/// More than this queued for the speaker (120 ms) drops a frame: the delay stays bounded.
const PLAY_MAX_QUEUED: usize = 6 * SAMPLES_PER_FRAME;
/// More than this waiting for the call (120 ms) drops the oldest microphone frames.
const MIC_MAX_QUEUED: usize = 6 * SAMPLES_PER_FRAME;

/// Command line of the device example.
#[derive(Parser, Debug, Clone)]
#[command(about = "Join an emulator call with this machine's microphone and speaker")]
pub(crate) struct Args {
    /// List the input and output devices and exit.
    #[arg(long)]
    pub(crate) list: bool,
    /// The emulator's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8440")]
    pub(crate) emulator: String,
    /// The call to join (default: the first call with app-hosted media).
    #[arg(long)]
    pub(crate) call: Option<String>,
    /// The name shown in the roster.
    #[arg(long, default_value = "Local device")]
    pub(crate) name: String,
    /// Input device name (default: the system's default input).
    #[arg(long)]
    pub(crate) input: Option<String>,
    /// Output device name (default: the system's default output).
    #[arg(long)]
    pub(crate) output: Option<String>,
    /// Leave after this many seconds (default: until Ctrl-C or the call ends).
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
}

/// Why the device session could not start or ended badly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DeviceError {
    #[error("no {which} device{}", name.as_ref().map(|n| format!(" named {n:?} (see --list)")).unwrap_or_default())]
    NoDevice {
        which: &'static str,
        name: Option<String>,
    },
    #[error("the {which} device cannot be used: {source}")]
    Device {
        which: &'static str,
        #[source]
        source: cpal::Error,
    },
    #[error("the {which} device's format {format} is not supported (f32, i16, i32 or u16 are)")]
    Format {
        which: &'static str,
        format: cpal::SampleFormat,
    },
    #[error("cannot resample the {which} device's {rate} Hz: {source}")]
    Resample {
        which: &'static str,
        rate: u32,
        #[source]
        source: ResampleError,
    },
    #[error("the {which} device went away: {message}")]
    Lost {
        which: &'static str,
        message: String,
    },
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[source] signalling::client::HttpClientError),
    #[error("the emulator at {url} could not be asked for calls: {source}")]
    Emulator {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the emulator has no call with app-hosted media to join; start a bot first")]
    NoCall,
    #[error("joining the call failed: {0}")]
    Join(#[from] media_endpoint::service::ConnectError),
    #[error("the audio pipeline failed: {0}")]
    Pipeline(String),
    #[error("the media leg ended: {0}")]
    LegEnded(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What a session did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Report {
    pub(crate) input: String,
    pub(crate) output: String,
    pub(crate) input_config: String,
    pub(crate) output_config: String,
    /// Input callbacks and the frames per callback seen last.
    pub(crate) input_callbacks: u64,
    pub(crate) input_callback_frames: u64,
    pub(crate) output_callbacks: u64,
    pub(crate) output_callback_frames: u64,
    /// Samples the microphone produced that found the ring full.
    pub(crate) input_overruns: u64,
    /// Microphone frames dropped because the call fell behind (bounded delay).
    pub(crate) input_dropped_frames: u64,
    /// Times the speaker ran dry after playing had started.
    pub(crate) output_underruns: u64,
    /// Xruns the device itself reported.
    pub(crate) device_xruns: u64,
    pub(crate) frames_sent: u64,
    pub(crate) frames_received: u64,
    pub(crate) seconds: f64,
}

/// Counters shared by the audio threads and the main loop (atomics: wait-free).
#[derive(Default)]
struct Meters {
    in_callbacks: AtomicU64,
    in_frames: AtomicU64,
    out_callbacks: AtomicU64,
    out_frames: AtomicU64,
    in_overruns: AtomicU64,
    in_dropped: AtomicU64,
    out_underruns: AtomicU64,
    device_xruns: AtomicU64,
    mic_peak: AtomicU32,
    heard_peak: AtomicU32,
    sent: AtomicU64,
    received: AtomicU64,
    /// Set by a stream's error callback when its device is gone.
    lost: Mutex<Option<(&'static str, String)>>,
}

impl Meters {
    fn peak(cell: &AtomicU32, v: f32) {
        if v > f32::from_bits(cell.load(Ordering::Relaxed)) {
            cell.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    fn take_peak_db(cell: &AtomicU32) -> f32 {
        let v = f32::from_bits(cell.swap(0, Ordering::Relaxed));
        20.0 * (v + 1e-9).log10()
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.list {
        return match list() {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("device: {e}");
                std::process::ExitCode::from(2)
            }
        };
    }
    match run(&args, true) {
        Ok(r) => {
            println!(
                "left after {:.1} s: {} frames sent, {} received; xruns: {} input overrun samples, {} microphone frames dropped, {} output underruns, {} reported by the device",
                r.seconds,
                r.frames_sent,
                r.frames_received,
                r.input_overruns,
                r.input_dropped_frames,
                r.output_underruns,
                r.device_xruns
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("device: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Prints the host's input and output devices.
pub(crate) fn list() -> Result<(), DeviceError> {
    let host = cpal::default_host();
    let device_err = |which| move |source| DeviceError::Device { which, source };
    println!("host: {}", host.id().name());
    for (which, devices) in [
        (
            "input",
            host.input_devices()
                .map_err(device_err("input"))?
                .collect::<Vec<_>>(),
        ),
        (
            "output",
            host.output_devices()
                .map_err(device_err("output"))?
                .collect::<Vec<_>>(),
        ),
    ] {
        println!("{which} devices:");
        for d in devices {
            let config = if which == "input" {
                d.default_input_config()
            } else {
                d.default_output_config()
            };
            match config {
                Ok(c) => println!(
                    "  {d}  ({} Hz, {} ch, {})",
                    c.sample_rate(),
                    c.channels(),
                    c.sample_format()
                ),
                Err(e) => println!("  {d}  (unusable: {e})"),
            }
        }
    }
    Ok(())
}

fn pick(host: &cpal::Host, input: bool, name: Option<&str>) -> Result<cpal::Device, DeviceError> {
    let which = if input { "input" } else { "output" };
    let none = || DeviceError::NoDevice {
        which,
        name: name.map(str::to_owned),
    };
    match name {
        None if input => host.default_input_device().ok_or_else(none),
        None => host.default_output_device().ok_or_else(none),
        Some(n) => {
            let devices = if input {
                host.input_devices()
            } else {
                host.output_devices()
            }
            .map_err(|source| DeviceError::Device { which, source })?;
            let mut devices = devices;
            devices.find(|d| d.to_string() == n).ok_or_else(none)
        }
    }
}

/// Joins the call with the devices until `args.seconds`, Ctrl-C, the call's end or a
/// device's loss. `verbose` prints a status line each second.
pub(crate) fn run(args: &Args, verbose: bool) -> Result<Report, DeviceError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(DeviceError::Runtime)?;
    rt.block_on(session(args, verbose))
}

async fn session(args: &Args, verbose: bool) -> Result<Report, DeviceError> {
    let host = cpal::default_host();
    let input = pick(&host, true, args.input.as_deref())?;
    let output = pick(&host, false, args.output.as_deref())?;
    let in_config = input
        .default_input_config()
        .map_err(|source| DeviceError::Device {
            which: "input",
            source,
        })?;
    let out_config = output
        .default_output_config()
        .map_err(|source| DeviceError::Device {
            which: "output",
            source,
        })?;
    let mut report = Report {
        input: input.to_string(),
        output: output.to_string(),
        input_config: format!(
            "{} Hz, {} ch, {}",
            in_config.sample_rate(),
            in_config.channels(),
            in_config.sample_format()
        ),
        output_config: format!(
            "{} Hz, {} ch, {}",
            out_config.sample_rate(),
            out_config.channels(),
            out_config.sample_format()
        ),
        ..Report::default()
    };
    if verbose {
        println!("input:  {} ({})", report.input, report.input_config);
        println!("output: {} ({})", report.output, report.output_config);
    }

    let base = args.emulator.trim_end_matches('/').to_owned();
    // The engine's client; building it also makes rustls' ring provider the process default,
    // which the media leg's own HTTP client needs.
    let http = signalling::client::http_client().map_err(DeviceError::HttpClient)?;
    let call = match &args.call {
        Some(c) => c.clone(),
        None => first_call(&http, &base).await?,
    };
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    })
    .map_err(|e| DeviceError::Pipeline(e.to_string()))?;
    let mut call_config = CallConfig::new(0, 111);
    call_config.send_active = false;
    call_config.send_queue_frames = 4;
    let pcall = pipeline
        .add_call(call_config)
        .map_err(|e| DeviceError::Pipeline(e.to_string()))?;
    let (events_tx, mut events) = tokio::sync::mpsc::channel(64);
    let url = format!(
        "{base}/emulator/calls/{call}/join?name={}",
        percent_encode(&args.name)
    );
    let leg =
        ServiceLeg::connect(&url, ServiceLegConfig::default(), pcall.network, events_tx).await?;

    let meters = Arc::new(Meters::default());
    let (mic_tx, mic_rx) = rtrb::RingBuffer::<i16>::new(RING_SAMPLES);
    let (spk_tx, spk_rx) = rtrb::RingBuffer::<i16>::new(RING_SAMPLES);
    let in_stream = build_input(&input, &in_config, mic_tx, &meters)?;
    let out_stream = build_output(&output, &out_config, spk_rx, &meters)?;
    in_stream.play().map_err(|source| DeviceError::Device {
        which: "input",
        source,
    })?;
    out_stream.play().map_err(|source| DeviceError::Device {
        which: "output",
        source,
    })?;

    let stop = Arc::new(AtomicBool::new(false));
    let worker = std::thread::Builder::new()
        .name("device-worker".into())
        .spawn({
            let (stop, meters) = (Arc::clone(&stop), Arc::clone(&meters));
            let mut bot = pcall.bot;
            move || worker(&mut bot, mic_rx, spk_tx, &stop, &meters)
        })
        .map_err(|e| DeviceError::Pipeline(e.to_string()))?;

    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some((which, message)) = meters.lost.lock().map(|mut l| l.take()).unwrap_or(None) {
                    break Err(DeviceError::Lost { which, message });
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break Ok(());
                }
                if verbose {
                    println!(
                        "mic {:6.1} dBFS peak, heard {:6.1} dBFS peak, {} sent, {} received, xruns: {} in, {} dropped, {} out, {} device",
                        Meters::take_peak_db(&meters.mic_peak),
                        Meters::take_peak_db(&meters.heard_peak),
                        meters.sent.load(Ordering::Relaxed),
                        meters.received.load(Ordering::Relaxed),
                        meters.in_overruns.load(Ordering::Relaxed),
                        meters.in_dropped.load(Ordering::Relaxed),
                        meters.out_underruns.load(Ordering::Relaxed),
                        meters.device_xruns.load(Ordering::Relaxed),
                    );
                }
            }
            ev = events.recv() => match ev {
                Some(EndpointEvent::SendStatus(SendStatus::Active)) if verbose => println!("joined: media connected"),
                Some(EndpointEvent::StreamFailure(r)) => break Err(DeviceError::LegEnded(format!("{r:?}"))),
                Some(EndpointEvent::LegEnded(r)) => break Err(DeviceError::LegEnded(format!("{r:?}"))),
                None => break Err(DeviceError::LegEnded("the leg's task stopped".into())),
                Some(_) => {}
            },
            _ = &mut ctrl_c => break Ok(()),
        }
    };
    let released = release_streams(in_stream, out_stream);
    if !released && verbose {
        eprintln!(
            "device: the audio backend did not release the devices within {} s; leaving them",
            RELEASE_TIMEOUT.as_secs()
        );
    }
    stop.store(true, Ordering::Release);
    let _ = worker.join();
    if let Err(e) = leg.close().await
        && verbose
    {
        eprintln!("device: leaving: {e}");
    }
    drop(pcall.handle);
    pipeline.shutdown();
    report.seconds = started.elapsed().as_secs_f64();
    report.input_callbacks = meters.in_callbacks.load(Ordering::Relaxed);
    report.input_callback_frames = meters.in_frames.load(Ordering::Relaxed);
    report.output_callbacks = meters.out_callbacks.load(Ordering::Relaxed);
    report.output_callback_frames = meters.out_frames.load(Ordering::Relaxed);
    report.input_overruns = meters.in_overruns.load(Ordering::Relaxed);
    report.input_dropped_frames = meters.in_dropped.load(Ordering::Relaxed);
    report.output_underruns = meters.out_underruns.load(Ordering::Relaxed);
    report.device_xruns = meters.device_xruns.load(Ordering::Relaxed);
    report.frames_sent = meters.sent.load(Ordering::Relaxed);
    report.frames_received = meters.received.load(Ordering::Relaxed);
    outcome.map(|()| report)
}

/// How long closing the streams may take before the session gives up on them.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);

/// Stops and closes both streams on a helper thread; true if that finished in time.
///
/// Closing a cpal stream joins its audio thread. When the sound server dies under it
/// (PulseAudio killed, seen with Debian's ALSA pulse plugin), that thread can stay blocked
/// inside libpulse forever; the session must still end and say why, so it stops waiting.
fn release_streams(input: cpal::Stream, output: cpal::Stream) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("device-release".into())
        .spawn(move || {
            drop(input);
            drop(output);
            let _ = done_tx.send(());
        });
    spawned.is_ok() && done_rx.recv_timeout(RELEASE_TIMEOUT).is_ok()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The first call of the emulator with app-hosted media connected.
async fn first_call(http: &reqwest::Client, base: &str) -> Result<String, DeviceError> {
    let err = |source| DeviceError::Emulator {
        url: base.to_owned(),
        source,
    };
    let state: serde_json::Value = http
        .get(format!("{base}/emulator/state"))
        .send()
        .await
        .map_err(err)?
        .json()
        .await
        .map_err(err)?;
    state["calls"]
        .as_array()
        .and_then(|calls| {
            calls
                .iter()
                .find(|c| c["mediaConnected"] == true && c["state"] != "terminated")
        })
        .and_then(|c| c["id"].as_str())
        .map(str::to_owned)
        .ok_or(DeviceError::NoCall)
}

/// Moves 20 ms frames between the rings and the pipeline call every 20 ms.
///
/// The microphone side forwards a frame only when the call's send queue has room: the
/// pipeline takes one frame per tick, so a backlog (a device that delivers in bursts, or
/// runs faster than the pipeline's clock) stays in the ring, where it is trimmed to
/// [`MIC_MAX_QUEUED`] by dropping whole frames, counted, so the delay stays bounded.
fn worker(
    bot: &mut audio_pipeline::BotHalf,
    mut mic: rtrb::Consumer<i16>,
    mut speaker: rtrb::Producer<i16>,
    stop: &AtomicBool,
    meters: &Meters,
) {
    let mut deadline = Instant::now();
    let mut frame = Pcm16K::SILENCE;
    while !stop.load(Ordering::Acquire) {
        while mic.slots() > MIC_MAX_QUEUED {
            if let Ok(chunk) = mic.read_chunk(SAMPLES_PER_FRAME) {
                chunk.commit_all();
                meters.in_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        while bot.send_capacity_left() > 0 && mic.slots() >= SAMPLES_PER_FRAME {
            if let Ok(chunk) = mic.read_chunk(SAMPLES_PER_FRAME) {
                let (a, b) = chunk.as_slices();
                frame.samples[..a.len()].copy_from_slice(a);
                frame.samples[a.len()..].copy_from_slice(b);
                chunk.commit_all();
            }
            match bot.try_send(frame) {
                Ok(()) => meters.sent.fetch_add(1, Ordering::Relaxed),
                Err(_) => meters.in_dropped.fetch_add(1, Ordering::Relaxed),
            };
        }
        while let Some(f) = bot.try_recv() {
            meters.received.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut chunk) = speaker.write_chunk(SAMPLES_PER_FRAME) {
                let (a, b) = chunk.as_mut_slices();
                let n = a.len();
                a.copy_from_slice(&f.pcm.samples[..n]);
                b.copy_from_slice(&f.pcm.samples[n..]);
                chunk.commit_all();
            }
        }
        deadline += Duration::from_millis(20);
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else if now - deadline > Duration::from_millis(100) {
            deadline = now;
        }
    }
}

fn resampler(
    which: &'static str,
    from: u32,
    from_ch: usize,
    to: u32,
    to_ch: usize,
) -> Result<Resampler, DeviceError> {
    let err = |source| DeviceError::Resample {
        which,
        rate: if which == "input" { from } else { to },
        source,
    };
    Resampler::new(
        SampleRate::new(from).map_err(err)?,
        from_ch,
        SampleRate::new(to).map_err(err)?,
        to_ch,
    )
    .map_err(err)
}

fn on_error(which: &'static str, meters: &Arc<Meters>) -> impl FnMut(cpal::Error) + Send + 'static {
    let meters = Arc::clone(meters);
    move |e: cpal::Error| match e.kind() {
        cpal::ErrorKind::Xrun => {
            meters.device_xruns.fetch_add(1, Ordering::Relaxed);
        }
        cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
        _ => {
            // A dead device may report the same error on every poll: format it once.
            if let Ok(mut lost) = meters.lost.lock()
                && lost.is_none()
            {
                *lost = Some((which, e.to_string()));
            }
        }
    }
}

fn build_input(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    ring: rtrb::Producer<i16>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError> {
    match config.sample_format() {
        cpal::SampleFormat::F32 => input_stream::<f32>(device, config, ring, meters),
        cpal::SampleFormat::I16 => input_stream::<i16>(device, config, ring, meters),
        cpal::SampleFormat::I32 => input_stream::<i32>(device, config, ring, meters),
        cpal::SampleFormat::U16 => input_stream::<u16>(device, config, ring, meters),
        format => Err(DeviceError::Format {
            which: "input",
            format,
        }),
    }
}

fn input_stream<T>(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    mut ring: rtrb::Producer<i16>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + Send + 'static,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels());
    let mut r = resampler("input", config.sample_rate(), channels, 16_000, 1)?;
    // Every buffer the callback uses is allocated here, before the stream starts.
    let mut chunk = vec![0f32; r.input_frames() * channels];
    let mut out = vec![0f32; r.output_frames()];
    let mut fill = 0usize;
    let m = Arc::clone(meters);
    device
        .build_input_stream::<T, _, _>(
            config.config(),
            move |data: &[T], _| {
                m.in_callbacks.fetch_add(1, Ordering::Relaxed);
                m.in_frames
                    .store((data.len() / channels) as u64, Ordering::Relaxed);
                let mut peak = 0f32;
                for &s in data {
                    let v = s.to_sample::<f32>();
                    peak = peak.max(v.abs());
                    chunk[fill] = v;
                    fill += 1;
                    if fill == chunk.len() {
                        fill = 0;
                        if r.process_f32(&chunk, &mut out).is_err() {
                            continue;
                        }
                        for &o in out.iter() {
                            let v = (o * 32_767.0).round().clamp(-32_768.0, 32_767.0) as i16;
                            if ring.push(v).is_err() {
                                m.in_overruns.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Meters::peak(&m.mic_peak, peak);
            },
            on_error("input", meters),
            None,
        )
        .map_err(|source| DeviceError::Device {
            which: "input",
            source,
        })
}

fn build_output(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    ring: rtrb::Consumer<i16>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError> {
    match config.sample_format() {
        cpal::SampleFormat::F32 => output_stream::<f32>(device, config, ring, meters),
        cpal::SampleFormat::I16 => output_stream::<i16>(device, config, ring, meters),
        cpal::SampleFormat::I32 => output_stream::<i32>(device, config, ring, meters),
        cpal::SampleFormat::U16 => output_stream::<u16>(device, config, ring, meters),
        format => Err(DeviceError::Format {
            which: "output",
            format,
        }),
    }
}

fn output_stream<T>(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    mut ring: rtrb::Consumer<i16>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError>
where
    T: SizedSample + FromSample<f32> + Send + 'static,
{
    let channels = usize::from(config.channels());
    let mut r = resampler("output", 16_000, 1, config.sample_rate(), channels)?;
    let mut chunk = vec![0f32; r.input_frames()];
    let mut out = vec![0f32; r.output_frames() * channels];
    let mut pos = out.len();
    let mut playing = false;
    let m = Arc::clone(meters);
    device
        .build_output_stream::<T, _, _>(
            config.config(),
            move |data: &mut [T], _| {
                m.out_callbacks.fetch_add(1, Ordering::Relaxed);
                m.out_frames
                    .store((data.len() / channels) as u64, Ordering::Relaxed);
                let mut peak = 0f32;
                for d in data.iter_mut() {
                    if pos == out.len() {
                        let queued = ring.slots();
                        if queued > PLAY_MAX_QUEUED {
                            // The far side runs ahead of the device's clock: skip a frame.
                            if let Ok(c) = ring.read_chunk(SAMPLES_PER_FRAME) {
                                c.commit_all();
                            }
                        }
                        if !playing && ring.slots() >= PLAY_PREBUFFER {
                            playing = true;
                        }
                        if playing && ring.slots() >= chunk.len() {
                            if let Ok(c) = ring.read_chunk(chunk.len()) {
                                let (a, b) = c.as_slices();
                                for (dst, &s) in chunk.iter_mut().zip(a.iter().chain(b)) {
                                    *dst = f32::from(s) / 32_768.0;
                                }
                                c.commit_all();
                            }
                        } else {
                            if playing {
                                m.out_underruns.fetch_add(1, Ordering::Relaxed);
                                playing = false;
                            }
                            chunk.fill(0.0);
                        }
                        if r.process_f32(&chunk, &mut out).is_err() {
                            out.fill(0.0);
                        }
                        pos = 0;
                    }
                    let v = out[pos];
                    peak = peak.max(v.abs());
                    *d = T::from_sample(v);
                    pos += 1;
                }
                Meters::peak(&m.heard_peak, peak);
            },
            on_error("output", meters),
            None,
        )
        .map_err(|source| DeviceError::Device {
            which: "output",
            source,
        })
}
