//! libopus's SILK decoder core (`silk_decode_core`: excitation, long-term and short-term
//! prediction), bit-exact with libopus 1.6.1's C, with the short-term prediction laid out
//! so the CPU can overlap it.
//!
//! Decoding a 16 kHz SILK packet spends about 38 % of its time in `silk_decode_core`, most
//! of it in the short-term (LPC) synthesis: every output sample is the residual plus a
//! 16-tap prediction from the 16 outputs before it, so the samples form one serial chain.
//! libopus's C sums the 16 products starting from the newest sample, so the newest output
//! goes through a multiply and the whole chain of additions before the next output exists.
//!
//! This module defines `silk_decode_core` itself, so the linker takes it instead of
//! libopus's (which sits alone in its object file, `silk/decode_core.c`; the static libopus
//! is linked after this crate, the same mechanism as `opus_nsq` and `opus_warped`). It
//! makes outputs in blocks of 4: the products of the samples that were known two samples
//! before a block starts are summed for the 4 outputs at once (AVX2, four 64-bit products
//! per instruction), and only the products of the two newest samples and of the block's
//! own outputs are done one output at a time, the newest product added last. Every
//! product is the same `(x * (i16)a) >> 16` as libopus's `silk_SMLAWB`, and the sums are
//! taken modulo 2^32 as the C's are (its 32-bit accumulator wraps), so reordering the
//! additions changes no bit; saturation, shifts and rounding are applied to the same sums
//! at the same places. Everything else (the excitation, gains, re-whitening through
//! libopus's own `silk_LPC_analysis_filter`, long-term prediction, the PLC transition) is
//! the C's arithmetic in the C's order. Without AVX2 a scalar version runs
//! (the C's products, the newest added last).
//!
//! The function reads libopus's `silk_decoder_state` and `silk_decoder_control` through
//! `#[repr(C)]` mirrors of libopus 1.6.1's layout as opusic-sys 0.7.7 builds it (no OSCE,
//! no DRED; the dependency is pinned to that release in Cargo.toml). The offsets are
//! checked at compile time against the constants of libopus's own compiled
//! `decode_core.c` (see `LAYOUT`), every call checks the frame geometry it reads (aborting
//! rather than reading out of bounds if it were ever wrong), and the unit tests check
//! known values in a live decoder's state and compare the decoded PCM sample for sample
//! against libopus's C `silk_decode_core`, compiled under another name by `build.rs`.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};

const MAX_LPC_ORDER: usize = 16;
const MAX_FRAME_LENGTH: usize = 320;
const MAX_SUB_FRAME_LENGTH: usize = 80;
const MAX_NB_SUBFR: usize = 4;
const LTP_ORDER: usize = 5;
const TYPE_VOICED: i8 = 2;
/// QUANT_LEVEL_ADJUST_Q10 in Q14.
const QUANT_LEVEL_ADJUST_Q14: i32 = 80 << 4;

/// `silk_resampler_state_struct`.
#[repr(C)]
struct ResamplerState {
    s_iir: [i32; 6],
    s_fir: [i32; 36],
    delay_buf: [i16; 96],
    resampler_function: c_int,
    batch_size: c_int,
    inv_ratio_q16: i32,
    fir_order: c_int,
    fir_fracs: c_int,
    fs_in_khz: c_int,
    fs_out_khz: c_int,
    input_delay: c_int,
    coefs: *const i16,
}

/// `SideInfoIndices`.
#[repr(C)]
struct SideInfoIndices {
    gains_indices: [i8; MAX_NB_SUBFR],
    ltp_index: [i8; MAX_NB_SUBFR],
    nlsf_indices: [i8; MAX_LPC_ORDER + 1],
    lag_index: i16,
    contour_index: i8,
    signal_type: i8,
    quant_offset_type: i8,
    nlsf_interp_coef_q2: i8,
    per_index: i8,
    ltp_scale_index: i8,
    seed: i8,
}

/// `silk_CNG_struct`.
#[repr(C)]
struct CngState {
    exc_buf_q14: [i32; MAX_FRAME_LENGTH],
    smth_nlsf_q15: [i16; MAX_LPC_ORDER],
    synth_state: [i32; MAX_LPC_ORDER],
    smth_gain_q16: i32,
    rand_seed: i32,
    fs_khz: c_int,
}

/// The start of `silk_decoder_state` (libopus 1.6.1 without OSCE), up to the last field
/// this module reads; the PLC state that follows is not mirrored.
#[repr(C)]
pub(crate) struct DecoderState {
    prev_gain_q16: i32,
    exc_q14: [i32; MAX_FRAME_LENGTH],
    slpc_q14_buf: [i32; MAX_LPC_ORDER],
    out_buf: [i16; MAX_FRAME_LENGTH + 2 * MAX_SUB_FRAME_LENGTH],
    lag_prev: c_int,
    last_gain_index: i8,
    fs_khz: c_int,
    fs_api_hz: i32,
    nb_subfr: c_int,
    frame_length: c_int,
    subfr_length: c_int,
    ltp_mem_length: c_int,
    lpc_order: c_int,
    prev_nlsf_q15: [i16; MAX_LPC_ORDER],
    first_frame_after_reset: c_int,
    pitch_lag_low_bits_icdf: *const u8,
    pitch_contour_icdf: *const u8,
    n_frames_decoded: c_int,
    n_frames_per_packet: c_int,
    ec_prev_signal_type: c_int,
    ec_prev_lag_index: i16,
    vad_flags: [c_int; 3],
    lbrr_flag: c_int,
    lbrr_flags: [c_int; 3],
    resampler_state: ResamplerState,
    ps_nlsf_cb: *const u8,
    indices: SideInfoIndices,
    s_cng: CngState,
    loss_cnt: c_int,
    prev_signal_type: c_int,
    arch: c_int,
}

