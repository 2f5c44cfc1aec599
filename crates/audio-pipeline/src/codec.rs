//! Opus at 16 kHz mono: the decoder side (with PLC and FEC) and the encoder side.

use crate::config::OpusConfig;
use crate::error::AdmissionError;
use crate::frame::{Pcm16K, SAMPLES_PER_FRAME};
use opus::{Application, Bitrate, Channels};

/// 120 ms at 16 kHz: the longest Opus packet.
pub(crate) const MAX_DECODED: usize = 1920;

fn codec_err(what: &'static str) -> impl FnOnce(opus::Error) -> AdmissionError {
    move |source| AdmissionError::Codec { what, source }
}

/// Decoder plus a FIFO of decoded samples, so packets of 10..120 ms all come out as
/// 20 ms frames.
pub(crate) struct Decoder {
    inner: opus::Decoder,
    buf: Box<[i16; MAX_DECODED + SAMPLES_PER_FRAME]>,
    /// Samples in `buf` not yet handed out, starting at `start`.
    start: usize,
    len: usize,
}

/// Result of one decode step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecodeResult {
    /// Samples appended.
    Ok,
    /// libopus rejected the payload: concealed instead.
    Invalid,
}

impl Decoder {
    pub(crate) fn new() -> Result<Decoder, AdmissionError> {
        Ok(Decoder {
            inner: opus::Decoder::new(16_000, Channels::Mono).map_err(codec_err("decoder"))?,
            buf: Box::new([0; MAX_DECODED + SAMPLES_PER_FRAME]),
            start: 0,
            len: 0,
        })
    }

    pub(crate) fn buffered(&self) -> usize {
        self.len
    }

    pub(crate) fn reset(&mut self) {
        // Resetting a valid decoder cannot fail; if it did, the old state only colours
        // the first frame after a resync.
        let _ = self.inner.reset_state();
        self.start = 0;
        self.len = 0;
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.start + self.len, 0);
            self.start = 0;
        }
    }

    fn append(&mut self, payload: &[u8], fec: bool, samples: usize) -> DecodeResult {
        self.compact();
        let free = &mut self.buf[self.len..];
        let want = samples.min(free.len());
        match self.inner.decode(payload, &mut free[..want], fec) {
            Ok(n) if n > 0 => {
                self.len += n;
                DecodeResult::Ok
            }
            _ => {
                // A packet libopus will not decode is concealed like a lost one.
                if let Ok(n) = self
                    .inner
                    .decode(&[], &mut free[..SAMPLES_PER_FRAME], false)
                {
                    self.len += n;
                }
                DecodeResult::Invalid
            }
        }
    }

    /// Decodes a whole packet.
    pub(crate) fn decode(&mut self, payload: &[u8]) -> DecodeResult {
        self.append(payload, false, MAX_DECODED)
    }

    /// Conceals one 20 ms frame.
    pub(crate) fn conceal(&mut self) {
        self.append(&[], false, SAMPLES_PER_FRAME);
    }

    /// Rebuilds the lost 20 ms before `next` from `next`'s in-band FEC; returns false
    /// (after concealing instead) when `next` carries none.
    pub(crate) fn recover_fec(&mut self, next: &[u8]) -> bool {
        if !has_lbrr(next) {
            self.conceal();
            return false;
        }
        self.append(next, true, SAMPLES_PER_FRAME) == DecodeResult::Ok
    }

    /// Takes the next 20 ms; pads with zeros if fewer samples are buffered.
    pub(crate) fn take_frame(&mut self, out: &mut Pcm16K) {
        let n = self.len.min(SAMPLES_PER_FRAME);
        out.samples[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        out.samples[n..].fill(0);
        self.start += n;
        self.len -= n;
        if self.len == 0 {
            self.start = 0;
        }
    }
}

