//! Any rate pair, any channel layout: rubato's synchronous FFT resampler (or the fixed path for
//! 48k <-> 16k) behind one chunked, allocation-free interface.

use rubato::Resampler as _;
use rubato::audioadapter_buffers::direct::SequentialSlice;

use super::fixed::{Downsampler48To16, Upsampler16To48};
use super::{ResampleError, SampleRate, f32_to_i16, i16_to_f32};

/// Which engine a [`Resampler`] runs.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Equal rates: only channel mixing and format conversion.
    Passthrough,
    /// The fixed 48k -> 16k polyphase FIR ([`Downsampler48To16`]).
    Fixed48To16,
    /// The fixed 16k -> 48k polyphase FIR ([`Upsampler16To48`]).
    Fixed16To48,
    /// rubato's synchronous FFT resampler (`rubato::Fft`, both sides fixed).
    Fft,
}

enum Engine {
    Passthrough,
    Down(Box<Downsampler48To16>),
    Up(Box<Upsampler16To48>),
    Fft(Box<rubato::Fft<f32>>),
}

/// A streaming resampler between two rates and channel layouts, in fixed chunks.
///
/// Input is interleaved with `from_channels` channels; more than one input channel is
/// averaged to mono before resampling, and a mono result is copied to every output channel.
/// Each call takes exactly [`input_frames`](Self::input_frames) frames and writes exactly
/// [`output_frames`](Self::output_frames): 20 ms when the rates allow a whole number of
/// frames on both sides (48k, 44.1k, 32k, 22.05k, 8k, 96k all do), otherwise the shortest
/// chunk the rate ratio allows (40 ms for 11.025 kHz). Construction allocates; processing
/// never does.
pub struct Resampler {
    from: SampleRate,
    to: SampleRate,
    from_channels: usize,
    to_channels: usize,
    input_frames: usize,
    output_frames: usize,
    engine: Engine,
    mono_in: Vec<f32>,
    mono_out: Vec<f32>,
    convert_in: Vec<f32>,
    convert_out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("from_channels", &self.from_channels)
            .field("to", &self.to)
            .field("to_channels", &self.to_channels)
            .field("path", &self.path())
            .field("input_frames", &self.input_frames)
            .field("output_frames", &self.output_frames)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Most channels accepted on either side.
    pub const MAX_CHANNELS: usize = 8;

    /// A resampler from `from` Hz with `from_channels` interleaved channels to `to` Hz with
    /// `to_channels`. 48k <-> 16k runs on the fixed SIMD path, other pairs on rubato.
    ///
    /// # Errors
    /// [`ResampleError::InvalidChannels`] for 0 or more than [`Self::MAX_CHANNELS`]
    /// channels; [`ResampleError::UnsupportedRatio`] if rubato refuses the pair.
    pub fn new(
        from: SampleRate,
        from_channels: usize,
        to: SampleRate,
        to_channels: usize,
    ) -> Result<Self, ResampleError> {
        Self::build(from, from_channels, to, to_channels, true)
    }

    /// As [`new`](Self::new) but always on rubato's FFT resampler, even for 48k <-> 16k
    /// (to compare the two paths).
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn new_fft(
        from: SampleRate,
        from_channels: usize,
        to: SampleRate,
        to_channels: usize,
    ) -> Result<Self, ResampleError> {
        Self::build(from, from_channels, to, to_channels, false)
    }

    fn build(
        from: SampleRate,
        from_channels: usize,
        to: SampleRate,
        to_channels: usize,
        allow_fixed: bool,
    ) -> Result<Self, ResampleError> {
        for channels in [from_channels, to_channels] {
            if channels == 0 || channels > Self::MAX_CHANNELS {
                return Err(ResampleError::InvalidChannels { channels });
            }
        }
        let unsupported = ResampleError::UnsupportedRatio {
            from_hz: from.hz(),
            to_hz: to.hz(),
        };
        let (engine, input_frames, output_frames) = match (from.hz(), to.hz()) {
            (a, b) if a == b => {
                let frames = (a as usize).div_ceil(50);
                (Engine::Passthrough, frames, frames)
            }
            (48_000, 16_000) if allow_fixed => (Engine::Down(Box::default()), 960, 320),
            (16_000, 48_000) if allow_fixed => (Engine::Up(Box::default()), 320, 960),
            (a, b) => {
                let fft = rubato::Fft::<f32>::new(
                    a as usize,
                    b as usize,
                    (a as usize).div_ceil(50),
                    1,
                    rubato::FixedSync::Both,
                )
                .map_err(|_| unsupported)?;
                let (i, o) = (fft.input_frames_next(), fft.output_frames_next());
                (Engine::Fft(Box::new(fft)), i, o)
            }
        };
        Ok(Resampler {
            from,
            to,
            from_channels,
            to_channels,
            input_frames,
            output_frames,
            engine,
            mono_in: vec![0.0; input_frames],
            mono_out: vec![0.0; output_frames],
            convert_in: vec![0.0; input_frames * from_channels],
            convert_out: vec![0.0; output_frames * to_channels],
        })
    }

