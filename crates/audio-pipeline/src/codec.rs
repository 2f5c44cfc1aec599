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

/// The Opus decoder at 16 kHz mono, writing into caller-owned buffers: packets of
/// 10..120 ms, concealment (PLC) and in-band FEC recovery.
pub(crate) struct Decoder {
    inner: opus::Decoder,
}

impl Decoder {
    pub(crate) fn new() -> Result<Decoder, AdmissionError> {
        Ok(Decoder {
            inner: opus::Decoder::new(16_000, Channels::Mono).map_err(codec_err("decoder"))?,
        })
    }

    pub(crate) fn reset(&mut self) {
        // Resetting a valid decoder cannot fail; if it did, the old state only colours
        // the first frame after a resync.
        let _ = self.inner.reset_state();
    }

    /// Decodes a whole packet into `out` (room for [`MAX_DECODED`] samples); returns the
    /// samples written, or `None` when libopus rejects the payload.
    pub(crate) fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Option<usize> {
        let want = out.len().min(MAX_DECODED);
        match self.inner.decode(payload, &mut out[..want], false) {
            Ok(n) if n > 0 => Some(n),
            _ => None,
        }
    }

    /// Conceals one 20 ms frame into `out` (at least 320 samples); returns the samples
    /// written (320, or 0 if libopus failed, which a valid decoder does not).
    pub(crate) fn conceal(&mut self, out: &mut [i16]) -> usize {
        if out.len() < SAMPLES_PER_FRAME {
            return 0;
        }
        self.inner
            .decode(&[], &mut out[..SAMPLES_PER_FRAME], false)
            .unwrap_or(0)
    }

    /// Rebuilds the lost 20 ms before `next` from `next`'s in-band FEC into `out`;
    /// `None` when `next` carries none (the caller conceals instead).
    pub(crate) fn recover_fec(&mut self, next: &[u8], out: &mut [i16]) -> Option<usize> {
        if !has_lbrr(next) || out.len() < SAMPLES_PER_FRAME {
            return None;
        }
        match self.inner.decode(next, &mut out[..SAMPLES_PER_FRAME], true) {
            Ok(n) if n > 0 => Some(n),
            _ => None,
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
    base_bitrate: u32,
    bitrate: u32,
    adapt: bool,
}

/// The bitrate for a reported loss: the primary encoding keeps about what it has at no
/// loss while in-band FEC (which libopus sizes by the loss it is told) takes its share.
pub(crate) fn bitrate_for_loss(base: u32, loss_percent: u8) -> u32 {
    let factor = match loss_percent {
        0..=1 => 1.0,
        2..=4 => 1.15,
        5..=9 => 1.3,
        _ => 1.5,
    };
    ((f64::from(base) * factor) as u32).min(510_000)
}

impl Encoder {
    pub(crate) fn new(cfg: &OpusConfig) -> Result<Encoder, AdmissionError> {
        #[cfg(target_arch = "x86_64")]
        crate::opus_nsq::link();
        #[cfg(all(target_arch = "x86_64", not(target_feature = "fma")))]
        crate::opus_warped::link();
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
        let mut encoder = Encoder {
            inner,
            loss_percent: loss,
            dtx: cfg.dtx,
            base_bitrate: cfg.bitrate_bps,
            bitrate: cfg.bitrate_bps,
            adapt: cfg.adapt_bitrate_to_loss,
        };
        encoder.follow_loss(loss);
        Ok(encoder)
    }

    /// The bitrate the encoder is set to.
    pub(crate) fn bitrate(&self) -> u32 {
        self.bitrate
    }

    /// Feeds the receiver-reported loss to the encoder: it sizes FEC by it, and the
    /// bitrate follows it when adaptation is on.
    pub(crate) fn set_loss_percent(&mut self, percent: u8) {
        let percent = percent.min(100);
        if percent != self.loss_percent
            && self.inner.set_packet_loss_perc(i32::from(percent)).is_ok()
        {
            self.loss_percent = percent;
            self.follow_loss(percent);
        }
    }

    fn follow_loss(&mut self, percent: u8) {
        if !self.adapt {
            return;
        }
        let wanted = bitrate_for_loss(self.base_bitrate, percent);
        if wanted != self.bitrate && self.inner.set_bitrate(Bitrate::Bits(wanted as i32)).is_ok() {
            self.bitrate = wanted;
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
        let mut out = [0i16; MAX_DECODED];
        let mut fec_seen = 0;
        let mut peak = 0;
        for _ in 0..100 {
            let n = enc.encode(&tone(&mut phase), &mut buf).unwrap();
            if has_lbrr(&buf[..n]) {
                fec_seen += 1;
                assert_eq!(dec.recover_fec(&buf[..n], &mut out), Some(320));
            }
            assert_eq!(dec.decode(&buf[..n], &mut out), Some(320));
            peak = out[..320]
                .iter()
                .map(|s| s.unsigned_abs())
                .max()
                .unwrap_or(0);
        }
        assert!(peak > 1000, "decoded tone too quiet: {peak}");
        assert!(fec_seen > 0, "no LBRR in 100 packets at 20 % loss");
        assert_eq!(dec.conceal(&mut out), 320);
        assert_eq!(dec.decode(&[0xFF, 0xFF, 0xFF], &mut out), None);
    }

    #[test]
    fn the_bitrate_follows_reported_loss_and_returns() {
        let mut enc = Encoder::new(&OpusConfig {
            bitrate_bps: 32_000,
            initial_loss_percent: 0,
            ..OpusConfig::default()
        })
        .unwrap();
        assert_eq!(enc.bitrate(), 32_000);
        enc.set_loss_percent(3);
        assert_eq!(enc.bitrate(), 36_800);
        enc.set_loss_percent(12);
        assert_eq!(enc.bitrate(), 48_000);
        enc.set_loss_percent(0);
        assert_eq!(enc.bitrate(), 32_000);
        let mut fixed = Encoder::new(&OpusConfig {
            adapt_bitrate_to_loss: false,
            ..OpusConfig::default()
        })
        .unwrap();
        fixed.set_loss_percent(20);
        assert_eq!(fixed.bitrate(), OpusConfig::default().bitrate_bps);
    }
}
