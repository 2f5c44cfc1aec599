//! Measuring what a resampler does to sines: the helpers the quality tests and the bench use,
//! public so that any engine (this crate's, rubato's, libsoxr's) is scored the same way.
//! Offline tools: they allocate and are not for the audio thread.

/// A least-squares fit of `a cos(wt) + b sin(wt) + dc` at a known frequency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SineFit {
    /// Peak amplitude of the fitted sine.
    pub amplitude: f64,
    /// RMS of what the fit does not explain (noise, distortion, aliases, images).
    pub residual_rms: f64,
}

impl SineFit {
    /// Signal to noise-and-distortion ratio in dB: fitted sine power over residual power.
    /// Delay and gain do not count against it, any other change does.
    pub fn sinad_db(&self) -> f64 {
        let signal_rms = self.amplitude / std::f64::consts::SQRT_2;
        20.0 * (signal_rms / self.residual_rms.max(1e-300)).log10()
    }
}

/// `len` samples of `amplitude * sin(2 pi hz t)` at `rate` Hz. Allocates.
pub fn sine(hz: f64, rate: f64, amplitude: f64, len: usize) -> Vec<f32> {
    (0..len)
        .map(|n| (amplitude * (2.0 * std::f64::consts::PI * hz * n as f64 / rate).sin()) as f32)
        .collect()
}

/// RMS of a signal (0 for an empty one).
pub fn rms(signal: &[f32]) -> f64 {
    if signal.is_empty() {
        return 0.0;
    }
    let sum: f64 = signal.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    (sum / signal.len() as f64).sqrt()
}

/// Fit a sine of frequency `hz` (plus a DC offset) to `signal` sampled at `rate` Hz.
pub fn fit_sine(signal: &[f32], hz: f64, rate: f64) -> SineFit {
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    // Normal equations of the 3-parameter fit, basis (cos, sin, 1).
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for (n, &y) in signal.iter().enumerate() {
        let phase = w * n as f64;
        let basis = [phase.cos(), phase.sin(), 1.0];
        for i in 0..3 {
            v[i] += basis[i] * f64::from(y);
            for j in 0..3 {
                m[i][j] += basis[i] * basis[j];
            }
        }
    }
    let coef = solve3(m, v).unwrap_or([0.0; 3]);
    let mut residual = 0.0;
    for (n, &y) in signal.iter().enumerate() {
        let phase = w * n as f64;
        let model = coef[0] * phase.cos() + coef[1] * phase.sin() + coef[2];
        residual += (f64::from(y) - model).powi(2);
    }
    let len = signal.len().max(1) as f64;
    SineFit {
        amplitude: coef[0].hypot(coef[1]),
        residual_rms: (residual / len).sqrt(),
    }
}

/// Gaussian elimination with partial pivoting; `None` if singular.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-300 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..3 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (x, p) in m[row].iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    Some(x)
}

/// Gain in dB of a fitted output sine relative to the input amplitude.
pub fn gain_db(fit: &SineFit, input_amplitude: f64) -> f64 {
    20.0 * (fit.amplitude / input_amplitude).log10()
}

/// Attenuation in dB of a signal of RMS `output_rms` relative to an input sine of peak
/// `input_amplitude` (positive: quieter).
pub fn attenuation_db(input_amplitude: f64, output_rms: f64) -> f64 {
    20.0 * ((input_amplitude / std::f64::consts::SQRT_2) / output_rms.max(1e-300)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_amplitude_and_noise() {
        let mut s = sine(1_000.0, 16_000.0, 0.5, 16_000);
        assert!((fit_sine(&s, 1_000.0, 16_000.0).amplitude - 0.5).abs() < 1e-6);
        assert!(fit_sine(&s, 1_000.0, 16_000.0).sinad_db() > 130.0);
        // A second tone at -40 dB relative shows up as ~40 dB SINAD.
        let other = sine(3_000.0, 16_000.0, 0.005, 16_000);
        s.iter_mut().zip(&other).for_each(|(a, b)| *a += b);
        let db = fit_sine(&s, 1_000.0, 16_000.0).sinad_db();
        assert!((db - 40.0).abs() < 0.1, "{db}");
        assert!((rms(&other) - 0.005 / 2f64.sqrt()).abs() < 1e-6);
        assert!((attenuation_db(0.5, rms(&other)) - 40.0).abs() < 0.01);
    }
}
