//! Per-frame costs of the pipeline: jitter buffer, decode, encode, a whole call tick,
//! the pipeline's own overhead without the codec, and what unmixed speaker streams add.
//!
//! `cargo bench -p audio-pipeline --bench pipeline`

use audio_pipeline::{
    CallConfig, Csrcs, EncodedPacket, FRAME_DURATION, JitterBuffer, JitterConfig,
    MAX_UNMIXED_STREAMS, ManualCall, OpusConfig, Pacer, Pcm16K, Playout, Receiver, RtpMeta, Ticks,
};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn tone_frames(n: usize) -> Vec<Pcm16K> {
    let mut phase = 0.0f64;
    (0..n)
        .map(|_| {
            let mut f = Pcm16K::SILENCE;
            for s in f.samples.iter_mut() {
                *s = (phase.sin() * 8000.0 + (phase * 3.7).sin() * 2000.0) as i16;
                phase += 2.0 * std::f64::consts::PI * 440.0 / 16_000.0;
            }
            f
        })
        .collect()
}

/// 1 s of Opus payloads (24 kb/s, complexity 5, FEC on).
fn payloads() -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(24_000)).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(10).unwrap();
    tone_frames(50)
        .iter()
        .map(|f| {
            let mut buf = [0u8; 1276];
            let n = enc.encode(&f.samples, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

fn packet(payload: &[u8], i: u64) -> EncodedPacket {
    let meta = RtpMeta {
        seq: i as u16,
        rtp_timestamp: (i * 960) as u32,
        ssrc: 1,
        arrival: Ticks(1 + i * FRAME_DURATION.0),
        ..RtpMeta::default()
    };
    EncodedPacket::new(meta, payload).unwrap()
}

fn per_frame(c: &mut Criterion) {
    let pool = payloads();
    let frames = tone_frames(50);
    let mut g = c.benchmark_group("per_frame");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Jitter buffer alone: one insert and one playout decision per frame.
    g.bench_function("jitter_only", |b| {
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut i = 0u64;
        b.iter(|| {
            let p = packet(&pool[(i % 50) as usize], i);
            black_box(jb.insert(black_box(&p), p.meta.arrival));
            let now = Ticks(1 + i * FRAME_DURATION.0);
            black_box(matches!(jb.pop(now, Ticks::ZERO), Playout::Packet { .. }));
            i += 1;
        })
    });

    // The whole receive path (jitter buffer, decoder, sync buffer and time-scale
    // decisions): what the receive direction costs per frame.
    g.bench_function("receive_path", |b| {
        let mut rx = Receiver::new(JitterConfig::default()).unwrap();
        let mut out = Pcm16K::SILENCE;
        let mut i = 0u64;
        b.iter(|| {
            let p = packet(&pool[(i % 50) as usize], i);
            rx.insert(&p, p.meta.arrival);
            let now = Ticks(1 + i * FRAME_DURATION.0);
            black_box(rx.pull(now, &mut out));
            i += 1;
        })
    });

    // libopus's decoder alone, at 16 kHz: `receive_path` less this is the receive path's
    // own share (jitter buffer, sync buffer, level tracking, time-scale decisions).
    g.bench_function("decode_only", |b| {
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut out = [0i16; 1920];
        let mut i = 0usize;
        b.iter(|| {
            black_box(
                dec.decode(black_box(&pool[i % 50]), &mut out, false)
                    .unwrap(),
            );
            i += 1;
        })
    });

    for complexity in [0, 1, 2, 3, 5, 10] {
        g.bench_function(format!("encode_c{complexity}"), |b| {
            let mut enc =
                opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
            enc.set_bitrate(opus::Bitrate::Bits(24_000)).unwrap();
            enc.set_complexity(complexity).unwrap();
            enc.set_inband_fec(true).unwrap();
            enc.set_packet_loss_perc(10).unwrap();
            let mut buf = [0u8; 1276];
            let mut i = 0usize;
            b.iter(|| {
                black_box(
                    enc.encode(black_box(&frames[i % 50].samples), &mut buf)
                        .unwrap(),
                );
                i += 1;
            })
        });
    }

    // Send direction without the codec: bot queue, pacer, packet stamping, network queue.
    g.bench_function("send_path_no_codec", |b| {
        let (mut bot_tx, mut bot_rx) = rtrb::RingBuffer::<Pcm16K>::new(50);
        let (mut net_tx, mut net_rx) = rtrb::RingBuffer::<EncodedPacket>::new(50);
        let mut pacer = Pacer::new(0, 48_000);
        let mut pkt = EncodedPacket::empty();
        let mut i = 0u64;
        b.iter(|| {
            bot_tx.push(frames[(i % 50) as usize]).unwrap();
            let now = Ticks(i * FRAME_DURATION.0);
            for _ in 0..pacer.frames_due(now) {
                let f = bot_rx.pop().ok();
                let paced = pacer.next_frame(f.as_ref());
                pacer.stamp(&paced, &mut pkt.meta);
                pkt.set_payload(&pool[(i % 50) as usize]).unwrap();
                net_tx.push(pkt).unwrap();
            }
            black_box(net_rx.pop().unwrap());
            i += 1;
        })
    });

    // Receive direction without the codec: network queue, jitter buffer, frame queue.
    g.bench_function("receive_path_no_codec", |b| {
        let (mut net_tx, mut net_rx) = rtrb::RingBuffer::<EncodedPacket>::new(64);
        let (mut bot_tx, mut bot_rx) = rtrb::RingBuffer::<Pcm16K>::new(50);
        let mut jb = JitterBuffer::new(JitterConfig::default());
        let mut i = 0u64;
        b.iter(|| {
            net_tx.push(packet(&pool[(i % 50) as usize], i)).unwrap();
            while let Ok(p) = net_rx.pop() {
                jb.insert(&p, p.meta.arrival);
            }
            let now = Ticks(1 + i * FRAME_DURATION.0);
            let played = matches!(jb.pop(now, Ticks::ZERO), Playout::Packet { .. });
            bot_tx.push(frames[usize::from(played)]).unwrap();
            black_box(bot_rx.pop().unwrap());
            i += 1;
        })
    });
    g.finish();
}

/// A whole tick of one call, both directions, through the real per-call code.
fn call_tick(c: &mut Criterion) {
    let pool = payloads();
    let frames = tone_frames(50);
    let mut g = c.benchmark_group("call_tick");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for complexity in [0u8, 5, 10] {
        g.bench_function(format!("both_ways_c{complexity}"), |b| {
            let cfg = CallConfig {
                opus: OpusConfig {
                    complexity,
                    ..OpusConfig::default()
                },
                ..CallConfig::default()
            };
            let (mut call, mut halves) = ManualCall::new(cfg).unwrap();
            let mut i = 0u64;
            b.iter(|| {
                let p = packet(&pool[(i % 50) as usize], i);
                halves.network.push_packet(p).unwrap();
                halves.bot.try_send(frames[(i % 50) as usize]).unwrap();
                call.tick(Ticks(1 + i * FRAME_DURATION.0), false);
                black_box(halves.network.pop_packet());
                black_box(halves.bot.try_recv());
                i += 1;
            })
        });
    }
    g.finish();
}

/// CPU time of the calling thread: unlike wall time it leaves out the time other
/// processes of a shared machine take the core, so two figures taken minutes apart
/// still make a ratio.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID needs nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A call tick (both directions, default settings) with 4 active unmixed speaker streams
/// beside the mix, against the same call without them: the budget is +40 %.
/// Measured in thread CPU time (see [`thread_cpu_time`]).
///
/// Three runs on a shared 2-core EPYC: 126-133 us without, 184-187 us with, +38 to +48 %
/// (mean +43 %). libopus decoding is about 90 % of each stream's cost (`decode_only`
/// 12-13 us of `receive_path`'s 13.5 us); under perf, the receive path's own code
/// (`Receiver::pull` with its time-scale decisions, the jitter buffer, packet copies)
/// is about 3 % of the 4-stream tick, and the correlation search does not run at a
/// steady delay, so skipping time-scale modification on speaker streams would save
/// nothing measurable.
///
/// After the encoder's quantiser and warped autocorrelation got cheaper (`opus_nsq.rs`,
/// `opus_warped.rs`, bit-exact), two sets of five alternating runs on the same machine under
/// load, fastest run of each: without streams 127.0 / 130.3 us before, 112.5 / 114.7 after;
/// with four 185.3 / 185.6 before, 169.0 / 171.0 after. The streams' own cost did not
/// change (about 14 us each, libopus's SILK decoder 12-13 of it), so as a share of the
/// cheaper call they are now +50 %: a cheaper encoder moves this ratio the wrong way.
fn unmixed(c: &mut Criterion) {
    let pool = payloads();
    let frames = tone_frames(50);
    let mut g = c.benchmark_group("unmixed");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for streams in [0u8, MAX_UNMIXED_STREAMS as u8] {
        g.bench_function(format!("call_tick_unmixed{streams}"), |b| {
            let cfg = CallConfig {
                unmixed_streams: streams,
                ..CallConfig::default()
            };
            let (mut call, mut halves) = ManualCall::new(cfg).unwrap();
            // Each stream's packets name their speaker; all speak throughout.
            let speakers: Vec<EncodedPacket> = (1..=streams)
                .map(|s| {
                    let mut p = packet(&pool[0], 0);
                    p.meta.stream = s;
                    p.meta.ssrc = 100 + u32::from(s);
                    p.meta.csrcs = Csrcs::from_ids(&[10 + u32::from(s)]).unwrap();
                    p
                })
                .collect();
            let mut i = 0u64;
            let mut tick = || {
                let p = packet(&pool[(i % 50) as usize], i);
                halves.network.push_packet(p).unwrap();
                for (k, template) in speakers.iter().enumerate() {
                    let mut s = p;
                    // A different second of the tone on each stream.
                    s.set_payload(&pool[((i + 11 * k as u64) % 50) as usize])
                        .unwrap();
                    s.meta.stream = template.meta.stream;
                    s.meta.ssrc = template.meta.ssrc;
                    s.meta.csrcs = template.meta.csrcs;
                    halves.network.push_packet(s).unwrap();
                }
                halves.bot.try_send(frames[(i % 50) as usize]).unwrap();
                call.tick(Ticks(1 + i * FRAME_DURATION.0), false);
                black_box(halves.network.pop_packet());
                black_box(halves.bot.try_recv());
                i += 1;
            };
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    tick();
                }
                thread_cpu_time() - start
            })
        });
    }
    g.finish();
}

