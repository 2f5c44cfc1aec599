//! libopus's warped autocorrelation (the SILK encoder's noise-shaping analysis, float
//! build), with the same arithmetic laid out so the CPU can overlap it.
//!
//! At complexity 4 and above the SILK encoder measures each subframe's spectrum on a warped
//! frequency axis: a chain of `order` first-order all-pass sections run over the windowed
//! input, sample by sample, in double precision. libopus's C keeps the chain's state in
//! memory and walks it in one loop; it is about 14 % of a call's tick at the default
//! complexity (5), the second cost after the quantiser.
//!
//! This module defines `silk_warped_autocorrelation_FLP` itself, so the linker takes it
//! instead of libopus's (which sits alone in its object file; the static libopus is linked
//! after this crate). Section `i` of a sample needs only sections `i` and `i + 1` of the
//! sample before, so eight samples run as a wavefront, each one section behind the one
//! before: eight independent chains per step instead of one long one, with the state and
//! the correlations being summed passed from sample to sample in registers. Every output
//! is the same IEEE double operations on the same operands in the same order as the C
//! (each correlation still adds its samples' products in sample order). Rust never fuses
//! a multiply and an add, and libopus is built for x86-64 without FMA (so neither does its
//! C), so every result is bit-identical; the unit tests compare it with a line-by-line port
//! of the C for every order and several warpings. Only on x86-64 without FMA in the target
//! features (a build for a CPU with FMA lets the C compiler fuse, and the two would no
//! longer agree). At order 16 (complexity 4 and 5) it took about 3.1 us per subframe
//! against the C's 4.2 in a timing loop while it was written; in the tree its effect is
//! measured where it counts, the encoder's benches (`per_frame/encode_c5`,
//! `default_settings/encode_default` in `benches/pipeline.rs`).

use std::ffi::c_int;

/// MAX_SHAPE_LPC_ORDER in libopus.
const MAX_ORDER: usize = 24;

/// libopus's `silk_warped_autocorrelation_FLP`: `corr[..=order]` from `input[..length]`.
///
/// # Safety
///
/// Called by libopus only: `corr` has room for `order + 1` floats, `input` holds
/// `length` floats, `order` is even and at most 24.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn silk_warped_autocorrelation_FLP(
    corr: *mut f32,
    input: *const f32,
    warping: f32,
    length: c_int,
    order: c_int,
) {
    let order = usize::try_from(order).unwrap_or(0);
    let length = usize::try_from(length).unwrap_or(0);
    if order > MAX_ORDER {
        // libopus asserts this cannot happen; leave the output alone rather than overrun.
        return;
    }
    // SAFETY: libopus passes `length` readable floats and room for `order + 1` results.
    let (input, corr) = unsafe {
        (
            std::slice::from_raw_parts(input, length),
            std::slice::from_raw_parts_mut(corr, order + 1),
        )
    };
    warped_autocorrelation(corr, input, warping, order);
}

/// Dispatches to the version for `order` (libopus uses 12, 14, 16, 20 and 24).
pub(crate) fn warped_autocorrelation(corr: &mut [f32], input: &[f32], warping: f32, order: usize) {
    match order {
        12 => fixed::<13>(corr, input, warping),
        14 => fixed::<15>(corr, input, warping),
        16 => fixed::<17>(corr, input, warping),
        18 => fixed::<19>(corr, input, warping),
        20 => fixed::<21>(corr, input, warping),
        22 => fixed::<23>(corr, input, warping),
        24 => fixed::<25>(corr, input, warping),
        _ => reference(corr, input, warping, order),
    }
}

/// Samples in flight in the wavefront (8 measured fastest: 6 and 12 are slower).
const L: usize = 8;

/// The chain for `M - 1` sections (`M` correlations), [`L`] samples at a time.
///
/// Per sample `x`, with the state `s` the previous sample left: `t[0] = x`,
/// `t[i + 1] = (s[i] + w * s[i + 1]) - w * t[i]`, the state becomes `t`, and
/// `c[i] += x * t[i]`: the C's `tmp = state[i] + warping * state[i + 1] - warping * tmp`
/// (evaluated left to right) and `C[i] += state[0] * tmp`, with `state[0]` already the
/// sample. Section `i` of a sample needs only sections `i` and `i + 1` of the sample
/// before it, so the samples of a block run as a wavefront, each one section behind the one
/// before ([`step`] for the steps where some are outside the chain): independent chains
/// instead of one long one. Every `c[i]` still adds its samples' products in sample order.
/// Samples left over after the blocks run one at a time.
#[inline]
fn fixed<const M: usize>(corr: &mut [f32], input: &[f32], warping: f32) {
    let n = M - 1;
    let w = f64::from(warping);
    let mut s = [0.0f64; M];
    let mut c = [0.0f64; M];
    let mut chunks = input.chunks_exact(L);
    for chunk in &mut chunks {
        let mut x = [0.0f64; L];
        for k in 0..L {
            x[k] = f64::from(chunk[k]);
        }
        let mut lanes = Lanes {
            cur: x,
            prev: [0.0; L],
            acc: [0.0; L],
        };
        for j in 0..L - 1 {
            step(j, n, w, &x, &mut lanes, &mut s, &mut c);
        }
        // Every lane inside the chain: `step` without its checks.
        for j in L - 1..n {
            let Lanes { cur, prev, acc } = &mut lanes;
            let mut next = [0.0f64; L];
            let mut nacc = [0.0f64; L];
            c[j + 1 - L] = acc[L - 2] + x[L - 1] * cur[L - 1];
            s[j + 1 - L] = cur[L - 1];
            for k in (1..L).rev() {
                if k < L - 1 {
                    nacc[k] = acc[k - 1] + x[k] * cur[k];
                }
                next[k] = prev[k - 1] + w * cur[k - 1] - w * cur[k];
            }
            nacc[0] = c[j] + x[0] * cur[0];
            next[0] = s[j] + w * s[j + 1] - w * cur[0];
            *acc = nacc;
            *prev = *cur;
            *cur = next;
        }
        for j in n.max(L - 1)..n + L {
            step(j, n, w, &x, &mut lanes, &mut s, &mut c);
        }
    }
    for &x in chunks.remainder() {
        let x = f64::from(x);
        let mut t = [0.0f64; M];
        t[0] = x;
        for i in 0..n {
            t[i + 1] = s[i] + w * s[i + 1] - w * t[i];
        }
        for i in 0..M {
            c[i] += x * t[i];
        }
        s = t;
    }
    for (out, v) in corr.iter_mut().zip(c) {
        *out = v as f32;
    }
}

