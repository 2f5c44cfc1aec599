//! What a synthetic participant says, one 20 ms frame at a time: a sine tone, a WAV file
//! looped at 16 kHz, silence, or an echo of the bot.

use std::path::Path;
use std::sync::Arc;

use audio_pipeline::SAMPLES_PER_FRAME;
use audio_pipeline::resample::{Resampler, SampleRate};

use crate::scenario::Voice;
use crate::wav::{Wav, WavError};

/// A participant's voice, prepared off the conference thread (WAV files read and
/// resampled), ready to generate frames.
#[derive(Clone, Debug)]
pub(crate) enum VoiceSource {
    Silence,
    Echo,
    Tone {
        hz: f64,
        amplitude: f64,
    },
    /// 16 kHz mono samples, played in a loop.
    Wav(Arc<[i16]>),
    /// A person or device over WebRTC (see [`super::remote`]).
    Remote(super::remote::RemoteVoice),
    /// A load-test participant: alone with the bot it sends pre-encoded Opus instead of
    /// joining a conference (see [`super::load`]); in a conference it is silent.
    Load,
}

/// Why a WAV voice could not be prepared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum VoiceError {
    #[error(transparent)]
    Wav(#[from] WavError),
    #[error("cannot resample {rate} Hz to 16 kHz: {source}")]
    Resample {
        rate: u32,
        #[source]
        source: audio_pipeline::resample::ResampleError,
    },
    #[error("the WAV file holds no samples")]
    Empty,
}

impl VoiceSource {
    /// Prepares `voice`; a WAV file is read and resampled to 16 kHz mono here.
    pub(crate) fn prepare(voice: &Voice) -> Result<Self, VoiceError> {
        Ok(match voice {
            Voice::Silence => Self::Silence,
            Voice::Echo => Self::Echo,
            Voice::Tone { hz, dbfs } => Self::Tone {
                hz: *hz,
                amplitude: 32_767.0 * 10f64.powf(dbfs / 20.0),
            },
            Voice::Wav(path) => Self::Wav(load_16k(path)?),
            Voice::Load => Self::Load,
            Voice::Impaired { voice, .. } => Self::prepare(voice)?,
        })
    }
}

/// Reads a WAV file as 16 kHz mono.
pub(crate) fn load_16k(path: &Path) -> Result<Arc<[i16]>, VoiceError> {
    let wav = Wav::read(path)?;
    to_16k(&wav.to_mono(), wav.sample_rate)
}

/// Resamples mono `samples` at `rate` Hz to 16 kHz.
pub(crate) fn to_16k(samples: &[i16], rate: u32) -> Result<Arc<[i16]>, VoiceError> {
    if samples.is_empty() {
        return Err(VoiceError::Empty);
    }
    if rate == 16_000 {
        return Ok(samples.into());
    }
    let resample = |source| VoiceError::Resample { rate, source };
    let from = SampleRate::new(rate).map_err(resample)?;
    let mut r = Resampler::new(from, 1, SampleRate::HZ_16000, 1).map_err(resample)?;
    let (chunk_in, chunk_out) = (r.input_frames(), r.output_frames());
    let mut out = Vec::with_capacity(samples.len() * 16_000 / rate as usize + chunk_out);
    let mut input = vec![0i16; chunk_in];
    let mut output = vec![0i16; chunk_out];
    for chunk in samples.chunks(chunk_in) {
        input[..chunk.len()].copy_from_slice(chunk);
        input[chunk.len()..].fill(0);
        let n = r.process_i16(&input, &mut output).map_err(resample)?;
        out.extend_from_slice(&output[..n]);
    }
    // The last chunk was padded with silence: keep the input's duration only, so a loop
    // has no gap.
    out.truncate((samples.len() as u64 * 16_000).div_ceil(u64::from(rate)) as usize);
    Ok(out.into())
}

/// Generates one participant's frames.
#[derive(Debug)]
pub(crate) struct Generator {
    source: VoiceSource,
    /// A remote participant's pipeline call, taken from [`VoiceSource::Remote`].
    remote: Option<super::remote::RemoteEar>,
    /// Phase in cycles (tone) or position in samples (WAV).
    phase: f64,
    position: usize,
}