/// `silk_decoder_control`.
#[repr(C)]
pub(crate) struct DecoderControl {
    pitch_l: [c_int; MAX_NB_SUBFR],
    gains_q16: [i32; MAX_NB_SUBFR],
    pred_coef_q12: [[i16; MAX_LPC_ORDER]; 2],
    ltp_coef_q14: [i16; LTP_ORDER * MAX_NB_SUBFR],
    ltp_scale_q14: c_int,
}

/// The offsets libopus's own compiled `decode_core.c` (opusic-sys 0.7.7, x86-64) uses,
/// read from its disassembly: `frame_length` 0x918, `subfr_length` 0x91c,
/// `ltp_mem_length` 0x920, `LPC_order` 0x924, `indices.quantOffsetType` 0xb46,
/// `indices.Seed` 0xb4a, `lossCnt` 0x10b8, `prevSignalType` 0x10bc; and the control's
/// `LTP_scale_Q14` at 0x88.
const LAYOUT: () = {
    use std::mem::offset_of;
    assert!(offset_of!(DecoderState, frame_length) == 0x918);
    assert!(offset_of!(DecoderState, subfr_length) == 0x91c);
    assert!(offset_of!(DecoderState, ltp_mem_length) == 0x920);
    assert!(offset_of!(DecoderState, lpc_order) == 0x924);
    assert!(
        offset_of!(DecoderState, indices) + offset_of!(SideInfoIndices, quant_offset_type) == 0xb46
    );
    assert!(offset_of!(DecoderState, indices) + offset_of!(SideInfoIndices, seed) == 0xb4a);
    assert!(offset_of!(DecoderState, loss_cnt) == 0x10b8);
    assert!(offset_of!(DecoderState, prev_signal_type) == 0x10bc);
    assert!(offset_of!(DecoderControl, ltp_scale_q14) == 0x88);
};

unsafe extern "C" {
    static silk_Quantization_Offsets_Q10: [[i16; 2]; 2];
    fn silk_LPC_analysis_filter(
        out: *mut i16,
        input: *const i16,
        b: *const i16,
        len: i32,
        d: i32,
        arch: c_int,
    );
    #[cfg(all(test, opus_decode_core_reference))]
    fn botmedia_reference_silk_decode_core(
        ps_dec: *mut DecoderState,
        ps_dec_ctrl: *mut DecoderControl,
        xq: *mut i16,
        pulses: *const i16,
        arch: c_int,
    );
}

/// Calls taken by the replacement (tests check that the linker took it).
static CALLS: AtomicU64 = AtomicU64::new(0);

#[cfg(test)]
thread_local! {
    /// Tests only: run libopus's C on this thread instead.
    static REFERENCE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests only: force the scalar synthesis on this thread.
    static SCALAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests only: what the calls on this thread decoded (see `Seen`).
    static SEEN: std::cell::RefCell<Seen> = std::cell::RefCell::new(Seen::default());
}

/// Tests only: the kinds of frames the replacement was given.
#[cfg(test)]
#[derive(Default, Debug, Clone)]
pub(crate) struct Seen {
    calls: u64,
    voiced: u64,
    unvoiced: u64,
    order10: u64,
    order16: u64,
    subfr2: u64,
    subfr4: u64,
    after_loss: u64,
    plc_transition: u64,
    gain_changes: u64,
    rewhiten_k2: u64,
}

/// libopus's `silk_decode_core`; see the module documentation.
///
/// # Safety
///
/// Called by libopus only: `ps_dec` and `ps_dec_ctrl` are its live decoder state and
/// control, `xq` has room for `frame_length` samples and `pulses` holds as many.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn silk_decode_core(
    ps_dec: *mut DecoderState,
    ps_dec_ctrl: *mut DecoderControl,
    xq: *mut i16,
    pulses: *const i16,
    arch: c_int,
) {
    #[allow(clippy::let_unit_value)]
    let () = LAYOUT;
    CALLS.fetch_add(1, Ordering::Relaxed);
    #[cfg(all(test, opus_decode_core_reference))]
    if REFERENCE.with(|r| r.get()) {
        // SAFETY: the arguments are libopus's own, passed on unchanged to its C.
        unsafe { botmedia_reference_silk_decode_core(ps_dec, ps_dec_ctrl, xq, pulses, arch) };
        return;
    }
    // SAFETY: libopus passes its live decoder state and control (exclusively ours for the
    // call); `xq` and `pulses` are its separate stack buffers of `frame_length` samples,
    // a length checked against the other geometry before the slices are made.
    let (dec, ctrl) = unsafe { (&mut *ps_dec, &mut *ps_dec_ctrl) };
    let Some(geometry) = Geometry::of(dec) else {
        // Not a state libopus 1.6.1 can make: the mirror would be wrong. Stop rather than
        // read or write out of bounds.
        eprintln!("silk_decode_core: unexpected decoder state layout; aborting");
        std::process::abort();
    };
    let (xq, pulses) = unsafe {
        (
            std::slice::from_raw_parts_mut(xq, geometry.frame_length),
            std::slice::from_raw_parts(pulses, geometry.frame_length),
        )
    };
    decode_core(dec, ctrl, xq, pulses, arch, geometry);
}

