//! The fixed 48 kHz <-> 16 kHz path: one polyphase FIR per direction from one prototype
//! designed once per process, run by a [`Kernel`] chosen once at construction.
//!
//! Down by 3: `y[n] = sum_k h[k] x[3n + 2 - k]`. Splitting `k = 3q + r` turns it into three
//! ordinary FIRs on the de-interleaved input phases `u_r[i] = x[3i + 2 - r]`, so the inner loop
//! reads contiguous memory and computes only the samples that are kept. All three branches
//! feed the same output, so the prototype's symmetry `h[k] = h[len - 1 - k]` pairs taps across
//! them: one multiply per mirrored pair ([`SymmetricTaps`]).
//! Up by 3: `z[3n + s] = 3 sum_q h[3q + s] x[n - q]`, three FIRs on the same 16 kHz input whose
//! outputs are interleaved.

use std::sync::OnceLock;

use super::design::LowPass;
use super::kernel::{Kernel, SymmetricTaps, Taps, fir_accumulate, fir_accumulate_symmetric};
use super::{ResampleError, f32_to_i16, i16_to_f32};

/// Passband edge of the fixed path's prototype filter.
pub const FIXED_PASSBAND_HZ: u32 = 7_000;
/// Stopband edge of the fixed path's prototype filter.
pub const FIXED_STOPBAND_HZ: u32 = 8_500;
/// Designed attenuation of the fixed path's stopband, in dB (the f64 design; f32 arithmetic
/// costs about 2 dB of it, see the quality tests).
pub const FIXED_STOPBAND_DB: u32 = 138;

/// Prototype length: the shortest equiripple design that reaches [`FIXED_STOPBAND_DB`] with
/// the passband ripple below 0.002 dB peak to peak.
const PROTOTYPE_TAPS: usize = 213;
/// Stopband weight of the design: passband ripple / stopband ripple.
const PROTOTYPE_STOP_WEIGHT: f64 = 1_000.0;

/// Outputs (down) or inputs (up) handled per internal block: one 20 ms frame at 16 kHz.
const BLOCK: usize = 320;

/// The prototype taps split into the three polyphase branches, each reversed so that the
/// kernel correlates forwards: `branch(r)[j] = gain * h[3 * (len - 1 - j) + r - lead]`.
struct Branches {
    coefs: [Vec<f32>; 3],
    /// Taps per branch.
    len: usize,
}

impl Branches {
    fn new(lp: &LowPass, lead: usize, gain: f64) -> Branches {
        let len = (lp.taps.len() + 2).div_ceil(3);
        let padded = |k: usize| {
            k.checked_sub(lead)
                .and_then(|k| lp.taps.get(k))
                .copied()
                .unwrap_or(0.0)
        };
        let coefs = std::array::from_fn(|r| {
            (0..len)
                .map(|j| (gain * padded(3 * (len - 1 - j) + r)) as f32)
                .collect()
        });
        Branches { coefs, len }
    }
}

/// The prototype, designed once per process: the exchange algorithm takes milliseconds and
/// its result never changes.
fn prototype() -> &'static LowPass {
    static PROTOTYPE: OnceLock<LowPass> = OnceLock::new();
    PROTOTYPE.get_or_init(|| {
        LowPass::equiripple(
            PROTOTYPE_TAPS,
            48_000.0,
            f64::from(FIXED_PASSBAND_HZ),
            f64::from(FIXED_STOPBAND_HZ),
            PROTOTYPE_STOP_WEIGHT,
        )
    })
}

fn checked_kernel(kernel: Kernel) -> Result<Kernel, ResampleError> {
    if kernel.is_available() {
        Ok(kernel)
    } else {
        Err(ResampleError::KernelUnavailable { kernel })
    }
}

/// 48 kHz -> 16 kHz, mono, streaming: the fixed fast path.
///
/// Any input length is accepted; up to two samples that do not complete a group of three are
/// carried to the next call. After construction nothing allocates.
///
/// ```
/// use audio_pipeline::resample::Downsampler48To16;
/// let mut down = Downsampler48To16::new();
/// let input = [0.0f32; 960];
/// let mut output = [0.0f32; 320];
/// assert_eq!(down.process(&input, &mut output)?, 320);
/// # Ok::<(), audio_pipeline::resample::ResampleError>(())
/// ```
pub struct Downsampler48To16 {
    kernel: Kernel,
    /// Taps per branch.
    branch_len: usize,
    /// All three branches in one symmetric tap list over `phases`.
    taps: SymmetricTaps,
    /// The de-interleaved input phases one after the other, each `branch_len - 1` samples of
    /// history then a block, so that one kernel call covers all three branches.
    phases: Vec<f32>,
    carry: [f32; 2],
    carry_len: usize,
    latency: usize,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
}

