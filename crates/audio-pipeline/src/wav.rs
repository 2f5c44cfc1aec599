//! Reading and writing WAV files: PCM 8/16/24/32-bit integer or 32-bit float, any rate, any
//! channel count, as found in prompts and test recordings. Malformed files get an error that
//! names what is wrong; nothing here trusts a size field beyond the bytes present.
//!
//! For bots: [`Wav::read_frames`] turns a prompt into 20 ms [`Pcm16K`] frames (any rate and
//! channel count, resampled to 16 kHz mono), and [`WavRecorder`] writes frames to a file as
//! they come, so a recording survives a bot that stops early.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::frame::{Pcm16K, SAMPLES_PER_FRAME};
use crate::resample::{Resampler, SampleRate};

/// The largest WAV file read, in bytes (about 10 minutes of 48 kHz stereo).
pub const MAX_WAV_BYTES: usize = 128 * 1024 * 1024;

/// Decoded audio: interleaved samples as i16.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Interleaved channels.
    pub channels: u16,
    /// Interleaved samples, converted to 16 bits.
    pub samples: Vec<i16>,
}

/// Why a WAV file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file could not be read.
    #[error("cannot read WAV file: {0}")]
    Io(String),
    /// The file is larger than [`MAX_WAV_BYTES`].
    #[error("WAV file is {0} bytes, more than the {MAX_WAV_BYTES} accepted")]
    TooLarge(usize),
    /// Not a RIFF/WAVE file.
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    /// A chunk is cut short.
    #[error(
        "WAV chunk `{chunk}` is truncated: it declares {declared} bytes, {present} are present"
    )]
    Truncated {
        /// Chunk id.
        chunk: String,
        /// Declared size.
        declared: u64,
        /// Bytes available.
        present: u64,
    },
    /// A required chunk is missing.
    #[error("WAV file has no `{0}` chunk")]
    MissingChunk(&'static str),
    /// The format is not one this reader decodes.
    #[error("unsupported WAV format: {0}")]
    Unsupported(String),
    /// The file holds no samples.
    #[error("WAV file has no samples")]
    Empty,
    /// The sample rate cannot be converted to 16 kHz.
    #[error("cannot resample {rate} Hz to 16 kHz: {problem}")]
    Resample {
        /// The file's rate.
        rate: u32,
        /// Why.
        problem: String,
    },
}

impl Wav {
    /// Reads a WAV file from disk.
    pub fn read(path: &Path) -> Result<Self, WavError> {
        let len = std::fs::metadata(path)
            .map_err(|e| WavError::Io(format!("{}: {e}", path.display())))?
            .len();
        if len > MAX_WAV_BYTES as u64 {
            return Err(WavError::TooLarge(len as usize));
        }
        let bytes =
            std::fs::read(path).map_err(|e| WavError::Io(format!("{}: {e}", path.display())))?;
        Self::parse(&bytes)
    }