/// The frame geometry the state describes, checked.
#[derive(Clone, Copy)]
struct Geometry {
    nb_subfr: usize,
    frame_length: usize,
    subfr_length: usize,
    ltp_mem_length: usize,
    lpc_order: usize,
}

impl Geometry {
    fn of(dec: &DecoderState) -> Option<Geometry> {
        let g = Geometry {
            nb_subfr: usize::try_from(dec.nb_subfr).ok()?,
            frame_length: usize::try_from(dec.frame_length).ok()?,
            subfr_length: usize::try_from(dec.subfr_length).ok()?,
            ltp_mem_length: usize::try_from(dec.ltp_mem_length).ok()?,
            lpc_order: usize::try_from(dec.lpc_order).ok()?,
        };
        let ok = matches!(g.nb_subfr, 2 | 4)
            && matches!(g.subfr_length, 40 | 60 | 80)
            && g.frame_length == g.nb_subfr * g.subfr_length
            && g.ltp_mem_length == 4 * g.subfr_length
            && matches!(g.lpc_order, 10 | 16)
            && dec.fs_khz == c_int::try_from(g.subfr_length / 5).ok()?;
        ok.then_some(g)
    }
}

#[inline(always)]
fn smulwb(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b as i16)) >> 16) as i32
}

#[inline(always)]
fn smulww(a: i32, b: i32) -> i32 {
    ((i64::from(a) * i64::from(b)) >> 16) as i32
}

/// One term of the predictions: `silk_SMLAWB`'s product, `(x * a) >> 16` with `a` a
/// 16-bit coefficient (already sign-extended).
#[inline(always)]
fn p(x: i32, a: i32) -> i32 {
    ((i64::from(x) * i64::from(a)) >> 16) as i32
}

#[inline(always)]
fn lshift_sat32(a: i32, shift: u32) -> i32 {
    a.clamp(i32::MIN >> shift, i32::MAX >> shift) << shift
}

fn clz32(x: i32) -> i32 {
    x.leading_zeros() as i32
}

/// `silk_INVERSE32_varQ`.
fn inverse32_varq(b32: i32, qres: i32) -> i32 {
    let b_headrm = clz32(b32.wrapping_abs()) - 1;
    let b32_nrm = b32.wrapping_shl(b_headrm as u32);
    let b32_inv = (i32::MAX >> 2) / (b32_nrm >> 16);
    let mut result = b32_inv.wrapping_shl(16);
    let err_q32 = (1i32 << 29)
        .wrapping_sub(smulwb(b32_nrm, b32_inv))
        .wrapping_shl(3);
    result = (i64::from(result) + ((i64::from(err_q32) * i64::from(b32_inv)) >> 16)) as i32;
    let lshift = 61 - b_headrm - qres;
    if lshift <= 0 {
        lshift_sat32(result, (-lshift) as u32)
    } else if lshift < 32 {
        result >> lshift
    } else {
        0
    }
}

/// `silk_DIV32_varQ`.
fn div32_varq(a32: i32, b32: i32, qres: i32) -> i32 {
    let a_headrm = clz32(a32.wrapping_abs()) - 1;
    let mut a32_nrm = a32.wrapping_shl(a_headrm as u32);
    let b_headrm = clz32(b32.wrapping_abs()) - 1;
    let b32_nrm = b32.wrapping_shl(b_headrm as u32);
    let b32_inv = (i32::MAX >> 2) / (b32_nrm >> 16);
    let mut result = smulwb(a32_nrm, b32_inv);
    let smmul = ((i64::from(b32_nrm) * i64::from(result)) >> 32) as i32;
    a32_nrm = a32_nrm.wrapping_sub(smmul.wrapping_shl(3));
    result = result.wrapping_add(smulwb(a32_nrm, b32_inv));
    let lshift = 29 + a_headrm - b_headrm - qres;
    if lshift < 0 {
        lshift_sat32(result, (-lshift) as u32)
    } else if lshift < 32 {
        result >> lshift
    } else {
        0
    }
}

/// The LPC synthesis buffer: 16 samples of state, then a subframe.
const SLPC_LEN: usize = MAX_LPC_ORDER + MAX_SUB_FRAME_LENGTH;

