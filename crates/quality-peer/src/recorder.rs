//! Turns the echo packets received during a call into a 16 kHz recording on the far end's
//! own timeline.
//!
//! Why packets are placed by their RTP timestamp, not by when they arrived, and decoded by
//! the far end's own decoder: the recording should show exactly what the engine emitted. The
//! engine stamps each packet with its output clock, so placing packet `i` at
//! `anchor + (ts_i - ts_first) / 48 kHz` lays the audio out as the engine produced it: when
//! its jitter buffer drops or inserts audio, the content after it moves while the clock does
//! not, and the step shows in the recording as a step in delay, to the sample. Placement by
//! arrival would add this machine's scheduling noise on the way back and a jitter buffer
//! of our own would hide or add steps. A gap in the engine's timestamps (it skipped output
//! time) is filled with the decoder's packet-loss concealment, as a receiver would play it,
//! and counted.
//!
//! The anchor ties the engine's clock to the far end's: it is the smallest transit seen
//! (`arrival - (ts - ts_first)`), the packet that waited least on the way back sits exactly
//! at its arrival time. So the recording's delay against what was sent is the true loop
//! delay of the fastest packet, plus whatever the engine's output content is behind its
//! clock. Time the engine's packets spend queued without their timestamps moving (a send
//! queue building up) does not move the content on the engine's clock; it shows in the
//! transit excess (`arrival - anchor - ts offset`), which the report summarises.

use std::time::Duration;

use serde::Serialize;

use crate::wav::Wav;

/// Output sample rate of the recording.
pub const RECORD_RATE: u32 = 16_000;
const RTP_CLOCK: i64 = 48_000;
/// 48 kHz units per 16 kHz sample.
const RATIO: i64 = RTP_CLOCK / RECORD_RATE as i64;
/// Opus concealment works in multiples of 2.5 ms; this is one 20 ms step at 48 kHz.
const PLC_STEP_48K: i64 = 960;
const PLC_GRAIN_48K: i64 = 120;

/// One echo packet as received.
#[derive(Clone, Debug)]
pub struct EchoPacket {
    /// When it arrived, counted from the far end's send start (may be negative if the engine
    /// sent before the far end did).
    pub arrival_s: f64,
    /// Its RTP sequence number.
    pub sequence: u16,
    /// Its RTP timestamp.
    pub timestamp: u32,
    /// The Opus payload.
    pub payload: bytes::Bytes,
}

/// What reconstructing the echo found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EchoStats {
    /// Echo packets received.
    pub packets_received: u64,
    /// Packets that arrived after one with a later timestamp.
    pub received_out_of_order: u64,
    /// Packets whose timestamp repeated or overlapped audio already placed (dropped).
    pub overlaps: u64,
    /// Holes in the engine's timestamps (output time it did not send).
    pub gaps: u64,
    /// Audio filled in by concealment for those holes, in ms.
    pub concealed_ms: f64,
    /// Packets the decoder refused.
    pub decode_errors: u64,
    /// When the first echo packet arrived after the send start, in ms.
    pub first_echo_ms: Option<f64>,
    /// The smallest transit (arrival minus timestamp offset), in ms after the send start:
    /// where the engine's first timestamp sits on the recording.
    pub anchor_ms: Option<f64>,
    /// Transit above the smallest, per packet: median, 95th percentile and maximum, in ms.
    pub transit_excess_ms: Percentiles,
    /// Median transit excess over the first 2 s of echo and the last 2 s, and the change:
    /// a positive growth is delay that accumulated outside the engine's clock.
    pub transit_excess_first_ms: Option<f64>,
    /// See `transit_excess_first_ms`.
    pub transit_excess_last_ms: Option<f64>,
    /// `transit_excess_last_ms - transit_excess_first_ms`.
    pub transit_excess_growth_ms: Option<f64>,
}

/// Median, 95th percentile and maximum of a set of values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// 50th percentile.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// Maximum.
    pub max: Option<f64>,
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[i])
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    quantile(values, 0.5)
}

fn ms(s: f64) -> f64 {
    (s * 1e5).round() / 100.0
}