/// Step `j` of a block's wavefront (see [`fixed`]), lanes that are outside the chain
/// left alone. Lanes are updated last to first, so each reads the lane before it as it
/// was at the start of the step. A correlation passes down the lanes with its section:
/// lane 0 takes `c[i]` from memory, each lane adds its sample's product, the last lane
/// stores it.
#[inline(always)]
fn step(j: usize, n: usize, w: f64, x: &[f64; L], lanes: &mut Lanes, s: &mut [f64], c: &mut [f64]) {
    for k in (0..L).rev() {
        let Some(i) = j.checked_sub(k) else { continue };
        if i > n {
            continue;
        }
        let acc = if k == 0 { c[i] } else { lanes.acc[k - 1] };
        let acc = acc + x[k] * lanes.cur[k];
        if k == L - 1 {
            c[i] = acc;
            s[i] = lanes.cur[L - 1];
        } else {
            lanes.acc[k] = acc;
        }
        if i == n {
            continue;
        }
        // The state this sample sees: the previous sample's t[i] and t[i + 1].
        let (p0, p1) = if k == 0 {
            (s[i], s[i + 1])
        } else {
            (lanes.prev[k - 1], lanes.cur[k - 1])
        };
        let next = p0 + w * p1 - w * lanes.cur[k];
        lanes.prev[k] = lanes.cur[k];
        lanes.cur[k] = next;
    }
}

/// The wavefront's registers: per lane (sample), its chain's value at its section
/// (`t[i]`), the one before (`t[i - 1]`), and the correlation it carries (`c[i]` so far).
struct Lanes {
    cur: [f64; L],
    prev: [f64; L],
    acc: [f64; L],
}

/// libopus's C, line by line (any even order up to 24).
fn reference(corr: &mut [f32], input: &[f32], warping: f32, order: usize) {
    let w = f64::from(warping);
    let mut state = [0.0f64; MAX_ORDER + 1];
    let mut c = [0.0f64; MAX_ORDER + 1];
    for &x in input {
        let mut tmp1 = f64::from(x);
        let mut i = 0;
        while i < order {
            let tmp2 = state[i] + w * state[i + 1] - w * tmp1;
            state[i] = tmp1;
            c[i] += state[0] * tmp1;
            tmp1 = state[i + 1] + w * state[i + 2] - w * tmp2;
            state[i + 1] = tmp2;
            c[i + 1] += state[0] * tmp2;
            i += 2;
        }
        state[order] = tmp1;
        c[order] += state[0] * tmp1;
    }
    for (out, v) in corr.iter_mut().zip(&c[..=order]) {
        *out = *v as f32;
    }
}

/// Makes sure the replacement is linked: called where encoders are made, so the object
/// holding it is taken before the linker reaches libopus.
pub(crate) fn link() {
    std::hint::black_box(silk_warped_autocorrelation_FLP as *const ());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: usize, seed: u64) -> Vec<f32> {
        let mut r = seed | 1;
        (0..n)
            .map(|i| {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                let noise = (r >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                let t = i as f32 / 16_000.0;
                (t * 2.0 * std::f32::consts::PI * 180.0).sin() * 9000.0
                    + (t * 2.0 * std::f32::consts::PI * 1230.0).sin() * 2000.0
                    + noise * 3000.0
            })
            .collect()
    }

    #[test]
    fn every_order_matches_the_c_bit_for_bit() {
        for seed in 1..20u64 {
            let x = signal(240 + seed as usize * 7, seed);
            for order in (2..=MAX_ORDER).step_by(2) {
                for warping in [0.0f32, 0.015, 0.3, 0.4375, -0.2] {
                    let mut fast = [f32::NAN; MAX_ORDER + 1];
                    let mut slow = [f32::NAN; MAX_ORDER + 1];
                    warped_autocorrelation(&mut fast[..=order], &x, warping, order);
                    reference(&mut slow[..=order], &x, warping, order);
                    for i in 0..=order {
                        assert_eq!(
                            fast[i].to_bits(),
                            slow[i].to_bits(),
                            "order {order}, warping {warping}, seed {seed}: corr[{i}]"
                        );
                    }
                }
            }
        }
    }
}
