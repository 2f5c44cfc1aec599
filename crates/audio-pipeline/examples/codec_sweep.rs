//! Opus settings sweep through the real pipeline: speech in, what a receiving call hears out.
//!
//! ```text
//! cargo run --release -p audio-pipeline --example codec_sweep -- IN16K.wav OUTDIR [options]
//!   --bitrates 16,24,32,40,64   kb/s
//!   --complexities 0,5,10
//!   --fec on,off
//!   --dtx on,off
//!   --loss 0,10                 random packet loss, percent (seeded, the same pattern for
//!                               every setting)
//!   --seed 12                   seed of the loss pattern
//!   --adapt off                 off, on or on,off: let the engine raise the bitrate with the
//!                               reported loss (`OpusConfig::adapt_bitrate_to_loss`); off
//!                               keeps the bitrate column the real target
//!   --rx-min-delay-ms 20        the receiving jitter buffer's lowest target delay
//!   --timing-passes 5           passes over the sample when timing the encoder (0: skip)
//! ```
//!
//! For every combination of the settings, and every loss rate, the 16 kHz mono 16-bit WAV is
//! sent through a sending [`ManualCall`] (configured with those [`OpusConfig`] settings, told
//! the loss rate as if by a receiver report) to a receiving [`ManualCall`] with the default
//! jitter buffer, in simulated time: one tick per 20 ms from a media time of 10 s, each packet
//! arriving 5 ms after the tick that produced it, unless the loss pattern drops it. Everything
//! the receiving bot gets (from the first tick on, silence included) is written to
//! `OUTDIR/b<kbps>_c<complexity>_fec<0|1>_dtx<0|1>[_adapt]_loss<pct>.wav`.
//!
//! The encoder's CPU cost is measured apart, with the `opus` crate directly (16 kHz mono VoIP,
//! the same settings, loss percentage 10 so that FEC does its work): each pass encodes the
//! whole sample with a fresh encoder; a frame's cost is its fastest pass (the work is the same
//! each pass, so this drops interruptions by other processes); reported as the median and the
//! 99th percentile over the frames. Use a release build.
//!
//! `OUTDIR/results.tsv` gets one line per output file: the settings, packets sent and lost,
//! mean payload bytes per packet sent, how many lost packets were followed by a packet that
//! carries in-band FEC for them (the most the receiver could rebuild), the receiving frames by
//! source, and the encode times.

use audio_pipeline::{
    CallConfig, EncodedPacket, ManualCall, OpusConfig, Pcm16K, SAMPLES_PER_FRAME, Ticks,
};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Media time of the first tick.
const BASE_MS: u64 = 10_000;
/// One-way network delay given to every packet that is not lost.
const NETWORK_DELAY_MS: u64 = 5;
/// Ticks run after the last frame is sent, so that the receiver plays out its buffer.
const TAIL_TICKS: usize = 75;
/// Loss percentage the encoder is told while its CPU cost is measured.
const TIMING_LOSS_PERCENT: i32 = 10;

type AnyError = Box<dyn std::error::Error>;

/// The sweep's options.
struct Options {
    input: PathBuf,
    outdir: PathBuf,
    bitrates_kbps: Vec<u32>,
    complexities: Vec<u8>,
    fec: Vec<bool>,
    dtx: Vec<bool>,
    loss_percent: Vec<u32>,
    seed: u64,
    adapt: Vec<bool>,
    rx_min_delay_ms: u64,
    timing_passes: usize,
}

fn parse_list<T: std::str::FromStr>(what: &str, s: &str) -> Result<Vec<T>, AnyError> {
    s.split(',')
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|_| format!("{what}: cannot parse {v:?}").into())
        })
        .collect()
}

fn parse_switches(what: &str, s: &str) -> Result<Vec<bool>, AnyError> {
    s.split(',')
        .map(|v| match v.trim() {
            "on" | "1" | "true" => Ok(true),
            "off" | "0" | "false" => Ok(false),
            other => Err(format!("{what}: expected on/off, got {other:?}").into()),
        })
        .collect()
}