impl Generator {
    /// Whether this generator already speaks `voice`; a roster update keeps it (and its
    /// place in a tone or WAV) only then.
    pub(crate) fn speaks(&self, voice: &VoiceSource) -> bool {
        match (&self.source, voice) {
            (VoiceSource::Silence, VoiceSource::Silence)
            | (VoiceSource::Echo, VoiceSource::Echo)
            | (VoiceSource::Load, VoiceSource::Load)
            | (VoiceSource::Remote(_), VoiceSource::Remote(_)) => true,
            (
                VoiceSource::Tone {
                    hz: a,
                    amplitude: x,
                },
                VoiceSource::Tone {
                    hz: b,
                    amplitude: y,
                },
            ) => a == b && x == y,
            (VoiceSource::Wav(a), VoiceSource::Wav(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub(crate) fn new(source: VoiceSource) -> Self {
        let remote = match &source {
            VoiceSource::Remote(r) => r.take(),
            _ => None,
        };
        Self {
            source,
            remote,
            phase: 0.0,
            position: 0,
        }
    }

    /// Writes the next frame. `heard` is what an echo sends back: the bot's last frame.
    pub(crate) fn next(
        &mut self,
        heard: Option<&[i16; SAMPLES_PER_FRAME]>,
        out: &mut [i16; SAMPLES_PER_FRAME],
    ) {
        match &self.source {
            VoiceSource::Silence | VoiceSource::Load => out.fill(0),
            VoiceSource::Echo => match heard {
                Some(h) => out.copy_from_slice(h),
                None => out.fill(0),
            },
            VoiceSource::Tone { hz, amplitude } => {
                let step = hz / 16_000.0;
                for s in out.iter_mut() {
                    *s = (amplitude * (std::f64::consts::TAU * self.phase).sin()).round() as i16;
                    self.phase = (self.phase + step).fract();
                }
            }
            VoiceSource::Wav(samples) => {
                for s in out.iter_mut() {
                    *s = samples[self.position];
                    self.position = (self.position + 1) % samples.len();
                }
            }
            VoiceSource::Remote(_) => match &mut self.remote {
                Some(ear) => ear.next(out),
                None => out.fill(0),
            },
        }
    }

    /// A remote participant: where what they hear goes.
    pub(crate) fn remote(&mut self) -> Option<&mut super::remote::RemoteEar> {
        self.remote.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_keeps_its_phase_across_frames_and_its_level() {
        let mut g = Generator::new(
            VoiceSource::prepare(&Voice::Tone {
                hz: 1000.0,
                dbfs: -6.0,
            })
            .expect("tone"),
        );
        let mut all = Vec::new();
        let mut f = [0i16; SAMPLES_PER_FRAME];
        for _ in 0..3 {
            g.next(None, &mut f);
            all.extend_from_slice(&f);
        }
        // 1 kHz at 16 kHz: period 16 samples, so sample n and n + 16 agree across frames.
        for n in 300..340 {
            assert!((i32::from(all[n]) - i32::from(all[n + 16])).abs() <= 1);
        }
        let peak = all.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!((16_300..=16_500).contains(&peak), "peak {peak}");
    }

    #[test]
    fn a_wav_loops_and_is_resampled_to_16k() {
        // 0.25 s of 480 Hz at 48 kHz: 12 000 samples become 4 000.
        let src: Vec<i16> = (0..12_000)
            .map(|n| (8_000.0 * (std::f64::consts::TAU * 480.0 * n as f64 / 48_000.0).sin()) as i16)
            .collect();
        let s16 = to_16k(&src, 48_000).expect("resample");
        assert_eq!(s16.len(), 4_000);
        let mut g = Generator::new(VoiceSource::Wav(s16.clone()));
        let mut f = [0i16; SAMPLES_PER_FRAME];
        for _ in 0..13 {
            g.next(None, &mut f);
        }
        // 13 frames = 4160 samples: the loop restarted.
        assert_eq!(g.position, 160);
        assert!(matches!(to_16k(&[], 8_000), Err(VoiceError::Empty)));
    }

    #[test]
    fn echo_and_silence() {
        let mut heard = [0i16; SAMPLES_PER_FRAME];
        heard[5] = 1234;
        let mut f = [7i16; SAMPLES_PER_FRAME];
        Generator::new(VoiceSource::Echo).next(Some(&heard), &mut f);
        assert_eq!(f, heard);
        Generator::new(VoiceSource::Echo).next(None, &mut f);
        assert!(f.iter().all(|&s| s == 0));
        f[0] = 3;
        Generator::new(VoiceSource::Silence).next(Some(&heard), &mut f);
        assert!(f.iter().all(|&s| s == 0));
    }
}
