//! Resampling any rate to and from 16 kHz.
//!
//! Two paths, both streaming (state carried across calls) and allocation-free after
//! construction:
//!
//! - the fixed 48 kHz <-> 16 kHz path ([`Downsampler48To16`], [`Upsampler16To48`]): a
//!   polyphase equiripple FIR designed once per process and run on a SIMD [`Kernel`]
//!   detected once at construction (AVX-512F, AVX2+FMA, SSE2, or the scalar twin every SIMD kernel is tested
//!   against);
//! - any other pair of rates through rubato's synchronous FFT resampler, wrapped with channel
//!   down/up-mixing and i16 conversion in [`Resampler`], which also routes 48k <-> 16k to the
//!   fixed path.
//!
//! Sizing follows rubato's real-time contract: ask [`Resampler::input_frames`] and
//! [`Resampler::output_frames`] once, preallocate, then call
//! [`Resampler::process_f32`]/[`Resampler::process_i16`] with caller-owned buffers.
//! Quality is measured by the crate's tests with the helpers of [`analysis`].
//!
//! ```
//! use audio_pipeline::resample::{Resampler, SampleRate};
//! // A 44.1 kHz stereo device to Pcm16K: 882 stereo frames in, 320 mono samples out per 20 ms.
//! let mut r = Resampler::new(SampleRate::HZ_44100, 2, SampleRate::HZ_16000, 1)?;
//! assert_eq!((r.input_frames(), r.output_frames()), (882, 320));
//! let input = vec![0i16; r.input_frames() * 2];
//! let mut output = [0i16; 320];
//! assert_eq!(r.process_i16(&input, &mut output)?, 320);
//! # Ok::<(), audio_pipeline::resample::ResampleError>(())
//! ```

pub mod analysis;
mod design;
mod fixed;
mod general;
mod kernel;

pub use fixed::{
    Downsampler48To16, FIXED_PASSBAND_HZ, FIXED_STOPBAND_DB, FIXED_STOPBAND_HZ, Upsampler16To48,
};
pub use general::{Path, Resampler};
pub use kernel::Kernel;

/// A sample rate in Hz, `1..=768_000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SampleRate(u32);

impl SampleRate {
    /// 8 kHz (narrowband telephony).
    pub const HZ_8000: SampleRate = SampleRate(8_000);
    /// 16 kHz, the rate of `Pcm16K` frames.
    pub const HZ_16000: SampleRate = SampleRate(16_000);
    /// 22.05 kHz.
    pub const HZ_22050: SampleRate = SampleRate(22_050);
    /// 32 kHz.
    pub const HZ_32000: SampleRate = SampleRate(32_000);
    /// 44.1 kHz (CD, many devices, `Pcm44KStereo`).
    pub const HZ_44100: SampleRate = SampleRate(44_100);
    /// 48 kHz (most devices, Opus' native rate).
    pub const HZ_48000: SampleRate = SampleRate(48_000);
    /// 96 kHz.
    pub const HZ_96000: SampleRate = SampleRate(96_000);

    /// Highest rate accepted.
    pub const MAX_HZ: u32 = 768_000;

    /// A rate in Hz.
    ///
    /// # Errors
    /// [`ResampleError::InvalidSampleRate`] for 0 or above [`SampleRate::MAX_HZ`].
    pub fn new(hz: u32) -> Result<SampleRate, ResampleError> {
        if hz == 0 || hz > Self::MAX_HZ {
            Err(ResampleError::InvalidSampleRate { hz })
        } else {
            Ok(SampleRate(hz))
        }
    }

    /// The rate in Hz.
    pub fn hz(self) -> u32 {
        self.0
    }

    /// Frames in 20 ms at this rate, if that is a whole number.
    pub fn frames_per_20ms(self) -> Option<usize> {
        self.0.is_multiple_of(50).then_some(self.0 as usize / 50)
    }
}

impl std::fmt::Display for SampleRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} Hz", self.0)
    }
}

