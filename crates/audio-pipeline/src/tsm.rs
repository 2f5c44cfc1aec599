//! Time-scale modification of 16 kHz PCM, the way a NetEQ-style receiver changes its delay
//! without dropping or inserting whole packets: remove or repeat one pitch period where the
//! signal repeats (WSOLA: the two periods are cross-faded, so the waveform stays
//! continuous), or cut and repeat freely where the signal is quiet.
//!
//! Everything works in place on caller-owned slices; nothing allocates.

/// Shortest pitch period searched: 2.5 ms (400 Hz).
pub(crate) const MIN_LAG: usize = 40;
/// Longest pitch period searched: 10 ms (100 Hz). Two periods fit in one 20 ms frame.
pub(crate) const MAX_LAG: usize = 160;
/// Cross-fade used when cutting or repeating quiet audio: 2.5 ms.
pub(crate) const QUIET_FADE: usize = 40;

/// Mean power of `x` (sample values squared, averaged), 0 for an empty slice.
///
/// Summed in integers: each square is at most 2^30, so any slice shorter than 2^33
/// samples sums exactly in an `i64`, and the same sum in `f64` (below 2^53 for any slice
/// this crate measures) was exact too: the result is the one a float sum gives, at a
/// fraction of the cost (the integer sum vectorises; the float one is a chain of adds).
pub(crate) fn power(x: &[i16]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let sum: i64 = x
        .iter()
        .map(|&s| i64::from(i32::from(s) * i32::from(s)))
        .sum();
    (sum as f64 / x.len() as f64) as f32
}

/// Normalised correlation of `x[..lag]` with `x[lag..2 * lag]`, every `step`-th sample.
fn period_correlation(x: &[i16], lag: usize, step: usize) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    let mut i = 0;
    while i < lag {
        let (p, q) = (f32::from(x[i]), f32::from(x[i + lag]));
        ab += p * q;
        aa += p * p;
        bb += q * q;
        i += step;
    }
    if aa <= 0.0 || bb <= 0.0 {
        return 0.0;
    }
    ab / (aa * bb).sqrt()
}

/// The best pitch period of `x` in `min_lag..=max_lag`: the lag whose two adjacent
/// periods at the start of `x` (`x[..lag]` and `x[lag..2 * lag]`) correlate best, with
/// that normalised correlation (-1..=1). Needs `x.len() >= 2 * max_lag`; returns
/// `(min_lag, 0.0)` for silence or a too-short slice.
///
/// A coarse search on every fourth lag and sample (speech below 2 kHz carries the
/// pitch) is refined at full resolution around its best lag: about 2 000 multiplies
/// instead of 36 000.
pub(crate) fn best_period(x: &[i16], min_lag: usize, max_lag: usize) -> (usize, f32) {
    let max_lag = max_lag.min(MAX_LAG);
    if min_lag == 0 || max_lag < min_lag || x.len() < 2 * max_lag {
        return (min_lag, 0.0);
    }
    const STEP: usize = 4;
    let mut coarse = [0.0f32; MAX_LAG + 2];
    let mut best = (min_lag, 0.0f32);
    let mut lag = min_lag;
    while lag <= max_lag {
        coarse[lag] = period_correlation(x, lag, STEP);
        if coarse[lag] > best.1 {
            best = (lag, coarse[lag]);
        }
        lag += STEP;
    }
    if best.1 <= 0.0 {
        return (min_lag, 0.0);
    }
    // A multiple of the true period correlates about as well and would change more
    // time than needed: prefer the shortest sub-multiple that is nearly as good.
    for k in [4, 3, 2] {
        let centre = best.0 / k;
        if centre < min_lag {
            continue;
        }
        let c = period_correlation(x, centre, STEP);
        if c >= best.1 - 0.05 {
            best = (centre, c);
            break;
        }
    }
    // Refine at full resolution around the coarse lag.
    let lo = best.0.saturating_sub(STEP).max(min_lag);
    let hi = (best.0 + STEP).min(max_lag);
    let mut refined = (best.0, f32::MIN);
    for lag in lo..=hi {
        let c = period_correlation(x, lag, 1);
        if c > refined.1 {
            refined = (lag, c);
        }
    }
    refined
}

fn fade(out: f32, inp: f32, n: usize, len: usize) -> i16 {
    let w = (n as f32 + 0.5) / len as f32;
    (out * (1.0 - w) + inp * w).round().clamp(-32768.0, 32767.0) as i16
}

/// Removes `lag` samples from `buf[..len]` at `at`: `buf[at..at + fade]` fades from
/// itself into `buf[at + lag..]`, and the audio after the fade continues from
/// `buf[at + lag + fade..]`. With `fade == lag` this removes one period (accelerate).
/// Returns the new length; returns `len` unchanged if the region does not fit.
pub(crate) fn cut(buf: &mut [i16], len: usize, at: usize, lag: usize, fade_len: usize) -> usize {
    if lag == 0 || fade_len == 0 || at + lag + fade_len > len || len > buf.len() {
        return len;
    }
    for n in 0..fade_len {
        let out = f32::from(buf[at + n]);
        let inp = f32::from(buf[at + lag + n]);
        buf[at + n] = fade(out, inp, n, fade_len);
    }
    buf.copy_within(at + lag + fade_len..len, at + fade_len);
    len - lag
}