fn decode_core(
    dec: &mut DecoderState,
    ctrl: &mut DecoderControl,
    xq: &mut [i16],
    pulses: &[i16],
    arch: c_int,
    g: Geometry,
) {
    let signal_type_coded = dec.indices.signal_type;
    // SAFETY: a constant table of libopus's.
    let offsets = unsafe { &silk_Quantization_Offsets_Q10 };
    let offset_q10 = i32::from(
        offsets[(signal_type_coded >> 1) as usize][dec.indices.quant_offset_type as usize],
    );
    let nlsf_interpolation = dec.indices.nlsf_interp_coef_q2 < 1 << 2;

    #[cfg(test)]
    SEEN.with(|s| {
        let mut s = s.borrow_mut();
        s.calls += 1;
        if signal_type_coded == TYPE_VOICED {
            s.voiced += 1;
        } else {
            s.unvoiced += 1;
        }
        if g.lpc_order == 10 {
            s.order10 += 1;
        } else {
            s.order16 += 1;
        }
        if g.nb_subfr == 2 {
            s.subfr2 += 1;
        } else {
            s.subfr4 += 1;
        }
        if dec.loss_cnt != 0 {
            s.after_loss += 1;
        }
    });

    excitation(
        &mut dec.exc_q14[..g.frame_length],
        pulses,
        i32::from(dec.indices.seed),
        offset_q10,
    );

    let mut slpc = [0i32; SLPC_LEN];
    slpc[..MAX_LPC_ORDER].copy_from_slice(&dec.slpc_q14_buf);
    let mut s_ltp = [0i16; 4 * MAX_SUB_FRAME_LENGTH];
    let mut s_ltp_q15 = [0i32; 4 * MAX_SUB_FRAME_LENGTH + MAX_FRAME_LENGTH];
    let mut res_q14 = [0i32; MAX_SUB_FRAME_LENGTH];
    let mut s_ltp_buf_idx = g.ltp_mem_length;
    let subfr = g.subfr_length;

    for k in 0..g.nb_subfr {
        let a_q12 = ctrl.pred_coef_q12[k >> 1];
        let mut signal_type = signal_type_coded;
        let gain_q16 = ctrl.gains_q16[k];
        let gain_q10 = gain_q16 >> 6;
        let mut inv_gain_q31 = inverse32_varq(gain_q16, 47);
        let gain_adj_q16 = if gain_q16 != dec.prev_gain_q16 {
            let adj = div32_varq(dec.prev_gain_q16, gain_q16, 16);
            for s in &mut slpc[..MAX_LPC_ORDER] {
                *s = smulww(adj, *s);
            }
            #[cfg(test)]
            SEEN.with(|s| s.borrow_mut().gain_changes += 1);
            adj
        } else {
            1 << 16
        };
        dec.prev_gain_q16 = gain_q16;

        // The C's smooth transition from voiced concealment to unvoiced decoding.
        if dec.loss_cnt != 0
            && dec.prev_signal_type == c_int::from(TYPE_VOICED)
            && signal_type_coded != TYPE_VOICED
            && k < MAX_NB_SUBFR / 2
        {
            ctrl.ltp_coef_q14[k * LTP_ORDER..(k + 1) * LTP_ORDER].copy_from_slice(&[
                0,
                0,
                1 << 12,
                0,
                0,
            ]);
            signal_type = TYPE_VOICED;
            ctrl.pitch_l[k] = dec.lag_prev;
            #[cfg(test)]
            SEEN.with(|s| s.borrow_mut().plc_transition += 1);
        }

        let exc = &dec.exc_q14[k * subfr..(k + 1) * subfr];
        let res: &[i32] = if signal_type == TYPE_VOICED {
            let Ok(lag) = usize::try_from(ctrl.pitch_l[k]) else {
                std::process::abort();
            };
            if k == 0 || (k == 2 && nlsf_interpolation) {
                // Re-whiten the past output with the new coefficients (libopus's C).
                let start = g.ltp_mem_length as isize
                    - lag as isize
                    - g.lpc_order as isize
                    - (LTP_ORDER / 2) as isize;
                if start <= 0 {
                    // libopus's hardened build aborts here too (celt_assert).
                    eprintln!("silk_decode_core: start_idx > 0 failed; aborting");
                    std::process::abort();
                }
                let start = start as usize;
                if k == 2 {
                    dec.out_buf[g.ltp_mem_length..g.ltp_mem_length + 2 * subfr]
                        .copy_from_slice(&xq[..2 * subfr]);
                    #[cfg(test)]
                    SEEN.with(|s| s.borrow_mut().rewhiten_k2 += 1);
                }
                let input =
                    &dec.out_buf[start + k * subfr..start + k * subfr + g.ltp_mem_length - start];
                let out = &mut s_ltp[start..g.ltp_mem_length];
                // SAFETY: `out` and `input` hold `ltp_mem_length - start` samples, the
                // coefficients `lpc_order` (at most 16).
                unsafe {
                    silk_LPC_analysis_filter(
                        out.as_mut_ptr(),
                        input.as_ptr(),
                        ctrl.pred_coef_q12[k >> 1].as_ptr(),
                        out.len() as i32,
                        g.lpc_order as i32,
                        arch,
                    );
                }
                if k == 0 {
                    inv_gain_q31 = smulwb(inv_gain_q31, ctrl.ltp_scale_q14).wrapping_shl(2);
                }
                for i in 0..lag + LTP_ORDER / 2 {
                    s_ltp_q15[s_ltp_buf_idx - i - 1] =
                        smulwb(inv_gain_q31, i32::from(s_ltp[g.ltp_mem_length - i - 1]));
                }
            } else if gain_adj_q16 != 1 << 16 {
                for i in 0..lag + LTP_ORDER / 2 {
                    let v = &mut s_ltp_q15[s_ltp_buf_idx - i - 1];
                    *v = smulww(gain_adj_q16, *v);
                }
            }
            // Long-term prediction.
            let b = &ctrl.ltp_coef_q14[k * LTP_ORDER..(k + 1) * LTP_ORDER];
            let b = [
                i32::from(b[0]),
                i32::from(b[1]),
                i32::from(b[2]),
                i32::from(b[3]),
                i32::from(b[4]),
            ];
            for i in 0..subfr {
                let c = s_ltp_buf_idx - lag + LTP_ORDER / 2;
                let pred_q13 = 2i32
                    .wrapping_add(p(s_ltp_q15[c], b[0]))
                    .wrapping_add(p(s_ltp_q15[c - 1], b[1]))
                    .wrapping_add(p(s_ltp_q15[c - 2], b[2]))
                    .wrapping_add(p(s_ltp_q15[c - 3], b[3]))
                    .wrapping_add(p(s_ltp_q15[c - 4], b[4]));
                let r = exc[i].wrapping_add(pred_q13.wrapping_shl(1));
                res_q14[i] = r;
                s_ltp_q15[s_ltp_buf_idx] = r.wrapping_shl(1);
                s_ltp_buf_idx += 1;
            }
            &res_q14[..subfr]
        } else {
            exc
        };

        let mut a = [0i32; MAX_LPC_ORDER];
        for (d, s) in a.iter_mut().zip(&a_q12[..g.lpc_order]) {
            *d = i32::from(*s);
        }
        let bias = (g.lpc_order >> 1) as i32;
        synthesize(&mut slpc, &a, bias, res, g.lpc_order);

        let out = &mut xq[k * subfr..(k + 1) * subfr];
        for (o, &y) in out
            .iter_mut()
            .zip(&slpc[MAX_LPC_ORDER..MAX_LPC_ORDER + subfr])
        {
            let v = smulww(y, gain_q10);
            let v = ((v >> 7) + 1) >> 1;
            *o = v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        slpc.copy_within(subfr..subfr + MAX_LPC_ORDER, 0);
    }
    dec.slpc_q14_buf.copy_from_slice(&slpc[..MAX_LPC_ORDER]);
}

/// The excitation: pulses to Q14 with the quantisation offset, signs from libopus's
/// pseudo-random sequence `r = M * (r_prev + pulse_prev) + C` (modulo 2^32). That
/// recurrence is linear, so each block of 4 values is computed from the seed before the
/// block (`M^j * s + ...`, the same values modulo 2^32), a chain of one multiply per 4
/// samples instead of one per sample.
fn excitation(exc: &mut [i32], pulses: &[i16], seed: i32, offset_q10: i32) {
    const M: i32 = 196_314_165;
    const C: i32 = 907_633_515;
    const M2: i32 = M.wrapping_mul(M);
    const M3: i32 = M2.wrapping_mul(M);
    const M4: i32 = M3.wrapping_mul(M);
    const C1: i32 = C;
    const C2: i32 = M.wrapping_mul(C1).wrapping_add(C);
    const C3: i32 = M.wrapping_mul(C2).wrapping_add(C);
    const C4: i32 = M.wrapping_mul(C3).wrapping_add(C);
    let one = |p: i32, r: i32| {
        let mut v = p << 14;
        if v > 0 {
            v -= QUANT_LEVEL_ADJUST_Q14;
        } else if v < 0 {
            v += QUANT_LEVEL_ADJUST_Q14;
        }
        v += offset_q10 << 4;
        if r < 0 { -v } else { v }
    };
    let mut s = seed;
    let mut e4 = exc.chunks_exact_mut(4);
    let mut p4 = pulses.chunks_exact(4);
    for (e, p) in (&mut e4).zip(&mut p4) {
        let [p0, p1, p2, p3] = [p[0], p[1], p[2], p[3]].map(i32::from);
        let r0 = M.wrapping_mul(s).wrapping_add(C1);
        let r1 = M2
            .wrapping_mul(s)
            .wrapping_add(C2)
            .wrapping_add(M.wrapping_mul(p0));
        let r2 = M3
            .wrapping_mul(s)
            .wrapping_add(C3)
            .wrapping_add(M2.wrapping_mul(p0))
            .wrapping_add(M.wrapping_mul(p1));
        let r3 = M4
            .wrapping_mul(s)
            .wrapping_add(C4)
            .wrapping_add(M3.wrapping_mul(p0))
            .wrapping_add(M2.wrapping_mul(p1))
            .wrapping_add(M.wrapping_mul(p2));
        e[0] = one(p0, r0);
        e[1] = one(p1, r1);
        e[2] = one(p2, r2);
        e[3] = one(p3, r3);
        s = r3.wrapping_add(p3);
    }
    for (e, &p) in e4.into_remainder().iter_mut().zip(p4.remainder()) {
        let r = M.wrapping_mul(s).wrapping_add(C);
        let p = i32::from(p);
        *e = one(p, r);
        s = r.wrapping_add(p);
    }
}

/// One output of the synthesis: the residual plus the prediction (Q10) in Q14, both
/// saturating as in the C.
#[inline(always)]
fn output(res: i32, pred_q10: i32) -> i32 {
    res.saturating_add(lshift_sat32(pred_q10, 4))
}

/// The short-term synthesis of one subframe: `s[16 + i]` from `res[i]` and the 16
/// samples before it (`s[..16]` the state), `a` the coefficients (zero past the order).
fn synthesize(
    s: &mut [i32; SLPC_LEN],
    a: &[i32; MAX_LPC_ORDER],
    bias: i32,
    res: &[i32],
    order: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[cfg(test)]
        let scalar = SCALAR.with(|c| c.get());
        #[cfg(not(test))]
        let scalar = false;
        if !scalar && std::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            unsafe {
                if order == 10 {
                    avx2::synthesize::<10>(s, a, bias, res);
                } else {
                    avx2::synthesize::<16>(s, a, bias, res);
                }
            }
            return;
        }
    }
    let _ = order;
    synthesize_scalar(s, a, bias, res);
}