/// Builds the 16 kHz recording, `length` long from the send start, from `packets` (in
/// arrival order).
pub fn reconstruct(packets: &[EchoPacket], length: Duration) -> (Wav, EchoStats) {
    let total = (length.as_secs_f64() * f64::from(RECORD_RATE)).round() as usize;
    let mut out = vec![0i16; total];
    let mut stats = EchoStats {
        packets_received: packets.len() as u64,
        ..EchoStats::default()
    };
    let Some(first) = packets.first() else {
        return (
            Wav {
                sample_rate: RECORD_RATE,
                samples: out,
            },
            stats,
        );
    };
    stats.first_echo_ms = Some(ms(first.arrival_s));
    // Timestamps relative to the first packet's, unwrapped (valid for +-12 h at 48 kHz).
    let rel = |p: &EchoPacket| i64::from(p.timestamp.wrapping_sub(first.timestamp) as i32);
    let mut latest = i64::MIN;
    for p in packets {
        let r = rel(p);
        if r < latest {
            stats.received_out_of_order += 1;
        }
        latest = latest.max(r);
    }
    let transit = |p: &EchoPacket| p.arrival_s - rel(p) as f64 / RTP_CLOCK as f64;
    let anchor = packets.iter().map(transit).fold(f64::INFINITY, f64::min);
    stats.anchor_ms = Some(ms(anchor));
    let mut excess: Vec<f64> = packets.iter().map(|p| ms(transit(p) - anchor)).collect();
    let last_arrival = packets.iter().map(|p| p.arrival_s).fold(f64::MIN, f64::max);
    let mut early: Vec<f64> = packets
        .iter()
        .zip(&excess)
        .filter(|(p, _)| p.arrival_s < first.arrival_s + 2.0)
        .map(|(_, e)| *e)
        .collect();
    let mut late: Vec<f64> = packets
        .iter()
        .zip(&excess)
        .filter(|(p, _)| p.arrival_s > last_arrival - 2.0)
        .map(|(_, e)| *e)
        .collect();
    stats.transit_excess_first_ms = median(&mut early);
    stats.transit_excess_last_ms = median(&mut late);
    stats.transit_excess_growth_ms = stats
        .transit_excess_last_ms
        .zip(stats.transit_excess_first_ms)
        .map(|(l, f)| ms((l - f) / 1000.0));
    excess.sort_by(f64::total_cmp);
    stats.transit_excess_ms = Percentiles {
        p50: quantile(&excess, 0.5),
        p95: quantile(&excess, 0.95),
        max: excess.last().copied(),
    };

    // Decode in timestamp order; one decoder, as a receiver would run it.
    let mut order: Vec<&EchoPacket> = packets.iter().collect();
    order.sort_by_key(|p| (rel(p), p.sequence));
    let anchor_samples = (anchor * f64::from(RECORD_RATE)).round() as i64;
    let mut place = |at_48k: i64, pcm: &[i16]| {
        let start = anchor_samples + at_48k / RATIO;
        for (i, s) in pcm.iter().enumerate() {
            let idx = start + i as i64;
            if idx >= 0 && (idx as usize) < out.len() {
                out[idx as usize] = *s;
            }
        }
    };
    let mut decoder = match opus::Decoder::new(RECORD_RATE, opus::Channels::Mono) {
        Ok(d) => d,
        Err(_) => {
            stats.decode_errors = packets.len() as u64;
            return (
                Wav {
                    sample_rate: RECORD_RATE,
                    samples: out,
                },
                stats,
            );
        }
    };
    // 120 ms at 16 kHz: the longest Opus packet.
    let mut pcm = vec![0i16; 1920];
    let mut expected: Option<i64> = None;
    for p in order {
        let r = rel(p);
        if let Some(mut e) = expected {
            if r < e {
                stats.overlaps += 1;
                continue;
            }
            if r > e {
                stats.gaps += 1;
                // Conceal in 20 ms steps (a whole number of 2.5 ms grains); a remainder
                // under 2.5 ms stays silent.
                while r - e >= PLC_GRAIN_48K {
                    let step = (r - e).min(PLC_STEP_48K) / PLC_GRAIN_48K * PLC_GRAIN_48K;
                    let n = (step / RATIO) as usize;
                    match decoder.decode(&[], &mut pcm[..n], false) {
                        Ok(got) => place(e, &pcm[..got.min(n)]),
                        Err(_) => stats.decode_errors += 1,
                    }
                    stats.concealed_ms += step as f64 / 48.0;
                    e += step;
                }
            }
        }
        match decoder.decode(&p.payload, &mut pcm, false) {
            Ok(n) => {
                place(r, &pcm[..n]);
                expected = Some(r + n as i64 * RATIO);
            }
            Err(_) => {
                stats.decode_errors += 1;
                // Its duration is unknown: the next packet's gap conceals it.
            }
        }
    }
    (
        Wav {
            sample_rate: RECORD_RATE,
            samples: out,
        },
        stats,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20 ms Opus packets of a 16 kHz sine, numbered from `ts0`.
    fn packets(count: usize) -> Vec<bytes::Bytes> {
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
        let mut phase = 0.0f64;
        (0..count)
            .map(|_| {
                let frame: Vec<i16> = (0..960)
                    .map(|_| {
                        phase += 2.0 * std::f64::consts::PI * 440.0 / 48_000.0;
                        (phase.sin() * 8000.0) as i16
                    })
                    .collect();
                bytes::Bytes::from(enc.encode_vec(&frame, 1500).unwrap())
            })
            .collect()
    }

    #[test]
    fn packets_land_by_timestamp_and_gaps_are_concealed() {
        let payloads = packets(50);
        let ts0 = u32::MAX - 2000; // wraps inside the call
        let mut rx = Vec::new();
        for (i, pl) in payloads.iter().enumerate() {
            if i == 20 {
                continue; // a hole in the engine's output
            }
            // Arrivals 100 ms after sending, packet 30 late by 15 ms.
            let late = if i == 30 { 0.015 } else { 0.0 };
            rx.push(EchoPacket {
                arrival_s: 0.1 + i as f64 * 0.02 + late,
                sequence: i as u16,
                timestamp: ts0.wrapping_add(960 * i as u32),
                payload: pl.clone(),
            });
        }
        rx.swap(35, 36); // one reordered on the way back
        let (wav, st) = reconstruct(&rx, Duration::from_secs(2));
        assert_eq!(wav.samples.len(), 32_000);
        assert_eq!(st.packets_received, 49);
        assert_eq!(st.gaps, 1);
        assert!((st.concealed_ms - 20.0).abs() < 1e-9);
        assert_eq!(st.received_out_of_order, 1);
        assert_eq!(st.anchor_ms, Some(100.0));
        assert_eq!(st.transit_excess_ms.max, Some(15.0));
        // Nothing before the anchor, sound after it.
        assert!(wav.samples[..1590].iter().all(|&s| s == 0));
        assert!(wav.samples[1700..2000].iter().any(|&s| s.abs() > 1000));
    }

    #[test]
    fn no_packets_give_silence() {
        let (wav, st) = reconstruct(&[], Duration::from_millis(500));
        assert_eq!(wav.samples, vec![0; 8000]);
        assert_eq!(st.packets_received, 0);
    }
}