    /// Decodes WAV bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, WavError> {
        if bytes.len() > MAX_WAV_BYTES {
            return Err(WavError::TooLarge(bytes.len()));
        }
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(WavError::NotWav("it does not start with RIFF....WAVE"));
        }
        let mut pos = 12usize;
        let mut fmt: Option<Fmt> = None;
        while pos + 8 <= bytes.len() {
            let id = &bytes[pos..pos + 4];
            let size = u32::from_le_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]) as u64;
            let start = pos + 8;
            let present = (bytes.len() - start) as u64;
            let chunk_name = || String::from_utf8_lossy(id).into_owned();
            if id == b"data" {
                let fmt = fmt.ok_or(WavError::MissingChunk("fmt "))?;
                // Streams written live often leave the data size at 0 or 0xFFFFFFFF: take
                // what is there, whole frames only.
                let take = if size == 0 || size == 0xFFFF_FFFF {
                    present
                } else {
                    size
                };
                if take > present {
                    return Err(WavError::Truncated {
                        chunk: chunk_name(),
                        declared: size,
                        present,
                    });
                }
                return fmt.decode(&bytes[start..start + take as usize]);
            }
            if size > present {
                return Err(WavError::Truncated {
                    chunk: chunk_name(),
                    declared: size,
                    present,
                });
            }
            let body = &bytes[start..start + size as usize];
            if id == b"fmt " {
                fmt = Some(Fmt::parse(body)?);
            }
            // Chunks are padded to an even size.
            pos = start.saturating_add(size as usize + (size as usize & 1));
        }
        Err(if fmt.is_none() {
            WavError::MissingChunk("fmt ")
        } else {
            WavError::MissingChunk("data")
        })
    }

    /// Mono samples: the channels averaged.
    pub fn to_mono(&self) -> Vec<i16> {
        let ch = usize::from(self.channels.max(1));
        self.samples
            .chunks_exact(ch)
            .map(|f| (f.iter().map(|&s| i32::from(s)).sum::<i32>() / ch as i32) as i16)
            .collect()
    }

    /// Reads a WAV file as 20 ms 16 kHz mono frames (channels averaged, resampled; the last
    /// frame padded with silence).
    pub fn read_frames(path: &Path) -> Result<Vec<Pcm16K>, WavError> {
        Self::read(path)?.to_frames()
    }

    /// This audio as 16 kHz mono samples.
    pub fn to_16k_mono(&self) -> Result<Vec<i16>, WavError> {
        let mono = self.to_mono();
        if mono.is_empty() {
            return Err(WavError::Empty);
        }
        let rate = self.sample_rate;
        if rate == 16_000 {
            return Ok(mono);
        }
        let resample = |e: crate::resample::ResampleError| WavError::Resample {
            rate,
            problem: e.to_string(),
        };
        let from = SampleRate::new(rate).map_err(resample)?;
        let mut r = Resampler::new(from, 1, SampleRate::HZ_16000, 1).map_err(resample)?;
        let (chunk_in, chunk_out) = (r.input_frames(), r.output_frames());
        let mut out = Vec::with_capacity(mono.len() * 16_000 / rate as usize + chunk_out);
        let mut input = vec![0i16; chunk_in];
        let mut output = vec![0i16; chunk_out];
        for chunk in mono.chunks(chunk_in) {
            input[..chunk.len()].copy_from_slice(chunk);
            input[chunk.len()..].fill(0);
            let n = r.process_i16(&input, &mut output).map_err(resample)?;
            out.extend_from_slice(&output[..n]);
        }
        // The last chunk was padded with silence: keep the input's duration only.
        out.truncate((mono.len() as u64 * 16_000).div_ceil(u64::from(rate)) as usize);
        Ok(out)
    }

    /// This audio as 20 ms 16 kHz mono frames, the last one padded with silence.
    pub fn to_frames(&self) -> Result<Vec<Pcm16K>, WavError> {
        let samples = self.to_16k_mono()?;
        Ok(samples
            .chunks(SAMPLES_PER_FRAME)
            .map(|chunk| {
                let mut frame = Pcm16K::SILENCE;
                frame.samples[..chunk.len()].copy_from_slice(chunk);
                frame
            })
            .collect())
    }

    /// Duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.samples.len() as f64
            / f64::from(self.channels.max(1))
            / f64::from(self.sample_rate.max(1))
    }

    /// Encodes as a 16-bit PCM WAV file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let data_len = (self.samples.len() * 2) as u32;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&self.channels.to_le_bytes());
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        let block = u32::from(self.channels) * 2;
        out.extend_from_slice(&(self.sample_rate * block).to_le_bytes());
        out.extend_from_slice(&(block as u16).to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Writes a 16-bit PCM WAV file.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::File::create(path)?.write_all(&self.to_bytes())
    }
}

/// Writes 16 kHz mono 16-bit frames to a WAV file as they come. The header's sizes are
/// brought up to date by [`WavRecorder::finish`] (and, best effort, on drop), so a file
/// cut short by a crash still holds its samples.
#[derive(Debug)]
pub struct WavRecorder {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    samples: u64,
}

impl WavRecorder {
    /// The largest recording: what a 32-bit RIFF size can describe (about 37 hours).
    pub const MAX_SAMPLES: u64 = (u32::MAX as u64 - 36) / 2;