/// The scalar version (machines without AVX2): the C's products, the oldest summed first
/// and the newest last.
fn synthesize_scalar(s: &mut [i32; SLPC_LEN], a: &[i32; MAX_LPC_ORDER], bias: i32, res: &[i32]) {
    for (i, &r) in res.iter().enumerate() {
        let n = MAX_LPC_ORDER + i;
        let mut acc = bias;
        for k in (2..=MAX_LPC_ORDER).rev() {
            acc = acc.wrapping_add(p(s[n - k], a[k - 1]));
        }
        acc = acc.wrapping_add(p(s[n - 1], a[0]));
        s[n] = output(r, acc);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{MAX_LPC_ORDER, SLPC_LEN, output, p};
    use std::arch::x86_64::*;

    /// Blocks of 4 outputs. For output `j` of a block starting at `n`, the taps `k >= j + 3`
    /// read samples before `n - 2` and are summed for the 4 outputs together: four 64-bit
    /// products `x * a` per instruction, each shifted right by 16 (a logical shift of the
    /// 64-bit product: its low 32 bits are the arithmetic shift's, which is all the 32-bit
    /// sum keeps), with the coefficient zeroed in the lanes where the tap is nearer. The
    /// other taps (the two newest inputs, the block's own outputs) are added one output
    /// at a time, the newest last. The 16 newest samples stay in registers as 4 vectors.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn synthesize<const ORDER: usize>(
        s: &mut [i32; SLPC_LEN],
        a: &[i32; MAX_LPC_ORDER],
        bias: i32,
        res: &[i32],
    ) {
        // Coefficient vectors per tap k (1-based), lane j kept when k >= j + 3.
        let mut coef = [_mm256_setzero_si256(); MAX_LPC_ORDER + 1];
        for (k, c) in coef.iter_mut().enumerate().skip(3) {
            if k > ORDER {
                break;
            }
            let lane = |j: usize| if k >= j + 3 { i64::from(a[k - 1]) } else { 0 };
            *c = _mm256_set_epi64x(lane(3), lane(2), lane(1), lane(0));
        }
        let [a0, a1, a2, a3, a4, ..] = *a;
        // History: h1 = s[n-4..n], h2 = s[n-8..n-4], h3, h4.
        // SAFETY: s has 16 samples of state before the subframe.
        let (mut h4, mut h3, mut h2, mut h1) = unsafe {
            (
                _mm_loadu_si128(s.as_ptr().cast()),
                _mm_loadu_si128(s.as_ptr().add(4).cast()),
                _mm_loadu_si128(s.as_ptr().add(8).cast()),
                _mm_loadu_si128(s.as_ptr().add(12).cast()),
            )
        };
        let mut ym1 = s[MAX_LPC_ORDER - 1];
        let mut ym2 = s[MAX_LPC_ORDER - 2];
        let zero = _mm_setzero_si128();
        for (blk, r) in res.chunks_exact(4).enumerate() {
            // Window for tap k: s[n-k..n-k+4].
            macro_rules! win {
                (4) => {
                    h1
                };
                (8) => {
                    h2
                };
                (12) => {
                    h3
                };
                (16) => {
                    h4
                };
                ($hi:expr, $lo:expr, $r:literal) => {
                    _mm_alignr_epi8::<{ 4 * $r }>($hi, $lo)
                };
            }
            let mut acc = _mm256_setzero_si256();
            macro_rules! tap {
                ($k:literal, $w:expr) => {
                    if $k <= ORDER {
                        let x = _mm256_cvtepi32_epi64($w);
                        let prod = _mm256_mul_epi32(x, coef[$k]);
                        acc = _mm256_add_epi64(acc, _mm256_srli_epi64::<16>(prod));
                    }
                };
            }
            tap!(3, win!(zero, h1, 1));
            tap!(4, win!(4));
            tap!(5, win!(h1, h2, 3));
            tap!(6, win!(h1, h2, 2));
            tap!(7, win!(h1, h2, 1));
            tap!(8, win!(8));
            tap!(9, win!(h2, h3, 3));
            tap!(10, win!(h2, h3, 2));
            tap!(11, win!(h2, h3, 1));
            tap!(12, win!(12));
            tap!(13, win!(h3, h4, 3));
            tap!(14, win!(h3, h4, 2));
            tap!(15, win!(h3, h4, 1));
            tap!(16, win!(16));
            // Low 32 bits of each 64-bit lane.
            let packed = _mm256_permutevar8x32_epi32(acc, _mm256_set_epi32(7, 5, 3, 1, 6, 4, 2, 0));
            let lo = _mm256_castsi256_si128(packed);
            let mut h = [0i32; 4];
            // SAFETY: `h` has room for 4 lanes.
            unsafe { _mm_storeu_si128(h.as_mut_ptr().cast(), lo) };
            let h = h.map(|v| v.wrapping_add(bias));

            let t0 = h[0].wrapping_add(p(ym2, a1)).wrapping_add(p(ym1, a0));
            let y0 = output(r[0], t0);
            let t1 = h[1]
                .wrapping_add(p(ym2, a2))
                .wrapping_add(p(ym1, a1))
                .wrapping_add(p(y0, a0));
            let y1 = output(r[1], t1);
            let t2 = h[2]
                .wrapping_add(p(ym2, a3))
                .wrapping_add(p(ym1, a2))
                .wrapping_add(p(y0, a1))
                .wrapping_add(p(y1, a0));
            let y2 = output(r[2], t2);
            let t3 = h[3]
                .wrapping_add(p(ym2, a4))
                .wrapping_add(p(ym1, a3))
                .wrapping_add(p(y0, a2))
                .wrapping_add(p(y1, a1))
                .wrapping_add(p(y2, a0));
            let y3 = output(r[3], t3);
            let n = MAX_LPC_ORDER + 4 * blk;
            s[n..n + 4].copy_from_slice(&[y0, y1, y2, y3]);
            h4 = h3;
            h3 = h2;
            h2 = h1;
            h1 = _mm_set_epi32(y3, y2, y1, y0);
            ym1 = y3;
            ym2 = y2;
        }
    }
}

