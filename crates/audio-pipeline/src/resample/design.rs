//! Kaiser-windowed sinc low-pass design, computed in f64 once at construction.

/// A linear-phase low-pass prototype at the high rate.
pub(crate) struct LowPass {
    /// The taps, odd in number, symmetric, summing to 1 (unity gain at DC).
    pub taps: Vec<f64>,
}

impl LowPass {
    /// Design for `rate` Hz with the passband ending at `pass_hz`, the stopband starting at
    /// `stop_hz` and `atten_db` of stopband attenuation (Kaiser's formulas).
    pub fn kaiser(rate: f64, pass_hz: f64, stop_hz: f64, atten_db: f64) -> LowPass {
        let transition = 2.0 * std::f64::consts::PI * (stop_hz - pass_hz) / rate;
        let order = ((atten_db - 7.95) / (2.285 * transition)).ceil() as usize;
        // An even order gives an odd tap count: a whole-sample group delay.
        let order = order + order % 2;
        let beta = if atten_db > 50.0 {
            0.1102 * (atten_db - 8.7)
        } else if atten_db >= 21.0 {
            0.5842 * (atten_db - 21.0).powf(0.4) + 0.07886 * (atten_db - 21.0)
        } else {
            0.0
        };
        let cutoff = 0.5 * (pass_hz + stop_hz) / rate;
        let half = order as f64 / 2.0;
        let i0_beta = bessel_i0(beta);
        let mut taps: Vec<f64> = (0..=order)
            .map(|k| {
                let t = k as f64 - half;
                let sinc = if t == 0.0 {
                    2.0 * cutoff
                } else {
                    (2.0 * std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
                };
                let r = t / half;
                let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0_beta;
                sinc * window
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        taps.iter_mut().for_each(|t| *t /= sum);
        LowPass { taps }
    }

    /// Group delay in samples of the design rate.
    pub fn delay(&self) -> usize {
        (self.taps.len() - 1) / 2
    }
}

/// Modified Bessel function of the first kind, order 0, by its power series.
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..200 {
        term *= (half / k as f64) * (half / k as f64);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_db(taps: &[f64], rate: f64, hz: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * hz / rate;
        let (mut re, mut im) = (0.0, 0.0);
        for (k, t) in taps.iter().enumerate() {
            re += t * (w * k as f64).cos();
            im -= t * (w * k as f64).sin();
        }
        20.0 * (re * re + im * im).sqrt().log10()
    }

    #[test]
    fn kaiser_meets_its_own_spec() {
        let lp = LowPass::kaiser(48_000.0, 7_000.0, 8_500.0, 120.0);
        assert_eq!(lp.taps.len() % 2, 1);
        for hz in (0..=7_000).step_by(100) {
            let db = response_db(&lp.taps, 48_000.0, hz as f64);
            assert!(db.abs() < 0.001, "passband {hz} Hz: {db} dB");
        }
        for hz in (8_500..=24_000).step_by(50) {
            let db = response_db(&lp.taps, 48_000.0, hz as f64);
            assert!(db < -118.0, "stopband {hz} Hz: {db} dB");
        }
    }

    #[test]
    fn bessel_i0_known_values() {
        assert!((bessel_i0(0.0) - 1.0).abs() < 1e-15);
        assert!((bessel_i0(1.0) - 1.266_065_877_752_008_4).abs() < 1e-12);
        assert!((bessel_i0(10.0) - 2_815.716_628_466_254).abs() < 1e-8);
    }
}