impl Default for Downsampler48To16 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Downsampler48To16 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downsampler48To16")
            .field("kernel", &self.kernel)
            .field("taps", &(3 * self.branch_len))
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl Downsampler48To16 {
    /// A downsampler on the fastest kernel of this CPU ([`Kernel::detect`]).
    pub fn new() -> Self {
        Self::build(Kernel::detect())
    }

    /// A downsampler on a given kernel (to compare kernels, or to pin the scalar one).
    ///
    /// # Errors
    /// [`ResampleError::KernelUnavailable`] if this CPU cannot run `kernel`.
    pub fn with_kernel(kernel: Kernel) -> Result<Self, ResampleError> {
        Ok(Self::build(checked_kernel(kernel)?))
    }

    fn build(kernel: Kernel) -> Self {
        let lp = prototype();
        // Output n stands for input time 3n + 2 - (lead + delay); pad so that is a whole
        // number of output samples.
        let lead = (3 - (lp.delay() + 3 - 2) % 3) % 3;
        let latency = (lp.delay() + lead - 2) / 3;
        let branch_len = (lp.taps.len() + lead).div_ceil(3);
        let history = branch_len - 1;
        let stride = history + BLOCK;
        // Where prototype tap k lands: branch (k + lead) % 3, reversed within the branch (the
        // layout `Branches` describes for the upsampler).
        let offset = |k: usize| {
            let p = k + lead;
            (p % 3) * stride + branch_len - 1 - p / 3
        };
        let last = lp.taps.len() - 1;
        let centre = lp.delay();
        // The prototype is symmetric (h[k] = h[last - k]): one coefficient per mirrored pair.
        let taps = SymmetricTaps::new(
            kernel,
            (0..centre)
                .map(|k| (offset(k), offset(last - k), lp.taps[k] as f32))
                .chain(std::iter::once((
                    offset(centre),
                    offset(centre),
                    (lp.taps[centre] / 2.0) as f32,
                ))),
        );
        Downsampler48To16 {
            kernel,
            phases: vec![0.0; 3 * stride],
            branch_len,
            taps,
            carry: [0.0; 2],
            carry_len: 0,
            latency,
            scratch_in: vec![0.0; 3 * BLOCK],
            scratch_out: vec![0.0; BLOCK],
        }
    }

    /// The kernel this instance runs on.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Delay of the filter in output (16 kHz) samples: a tone entering at input sample `3m`
    /// appears at output sample `m + latency()`. Currently 35 (2.2 ms, 213 taps).
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Number of output samples the next [`process`](Self::process) call with `input_len`
    /// samples will write (it depends on the 0-2 samples carried from the previous call).
    pub fn output_len(&self, input_len: usize) -> usize {
        (self.carry_len + input_len) / 3
    }

    /// An output length that is enough for `input_len` input samples whatever was carried.
    pub fn max_output_len(input_len: usize) -> usize {
        input_len.div_ceil(3)
    }

    /// Forget all history, as if newly constructed.
    pub fn reset(&mut self) {
        self.phases.fill(0.0);
        self.carry_len = 0;
    }

    /// Resample `input` (48 kHz) into the start of `output` (16 kHz) and return how many
    /// output samples were written.
    ///
    /// # Errors
    /// [`ResampleError::OutputTooSmall`] if `output` is shorter than
    /// [`output_len`](Self::output_len); nothing is consumed then.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<usize, ResampleError> {
        let produced = self.output_len(input.len());
        if output.len() < produced {
            return Err(ResampleError::OutputTooSmall {
                needed: produced,
                available: output.len(),
            });
        }
        let history = self.branch_len - 1;
        let stride = history + BLOCK;
        let carry_len = self.carry_len;
        let carry = self.carry;
        // Index into the carried samples followed by `input`.
        let sample = |g: usize| {
            if g < carry_len {
                carry[g]
            } else {
                input[g - carry_len]
            }
        };
        // Triple t is (carry ++ input)[3t..3t + 3]: the first one may start in the carry, all
        // others are whole triples of `input` from `skip` on.
        let head = usize::from(carry_len > 0 && produced > 0);
        let skip = if head == 1 { 3 - carry_len } else { 0 };
        let mut triples = input[skip.min(input.len())..].chunks_exact(3);
        let mut written = 0;
        while written < produced {
            let block = (produced - written).min(BLOCK);
            let (u0, rest) = self.phases.split_at_mut(stride);
            let (u1, u2) = rest.split_at_mut(stride);
            let mut from = history;
            if written == 0 && head == 1 {
                u2[history] = sample(0);
                u1[history] = sample(1);
                u0[history] = sample(2);
                from += 1;
            }
            let end = history + block;
            for (((a, b), c), t) in u2[from..end]
                .iter_mut()
                .zip(&mut u1[from..end])
                .zip(&mut u0[from..end])
                .zip(&mut triples)
            {
                *a = t[0];
                *b = t[1];
                *c = t[2];
            }
            let out = &mut output[written..written + block];
            out.fill(0.0);
            fir_accumulate_symmetric(self.kernel, &self.phases, &self.taps, out);
            for phase in self.phases.chunks_exact_mut(stride) {
                phase.copy_within(block..block + history, 0);
            }
            written += block;
        }
        // What is left is shorter than a triple: keep it for the next call.
        let total = carry_len + input.len();
        let mut rest = [0.0f32; 2];
        for (slot, g) in rest.iter_mut().zip(3 * produced..total) {
            *slot = sample(g);
        }
        self.carry = rest;
        self.carry_len = total - 3 * produced;
        Ok(produced)
    }

    /// Resample one 20 ms frame of i16 samples: 960 at 48 kHz in, 320 at 16 kHz out
    /// (saturating, rounded to nearest). Any other lengths work too, as in
    /// [`process`](Self::process); i16 and f32 calls may be mixed on one stream.
    ///
    /// # Errors
    /// As [`process`](Self::process).
    pub fn process_i16(
        &mut self,
        input: &[i16],
        output: &mut [i16],
    ) -> Result<usize, ResampleError> {
        let needed = self.output_len(input.len());
        if output.len() < needed {
            return Err(ResampleError::OutputTooSmall {
                needed,
                available: output.len(),
            });
        }
        let mut scratch_in = std::mem::take(&mut self.scratch_in);
        let mut scratch_out = std::mem::take(&mut self.scratch_out);
        let mut written = 0;
        let mut result = Ok(());
        for chunk in input.chunks(3 * BLOCK) {
            let produced = self.output_len(chunk.len());
            i16_to_f32(chunk, &mut scratch_in[..chunk.len()]);
            if let Err(e) = self.process(&scratch_in[..chunk.len()], &mut scratch_out[..produced]) {
                result = Err(e);
                break;
            }
            f32_to_i16(
                &scratch_out[..produced],
                &mut output[written..written + produced],
            );
            written += produced;
        }
        self.scratch_in = scratch_in;
        self.scratch_out = scratch_out;
        result.map(|()| written)
    }
}