fn parse_args() -> Result<Options, AnyError> {
    let mut positional = Vec::new();
    let mut o = Options {
        input: PathBuf::new(),
        outdir: PathBuf::new(),
        bitrates_kbps: vec![16, 24, 32, 40, 64],
        complexities: vec![0, 5, 10],
        fec: vec![true, false],
        dtx: vec![true, false],
        loss_percent: vec![0, 10],
        seed: 12,
        adapt: vec![false],
        rx_min_delay_ms: 20,
        timing_passes: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if !a.starts_with("--") {
            positional.push(a);
            continue;
        }
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--bitrates" => o.bitrates_kbps = parse_list(&a, &v)?,
            "--complexities" => o.complexities = parse_list(&a, &v)?,
            "--fec" => o.fec = parse_switches(&a, &v)?,
            "--dtx" => o.dtx = parse_switches(&a, &v)?,
            "--loss" => o.loss_percent = parse_list(&a, &v)?,
            "--seed" => o.seed = v.parse()?,
            "--adapt" => o.adapt = parse_switches(&a, &v)?,
            "--rx-min-delay-ms" => o.rx_min_delay_ms = v.parse()?,
            "--timing-passes" => o.timing_passes = v.parse()?,
            _ => return Err(format!("unknown option {a}").into()),
        }
    }
    let [input, outdir] = <[String; 2]>::try_from(positional)
        .map_err(|_| "usage: codec_sweep IN16K.wav OUTDIR [options] (see the source's doc)")?;
    o.input = input.into();
    o.outdir = outdir.into();
    if o.loss_percent.iter().any(|&l| l > 100) {
        return Err("--loss: percentages go up to 100".into());
    }
    Ok(o)
}

/// Reads a 16 kHz mono 16-bit PCM WAV.
fn read_wav(path: &Path) -> Result<Vec<i16>, AnyError> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(format!("{}: not a RIFF/WAVE file", path.display()).into());
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let mut pos = 12;
    let mut format_ok = false;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32_at(pos + 4) as usize;
        let body = pos + 8;
        let end = body.saturating_add(len).min(bytes.len());
        if id == b"fmt " && len >= 16 {
            let (tag, channels, rate, bits) = (
                u16_at(body),
                u16_at(body + 2),
                u32_at(body + 4),
                u16_at(body + 14),
            );
            // 1 = PCM; 0xFFFE = WAVE_FORMAT_EXTENSIBLE (sox writes it for some files).
            if !(tag == 1 || tag == 0xFFFE) || channels != 1 || rate != 16_000 || bits != 16 {
                return Err(format!(
                    "{}: need 16 kHz mono 16-bit PCM, got format {tag:#x}, {channels} channels, \
                     {rate} Hz, {bits} bits",
                    path.display()
                )
                .into());
            }
            format_ok = true;
        } else if id == b"data" {
            if !format_ok {
                return Err(format!("{}: data before fmt chunk", path.display()).into());
            }
            return Ok(bytes[body..end]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect());
        }
        pos = body + len + (len & 1); // chunks are padded to even sizes
    }
    Err(format!("{}: no data chunk", path.display()).into())
}

/// Writes 16 kHz mono 16-bit PCM as a WAV file.
fn write_wav(path: &Path, samples: &[i16]) -> Result<(), AnyError> {
    let data_len = u32::try_from(samples.len() * 2)?;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// The speech as 20 ms frames (the last one padded with silence).
fn frames(samples: &[i16]) -> Vec<Pcm16K> {
    samples
        .chunks(SAMPLES_PER_FRAME)
        .map(|c| {
            let mut f = Pcm16K::SILENCE;
            f.samples[..c.len()].copy_from_slice(c);
            f
        })
        .collect()
}

/// SplitMix64: a small seeded generator, so every setting sees the same loss pattern.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// For each tick, whether the packet sent at that tick (if any) is lost.
fn loss_pattern(ticks: usize, percent: u32, seed: u64) -> Vec<bool> {
    let mut rng = SplitMix64(seed ^ u64::from(percent).wrapping_mul(0x1000_0001));
    (0..ticks)
        .map(|_| rng.next() % 10_000 < u64::from(percent) * 100)
        .collect()
}

/// What one run through the pipeline gave.
struct RunResult {
    received: Vec<i16>,
    packets_sent: u64,
    packets_lost: u64,
    /// Lost packets whose successor (sent 20 ms later) carries in-band FEC.
    lost_with_fec_after: u64,
    payload_bytes: u64,
    sources: BTreeMap<String, u64>,
}

/// Whether an Opus packet carries in-band FEC (LBRR) for the frame before it.
fn has_lbrr(packet: &[u8]) -> bool {
    let Ok(len) = i32::try_from(packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    // SAFETY: the pointer and length describe `packet`, a live slice; libopus only reads it.
    unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), len) == 1 }
}