/// An encoder at the default settings' complexity, FEC and DTX, at `bitrate` and told of
/// `loss_percent` loss.
fn default_encoder(defaults: &OpusConfig, bitrate: i32, loss_percent: u8) -> opus::Encoder {
    let mut enc =
        opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(bitrate)).unwrap();
    enc.set_complexity(i32::from(defaults.complexity)).unwrap();
    enc.set_inband_fec(defaults.inband_fec).unwrap();
    enc.set_dtx(defaults.dtx).unwrap();
    enc.set_packet_loss_perc(i32::from(loss_percent)).unwrap();
    enc
}

/// The codec at a call's default settings ([`OpusConfig::default`]: 64 kb/s raised to
/// 83.2 kb/s by the 5 % loss assumed until reports come, complexity 5, in-band FEC, DTX
/// off), in thread CPU time: the two libopus figures of a call tick's breakdown (the
/// `per_frame` ones use 24 kb/s). `decode_default` decodes what `encode_default` makes;
/// `receive_path_default` is the whole receive path on the same packets.
fn default_settings(c: &mut Criterion) {
    let defaults = OpusConfig::default();
    assert_eq!((defaults.bitrate_bps, defaults.complexity), (64_000, 5));
    let bitrate = 83_200;
    let frames = tone_frames(50);
    let mut enc = default_encoder(&defaults, bitrate, defaults.initial_loss_percent);
    let pool: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut buf = [0u8; 1276];
            let n = enc.encode(&f.samples, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect();
    let mut g = c.benchmark_group("default_settings");
    g.sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("encode_default", |b| {
        let mut i = 0usize;
        let mut buf = [0u8; 1276];
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                black_box(enc.encode(&frames[i % 50].samples, &mut buf).unwrap());
                i += 1;
            }
            thread_cpu_time() - start
        })
    });
    g.bench_function("encode_no_loss_reported", |b| {
        // What a call's encoder runs at once receivers report no loss: 64 kb/s, FEC
        // allowed but not produced (libopus codes LBRR only for a loss above 0).
        let mut clean = default_encoder(&defaults, defaults.bitrate_bps as i32, 0);
        let mut i = 0usize;
        let mut buf = [0u8; 1276];
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                black_box(clean.encode(&frames[i % 50].samples, &mut buf).unwrap());
                i += 1;
            }
            thread_cpu_time() - start
        })
    });
    g.bench_function("encode_default_25_calls", |b| {
        // The same encode taking turns over 25 encoders, as a pipeline thread with 25
        // calls does each tick: about a third dearer than one encoder (2 and 8 encoders
        // in turn cost what one does; their 43 KB states fit in a core's L2, 25 do not).
        // Most of what `botmedia load` measures above `encode_default`. Prefetching or
        // touching the next encoder's state before its turn did not win it back.
        let mut encs: Vec<opus::Encoder> = (0..25)
            .map(|_| default_encoder(&defaults, bitrate, defaults.initial_loss_percent))
            .collect();
        let mut i = 0usize;
        let mut buf = [0u8; 1276];
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                let frame = &frames[(i / 25) % 50].samples;
                black_box(encs[i % 25].encode(frame, &mut buf).unwrap());
                i += 1;
            }
            thread_cpu_time() - start
        })
    });
    g.bench_function("decode_default", |b| {
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).unwrap();
        let mut out = [0i16; 1920];
        let mut i = 0usize;
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                black_box(dec.decode(&pool[i % 50], &mut out, false).unwrap());
                i += 1;
            }
            thread_cpu_time() - start
        })
    });
    g.bench_function("receive_path_default", |b| {
        let mut rx = Receiver::new(JitterConfig::default()).unwrap();
        let mut out = Pcm16K::SILENCE;
        let mut i = 0u64;
        b.iter_custom(|iters| {
            let start = thread_cpu_time();
            for _ in 0..iters {
                let p = packet(&pool[(i % 50) as usize], i);
                rx.insert(&p, p.meta.arrival);
                black_box(rx.pull(Ticks(1 + i * FRAME_DURATION.0), &mut out));
                i += 1;
            }
            thread_cpu_time() - start
        })
    });
    g.finish();
}

criterion_group!(benches, per_frame, call_tick, unmixed, default_settings);
criterion_main!(benches);