/// 16 kHz -> 48 kHz, mono, streaming: the fixed fast path, the mirror of
/// [`Downsampler48To16`] with the same prototype filter. Writes exactly three outputs per
/// input. After construction nothing allocates.
pub struct Upsampler16To48 {
    kernel: Kernel,
    /// Taps per branch.
    branch_len: usize,
    /// One tap list per output phase.
    taps: [Taps; 3],
    /// `branches.len - 1` samples of history then a block.
    history: Vec<f32>,
    /// One output phase per branch, interleaved into the caller's buffer afterwards.
    phase_out: [Vec<f32>; 3],
    latency: usize,
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
}

impl Default for Upsampler16To48 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Upsampler16To48 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upsampler16To48")
            .field("kernel", &self.kernel)
            .field("taps", &(3 * self.branch_len))
            .field("latency", &self.latency)
            .finish_non_exhaustive()
    }
}

impl Upsampler16To48 {
    /// An upsampler on the fastest kernel of this CPU ([`Kernel::detect`]).
    pub fn new() -> Self {
        Self::build(Kernel::detect())
    }

    /// An upsampler on a given kernel.
    ///
    /// # Errors
    /// [`ResampleError::KernelUnavailable`] if this CPU cannot run `kernel`.
    pub fn with_kernel(kernel: Kernel) -> Result<Self, ResampleError> {
        Ok(Self::build(checked_kernel(kernel)?))
    }