/// Sends `speech` from one call to another through the pipeline's public API.
fn run_call(
    speech: &[Pcm16K],
    opus: OpusConfig,
    lost: &[bool],
    loss_percent: u32,
    rx_min_delay_ms: u64,
) -> Result<RunResult, AnyError> {
    let cfg = CallConfig {
        opus,
        ..CallConfig::default()
    };
    let (mut sender, tx) = ManualCall::new(cfg)?;
    let (mut tx_net, mut tx_bot) = (tx.network, tx.bot);
    // The sender hears the loss rate from the receiver's reports; this is the steady state.
    tx_net.set_remote_loss_percent(u8::try_from(loss_percent.min(100))?);

    let mut rx_cfg = CallConfig {
        send_active: false, // the receiving bot only listens
        ..CallConfig::default()
    };
    rx_cfg.jitter.min_delay = Ticks::from_millis(rx_min_delay_ms);
    if rx_cfg.jitter.initial_delay < rx_cfg.jitter.min_delay {
        rx_cfg.jitter.initial_delay = rx_cfg.jitter.min_delay;
    }
    let (mut receiver, rx) = ManualCall::new(rx_cfg)?;
    let (mut rx_net, mut rx_bot) = (rx.network, rx.bot);

    let ticks = speech.len() + TAIL_TICKS;
    if lost.len() < ticks {
        return Err("the loss pattern is shorter than the run".into());
    }
    let mut in_flight: Vec<EncodedPacket> = Vec::new();
    let mut lost_at_tick = None;
    let mut out = RunResult {
        received: Vec::with_capacity(ticks * SAMPLES_PER_FRAME),
        packets_sent: 0,
        packets_lost: 0,
        lost_with_fec_after: 0,
        payload_bytes: 0,
        sources: BTreeMap::new(),
    };
    let mut next_seq: u16 = 0;
    for (t, &lost_here) in lost.iter().enumerate().take(ticks) {
        let now = Ticks::from_millis(BASE_MS + 20 * t as u64);
        // Packets that have arrived by now reach the receiver before its tick; a packet the
        // inbound queue refuses stays in flight for the next tick.
        in_flight.retain(|p| p.meta.arrival > now || rx_net.push_packet(*p).is_err());
        receiver.tick(now, false);
        while let Some(frame) = rx_bot.try_recv() {
            out.received.extend_from_slice(&frame.pcm.samples);
            *out.sources
                .entry(format!("{:?}", frame.source))
                .or_default() += 1;
        }
        while rx_net.pop_packet().is_some() {}

        if let Some(frame) = speech.get(t) {
            tx_bot
                .try_send(*frame)
                .map_err(|e| format!("send queue: {e}"))?;
        }
        sender.tick(now, false);
        while let Some(mut p) = tx_net.pop_packet() {
            // The sender's packets carry no sequence number: number them as a network side
            // would, lost ones included.
            p.meta.seq = next_seq;
            next_seq = next_seq.wrapping_add(1);
            out.packets_sent += 1;
            out.payload_bytes += p.payload().len() as u64;
            if lost_at_tick.take() == Some(t.wrapping_sub(1)) && has_lbrr(p.payload()) {
                out.lost_with_fec_after += 1;
            }
            if lost_here {
                out.packets_lost += 1;
                lost_at_tick = Some(t);
                continue;
            }
            p.meta.arrival = now + Ticks::from_millis(NETWORK_DELAY_MS);
            in_flight.push(p);
        }
    }
    Ok(out)
}

