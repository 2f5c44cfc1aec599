//! Load-test participants: a call whose only other participant says `load` gets no
//! conference and no codec on the emulator's side. It sends one pre-encoded second of Opus
//! in a loop and only counts what the bot sends, so that what a load test measures is the
//! bot's work, not the emulator's.
//!
//! A bot that asked for unmixed speaker streams gets the same loop on each of them too, as
//! speakers `LOAD_SPEAKER_BASE + k` (still no codec work here), so a load test measures the
//! bot decoding every stream.
//!
//! The loop starts with a 1 kHz probe and packets leave on 20 ms slots of the media clock
//! (`audio_pipeline::now`), slot 0 of the loop on every whole second: a bot in the same
//! process finds the probe's one-way delay from the time it hears it, with no side channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use audio_pipeline::{FRAME_DURATION, SAMPLES_PER_FRAME};
use bytes::Bytes;
use media_endpoint::{InboundRtp, NetworkPort, OutboundAudio, PushError};

use super::ParticipantSpec;
use super::faults::{FaultCounters, FaultPath, FaultPort, FaultSwitch};
use super::voice::VoiceSource;
use crate::scenario::Faults;

/// Packets in the loop: one second.
pub(crate) const LOOP_FRAMES: u64 = 50;
/// Frames of the loop that carry the probe, from its start.
pub(crate) const PROBE_FRAMES: usize = 3;
/// The probe's frequency.
pub(crate) const PROBE_HZ: f64 = 1_000.0;
/// 48 kHz RTP timestamp units per 20 ms.
const RTP_PER_FRAME: u64 = 960;
/// The source id a load leg's speaker stream k names: `LOAD_SPEAKER_BASE + k`.
pub(crate) const LOAD_SPEAKER_BASE: u32 = 0x10AD_0000;
/// Slots further behind than this are skipped rather than sent in a burst.
const MAX_BEHIND_SLOTS: u64 = 5;

/// Why the loop could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("the load loop could not be encoded: {0}")]
pub(crate) struct LoadError(#[source] opus::Error);

/// The loop's audio, frame `i` of 20 ms at 16 kHz: the probe at -12 dBFS, then a
/// speech-like mix of harmonics with a syllable-rate envelope, so that the bot's decoder
/// and encoder see the kind of signal calls carry.
fn loop_frame(i: usize, out: &mut [i16; SAMPLES_PER_FRAME]) {
    for (n, s) in out.iter_mut().enumerate() {
        let t = (i * SAMPLES_PER_FRAME + n) as f64 / 16_000.0;
        let v = if i < PROBE_FRAMES {
            0.25 * (std::f64::consts::TAU * PROBE_HZ * t).sin()
        } else {
            let envelope = 0.5 + 0.5 * (std::f64::consts::TAU * 4.0 * t).sin();
            let voice: f64 = [140.0, 280.0, 420.0, 700.0, 1_150.0]
                .iter()
                .enumerate()
                .map(|(k, hz)| (std::f64::consts::TAU * hz * t).sin() / (k as f64 + 1.0))
                .sum();
            0.06 * envelope * voice
        };
        *s = (v * 32_767.0).round() as i16;
    }
}

/// Encodes the loop once per process: Opus at 24 kb/s with in-band FEC, as a bot sends.
pub(crate) fn shared_loop() -> Result<Arc<[Bytes]>, LoadError> {
    static LOOP: OnceLock<Arc<[Bytes]>> = OnceLock::new();
    if let Some(l) = LOOP.get() {
        return Ok(Arc::clone(l));
    }
    let mut enc = opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip)
        .map_err(LoadError)?;
    enc.set_bitrate(opus::Bitrate::Bits(24_000))
        .map_err(LoadError)?;
    enc.set_inband_fec(true).map_err(LoadError)?;
    enc.set_packet_loss_perc(5).map_err(LoadError)?;
    let mut frame = [0i16; SAMPLES_PER_FRAME];
    let mut buf = [0u8; 1_500];
    let mut packets = Vec::with_capacity(LOOP_FRAMES as usize);
    for i in 0..LOOP_FRAMES as usize {
        loop_frame(i, &mut frame);
        let n = enc.encode(&frame, &mut buf).map_err(LoadError)?;
        packets.push(Bytes::copy_from_slice(&buf[..n]));
    }
    Ok(Arc::clone(LOOP.get_or_init(|| packets.into())))
}

/// The load participant's side of a leg.
#[derive(Debug)]
pub(crate) struct LoadPort {
    packets: Arc<[Bytes]>,
    next_slot: Option<u64>,
    /// What the bot sent: packets and payload bytes, logged when the leg ends.
    received: (u64, u64),
}