/// Inserts `lag` samples into `buf[..len]` at `at`: the audio plays up to `at + lag`,
/// then fades from `buf[at + lag..]` back into `buf[at..]` over `fade` samples and goes
/// on from `buf[at + fade..]`, so `buf[at..at + lag]` is heard twice, joined without a
/// jump. With `fade == lag` this repeats one period (preemptive expand). Needs room for
/// `lag` more samples in `buf`; returns the new length, or `len` if it does not fit.
pub(crate) fn repeat(buf: &mut [i16], len: usize, at: usize, lag: usize, fade_len: usize) -> usize {
    if lag == 0 || fade_len == 0 || fade_len > lag || at + lag + fade_len > len {
        return len;
    }
    if len + lag > buf.len() {
        return len;
    }
    // New layout: [..at + lag] unchanged, [at + lag .. at + lag + fade] the fade,
    // [at + lag + fade ..] = old [at + fade ..].
    buf.copy_within(at + fade_len..len, at + lag + fade_len);
    // The copy left `buf[at..at + lag + fade]` as it was: the fade reads the old
    // `buf[at + lag + n]` (fading out) and `buf[at + n]` (fading in) in place.
    for n in 0..fade_len {
        let out = f32::from(buf[at + lag + n]);
        let inp = f32::from(buf[at + n]);
        buf[at + lag + n] = fade(out, inp, n, fade_len);
    }
    len + lag
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voiced(len: usize, period: usize) -> Vec<i16> {
        // A pulse-train-like periodic signal with a few harmonics, like voiced speech.
        (0..len)
            .map(|i| {
                let ph = 2.0 * std::f32::consts::PI * (i % period) as f32 / period as f32;
                (6000.0 * ph.sin() + 3000.0 * (2.0 * ph).sin() + 1500.0 * (3.0 * ph).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn power_is_the_float_sum_exactly() {
        let float_power = |x: &[i16]| -> f32 {
            let sum: f64 = x.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            (sum / x.len() as f64) as f32
        };
        let mut r = 0x9E37_79B9_7F4A_7C15u64;
        for len in [1usize, 2, 7, 40, 319, 320, 321, 640, 1920, 2400, 4000] {
            let mut x: Vec<i16> = (0..len)
                .map(|_| {
                    r ^= r << 13;
                    r ^= r >> 7;
                    r ^= r << 17;
                    (r >> 48) as i16
                })
                .collect();
            assert_eq!(power(&x).to_bits(), float_power(&x).to_bits(), "{len}");
            x.fill(i16::MIN);
            assert_eq!(
                power(&x).to_bits(),
                float_power(&x).to_bits(),
                "{len} full scale"
            );
            x.iter_mut().for_each(|s| *s = (*s >> 12) | 1);
            assert_eq!(
                power(&x).to_bits(),
                float_power(&x).to_bits(),
                "{len} quiet"
            );
        }
        assert_eq!(power(&[]), 0.0);
    }

    fn max_jump(x: &[i16]) -> i32 {
        x.windows(2)
            .map(|w| (i32::from(w[1]) - i32::from(w[0])).abs())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn finds_the_period_of_a_voiced_signal() {
        for period in [50, 80, 125, 160] {
            let x = voiced(640, period);
            let (lag, corr) = best_period(&x, MIN_LAG, MAX_LAG);
            assert_eq!(lag, period, "period {period}");
            assert!(corr > 0.99, "corr {corr}");
        }
        let silence = vec![0i16; 640];
        assert_eq!(best_period(&silence, MIN_LAG, MAX_LAG).1, 0.0);
    }

    #[test]
    fn cutting_one_period_keeps_the_waveform_continuous() {
        let period = 80;
        let mut x = voiced(960, period);
        let natural = max_jump(&x);
        let len = cut(&mut x, 960, 100, period, period);
        assert_eq!(len, 880);
        assert!(max_jump(&x[..len]) <= natural + 50, "a click at the cut");
        // Still the same periodic signal, one period shorter.
        let reference = voiced(960, period);
        for i in 300..len {
            assert!((i32::from(x[i]) - i32::from(reference[i + period])).abs() <= 1);
        }
    }

    #[test]
    fn repeating_one_period_keeps_the_waveform_continuous() {
        let period = 100;
        let mut buf = vec![0i16; 1200];
        let src = voiced(900, period);
        buf[..900].copy_from_slice(&src);
        let natural = max_jump(&src);
        let len = repeat(&mut buf, 900, 200, period, period);
        assert_eq!(len, 1000);
        assert!(
            max_jump(&buf[..len]) <= natural + 50,
            "a click at the repeat"
        );
        for i in 0..200 {
            assert_eq!(buf[i], src[i]);
        }
        for i in 500..len {
            assert!((i32::from(buf[i]) - i32::from(src[i - period])).abs() <= 1);
        }
    }

    #[test]
    fn regions_that_do_not_fit_change_nothing() {
        let mut x = voiced(300, 80);
        let before = x.clone();
        assert_eq!(cut(&mut x, 300, 200, 80, 80), 300);
        assert_eq!(repeat(&mut x, 300, 10, 80, 80), 300, "no room to grow");
        assert_eq!(x, before);
    }

    #[test]
    fn quiet_audio_can_be_cut_by_more_than_the_fade() {
        let mut x = vec![10i16; 640];
        let len = cut(&mut x, 640, 0, 300, QUIET_FADE);
        assert_eq!(len, 340);
        assert!(x[..len].iter().all(|&s| s == 10));
    }
}