/// Whether an Opus packet carries LBRR (in-band FEC) data for the frame before it.
fn has_lbrr(packet: &[u8]) -> bool {
    if packet.is_empty() || packet.len() > crate::packet::MAX_PAYLOAD {
        return false;
    }
    // SAFETY: the pointer and length describe `packet`, a live slice of at most 1276
    // bytes; libopus only reads it.
    let rc = unsafe { opusic_sys::opus_packet_has_lbrr(packet.as_ptr(), packet.len() as i32) };
    rc == 1
}

/// Encoder for 20 ms 16 kHz frames.
pub(crate) struct Encoder {
    inner: opus::Encoder,
    loss_percent: u8,
    dtx: bool,
}

impl Encoder {
    pub(crate) fn new(cfg: &OpusConfig) -> Result<Encoder, AdmissionError> {
        let mut inner = opus::Encoder::new(16_000, Channels::Mono, Application::Voip)
            .map_err(codec_err("encoder"))?;
        inner
            .set_bitrate(Bitrate::Bits(cfg.bitrate_bps as i32))
            .map_err(codec_err("set_bitrate"))?;
        inner
            .set_complexity(i32::from(cfg.complexity))
            .map_err(codec_err("set_complexity"))?;
        inner
            .set_inband_fec(cfg.inband_fec)
            .map_err(codec_err("set_inband_fec"))?;
        inner.set_dtx(cfg.dtx).map_err(codec_err("set_dtx"))?;
        let loss = cfg.initial_loss_percent.min(100);
        inner
            .set_packet_loss_perc(i32::from(loss))
            .map_err(codec_err("set_packet_loss_perc"))?;
        Ok(Encoder {
            inner,
            loss_percent: loss,
            dtx: cfg.dtx,
        })
    }

    /// Feeds the receiver-reported loss to the encoder (it sizes FEC by it).
    pub(crate) fn set_loss_percent(&mut self, percent: u8) {
        let percent = percent.min(100);
        if percent != self.loss_percent
            && self.inner.set_packet_loss_perc(i32::from(percent)).is_ok()
        {
            self.loss_percent = percent;
        }
    }

    /// Encodes one frame into `out`; returns the length, or `None` when DTX says this
    /// frame need not be sent (or the encoder failed, which cannot happen with a valid
    /// 20 ms frame and a 1276-byte buffer).
    pub(crate) fn encode(&mut self, pcm: &Pcm16K, out: &mut [u8]) -> Option<usize> {
        let n = self.inner.encode(&pcm.samples, out).ok()?;
        // With DTX libopus signals "nothing to send" with packets of 1-2 bytes.
        if self.dtx && n <= 2 {
            return None;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(phase: &mut f32) -> Pcm16K {
        let mut f = Pcm16K::SILENCE;
        for s in f.samples.iter_mut() {
            *s = (phase.sin() * 8000.0) as i16;
            *phase += 2.0 * std::f32::consts::PI * 440.0 / 16_000.0;
        }
        f
    }

    #[test]
    fn encodes_decodes_conceals_and_recovers_fec() {
        let cfg = OpusConfig {
            initial_loss_percent: 20,
            ..OpusConfig::default()
        };
        let mut enc = Encoder::new(&cfg).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut phase = 0.0;
        let mut buf = [0u8; 1276];
        let mut out = Pcm16K::SILENCE;
        let mut fec_seen = 0;
        for _ in 0..100 {
            let n = enc.encode(&tone(&mut phase), &mut buf).unwrap();
            if has_lbrr(&buf[..n]) {
                fec_seen += 1;
                assert!(dec.recover_fec(&buf[..n]));
                dec.take_frame(&mut out);
            }
            assert_eq!(dec.decode(&buf[..n]), DecodeResult::Ok);
            dec.take_frame(&mut out);
            assert_eq!(dec.buffered(), 0);
        }
        assert!(out.peak() > 1000, "decoded tone too quiet: {}", out.peak());
        assert!(fec_seen > 0, "no LBRR in 100 packets at 20 % loss");
        dec.conceal();
        assert_eq!(dec.buffered(), 320);
        assert_eq!(dec.decode(&[0xFF, 0xFF, 0xFF]), DecodeResult::Invalid);
    }
}