    fn build(kernel: Kernel) -> Self {
        let lp = prototype();
        // Pad so that the delay is a whole number of input (16 kHz) samples.
        let lead = (3 - lp.delay() % 3) % 3;
        let latency = lp.delay() + lead;
        let branches = Branches::new(lp, lead, 3.0);
        let history = branches.len - 1;
        Upsampler16To48 {
            kernel,
            history: vec![0.0; history + BLOCK],
            branch_len: branches.len,
            taps: std::array::from_fn(|s| {
                Taps::new(kernel, branches.coefs[s].iter().copied().enumerate())
            }),
            phase_out: std::array::from_fn(|_| vec![0.0; BLOCK]),
            latency,
            scratch_in: vec![0.0; BLOCK],
            scratch_out: vec![0.0; 3 * BLOCK],
        }
    }

    /// The kernel this instance runs on.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Delay of the filter in output (48 kHz) samples: a tone entering at input sample `m`
    /// appears at output sample `3m + latency()`. Currently 108 (2.25 ms); always a multiple
    /// of 3, so a 16k -> 48k -> 16k round trip is delayed by a whole number of samples.
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Number of output samples for `input_len` input samples: `3 * input_len`.
    pub fn output_len(input_len: usize) -> usize {
        3 * input_len
    }

    /// Forget all history, as if newly constructed.
    pub fn reset(&mut self) {
        self.history.fill(0.0);
    }

    /// Resample `input` (16 kHz) into the start of `output` (48 kHz) and return how many
    /// output samples were written (`3 * input.len()`).
    ///
    /// # Errors
    /// [`ResampleError::OutputTooSmall`] if `output` is shorter than `3 * input.len()`;
    /// nothing is consumed then.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<usize, ResampleError> {
        let produced = 3 * input.len();
        if output.len() < produced {
            return Err(ResampleError::OutputTooSmall {
                needed: produced,
                available: output.len(),
            });
        }
        let hist = self.branch_len - 1;
        for (block_in, block_out) in input.chunks(BLOCK).zip(output.chunks_mut(3 * BLOCK)) {
            let n = block_in.len();
            self.history[hist..hist + n].copy_from_slice(block_in);
            for (phase_out, taps) in self.phase_out.iter_mut().zip(&self.taps) {
                let out = &mut phase_out[..n];
                out.fill(0.0);
                fir_accumulate(self.kernel, &self.history[..hist + n], taps, out);
            }
            let [p0, p1, p2] = &self.phase_out;
            for (z, ((a, b), c)) in block_out[..3 * n]
                .chunks_exact_mut(3)
                .zip(p0.iter().zip(p1).zip(p2))
            {
                z[0] = *a;
                z[1] = *b;
                z[2] = *c;
            }
            self.history.copy_within(n..n + hist, 0);
        }
        Ok(produced)
    }

    /// Resample i16 samples: 320 at 16 kHz in, 960 at 48 kHz out per 20 ms frame
    /// (saturating, rounded to nearest).
    ///
    /// # Errors
    /// As [`process`](Self::process).
    pub fn process_i16(
        &mut self,
        input: &[i16],
        output: &mut [i16],
    ) -> Result<usize, ResampleError> {
        let produced = 3 * input.len();
        if output.len() < produced {
            return Err(ResampleError::OutputTooSmall {
                needed: produced,
                available: output.len(),
            });
        }
        let mut scratch_in = std::mem::take(&mut self.scratch_in);
        let mut scratch_out = std::mem::take(&mut self.scratch_out);
        let mut result = Ok(0);
        for (chunk, out) in input.chunks(BLOCK).zip(output.chunks_mut(3 * BLOCK)) {
            let n = chunk.len();
            i16_to_f32(chunk, &mut scratch_in[..n]);
            if let Err(e) = self.process(&scratch_in[..n], &mut scratch_out[..3 * n]) {
                result = Err(e);
                break;
            }
            f32_to_i16(&scratch_out[..3 * n], &mut out[..3 * n]);
        }
        self.scratch_in = scratch_in;
        self.scratch_out = scratch_out;
        result.map(|_| produced)
    }
}
