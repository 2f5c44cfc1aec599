//! Per-packet cost of the lean path's SRTP (`leg::srtp`: in place, in the caller's buffer)
//! against the `rtc` stack's `rtc-srtp` (a new buffer per packet), for a 100-byte payload
//! with a CSRC and a one-byte header extension, as the bot's audio packets are: protect and
//! unprotect, each profile.
//!
//! `cargo bench -p media-endpoint --bench srtp`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use media_endpoint::bench_support::{SRTP_PROFILES, SrtpPairs, rtp_packet};

/// The RTP packet of sequence number `seq`, with a 100-byte payload.
fn rtp(seq: u16) -> Vec<u8> {
    rtp_packet(seq, 100)
}

/// Packets with consecutive sequence numbers (wrapping), so that a receiver's replay window
/// takes each once and a sender's rollover counter follows it.
fn packets() -> impl FnMut() -> Vec<u8> {
    let mut seq = 0u16;
    move || {
        seq = seq.wrapping_add(1);
        rtp(seq)
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("srtp_100_byte_payload");
    for (index, name) in SRTP_PROFILES.iter().enumerate() {
        let mut pairs = SrtpPairs::new(index).expect("a profile");
        // Protects the packets the unprotect benches take, outside the timing (keyed as
        // `pairs`).
        let mut feeder = SrtpPairs::new(index).expect("a profile");
        let room = rtp(0).len() + pairs.rtp_overhead();
        // Made once: criterion calls the closure again after its warm-up.
        let mut next = packets();
        group.bench_function(format!("protect/{name}/ours"), |b| {
            b.iter_batched_ref(
                || {
                    let plain = next();
                    let mut buf = vec![0u8; room];
                    buf[..plain.len()].copy_from_slice(&plain);
                    (buf, plain.len())
                },
                |(buf, len)| pairs.protect(black_box(buf), *len),
                BatchSize::SmallInput,
            )
        });
        // Made once: criterion calls the closure again after its warm-up.
        let mut next = packets();
        group.bench_function(format!("protect/{name}/rtc-srtp"), |b| {
            b.iter_batched_ref(
                &mut next,
                |plain| pairs.their_protect(black_box(plain)),
                BatchSize::SmallInput,
            )
        });
        // Made once: criterion calls the closure again after its warm-up.
        let mut next = packets();
        group.bench_function(format!("unprotect/{name}/ours"), |b| {
            b.iter_batched_ref(
                || {
                    let plain = next();
                    let mut buf = vec![0u8; room];
                    buf[..plain.len()].copy_from_slice(&plain);
                    let n = feeder.protect(&mut buf, plain.len());
                    buf.truncate(n);
                    buf
                },
                |buf| pairs.unprotect(black_box(buf)),
                BatchSize::SmallInput,
            )
        });
        // Made once: criterion calls the closure again after its warm-up.
        let mut next = packets();
        group.bench_function(format!("unprotect/{name}/rtc-srtp"), |b| {
            b.iter_batched_ref(
                || {
                    let plain = next();
                    feeder.their_protect(&plain)
                },
                |protected| pairs.their_unprotect(black_box(protected)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
