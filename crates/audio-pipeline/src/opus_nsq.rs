//! libopus's SILK noise-shaping quantiser with delayed decision on AVX2 machines: the
//! SSE4.1 implementation instead of the C one, bit-exact with it.
//!
//! At the default complexity (5) the SILK encoder runs the delayed-decision quantiser with
//! 2 states, twice per frame when in-band FEC is on (the primary encoding and LBRR). It is
//! the largest single cost of a call's tick (about 45 % of it). libopus's runtime dispatch
//! sends AVX2 machines to `silk_NSQ_del_dec_avx2`, which hands 1 or 2 states to the
//! scalar C version (a regression of its AVX2 code on some AMD Zen parts with that few
//! states) and so skips the SSE4.1 version, which the SSE4.1 tier of the same dispatch
//! uses for any number of states.
//!
//! This module defines `silk_NSQ_del_dec_avx2` itself, so the linker takes it instead of
//! libopus's own (which sits alone in its object file; the static libopus is linked after
//! this crate): it calls `silk_NSQ_del_dec_sse4_1`, for every number of states. libopus
//! requires its integer SIMD quantisers to be bit-exact with the C reference (its
//! `OPUS_CHECK_ASM` build compares state, indices and pulses after every call), and the
//! unit tests here encode the same signals through both at every complexity and compare
//! the packets byte for byte, so the bitstream, and what a listener hears, do not change.
//!
//! Only reached on machines where libopus's dispatch chose its AVX2 tier, which implies
//! SSE4.1. Everything else (the C tier, the SSE4.1 tier) is untouched.

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

unsafe extern "C" {
    fn silk_NSQ_del_dec_sse4_1(
        ps_enc_c: *const c_void,
        nsq: *mut c_void,
        ps_indices: *mut c_void,
        x16: *const i16,
        pulses: *mut i8,
        pred_coef_q12: *const i16,
        ltp_coef_q14: *const i16,
        ar_q13: *const i16,
        harm_shape_gain_q14: *const c_int,
        tilt_q14: *const c_int,
        lf_shp_q14: *const i32,
        gains_q16: *const i32,
        pitch_l: *const c_int,
        lambda_q10: c_int,
        ltp_scale_q14: c_int,
    );
    fn silk_NSQ_del_dec_c(
        ps_enc_c: *const c_void,
        nsq: *mut c_void,
        ps_indices: *mut c_void,
        x16: *const i16,
        pulses: *mut i8,
        pred_coef_q12: *const i16,
        ltp_coef_q14: *const i16,
        ar_q13: *const i16,
        harm_shape_gain_q14: *const c_int,
        tilt_q14: *const c_int,
        lf_shp_q14: *const i32,
        gains_q16: *const i32,
        pitch_l: *const c_int,
        lambda_q10: c_int,
        ltp_scale_q14: c_int,
    );
}

/// Calls taken by the replacement (tests check that the linker took it).
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Tests only: run the C reference instead, to compare the bitstreams.
static REFERENCE: AtomicBool = AtomicBool::new(false);

/// libopus's AVX2-tier entry of its delayed-decision quantiser dispatch; see the module
/// documentation.
///
/// # Safety
///
/// Called by libopus only, with the arguments of `silk_NSQ_del_dec_c`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments, reason = "libopus's signature")]
pub unsafe extern "C" fn silk_NSQ_del_dec_avx2(
    ps_enc_c: *const c_void,
    nsq: *mut c_void,
    ps_indices: *mut c_void,
    x16: *const i16,
    pulses: *mut i8,
    pred_coef_q12: *const i16,
    ltp_coef_q14: *const i16,
    ar_q13: *const i16,
    harm_shape_gain_q14: *const c_int,
    tilt_q14: *const c_int,
    lf_shp_q14: *const i32,
    gains_q16: *const i32,
    pitch_l: *const c_int,
    lambda_q10: c_int,
    ltp_scale_q14: c_int,
) {
    CALLS.fetch_add(1, Ordering::Relaxed);
    let f = if REFERENCE.load(Ordering::Relaxed) {
        silk_NSQ_del_dec_c
    } else {
        silk_NSQ_del_dec_sse4_1
    };
    // SAFETY: the arguments are libopus's own, passed through unchanged to a function of
    // the same signature (the SSE4.1 tier's entry of the same dispatch, or the C one).
    unsafe {
        f(
            ps_enc_c,
            nsq,
            ps_indices,
            x16,
            pulses,
            pred_coef_q12,
            ltp_coef_q14,
            ar_q13,
            harm_shape_gain_q14,
            tilt_q14,
            lf_shp_q14,
            gains_q16,
            pitch_l,
            lambda_q10,
            ltp_scale_q14,
        )
    }
}