impl LoadPort {
    pub(crate) fn new(packets: Arc<[Bytes]>) -> Self {
        Self {
            packets,
            next_slot: None,
            received: (0, 0),
        }
    }

    /// The packet due at `now` (media clock), if any.
    fn pop_at(&mut self, now: audio_pipeline::Ticks) -> Option<OutboundAudio> {
        let slot = now.0 / FRAME_DURATION.0;
        let next = *self.next_slot.get_or_insert(slot + 1);
        if next > slot {
            return None;
        }
        let next = if slot - next > MAX_BEHIND_SLOTS {
            slot
        } else {
            next
        };
        self.next_slot = Some(next + 1);
        let len = self.packets.len() as u64;
        let payload = self.packets.get((next % len.max(1)) as usize)?.clone();
        // Timestamps wrap with the 32-bit RTP clock, as on the wire.
        let ts = (next * RTP_PER_FRAME) as u32;
        Some(OutboundAudio::new(payload, None).with_timing(ts, false))
    }
}

impl NetworkPort for LoadPort {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        self.received.0 += 1;
        self.received.1 += packet.payload.len() as u64;
        Ok(())
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        self.pop_at(audio_pipeline::now())
    }

    fn set_send_active(&self, _active: bool) {}

    fn set_remote_fraction_lost(&self, _fraction: u8) {}
}

/// Where a leg's audio comes from, decided by the roster: the conference's pipeline call,
/// or, once the bot's only peer is a load participant, the pre-encoded loop. The roster
/// is known only after the leg connects (the callee answers after the bot's media is up),
/// so the leg starts on the conference and switches once; faults follow the roster too.
#[derive(Debug, Default)]
pub(crate) struct RouteControl {
    pending: Mutex<Option<Route>>,
    load: AtomicBool,
}

/// What the roster asks of the leg.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Route {
    pub load: bool,
    pub faults: Faults,
}

impl RouteControl {
    /// Takes a roster; returns whether the leg now carries a load participant (and the
    /// conference and its pipeline call can go).
    pub(crate) fn follow(&self, roster: &[ParticipantSpec]) -> bool {
        let mut others = roster.iter().filter(|p| !p.is_bot);
        let faults = others
            .clone()
            .find_map(|p| p.faults.clone())
            .unwrap_or_default();
        let load = matches!(
            (others.next(), others.next()),
            (Some(only), None) if matches!(only.voice, VoiceSource::Load)
        ) || self.load.load(Ordering::Acquire);
        self.load.store(load, Ordering::Release);
        *crate::state::lock(&self.pending) = Some(Route { load, faults });
        load
    }
}

enum Source {
    Pipeline(audio_pipeline::NetworkHalf),
    Load(LoadPort),
}

impl NetworkPort for Source {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        match self {
            Source::Pipeline(p) => p.push(packet),
            Source::Load(p) => p.push(packet),
        }
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        match self {
            Source::Pipeline(p) => p.pop(),
            Source::Load(p) => p.pop(),
        }
    }

    fn set_send_active(&self, active: bool) {
        if let Source::Pipeline(p) = self {
            NetworkPort::set_send_active(p, active);
        }
    }

    fn set_remote_fraction_lost(&self, fraction: u8) {
        if let Source::Pipeline(p) = self {
            NetworkPort::set_remote_fraction_lost(p, fraction);
        }
    }
}

/// The emulator's side of every leg: the route's source behind the participant's faults;
/// the network's faults are on the [`FaultPath`] under the leg, which follows the route too.
pub(crate) struct RoutedPort {
    port: FaultPort<Source>,
    path: Arc<FaultSwitch>,
    control: Arc<RouteControl>,
    active: AtomicBool,
    /// The pipeline calls of the bot's unmixed speaker streams, stream 1 first.
    speakers: Vec<audio_pipeline::NetworkHalf>,
    /// On the load loop: the packet just sent on the main stream, and the next speaker
    /// stream to send it on.
    copies: Option<(OutboundAudio, u8)>,
}

impl RoutedPort {
    /// The port for the leg, what steers it, and the network under it (for
    /// [`ServiceLeg::connect_over`](media_endpoint::service::ServiceLeg::connect_over)).
    ///
    /// `speakers` are the network halves of the unmixed speaker streams' calls: what they
    /// encode goes on speaker streams 1, 2, ... of the leg, except packets that name no
    /// speaker (a stream with nobody on it sends nothing).
    pub(crate) fn new(
        pipeline: audio_pipeline::NetworkHalf,
        speakers: Vec<audio_pipeline::NetworkHalf>,
    ) -> (Self, Arc<RouteControl>, FaultPath) {
        let control = Arc::new(RouteControl::default());
        let counters = Arc::new(FaultCounters::default());
        let faults = Faults::default();
        let (path, switch) = FaultPath::new(&faults, Arc::clone(&counters));
        (
            Self {
                port: FaultPort::new(Source::Pipeline(pipeline), &faults, counters),
                path: switch,
                control: Arc::clone(&control),
                active: AtomicBool::new(false),
                speakers,
                copies: None,
            },
            control,
            path,
        )
    }

