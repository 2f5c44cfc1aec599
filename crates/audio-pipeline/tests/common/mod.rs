//! Shared harness: a deterministic PRNG, a tone source and an Opus sender.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

use audio_pipeline::{EncodedPacket, Pcm16K, RtpMeta, Ticks};

/// xorshift64*: deterministic, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// TOC byte of a 20 ms SILK wideband mono packet.
pub const TOC_SILK_WB_20MS: u8 = 0x48;

/// A fake 20 ms Opus packet whose payload carries its sequence number (for the
/// sans-IO jitter tests, which never decode).
pub fn fake_packet(ssrc: u32, seq: u16, ts: u32, arrival: Ticks) -> EncodedPacket {
    let meta = RtpMeta {
        seq,
        rtp_timestamp: ts,
        ssrc,
        arrival,
        ..RtpMeta::default()
    };
    let s = seq.to_be_bytes();
    EncodedPacket::new(meta, &[TOC_SILK_WB_20MS, s[0], s[1], 0x55]).expect("small payload")
}

/// Sequence number carried by a [`fake_packet`].
pub fn fake_seq(p: &EncodedPacket) -> u16 {
    u16::from_be_bytes([p.payload()[1], p.payload()[2]])
}

/// A sine source, 20 ms at a time.
pub struct Tone {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl Tone {
    pub fn new(hz: f64, amplitude: f64) -> Tone {
        Tone {
            phase: 0.0,
            step: 2.0 * std::f64::consts::PI * hz / 16_000.0,
            amplitude,
        }
    }

    pub fn frame(&mut self) -> Pcm16K {
        let mut f = Pcm16K::SILENCE;
        for s in f.samples.iter_mut() {
            *s = (self.phase.sin() * self.amplitude) as i16;
            self.phase += self.step;
        }
        f
    }
}

/// Encodes a tone as a real Opus RTP stream (16 kHz in, 48 kHz RTP clock).
pub struct OpusSender {
    enc: opus::Encoder,
    tone: Tone,
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
}

impl OpusSender {
    pub fn new(ssrc: u32, seq: u16, ts: u32, fec: bool) -> OpusSender {
        let mut enc =
            opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
        enc.set_bitrate(opus::Bitrate::Bits(24_000)).unwrap();
        enc.set_inband_fec(fec).unwrap();
        enc.set_packet_loss_perc(if fec { 20 } else { 0 }).unwrap();
        OpusSender {
            enc,
            tone: Tone::new(440.0, 8000.0),
            ssrc,
            seq,
            ts,
        }
    }

    /// The next 20 ms packet.
    pub fn next(&mut self, arrival: Ticks) -> EncodedPacket {
        let pcm = self.tone.frame();
        self.encode(
            &pcm,
            RtpMeta {
                arrival,
                ..RtpMeta::default()
            },
        )
    }

    /// The next 20 ms packet carrying `pcm` instead of the tone, with `meta`'s other fields
    /// (CSRCs, levels, stream, arrival); sequence, timestamp and SSRC are the stream's.
    pub fn encode(&mut self, pcm: &Pcm16K, meta: RtpMeta) -> EncodedPacket {
        let mut buf = [0u8; 1276];
        let n = self.enc.encode(&pcm.samples, &mut buf).unwrap();
        let meta = RtpMeta {
            seq: self.seq,
            rtp_timestamp: self.ts,
            ssrc: self.ssrc,
            ..meta
        };
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(960);
        EncodedPacket::new(meta, &buf[..n]).unwrap()
    }
}

/// Waits (bounded) until `cond` holds, polling every 5 ms.
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cond()
}
