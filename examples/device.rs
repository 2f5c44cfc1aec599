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
//!
//! A stream that reports an error is given a moment to recover by itself (cpal re-prepares a
//! stream after an xrun and keeps polling after other errors); one that does not, or whose
//! callbacks stop, is closed and built again on the same device by the control loop, with
//! backoff and a bounded number of attempts. Only a device that is gone (cpal's
//! `DeviceNotAvailable`, or reopening that keeps failing) ends the session.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
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
/// Errors a stream's error callback can hand to the control loop before the control loop
/// has read them (more are counted, not kept).
const ERROR_SLOTS: usize = 16;
/// How often the control loop looks at the streams' errors and callbacks.
const CHECK_EVERY: Duration = Duration::from_millis(50);

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
    /// The call to join (default: the only call with app-hosted media; when there are
    /// several, the example lists them and asks for this).
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
    #[error("the emulator has {} calls with app-hosted media; choose one with --call ID: {}", .0.len(), .0.join(", "))]
    SeveralCalls(Vec<String>),
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
    /// Other errors the streams reported (I/O errors of the audio backend, for example).
    pub(crate) device_errors: u64,
    /// Times a stream was closed and built again after errors or stalled callbacks.
    pub(crate) reopened: u64,
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
    device_errors: AtomicU64,
    reopened: AtomicU64,
    mic_peak: AtomicU32,
    heard_peak: AtomicU32,
    sent: AtomicU64,
    received: AtomicU64,
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
                "left after {:.1} s: {} frames sent, {} received; xruns: {} input overrun samples, {} microphone frames dropped, {} output underruns, {} reported by the device; {} other device errors, streams reopened {} times",
                r.seconds,
                r.frames_sent,
                r.frames_received,
                r.input_overruns,
                r.input_dropped_frames,
                r.output_underruns,
                r.device_xruns,
                r.device_errors,
                r.reopened
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
    let call_config = CallConfig {
        send_active: false,
        send_queue_frames: 4,
        ..CallConfig::default()
    };
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
    let (swaps_tx, swaps_rx) = std::sync::mpsc::channel();
    let mut sides = [
        Side::open("input", input, in_config, &meters, &swaps_tx)?,
        Side::open("output", output, out_config, &meters, &swaps_tx)?,
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let worker = std::thread::Builder::new()
        .name("device-worker".into())
        .spawn({
            let (stop, meters) = (Arc::clone(&stop), Arc::clone(&meters));
            let mut bot = pcall.bot;
            move || worker(&mut bot, &swaps_rx, &stop, &meters)
        })
        .map_err(|e| DeviceError::Pipeline(e.to_string()))?;

    let started = Instant::now();
    let deadline = args.seconds.map(|s| started + Duration::from_secs(s));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let outcome = loop {
        tokio::select! {
            _ = check.tick() => {
                // Reopening blocks this loop for as long as the backend takes to close and
                // open a stream; the audio threads and the media leg run on.
                let mut lost = None;
                for side in &mut sides {
                    if let Err(e) = side.check(&meters, &swaps_tx, verbose) {
                        lost = Some(e);
                        break;
                    }
                }
                if let Some(e) = lost {
                    break Err(e);
                }
            }
            _ = tick.tick() => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break Ok(());
                }
                if verbose {
                    println!(
                        "mic {:6.1} dBFS peak, heard {:6.1} dBFS peak, {} sent, {} received, xruns: {} in, {} dropped, {} out, {} device; device errors {}, reopened {}",
                        Meters::take_peak_db(&meters.mic_peak),
                        Meters::take_peak_db(&meters.heard_peak),
                        meters.sent.load(Ordering::Relaxed),
                        meters.received.load(Ordering::Relaxed),
                        meters.in_overruns.load(Ordering::Relaxed),
                        meters.in_dropped.load(Ordering::Relaxed),
                        meters.out_underruns.load(Ordering::Relaxed),
                        meters.device_xruns.load(Ordering::Relaxed),
                        meters.device_errors.load(Ordering::Relaxed),
                        meters.reopened.load(Ordering::Relaxed),
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
    let streams = sides.iter_mut().filter_map(|s| s.stream.take()).collect();
    let released = release_streams(streams, RELEASE_TIMEOUT);
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
    report.device_errors = meters.device_errors.load(Ordering::Relaxed);
    report.reopened = meters.reopened.load(Ordering::Relaxed);
    report.frames_sent = meters.sent.load(Ordering::Relaxed);
    report.frames_received = meters.received.load(Ordering::Relaxed);
    outcome.map(|()| report)
}

/// How long closing the streams may take before the session gives up on them.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a reopen waits for the failed stream to close before it builds the new one.
const REOPEN_RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Stops and closes streams on a helper thread; true if that finished within `timeout`.
///
/// Closing a cpal stream joins its audio thread. When the sound server dies under it
/// (PulseAudio killed, seen with Debian's ALSA pulse plugin), that thread can stay blocked
/// inside libpulse forever; the session must still end and say why, so it stops waiting.
fn release_streams(streams: Vec<cpal::Stream>, timeout: Duration) -> bool {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("device-release".into())
        .spawn(move || {
            drop(streams);
            let _ = done_tx.send(());
        });
    spawned.is_ok() && done_rx.recv_timeout(timeout).is_ok()
}

/// The worker's end of a stream's ring, handed over each time the stream is (re)built.
enum RingEnd {
    /// Where the input stream's callback puts the microphone's 16 kHz samples.
    Mic(rtrb::Consumer<i16>),
    /// Where the output stream's callback takes the speaker's 16 kHz samples from.
    Speaker(rtrb::Producer<i16>),
}

/// One direction's stream, owned by the control loop, and what it knows of its health.
struct Side {
    which: &'static str,
    device: cpal::Device,
    config: cpal::SupportedStreamConfig,
    stream: Option<cpal::Stream>,
    /// The errors the stream's error callback handed over.
    errors: rtrb::Consumer<cpal::Error>,
    recovery: Recovery,
}

impl Side {
    /// Builds and starts the first stream on `device`.
    fn open(
        which: &'static str,
        device: cpal::Device,
        config: cpal::SupportedStreamConfig,
        meters: &Arc<Meters>,
        swaps: &std::sync::mpsc::Sender<RingEnd>,
    ) -> Result<Self, DeviceError> {
        let (stream, errors) = start_stream(which, &device, &config, meters, swaps)?;
        Ok(Self {
            which,
            device,
            config,
            stream: Some(stream),
            errors,
            recovery: Recovery::new(Instant::now(), callbacks(which, meters)),
        })
    }

    /// Reads the stream's errors and callbacks, reopens it when it needs that, and says when
    /// the device is gone.
    fn check(
        &mut self,
        meters: &Arc<Meters>,
        swaps: &std::sync::mpsc::Sender<RingEnd>,
        verbose: bool,
    ) -> Result<(), DeviceError> {
        let now = Instant::now();
        while let Ok(e) = self.errors.pop() {
            if e.kind() == cpal::ErrorKind::DeviceNotAvailable {
                return Err(DeviceError::Lost {
                    which: self.which,
                    message: e.to_string(),
                });
            }
            if verbose && !self.recovery.error_pending() {
                println!("device: the {} stream reported: {e}", self.which);
            }
            self.recovery.error(e.to_string());
        }
        match self.recovery.poll(now, callbacks(self.which, meters)) {
            Verdict::Wait => Ok(()),
            Verdict::Recovered { reopens, after } => {
                if verbose {
                    println!(
                        "device: the {} stream runs again, {:.2} s after its trouble began ({reopens} reopens)",
                        self.which,
                        after.as_secs_f64()
                    );
                }
                Ok(())
            }
            Verdict::GiveUp(message) => Err(DeviceError::Lost {
                which: self.which,
                message,
            }),
            Verdict::Reopen => {
                if verbose {
                    println!(
                        "device: reopening the {} stream ({})",
                        self.which,
                        self.recovery.reason()
                    );
                }
                if let Some(old) = self.stream.take()
                    && !release_streams(vec![old], REOPEN_RELEASE_TIMEOUT)
                    && verbose
                {
                    println!(
                        "device: the failed {} stream did not close within {} s; left behind",
                        self.which,
                        REOPEN_RELEASE_TIMEOUT.as_secs()
                    );
                }
                let result = start_stream(self.which, &self.device, &self.config, meters, swaps);
                let now = Instant::now();
                let cbs = callbacks(self.which, meters);
                match result {
                    Ok((stream, errors)) => {
                        self.stream = Some(stream);
                        self.errors = errors;
                        meters.reopened.fetch_add(1, Ordering::Relaxed);
                        self.recovery.reopened(now, cbs, Ok(()));
                    }
                    Err(e) => {
                        if verbose {
                            println!("device: reopening the {} stream failed: {e}", self.which);
                        }
                        self.recovery.reopened(now, cbs, Err(e.to_string()));
                    }
                }
                Ok(())
            }
        }
    }
}

/// Callbacks so far of the `which` direction's streams.
fn callbacks(which: &'static str, meters: &Meters) -> u64 {
    if which == "input" {
        meters.in_callbacks.load(Ordering::Relaxed)
    } else {
        meters.out_callbacks.load(Ordering::Relaxed)
    }
}

/// Builds and starts a stream with a fresh ring, and hands the ring's other end to the worker.
fn start_stream(
    which: &'static str,
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    meters: &Arc<Meters>,
    swaps: &std::sync::mpsc::Sender<RingEnd>,
) -> Result<(cpal::Stream, rtrb::Consumer<cpal::Error>), DeviceError> {
    let (errors_tx, errors_rx) = rtrb::RingBuffer::<cpal::Error>::new(ERROR_SLOTS);
    let (stream, end) = if which == "input" {
        let (tx, rx) = rtrb::RingBuffer::<i16>::new(RING_SAMPLES);
        (
            build_input(device, config, tx, errors_tx, meters)?,
            RingEnd::Mic(rx),
        )
    } else {
        let (tx, rx) = rtrb::RingBuffer::<i16>::new(RING_SAMPLES);
        (
            build_output(device, config, rx, errors_tx, meters)?,
            RingEnd::Speaker(tx),
        )
    };
    // The worker only stops after the streams are released, so it is still there to take it.
    let _ = swaps.send(end);
    stream
        .play()
        .map_err(|source| DeviceError::Device { which, source })?;
    Ok((stream, errors_rx))
}

/// A stream whose callbacks stop for this long (cpal's own recovery from an xrun did not
/// bring them back) is closed and built again.
const STUCK: Duration = Duration::from_secs(1);
/// The same for a stream that reported an error since its last callback. cpal polls a
/// failed stream again at once, so one that stays failed reports errors in a busy loop
/// (100 000 a second were seen) until it is closed; but on a loaded machine the pulse
/// plugin's I/O errors after a re-prepare, which end by themselves, were seen to last more
/// than 0.3 s (the busy loop contends for the lock PulseAudio's timing reply needs).
const STUCK_FAILING: Duration = Duration::from_millis(500);
/// A new stream's first callback may take this long (PulseAudio: about 1 s).
const START_WAIT: Duration = Duration::from_secs(3);
/// A stream is well again after this long with its callbacks running.
const HEALTHY_AFTER: Duration = Duration::from_secs(1);
/// Reopen attempts for one outage; the session ends when they are used up.
const MAX_REOPENS: u32 = 6;
/// The pause after the first reopen attempt; it doubles with each further attempt, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between two reopen attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// An outage longer than this ends the session, whatever attempts are left.
const OUTAGE_LIMIT: Duration = Duration::from_secs(10);

/// What the control loop should do about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing now: the stream runs, or is being given time.
    Wait,
    /// The stream runs well again after an outage that began `after` before its callbacks
    /// came back, with `reopens` reopens.
    Recovered { reopens: u32, after: Duration },
    /// Close the stream and build it again now.
    Reopen,
    /// The device is gone: end the session with this message.
    GiveUp(String),
}

/// Decides, from one stream's callbacks and errors, when to reopen it and when its device
/// counts as gone. Time is passed in; the control loop does the closing and building.
///
/// Errors alone do not make a stream fail: with Debian's ALSA pulse plugin, the stream
/// cpal re-prepares after an xrun answers `snd_pcm_avail_delay` with an I/O error until
/// PulseAudio's first timing update for it, then runs on (measured: within 0.06 s under
/// load). What counts is whether its callbacks run.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// When the current stream was built, and its direction's callback count then.
    built_at: Instant,
    callbacks_at_build: u64,
    /// The callback count last seen, and when it last moved.
    callbacks: u64,
    progress_at: Instant,
    /// False after a failed reopen left the direction without a stream.
    has_stream: bool,
    /// The latest error the stream reported since its last callback.
    pending_error: Option<String>,
    outage: Option<Outage>,
}

/// A stream without callbacks, from when they stopped until it runs well again.
#[derive(Debug)]
struct Outage {
    since: Instant,
    /// Why it began, and the latest reason (a stream's error, or a failed reopen).
    first: String,
    last: String,
    /// When the callbacks came back, if they run now.
    resumed_at: Option<Instant>,
    reopens: u32,
    next_reopen: Instant,
}

impl Recovery {
    /// A stream just built, its direction's callback count being `callbacks`.
    pub(crate) fn new(now: Instant, callbacks: u64) -> Self {
        Self {
            built_at: now,
            callbacks_at_build: callbacks,
            callbacks,
            progress_at: now,
            has_stream: true,
            pending_error: None,
            outage: None,
        }
    }

    /// True if the stream reported an error and has had no callback since.
    pub(crate) fn error_pending(&self) -> bool {
        self.pending_error.is_some()
    }

    /// Why the stream is being reopened.
    pub(crate) fn reason(&self) -> &str {
        self.outage.as_ref().map_or("", |o| o.last.as_str())
    }

    /// The stream reported an error other than an xrun or a vanished device.
    pub(crate) fn error(&mut self, message: String) {
        self.pending_error = Some(message);
    }

    /// The outcome of a reopen the last [`Verdict::Reopen`] asked for; `callbacks` is the
    /// direction's callback count once the new stream (if any) was started.
    pub(crate) fn reopened(&mut self, now: Instant, callbacks: u64, result: Result<(), String>) {
        let Some(outage) = self.outage.as_mut() else {
            return;
        };
        outage.reopens += 1;
        let doublings = (outage.reopens - 1).min(16);
        outage.next_reopen = now
            + FIRST_BACKOFF
                .saturating_mul(1 << doublings)
                .min(MAX_BACKOFF);
        outage.resumed_at = None;
        self.pending_error = None;
        match result {
            Ok(()) => {
                self.has_stream = true;
                self.built_at = now;
                self.callbacks_at_build = callbacks;
                self.callbacks = callbacks;
                self.progress_at = now;
            }
            Err(message) => {
                self.has_stream = false;
                outage.last = message;
            }
        }
    }

    /// Looks at the stream, its direction's callback count now being `callbacks`.
    pub(crate) fn poll(&mut self, now: Instant, callbacks: u64) -> Verdict {
        if callbacks != self.callbacks {
            self.callbacks = callbacks;
            self.progress_at = now;
            self.pending_error = None;
            if let Some(o) = self.outage.as_mut() {
                o.resumed_at.get_or_insert(now);
            }
        }
        let started = callbacks != self.callbacks_at_build;
        let quiet_since = if started {
            self.progress_at
        } else {
            self.built_at
        };
        let patience = if !started {
            START_WAIT
        } else if self.pending_error.is_some() {
            STUCK_FAILING
        } else {
            STUCK
        };
        let stuck = !self.has_stream || now.duration_since(quiet_since) >= patience;
        if stuck && self.has_stream {
            let reason = self.pending_error.clone().unwrap_or_else(|| {
                format!(
                    "no audio callbacks for {:.1} s",
                    now.duration_since(quiet_since).as_secs_f64()
                )
            });
            match self.outage.as_mut() {
                Some(o) => {
                    o.resumed_at = None;
                    o.last = reason;
                }
                None => {
                    self.outage = Some(Outage {
                        since: quiet_since,
                        first: reason.clone(),
                        last: reason,
                        resumed_at: None,
                        reopens: 0,
                        next_reopen: now,
                    });
                }
            }
        }
        let Some(outage) = self.outage.as_mut() else {
            return Verdict::Wait;
        };
        if !stuck {
            // Callbacks run (or a new stream is starting): well again after a while.
            return match outage.resumed_at {
                Some(r) if now.duration_since(r) >= HEALTHY_AFTER => {
                    let verdict = Verdict::Recovered {
                        reopens: outage.reopens,
                        after: r.saturating_duration_since(outage.since),
                    };
                    self.outage = None;
                    verdict
                }
                _ => Verdict::Wait,
            };
        }
        if now.duration_since(outage.since) >= OUTAGE_LIMIT
            || (outage.reopens >= MAX_REOPENS && now >= outage.next_reopen)
        {
            let mut message = outage.first.clone();
            if outage.reopens > 0 {
                message.push_str(&format!(
                    "; {} attempts to reopen it in {:.1} s, the last: {}",
                    outage.reopens,
                    now.duration_since(outage.since).as_secs_f64(),
                    outage.last
                ));
            }
            return Verdict::GiveUp(message);
        }
        if now >= outage.next_reopen {
            Verdict::Reopen
        } else {
            Verdict::Wait
        }
    }
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

/// The emulator's one call with app-hosted media connected; several are an error that
/// lists them, so the device never joins a call the user did not mean.
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
    let mut candidates: Vec<String> = state["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter(|c| c["mediaConnected"] == true && c["state"] != "terminated")
                .filter_map(|c| c["id"].as_str())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    match candidates.len() {
        0 => Err(DeviceError::NoCall),
        1 => candidates.pop().ok_or(DeviceError::NoCall),
        _ => Err(DeviceError::SeveralCalls(candidates)),
    }
}

/// Moves 20 ms frames between the rings and the pipeline call every 20 ms.
///
/// The microphone side forwards a frame only when the call's send queue has room: the
/// pipeline takes one frame per tick, so a backlog (a device that delivers in bursts, or
/// runs faster than the pipeline's clock) stays in the ring, where it is trimmed to
/// [`MIC_MAX_QUEUED`] by dropping whole frames, counted, so the delay stays bounded.
fn worker(
    bot: &mut audio_pipeline::BotHalf,
    swaps: &std::sync::mpsc::Receiver<RingEnd>,
    stop: &AtomicBool,
    meters: &Meters,
) {
    let mut deadline = Instant::now();
    let mut frame = Pcm16K::SILENCE;
    // The rings of the streams running now; a rebuilt stream comes with new ones.
    let mut mic: Option<rtrb::Consumer<i16>> = None;
    let mut speaker: Option<rtrb::Producer<i16>> = None;
    while !stop.load(Ordering::Acquire) {
        while let Ok(end) = swaps.try_recv() {
            match end {
                RingEnd::Mic(c) => mic = Some(c),
                RingEnd::Speaker(p) => speaker = Some(p),
            }
        }
        if let Some(mic) = mic.as_mut() {
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
        }
        while let Some(f) = bot.try_recv() {
            meters.received.fetch_add(1, Ordering::Relaxed);
            if let Some(Ok(mut chunk)) = speaker.as_mut().map(|s| s.write_chunk(SAMPLES_PER_FRAME))
            {
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

/// The error callback of a stream: counts xruns (cpal re-prepares the stream itself) and
/// hands every other error, moved without allocating, to the control loop through `errors`.
fn on_error(
    meters: &Arc<Meters>,
    mut errors: rtrb::Producer<cpal::Error>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    let meters = Arc::clone(meters);
    move |e: cpal::Error| match e.kind() {
        cpal::ErrorKind::Xrun => {
            meters.device_xruns.fetch_add(1, Ordering::Relaxed);
        }
        cpal::ErrorKind::DeviceChanged | cpal::ErrorKind::RealtimeDenied => {}
        _ => {
            meters.device_errors.fetch_add(1, Ordering::Relaxed);
            // A failing stream may report an error on every poll: the first ones are enough.
            let _ = errors.push(e);
        }
    }
}

fn build_input(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    ring: rtrb::Producer<i16>,
    errors: rtrb::Producer<cpal::Error>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError> {
    match config.sample_format() {
        cpal::SampleFormat::F32 => input_stream::<f32>(device, config, ring, errors, meters),
        cpal::SampleFormat::I16 => input_stream::<i16>(device, config, ring, errors, meters),
        cpal::SampleFormat::I32 => input_stream::<i32>(device, config, ring, errors, meters),
        cpal::SampleFormat::U16 => input_stream::<u16>(device, config, ring, errors, meters),
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
    errors: rtrb::Producer<cpal::Error>,
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
            on_error(meters, errors),
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
    errors: rtrb::Producer<cpal::Error>,
    meters: &Arc<Meters>,
) -> Result<cpal::Stream, DeviceError> {
    match config.sample_format() {
        cpal::SampleFormat::F32 => output_stream::<f32>(device, config, ring, errors, meters),
        cpal::SampleFormat::I16 => output_stream::<i16>(device, config, ring, errors, meters),
        cpal::SampleFormat::I32 => output_stream::<i32>(device, config, ring, errors, meters),
        cpal::SampleFormat::U16 => output_stream::<u16>(device, config, ring, errors, meters),
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
    errors: rtrb::Producer<cpal::Error>,
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
            on_error(meters, errors),
            None,
        )
        .map_err(|source| DeviceError::Device {
            which: "output",
            source,
        })
}