    /// Applies a route the roster asked for, if any (never blocks the leg).
    fn follow(&mut self) {
        let route = match self.control.pending.try_lock() {
            Ok(mut slot) => slot.take(),
            Err(_) => None,
        };
        let Some(route) = route else { return };
        self.port.set_faults(&route.faults);
        self.path.set(&route.faults);
        if route.load && matches!(self.port.inner_mut(), Source::Pipeline(_)) {
            match shared_loop() {
                Ok(packets) => *self.port.inner_mut() = Source::Load(LoadPort::new(packets)),
                Err(e) => tracing::warn!("load participant stays on the conference: {e}"),
            }
        }
        // The new source hears the current send status.
        self.port
            .set_send_active(self.active.load(Ordering::Acquire));
    }
}

impl NetworkPort for RoutedPort {
    fn push(&mut self, packet: InboundRtp<'_>) -> Result<(), PushError> {
        self.follow();
        self.port.push(packet)
    }

    fn pop(&mut self) -> Option<OutboundAudio> {
        self.follow();
        let streams = u8::try_from(self.speakers.len()).unwrap_or(u8::MAX);
        if let Some((audio, stream)) = self.copies.take() {
            if stream < streams {
                self.copies = Some((audio.clone(), stream + 1));
            }
            let mut speaker = audio_pipeline::Csrcs::new();
            let _ = speaker.push(LOAD_SPEAKER_BASE + u32::from(stream), Some(30));
            return Some(audio.with_csrcs(speaker).on_stream(stream));
        }
        if let Some(audio) = self.port.pop() {
            if streams > 0 && matches!(self.port.inner_mut(), Source::Load(_)) {
                self.copies = Some((audio.clone(), 1));
            }
            return Some(audio);
        }
        if matches!(self.port.inner_mut(), Source::Load(_)) {
            // The conference and its speaker calls are gone.
            return None;
        }
        for (half, stream) in self.speakers.iter_mut().zip(1u8..) {
            while let Some(audio) = NetworkPort::pop(half) {
                if !audio.csrcs.is_empty() {
                    return Some(audio.on_stream(stream));
                }
            }
        }
        None
    }

    fn set_send_active(&self, active: bool) {
        self.active.store(active, Ordering::Release);
        self.port.set_send_active(active);
        for half in &self.speakers {
            NetworkPort::set_send_active(half, active);
        }
    }

    fn set_remote_fraction_lost(&self, fraction: u8) {
        self.port.set_remote_fraction_lost(fraction);
        for half in &self.speakers {
            NetworkPort::set_remote_fraction_lost(half, fraction);
        }
    }
}

impl Drop for LoadPort {
    fn drop(&mut self) {
        tracing::info!(
            packets = self.received.0,
            bytes = self.received.1,
            "load participant's leg ended"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use audio_pipeline::Ticks;

    #[test]
    fn the_loop_decodes_with_the_probe_first() {
        let packets = shared_loop().expect("loop");
        assert_eq!(packets.len(), LOOP_FRAMES as usize);
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).expect("decoder");
        let mut pcm = [0i16; SAMPLES_PER_FRAME];
        let mut peaks = Vec::new();
        for p in packets.iter() {
            assert_eq!(dec.decode(p, &mut pcm, false).expect("decode"), 320);
            peaks.push(pcm.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0));
        }
        // The probe (-12 dBFS) is louder than the rest of the loop.
        assert!(peaks[1] > 6_000, "{peaks:?}");
        assert!(peaks[10..].iter().all(|&p| p < 6_000), "{peaks:?}");
        assert!(peaks[10..].iter().any(|&p| p > 1_000), "{peaks:?}");
    }