/// What went wrong setting up or running a resampler.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// A sample rate of 0 or above [`SampleRate::MAX_HZ`].
    #[error("sample rate {hz} Hz is not supported (1..={max} Hz)", max = SampleRate::MAX_HZ)]
    InvalidSampleRate {
        /// The rate asked for.
        hz: u32,
    },
    /// A channel count of 0 or above [`Resampler::MAX_CHANNELS`].
    #[error("{channels} channels are not supported (1..={max})", max = Resampler::MAX_CHANNELS)]
    InvalidChannels {
        /// The count asked for.
        channels: usize,
    },
    /// The backend could not be built for this pair of rates.
    #[error("no resampler for {from_hz} Hz -> {to_hz} Hz")]
    UnsupportedRatio {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
    },
    /// The input slice is not exactly one chunk.
    #[error("input holds {actual} samples, this resampler takes exactly {expected} per call")]
    InputLength {
        /// Samples (frames x channels) expected.
        expected: usize,
        /// Samples given.
        actual: usize,
    },
    /// The output slice is too short.
    #[error("output holds {available} samples, {needed} are needed")]
    OutputTooSmall {
        /// Samples needed.
        needed: usize,
        /// Samples available.
        available: usize,
    },
    /// The kernel asked for cannot run on this CPU.
    #[error("the {kernel} kernel is not supported by this CPU")]
    KernelUnavailable {
        /// The kernel asked for.
        kernel: Kernel,
    },
    /// rubato rejected a chunk this wrapper had sized for it (a bug, reported rather than
    /// panicking on the audio thread).
    #[error("the FFT resampler rejected a chunk ({from_hz} Hz -> {to_hz} Hz)")]
    Backend {
        /// Input rate.
        from_hz: u32,
        /// Output rate.
        to_hz: u32,
    },
}

/// i16 to f32 in `[-1, 1)`: `x / 32768`.
pub(crate) fn i16_to_f32(input: &[i16], output: &mut [f32]) {
    for (o, &i) in output.iter_mut().zip(input) {
        *o = f32::from(i) * (1.0 / 32_768.0);
    }
}

/// f32 to i16, rounded to nearest (ties away from zero) and saturating (no wrap-around on
/// overshoot).
pub(crate) fn f32_to_i16(input: &[f32], output: &mut [i16]) {
    for (o, &i) in output.iter_mut().zip(input) {
        *o = quantise(i * 32_768.0);
    }
}

/// `x.round() as i16` in a form the compiler vectorises on baseline x86-64 (`round` and
/// `trunc` are libm calls there, one per sample, which took a third of a 20 ms i16 frame).
/// Adding the largest float below 0.5 is exact rounding: a sum that lands halfway between two
/// floats goes to the even one, which is the one above. After the clamp, `as i32` truncates
/// like `trunc`, and NaN still maps to 0.
#[inline]
fn quantise(x: f32) -> i16 {
    const JUST_BELOW_HALF: f32 = 0.499_999_97;
    (x + JUST_BELOW_HALF.copysign(x)).clamp(-32_768.0, 32_767.0) as i32 as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rate_bounds() {
        assert_eq!(
            SampleRate::new(0),
            Err(ResampleError::InvalidSampleRate { hz: 0 })
        );
        assert!(SampleRate::new(768_001).is_err());
        assert_eq!(SampleRate::new(44_100).map(SampleRate::hz), Ok(44_100));
        assert_eq!(SampleRate::HZ_44100.frames_per_20ms(), Some(882));
        assert_eq!(SampleRate::new(11_025).unwrap().frames_per_20ms(), None);
    }

    /// The vectorisable conversion is `x.round() as i16` on every half-integer of the i16
    /// range and the floats around them, on a dense sweep in between, and at the extremes.
    #[test]
    fn quantise_is_round_then_saturate() {
        assert_eq!(0.499_999_97f32, f32::from_bits(0.5f32.to_bits() - 1));
        let check = |x: f32| assert_eq!(quantise(x), x.round() as i16, "{x:e}");
        for n in -40_000i32..40_000 {
            let half = n as f32 + 0.5;
            for d in -3i32..=3 {
                check(f32::from_bits(half.to_bits().wrapping_add_signed(d)));
            }
            check(n as f32);
        }
        let mut s = 12_345u32;
        for _ in 0..1_000_000 {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            check((s as f32 / u32::MAX as f32 - 0.5) * 80_000.0);
            check(f32::from_bits(s & 0xc7ff_ffff));
        }
        for x in [
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            8_388_607.5,
            -8_388_608.0,
            1e20,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ] {
            check(x);
        }
    }

    #[test]
    fn i16_conversion_saturates_and_rounds() {
        let mut out = [0i16; 6];
        f32_to_i16(
            &[1.5, -1.5, 0.5 / 32_768.0, -1.0, f32::NAN, 0.999_99],
            &mut out,
        );
        assert_eq!(out, [32_767, -32_768, 1, -32_768, 0, 32_767]);
        let mut back = [0f32; 2];
        i16_to_f32(&[-32_768, 16_384], &mut back);
        assert_eq!(back, [-1.0, 0.5]);
    }
}