    /// The engine in use.
    pub fn path(&self) -> Path {
        match self.engine {
            Engine::Passthrough => Path::Passthrough,
            Engine::Down(_) => Path::Fixed48To16,
            Engine::Up(_) => Path::Fixed16To48,
            Engine::Fft(_) => Path::Fft,
        }
    }

    /// Input rate.
    pub fn from_rate(&self) -> SampleRate {
        self.from
    }

    /// Output rate.
    pub fn to_rate(&self) -> SampleRate {
        self.to
    }

    /// Frames (per channel) every call takes.
    pub fn input_frames(&self) -> usize {
        self.input_frames
    }

    /// Frames (per channel) every call writes.
    pub fn output_frames(&self) -> usize {
        self.output_frames
    }

    /// Input slice length per call: `input_frames() * from_channels`.
    pub fn input_len(&self) -> usize {
        self.input_frames * self.from_channels
    }

    /// Output slice length needed per call: `output_frames() * to_channels`.
    pub fn output_len(&self) -> usize {
        self.output_frames * self.to_channels
    }

    /// Delay in output frames between a sound entering and leaving.
    pub fn latency(&self) -> usize {
        match &self.engine {
            Engine::Passthrough => 0,
            Engine::Down(d) => d.latency(),
            Engine::Up(u) => u.latency(),
            Engine::Fft(f) => f.output_delay(),
        }
    }

    /// Forget all history, as if newly constructed.
    pub fn reset(&mut self) {
        match &mut self.engine {
            Engine::Passthrough => {}
            Engine::Down(d) => d.reset(),
            Engine::Up(u) => u.reset(),
            Engine::Fft(f) => f.reset(),
        }
    }

    fn check_lengths(&self, input: usize, output: usize) -> Result<(), ResampleError> {
        if input != self.input_len() {
            return Err(ResampleError::InputLength {
                expected: self.input_len(),
                actual: input,
            });
        }
        if output < self.output_len() {
            return Err(ResampleError::OutputTooSmall {
                needed: self.output_len(),
                available: output,
            });
        }
        Ok(())
    }

    /// Resample one chunk of interleaved f32 samples; returns the frames written
    /// ([`output_frames`](Self::output_frames)).
    ///
    /// # Errors
    /// [`ResampleError::InputLength`] unless `input.len() == input_len()`;
    /// [`ResampleError::OutputTooSmall`] if `output.len() < output_len()`.
    pub fn process_f32(
        &mut self,
        input: &[f32],
        output: &mut [f32],
    ) -> Result<usize, ResampleError> {
        self.check_lengths(input.len(), output.len())?;
        if self.from_channels == 1 {
            self.mono_in.copy_from_slice(input);
        } else {
            let scale = 1.0 / self.from_channels as f32;
            for (m, frame) in self
                .mono_in
                .iter_mut()
                .zip(input.chunks_exact(self.from_channels))
            {
                *m = frame.iter().sum::<f32>() * scale;
            }
        }
        let frames = self.output_frames;
        let backend = ResampleError::Backend {
            from_hz: self.from.hz(),
            to_hz: self.to.hz(),
        };
        match &mut self.engine {
            Engine::Passthrough => self.mono_out.copy_from_slice(&self.mono_in),
            Engine::Down(d) => {
                d.process(&self.mono_in, &mut self.mono_out)?;
            }
            Engine::Up(u) => {
                u.process(&self.mono_in, &mut self.mono_out)?;
            }
            Engine::Fft(f) => {
                let buf_in = SequentialSlice::new(&self.mono_in[..], 1, self.input_frames)
                    .map_err(|_| backend)?;
                let mut buf_out = SequentialSlice::new_mut(&mut self.mono_out[..], 1, frames)
                    .map_err(|_| backend)?;
                let (_, written) = f
                    .process_into_buffer(&buf_in, &mut buf_out, None)
                    .map_err(|_| backend)?;
                if written != frames {
                    return Err(backend);
                }
            }
        }
        if self.to_channels == 1 {
            output[..frames].copy_from_slice(&self.mono_out);
        } else {
            for (frame, &m) in output
                .chunks_exact_mut(self.to_channels)
                .zip(&self.mono_out)
            {
                frame.fill(m);
            }
        }
        Ok(frames)
    }

    /// As [`process_f32`](Self::process_f32) with i16 samples (full scale = 32768), rounded
    /// to nearest and saturating.
    ///
    /// # Errors
    /// As [`process_f32`](Self::process_f32).
    pub fn process_i16(
        &mut self,
        input: &[i16],
        output: &mut [i16],
    ) -> Result<usize, ResampleError> {
        self.check_lengths(input.len(), output.len())?;
        let mut convert_in = std::mem::take(&mut self.convert_in);
        let mut convert_out = std::mem::take(&mut self.convert_out);
        i16_to_f32(input, &mut convert_in);
        let result = self.process_f32(&convert_in, &mut convert_out);
        if result.is_ok() {
            f32_to_i16(&convert_out, &mut output[..self.output_len()]);
        }
        self.convert_in = convert_in;
        self.convert_out = convert_out;
        result
    }
}