    /// Creates (or truncates) `path` and writes a header.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        let mut file = std::io::BufWriter::new(file);
        file.write_all(&header(0))?;
        Ok(Self {
            path: path.to_owned(),
            file: Some(file),
            samples: 0,
        })
    }

    /// Appends one frame.
    pub fn write_frame(&mut self, frame: &Pcm16K) -> std::io::Result<()> {
        self.write_samples(&frame.samples)
    }

    /// Appends samples; past [`Self::MAX_SAMPLES`] the rest is refused with an error.
    pub fn write_samples(&mut self, samples: &[i16]) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("the recording is finished"));
        };
        if self.samples + samples.len() as u64 > Self::MAX_SAMPLES {
            return Err(std::io::Error::other(
                "the recording reached the WAV size limit",
            ));
        }
        let mut bytes = [0u8; 2 * SAMPLES_PER_FRAME];
        for chunk in samples.chunks(SAMPLES_PER_FRAME) {
            for (i, s) in chunk.iter().enumerate() {
                bytes[2 * i..2 * i + 2].copy_from_slice(&s.to_le_bytes());
            }
            file.write_all(&bytes[..2 * chunk.len()])?;
        }
        self.samples += samples.len() as u64;
        Ok(())
    }

    /// Samples written so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Seconds written so far.
    pub fn duration_secs(&self) -> f64 {
        self.samples as f64 / 16_000.0
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the final sizes into the header and closes the file; returns the samples
    /// written.
    pub fn finish(mut self) -> std::io::Result<u64> {
        self.close()?;
        Ok(self.samples)
    }

    fn close(&mut self) -> std::io::Result<()> {
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        file.flush()?;
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header(self.samples))?;
        file.sync_data()
    }
}