/// Median and 99th percentile of the encoder's time per 20 ms frame, in microseconds.
fn time_encoder(
    speech: &[Pcm16K],
    opus: OpusConfig,
    passes: usize,
) -> Result<(f64, f64), AnyError> {
    use opus::{Application, Bitrate, Channels, Encoder};
    let mut best = vec![f64::INFINITY; speech.len()];
    let mut buf = [0u8; 1276];
    for _ in 0..passes {
        let mut enc = Encoder::new(16_000, Channels::Mono, Application::Voip)?;
        enc.set_bitrate(Bitrate::Bits(i32::try_from(opus.bitrate_bps)?))?;
        enc.set_complexity(i32::from(opus.complexity))?;
        enc.set_inband_fec(opus.inband_fec)?;
        enc.set_dtx(opus.dtx)?;
        enc.set_packet_loss_perc(TIMING_LOSS_PERCENT)?;
        for (frame, b) in speech.iter().zip(best.iter_mut()) {
            let start = Instant::now();
            let n = enc.encode(&frame.samples, &mut buf)?;
            let us = start.elapsed().as_secs_f64() * 1e6;
            std::hint::black_box(n);
            *b = b.min(us);
        }
    }
    if passes == 0 || best.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    best.sort_by(f64::total_cmp);
    let at = |q: f64| best[((best.len() - 1) as f64 * q).round() as usize];
    Ok((at(0.5), at(0.99)))
}

fn main() -> Result<(), AnyError> {
    let o = parse_args()?;
    let speech = frames(&read_wav(&o.input)?);
    std::fs::create_dir_all(&o.outdir)?;
    let mut settings = Vec::new();
    for &kbps in &o.bitrates_kbps {
        for &complexity in &o.complexities {
            for &inband_fec in &o.fec {
                for &dtx in &o.dtx {
                    for &adapt_bitrate_to_loss in &o.adapt {
                        settings.push(OpusConfig {
                            bitrate_bps: kbps * 1000,
                            complexity,
                            inband_fec,
                            dtx,
                            adapt_bitrate_to_loss,
                            ..OpusConfig::default()
                        });
                    }
                }
            }
        }
    }
    let mut tsv = String::from(
        "name\tbitrate_kbps\tcomplexity\tfec\tdtx\tadapt\tloss_pct\tpackets_sent\t\
         packets_lost\tlost_with_fec_after\tmean_bytes\tframe_sources\tencode_median_us\t\
         encode_p99_us\n",
    );
    for opus in settings {
        let (median_us, p99_us) = time_encoder(&speech, opus, o.timing_passes)?;
        let (kbps, c) = (opus.bitrate_bps / 1000, opus.complexity);
        let (fec, dtx, adapt) = (
            u8::from(opus.inband_fec),
            u8::from(opus.dtx),
            u8::from(opus.adapt_bitrate_to_loss),
        );
        for &loss in &o.loss_percent {
            let adapt_tag = if adapt == 1 { "_adapt" } else { "" };
            let name = format!("b{kbps}_c{c}_fec{fec}_dtx{dtx}{adapt_tag}_loss{loss}");
            let lost = loss_pattern(speech.len() + TAIL_TICKS, loss, o.seed);
            let r = run_call(&speech, opus, &lost, loss, o.rx_min_delay_ms)?;
            write_wav(&o.outdir.join(format!("{name}.wav")), &r.received)?;
            let sources = r
                .sources
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            let mean_bytes = r.payload_bytes as f64 / r.packets_sent.max(1) as f64;
            writeln!(
                tsv,
                "{name}\t{kbps}\t{c}\t{fec}\t{dtx}\t{adapt}\t{loss}\t{}\t{}\t{}\t\
                 {mean_bytes:.1}\t{sources}\t{median_us:.1}\t{p99_us:.1}",
                r.packets_sent, r.packets_lost, r.lost_with_fec_after
            )?;
            eprintln!(
                "{name}: {} packets, {} lost ({} with FEC in the next), {mean_bytes:.1} B/packet, \
                 encode {median_us:.0}/{p99_us:.0} us, {sources}",
                r.packets_sent, r.packets_lost, r.lost_with_fec_after
            );
        }
    }
    std::fs::write(o.outdir.join("results.tsv"), tsv)?;
    Ok(())
}