/// Makes sure the replacement is linked: called where decoders are made, so the object
/// holding it is taken before the linker reaches libopus.
pub(crate) fn link() {
    std::hint::black_box(silk_decode_core as *const ());
}

/// Calls the replacement has taken so far.
#[cfg(test)]
pub(crate) fn calls() -> u64 {
    CALLS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opus::{Application, Bandwidth, Bitrate, Channels};

    /// A deterministic speech-like signal at 16 kHz: a pitch-varying pulse train through
    /// two resonances, syllable envelopes, unvoiced noise stretches and digital silence.
    fn speechlike(samples: usize, seed: u64) -> Vec<i16> {
        let mut rng = seed | 1;
        let mut noise = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let (mut phase, mut y1, mut y2, mut z1, mut z2) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        (0..samples)
            .map(|i| {
                let t = i as f64 / 16_000.0;
                let f0 = 120.0 + 70.0 * (t * 1.1).sin() + 25.0 * (t * 0.41 + seed as f64).sin();
                phase += f0 / 16_000.0;
                let pulse = if phase >= 1.0 {
                    phase -= 1.0;
                    1.0
                } else {
                    0.0
                };
                let env = (0.5 + 0.5 * (t * 2.0 * std::f64::consts::PI * 3.3).sin()).powi(2);
                let voiced = (t % 1.9) < 1.3;
                let x = if voiced {
                    pulse * 12000.0
                } else {
                    noise() * 4000.0
                };
                let y = x + 1.86 * y1 - 0.93 * y2;
                y2 = y1;
                y1 = y;
                let z = y * 0.05 + 1.40 * z1 - 0.88 * z2;
                z2 = z1;
                z1 = z;
                let silent = (t % 4.0) > 3.5;
                let v = if silent { 0.0 } else { (y * 0.03 + z) * env };
                v.clamp(-32768.0, 32767.0) as i16
            })
            .collect()
    }

    /// One stream's settings: the bitrate, the frame length in samples, the bandwidths
    /// the encoder is limited to in turn (one per second), FEC and the loss it is told.
    struct Stream {
        bitrate: i32,
        frame: usize,
        bandwidths: &'static [Bandwidth],
        loss_percent: i32,
    }

    fn encode(stream: &Stream, seed: u64) -> Vec<Vec<u8>> {
        let pcm = speechlike(16_000 * 12, seed);
        let mut enc = opus::Encoder::new(16_000, Channels::Mono, Application::Voip).unwrap();
        enc.set_bitrate(Bitrate::Bits(stream.bitrate)).unwrap();
        enc.set_inband_fec(stream.loss_percent > 0).unwrap();
        enc.set_packet_loss_perc(stream.loss_percent).unwrap();
        let mut buf = [0u8; 1276];
        pcm.chunks_exact(stream.frame)
            .enumerate()
            .map(|(i, f)| {
                let second = i * stream.frame / 16_000;
                let bw = stream.bandwidths[second % stream.bandwidths.len()];
                enc.set_max_bandwidth(bw).unwrap();
                let n = enc.encode(f, &mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect()
    }

    /// Decodes `packets` losing some (single losses and bursts): each lost packet is
    /// rebuilt from the next one's FEC when it has some and arrived, else concealed.
    fn decode(packets: &[Vec<u8>], frame: usize, seed: u64) -> Vec<i16> {
        let mut dec = opus::Decoder::new(16_000, Channels::Mono).unwrap();
        let mut rng = seed | 1;
        let mut lost = vec![false; packets.len()];
        let mut i = 0;
        while i < packets.len() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let r = rng % 100;
            if r < 12 {
                lost[i] = true;
            } else if r < 15 {
                for l in lost.iter_mut().skip(i).take(4) {
                    *l = true;
                }
                i += 3;
            }
            i += 1;
        }
        let mut out = Vec::new();
        let mut pcm = vec![0i16; 1920];
        for (i, packet) in packets.iter().enumerate() {
            let n = if !lost[i] {
                dec.decode(packet, &mut pcm, false).unwrap()
            } else if let Some(next) = packets
                .get(i + 1)
                .filter(|_| !lost.get(i + 1).copied().unwrap_or(true))
            {
                // With no LBRR in `next`, libopus conceals (fec=1 without FEC data).
                dec.decode(next, &mut pcm[..frame], true).unwrap()
            } else {
                dec.decode(&[], &mut pcm[..frame], false).unwrap()
            };
            out.extend_from_slice(&pcm[..n]);
        }
        out
    }

    fn with_mode<T>(reference: bool, scalar: bool, f: impl FnOnce() -> T) -> T {
        REFERENCE.with(|r| r.set(reference));
        SCALAR.with(|s| s.set(scalar));
        let v = f();
        REFERENCE.with(|r| r.set(false));
        SCALAR.with(|s| s.set(false));
        v
    }

    #[test]
    fn decodes_the_same_pcm_as_libopus_c_with_loss_fec_and_mode_changes() {
        #[cfg(not(opus_decode_core_reference))]
        panic!("build.rs did not find libopus's sources to compile the C reference");
        #[cfg(opus_decode_core_reference)]
        {
            use Bandwidth::{Mediumband as Mb, Narrowband as Nb, Wideband as Wb};
            let streams = [
                Stream {
                    bitrate: 24_000,
                    frame: 320,
                    bandwidths: &[Wb],
                    loss_percent: 0,
                },
                Stream {
                    bitrate: 24_000,
                    frame: 320,
                    bandwidths: &[Wb],
                    loss_percent: 15,
                },
                Stream {
                    bitrate: 64_000,
                    frame: 320,
                    bandwidths: &[Wb, Nb, Wb, Mb],
                    loss_percent: 20,
                },
                Stream {
                    bitrate: 12_000,
                    frame: 320,
                    bandwidths: &[Mb],
                    loss_percent: 10,
                },
                Stream {
                    bitrate: 9_000,
                    frame: 320,
                    bandwidths: &[Nb],
                    loss_percent: 5,
                },
                Stream {
                    bitrate: 32_000,
                    frame: 160,
                    bandwidths: &[Wb, Mb],
                    loss_percent: 10,
                },
                Stream {
                    bitrate: 16_000,
                    frame: 160,
                    bandwidths: &[Nb, Wb],
                    loss_percent: 0,
                },
                Stream {
                    bitrate: 40_000,
                    frame: 640,
                    bandwidths: &[Wb],
                    loss_percent: 10,
                },
            ];
            let before = calls();
            SEEN.with(|s| *s.borrow_mut() = Seen::default());
            let mut samples = 0;
            for (n, stream) in streams.iter().enumerate() {
                for seed in 1..=2u64 {
                    let packets = encode(stream, seed + 10 * n as u64);
                    let reference = with_mode(true, false, || decode(&packets, stream.frame, seed));
                    let fast = with_mode(false, false, || decode(&packets, stream.frame, seed));
                    let scalar = with_mode(false, true, || decode(&packets, stream.frame, seed));
                    assert_eq!(reference.len(), fast.len());
                    assert!(reference.iter().any(|&s| s.unsigned_abs() > 3000));
                    for (what, other) in [("AVX2", &fast), ("scalar", &scalar)] {
                        if let Some(i) =
                            reference.iter().zip(other.iter()).position(|(a, b)| a != b)
                        {
                            panic!(
                                "stream {n} (seed {seed}), {what}: sample {i} differs: {} against libopus's {}",
                                other[i], reference[i]
                            );
                        }
                    }
                    samples += reference.len();
                }
            }
            let seen = SEEN.with(|s| s.borrow().clone());
            eprintln!("{samples} samples compared; replacement saw {seen:?}");
            assert!(
                calls() > before,
                "libopus did not reach the replacement (not linked?)"
            );
            for (what, n) in [
                ("voiced", seen.voiced),
                ("unvoiced", seen.unvoiced),
                ("LPC order 10", seen.order10),
                ("LPC order 16", seen.order16),
                ("10 ms frames", seen.subfr2),
                ("20 ms frames", seen.subfr4),
                ("frames after a loss", seen.after_loss),
                ("voiced PLC to unvoiced", seen.plc_transition),
                ("gain changes", seen.gain_changes),
                ("re-whitening at subframe 2", seen.rewhiten_k2),
            ] {
                assert!(n > 0, "no {what} among the frames compared");
            }
        }
    }
}