    /// SNR in dB of Opus at 24 kb/s, 16 kHz mono, FEC on (the pipeline's settings) at
    /// `complexity`, over 5 s of the load signal, the decoder's delay aligned.
    fn opus_snr(complexity: i32, signal: &[i16]) -> f64 {
        let mut enc = opus::Encoder::new(16_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        enc.set_bitrate(opus::Bitrate::Bits(24_000))
            .expect("bitrate");
        enc.set_inband_fec(true).expect("fec");
        enc.set_packet_loss_perc(5).expect("loss");
        enc.set_complexity(complexity).expect("complexity");
        let mut dec = opus::Decoder::new(16_000, opus::Channels::Mono).expect("decoder");
        let (mut buf, mut pcm) = ([0u8; 1_500], [0i16; SAMPLES_PER_FRAME]);
        let mut out = Vec::with_capacity(signal.len());
        for frame in signal.chunks_exact(SAMPLES_PER_FRAME) {
            let n = enc.encode(frame, &mut buf).expect("encode");
            dec.decode(&buf[..n], &mut pcm, false).expect("decode");
            out.extend_from_slice(&pcm);
        }
        // The best lag in the codec's delay range, then the SNR after the first second.
        let skip = 16_000;
        (0..400)
            .map(|lag| {
                let (mut sig, mut err) = (0f64, 0f64);
                for (i, &x) in signal[skip..signal.len() - 400].iter().enumerate() {
                    let y = f64::from(out[skip + i + lag]);
                    sig += f64::from(x).powi(2);
                    err += (f64::from(x) - y).powi(2);
                }
                10.0 * (sig / err.max(1.0)).log10()
            })
            .fold(f64::MIN, f64::max)
    }

    #[test]
    fn complexity_5_costs_little_quality_against_10() {
        let mut signal = Vec::new();
        let mut frame = [0i16; SAMPLES_PER_FRAME];
        for i in 0..250 {
            // The speech-like part of the loop only (no probe).
            loop_frame(
                PROBE_FRAMES + i % (LOOP_FRAMES as usize - PROBE_FRAMES),
                &mut frame,
            );
            signal.extend_from_slice(&frame);
        }
        let snr: Vec<f64> = [0, 5, 10].iter().map(|&c| opus_snr(c, &signal)).collect();
        eprintln!("Opus 24 kb/s SNR at complexity 0 / 5 / 10: {snr:.2?} dB");
        assert!(snr[2] > 5.0, "{snr:?}");
        assert!(
            snr[1] > snr[2] - 3.0,
            "complexity 5 within 3 dB of 10: {snr:?}"
        );
    }

    #[test]
    fn packets_leave_on_media_clock_slots_and_skip_when_far_behind() {
        let mut port = LoadPort::new(shared_loop().expect("loop"));
        let t0 = Ticks::from_millis(1_000_010);
        assert!(port.pop_at(t0).is_none(), "the first slot is the next one");
        let at = |ms| Ticks(t0.0 + Ticks::from_millis(ms).0);
        let a = port.pop_at(at(10)).expect("slot 50001");
        assert!(port.pop_at(at(11)).is_none());
        let b = port.pop_at(at(30)).expect("slot 50002");
        assert_eq!(
            b.rtp_timestamp.zip(a.rtp_timestamp).map(|(b, a)| b - a),
            Some(960)
        );
        // Slot 50001 is loop frame 1: one after the probe frame of the whole second.
        assert_eq!(a.payload, shared_loop().expect("loop")[1]);
        let c = port.pop_at(at(1_000)).expect("far behind");
        assert_eq!(
            c.rtp_timestamp.map(|t| t - a.rtp_timestamp.unwrap_or(0)),
            Some(49 * 960)
        );
        assert!(port.pop_at(at(1_001)).is_none());
    }

    /// A load leg of a bot that asked for two speaker streams: each loop packet leaves on
    /// the main stream and then on both speaker streams, each naming its own speaker.
    #[test]
    fn a_load_leg_sends_the_loop_on_every_speaker_stream() {
        let call = |config| audio_pipeline::ManualCall::new(config).expect("call").1;
        let main = call(audio_pipeline::CallConfig::default());
        let speakers = vec![
            call(audio_pipeline::CallConfig::default()).network,
            call(audio_pipeline::CallConfig::default()).network,
        ];
        let (mut port, route, _path) = RoutedPort::new(main.network, speakers);
        let load = ParticipantSpec {
            key: "load".into(),
            source_id: 7,
            voice: VoiceSource::Load,
            hears: true,
            heard: true,
            is_bot: false,
            meter: super::super::Meter::default(),
            faults: None,
        };
        assert!(route.follow(&[load]));
        // Within two slots of the media clock, a loop packet is due.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let first = loop {
            if let Some(p) = port.pop() {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "no loop packet");
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(first.stream, 0);
        assert!(first.csrcs.is_empty());
        for stream in 1..=2u8 {
            let copy = port.pop().expect("a copy for each speaker stream");
            assert_eq!(copy.stream, stream);
            assert_eq!(copy.payload, first.payload);
            assert_eq!(copy.rtp_timestamp, first.rtp_timestamp);
            assert_eq!(copy.csrcs.ids(), &[LOAD_SPEAKER_BASE + u32::from(stream)]);
        }
        assert!(port.pop().is_none(), "nothing more until the next slot");
    }
}
