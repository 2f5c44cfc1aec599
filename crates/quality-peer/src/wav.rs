//! Reading and writing mono 16-bit PCM WAV files (RIFF/WAVE, `fmt ` tag 1), the only format
//! the speech samples and the recordings use.

use std::io::{self, Read, Write};
use std::path::Path;

/// A mono 16-bit PCM sound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wav {
    /// Samples per second.
    pub sample_rate: u32,
    /// The samples, one channel.
    pub samples: Vec<i16>,
}

/// Why a WAV file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    /// The file could not be read or written.
    #[error("WAV I/O failed")]
    Io(#[from] io::Error),
    /// The file is not a mono 16-bit PCM WAV.
    #[error("not a mono 16-bit PCM WAV: {0}")]
    Format(&'static str),
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl Wav {
    /// Parses a WAV held in memory; chunks other than `fmt ` and `data` are skipped.
    pub fn parse(bytes: &[u8]) -> Result<Wav, WavError> {
        if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
            return Err(WavError::Format("no RIFF/WAVE header"));
        }
        let mut at = 12;
        let mut format: Option<(u16, u16, u32, u16)> = None;
        while at + 8 <= bytes.len() {
            let id = &bytes[at..at + 4];
            let len = u32_at(bytes, at + 4) as usize;
            let body = at + 8;
            // A data chunk whose size overstates the file (streamed writers) ends at the file.
            let end = body.saturating_add(len).min(bytes.len());
            match id {
                b"fmt " => {
                    if end - body < 16 {
                        return Err(WavError::Format("short fmt chunk"));
                    }
                    format = Some((
                        u16_at(bytes, body),
                        u16_at(bytes, body + 2),
                        u32_at(bytes, body + 4),
                        u16_at(bytes, body + 14),
                    ));
                }
                b"data" => {
                    let (tag, channels, rate, bits) =
                        format.ok_or(WavError::Format("data before fmt"))?;
                    // 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which sox writes for some inputs.
                    if tag != 1 && tag != 0xFFFE {
                        return Err(WavError::Format("not PCM"));
                    }
                    if channels != 1 {
                        return Err(WavError::Format("not mono"));
                    }
                    if bits != 16 {
                        return Err(WavError::Format("not 16-bit"));
                    }
                    let samples = bytes[body..end]
                        .chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    return Ok(Wav {
                        sample_rate: rate,
                        samples,
                    });
                }
                _ => {}
            }
            // Chunks are padded to an even length.
            at = body.saturating_add(len).saturating_add(len & 1);
        }
        Err(WavError::Format("no data chunk"))
    }

    /// Reads a WAV file.
    pub fn read(path: &Path) -> Result<Wav, WavError> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        Wav::parse(&bytes)
    }

    /// The file's bytes: a 44-byte canonical header and the samples.
    pub fn to_bytes(&self) -> Vec<u8> {
        let data_len = (self.samples.len() * 2) as u32;
        let mut out = Vec::with_capacity(44 + data_len as usize);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&self.sample_rate.to_le_bytes());
        out.extend_from_slice(&(self.sample_rate * 2).to_le_bytes()); // bytes per second
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out
    }

    /// Writes the WAV to `path`, replacing it.
    pub fn write(&self, path: &Path) -> Result<(), WavError> {
        std::fs::File::create(path)?.write_all(&self.to_bytes())?;
        Ok(())
    }

    /// The first `seconds` of the sound (all of it when shorter).
    pub fn truncated(&self, seconds: f64) -> Wav {
        let n = ((seconds * f64::from(self.sample_rate)) as usize).min(self.samples.len());
        Wav {
            sample_rate: self.sample_rate,
            samples: self.samples[..n].to_vec(),
        }
    }

    /// Its length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_wav_reads_back() {
        let w = Wav {
            sample_rate: 16_000,
            samples: vec![0, 1, -1, i16::MAX, i16::MIN, 1234],
        };
        assert_eq!(Wav::parse(&w.to_bytes()).unwrap(), w);
    }

    #[test]
    fn other_formats_are_refused() {
        let mut b = Wav {
            sample_rate: 16_000,
            samples: vec![0; 4],
        }
        .to_bytes();
        b[22] = 2; // stereo
        assert!(matches!(Wav::parse(&b), Err(WavError::Format("not mono"))));
        assert!(Wav::parse(b"RIFF....WAVX").is_err());
    }
}