/// Makes sure the replacement is linked: called where encoders are made, so the object
/// holding it is taken before the linker reaches libopus.
pub(crate) fn link() {
    std::hint::black_box(silk_NSQ_del_dec_avx2 as *const ());
}

/// Calls the replacement has taken so far.
#[cfg(test)]
pub(crate) fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

#[cfg(test)]
pub(crate) fn set_reference(on: bool) {
    REFERENCE.store(on, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;
    use crate::config::OpusConfig;
    use crate::frame::Pcm16K;

    /// A deterministic speech-like signal: a pitch-varying pulse train through two
    /// resonances, syllable envelopes, pauses, noise bursts and a stretch of digital
    /// silence.
    fn speechlike(frames: usize, seed: u64) -> Vec<Pcm16K> {
        let mut rng = seed | 1;
        let mut noise = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let (mut phase, mut y1, mut y2, mut z1, mut z2) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        let mut out = Vec::with_capacity(frames);
        for f in 0..frames {
            let mut frame = Pcm16K::SILENCE;
            for (i, s) in frame.samples.iter_mut().enumerate() {
                let t = (f * 320 + i) as f64 / 16_000.0;
                let f0 = 110.0 + 60.0 * (t * 1.3).sin() + 30.0 * (t * 0.37).sin();
                phase += f0 / 16_000.0;
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                let env = (0.5 + 0.5 * (t * 2.0 * std::f64::consts::PI * 3.7).sin()).powi(2);
                let voiced = (t % 2.3) < 1.6;
                let x = if voiced {
                    pulse * 9000.0
                } else {
                    noise() * 3000.0
                };
                // Two resonances (about 500 Hz and 1500 Hz).
                let y = x + 1.88 * y1 - 0.94 * y2;
                y2 = y1;
                y1 = y;
                let z = y * 0.05 + 1.52 * z1 - 0.90 * z2;
                z2 = z1;
                z1 = z;
                let silent = (t % 5.0) > 4.4;
                let v = if silent { 0.0 } else { (y * 0.02 + z) * env };
                *s = v.clamp(-32768.0, 32767.0) as i16;
            }
            out.push(frame);
        }
        out
    }

    fn encode_all(cfg: &OpusConfig, frames: &[Pcm16K], losses: &[u8]) -> Vec<Vec<u8>> {
        let mut enc = Encoder::new(cfg).expect("encoder");
        let mut buf = [0u8; 1276];
        frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                enc.set_loss_percent(losses[(i / 50) % losses.len()]);
                let n = enc.encode(f, &mut buf).unwrap_or(0);
                buf[..n].to_vec()
            })
            .collect()
    }

    #[test]
    fn the_sse4_1_quantiser_encodes_the_same_bytes_as_the_c_reference() {
        let frames = speechlike(500, 7);
        let before = calls();
        for complexity in 0..=10u8 {
            for (bitrate_bps, inband_fec) in [(64_000, true), (24_000, true), (12_000, false)] {
                let cfg = OpusConfig {
                    complexity,
                    bitrate_bps,
                    inband_fec,
                    ..OpusConfig::default()
                };
                let losses = [5, 0, 20, 10];
                set_reference(true);
                let reference = encode_all(&cfg, &frames, &losses);
                set_reference(false);
                let fast = encode_all(&cfg, &frames, &losses);
                assert!(reference.iter().any(|p| p.len() > 10));
                for (i, (a, b)) in reference.iter().zip(&fast).enumerate() {
                    assert_eq!(
                        a, b,
                        "complexity {complexity}, {bitrate_bps} b/s: packet {i} differs"
                    );
                }
            }
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            assert!(
                calls() > before,
                "libopus did not reach the replacement (not linked?)"
            );
        }
    }
}