impl Drop for WavRecorder {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The 44-byte header of a 16 kHz mono 16-bit PCM file with `samples` samples.
fn header(samples: u64) -> [u8; 44] {
    let data_len = (samples * 2).min(u64::from(u32::MAX - 36)) as u32;
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&16_000u32.to_le_bytes());
    h[28..32].copy_from_slice(&32_000u32.to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

#[derive(Clone, Copy)]
struct Fmt {
    float: bool,
    channels: u16,
    sample_rate: u32,
    bits: u16,
}

impl Fmt {
    fn parse(body: &[u8]) -> Result<Self, WavError> {
        if body.len() < 16 {
            return Err(WavError::Unsupported(format!(
                "`fmt ` chunk is {} bytes, at least 16 needed",
                body.len()
            )));
        }
        let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
        let mut tag = u16_at(0);
        let channels = u16_at(2);
        let sample_rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
        let block_align = u16_at(12);
        let bits = u16_at(14);
        if tag == 0xFFFE {
            // WAVE_FORMAT_EXTENSIBLE: the real tag is the sub-format GUID's first two bytes.
            if body.len() < 26 {
                return Err(WavError::Unsupported(
                    "extensible `fmt ` chunk without its sub-format".into(),
                ));
            }
            tag = u16_at(24);
        }
        let float = match (tag, bits) {
            (1, 8 | 16 | 24 | 32) => false,
            (3, 32) => true,
            (1 | 3, b) => {
                return Err(WavError::Unsupported(format!(
                    "{b}-bit samples with format tag {tag}"
                )));
            }
            (t, _) => {
                return Err(WavError::Unsupported(format!(
                    "format tag {t} (only PCM 1 and IEEE float 3)"
                )));
            }
        };
        if channels == 0 || channels > 8 {
            return Err(WavError::Unsupported(format!(
                "{channels} channels (1 to 8 supported)"
            )));
        }
        if !(4000..=384_000).contains(&sample_rate) {
            return Err(WavError::Unsupported(format!(
                "sample rate {sample_rate} Hz (4000 to 384000 supported)"
            )));
        }
        if u32::from(block_align) != u32::from(channels) * u32::from(bits / 8) {
            return Err(WavError::Unsupported(format!(
                "block align {block_align} does not match {channels} channels of {bits} bits"
            )));
        }
        Ok(Self {
            float,
            channels,
            sample_rate,
            bits,
        })
    }

    fn decode(self, data: &[u8]) -> Result<Wav, WavError> {
        let width = usize::from(self.bits / 8);
        let frame = width * usize::from(self.channels);
        let whole = data.len() / frame * frame;
        let samples = data[..whole]
            .chunks_exact(width)
            .map(|b| match (self.float, width) {
                (false, 1) => (i16::from(b[0]) - 128) << 8,
                (false, 2) => i16::from_le_bytes([b[0], b[1]]),
                (false, 3) => i16::from_le_bytes([b[1], b[2]]),
                (false, _) => i16::from_le_bytes([b[2], b[3]]),
                (true, _) => {
                    let f = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    let f = if f.is_finite() { f } else { 0.0 };
                    (f.clamp(-1.0, 1.0) * 32767.0).round() as i16
                }
            })
            .collect();
        Ok(Wav {
            sample_rate: self.sample_rate,
            channels: self.channels,
            samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_writes_a_file_the_reader_reads_back() {
        let dir = std::env::temp_dir().join(format!("wavrec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rec.wav");
        let mut rec = WavRecorder::create(&path).unwrap();
        let mut frame = Pcm16K::SILENCE;
        for (i, s) in frame.samples.iter_mut().enumerate() {
            *s = i as i16 * 7 - 1000;
        }
        rec.write_frame(&frame).unwrap();
        rec.write_frame(&frame).unwrap();
        assert_eq!(rec.finish().unwrap(), 640);
        let wav = Wav::read(&path).unwrap();
        assert_eq!((wav.sample_rate, wav.channels), (16_000, 1));
        assert_eq!(&wav.samples[320..], &frame.samples[..]);
        // Dropped without finish: the header still tells the truth.
        let mut rec = WavRecorder::create(&path).unwrap();
        rec.write_frame(&frame).unwrap();
        drop(rec);
        assert_eq!(Wav::read(&path).unwrap().samples.len(), 320);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn frames_come_at_16k_mono_whatever_the_file() {
        // One second of 48 kHz stereo: 50 frames.
        let wav = Wav {
            sample_rate: 48_000,
            channels: 2,
            samples: vec![1000; 96_000],
        };
        let frames = wav.to_frames().unwrap();
        assert_eq!(frames.len(), 50);
        // Past the resampler's settling, the level is kept.
        assert!((frames[25].samples[100] - 1000).abs() < 20);
        let empty = Wav {
            sample_rate: 16_000,
            channels: 1,
            samples: vec![],
        };
        assert_eq!(empty.to_frames().unwrap_err(), WavError::Empty);
    }

    fn tone() -> Wav {
        Wav {
            sample_rate: 16_000,
            channels: 2,
            samples: (0..3200)
                .map(|i| ((i as f64 * 0.1).sin() * 10_000.0) as i16)
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        let w = tone();
        assert_eq!(Wav::parse(&w.to_bytes()).unwrap(), w);
        assert_eq!(w.to_mono().len(), 1600);
        assert!((w.duration_secs() - 0.1).abs() < 1e-9);
    }

    #[test]
    fn float_and_24_bit_decode() {
        let mut bytes = tone().to_bytes();
        // Rewrite as mono 32-bit float with one sample of 0.5.
        bytes.truncate(44);
        bytes[20..22].copy_from_slice(&3u16.to_le_bytes());
        bytes[22..24].copy_from_slice(&1u16.to_le_bytes());
        bytes[32..34].copy_from_slice(&4u16.to_le_bytes());
        bytes[34..36].copy_from_slice(&32u16.to_le_bytes());
        bytes[40..44].copy_from_slice(&4u32.to_le_bytes());
        bytes.extend_from_slice(&0.5f32.to_le_bytes());
        assert_eq!(Wav::parse(&bytes).unwrap().samples, vec![16384]);
    }

    #[test]
    fn malformed_files_are_named() {
        let good = tone().to_bytes();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not a wav".to_vec(), "RIFF"),
            (good[..30].to_vec(), "truncated"),
            (
                {
                    let mut b = good.clone();
                    b[40..44].copy_from_slice(&u32::MAX.wrapping_sub(1).to_le_bytes());
                    b
                },
                "truncated",
            ),
            (
                {
                    let mut b = good.clone();
                    b[20..22].copy_from_slice(&2u16.to_le_bytes());
                    b
                },
                "format tag 2",
            ),
            (
                {
                    let mut b = good.clone();
                    b[22..24].copy_from_slice(&0u16.to_le_bytes());
                    b
                },
                "0 channels",
            ),
            (
                {
                    let mut b = good.clone();
                    b[24..28].copy_from_slice(&1u32.to_le_bytes());
                    b
                },
                "sample rate",
            ),
            (
                {
                    let mut b = good.clone();
                    b[36..40].copy_from_slice(b"junk");
                    b
                },
                "data",
            ),
            (good[..36].to_vec(), "data"),
            (b"RIFF\0\0\0\0WAVE".to_vec(), "fmt"),
        ];
        for (bytes, needle) in cases {
            let err = Wav::parse(&bytes).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
