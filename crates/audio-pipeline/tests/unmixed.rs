//! Unmixed speaker streams beside the mix, in simulated time with real libopus: each
//! speaker's tone arrives on its stream tagged with its source id, a stream without a
//! speaker has no entry, a switch of speakers is attributed within two frames, packets
//! for a stream the call lacks are counted invalid, and the mix is exactly what it is
//! without unmixed streams.

mod common;

use audio_pipeline::{
    CallConfig, CallStats, ConfigError, Csrcs, EncodedPacket, FRAME_DURATION, FrameSource,
    MAX_UNMIXED_STREAMS, ManualCall, Pcm16K, ReceivedFrame, RtpMeta, Ticks,
};
use common::{OpusSender, Tone};

/// The speakers' tones: every source id has its own frequency.
const TONES: [(u32, f64); 4] = [(11, 300.0), (12, 500.0), (13, 700.0), (14, 900.0)];
/// The mix's tone, apart from all speakers'.
const MIX_HZ: f64 = 1_100.0;
const TICKS: u64 = 200;
/// Stream 1 moves from speaker 11 to speaker 14 at this sender frame.
const SWITCH_AT: u64 = 100;

/// Power of `freq` in `x` (Goertzel), linear.
fn goertzel(x: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / 16_000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// The speaker whose tone dominates `pcm`, if it leads every other tone by 10 dB.
fn dominant_speaker(pcm: &Pcm16K) -> Option<u32> {
    let mut powers: Vec<(u32, f64)> = TONES
        .iter()
        .map(|&(id, hz)| (id, goertzel(&pcm.samples, hz)))
        .collect();
    powers.sort_by(|a, b| b.1.total_cmp(&a.1));
    (powers[0].1 > 10.0 * powers[1].1).then_some(powers[0].0)
}

/// One RTP stream as the meeting service sends it: one encoder and one sequence, whose
/// speaker (CSRC and input) may change from one packet to the next.
struct ServiceStream {
    sender: OpusSender,
    stream: u8,
}

impl ServiceStream {
    fn new(stream: u8) -> ServiceStream {
        let n = u32::from(stream);
        ServiceStream {
            sender: OpusSender::new(
                0x5000 + n,
                1_000u16.wrapping_mul(u16::from(stream)),
                77_777 * n,
                false,
            ),
            stream,
        }
    }

    fn next(
        &mut self,
        pcm: &Pcm16K,
        csrcs: Csrcs,
        audio_level: Option<u8>,
        arrival: Ticks,
    ) -> EncodedPacket {
        let meta = RtpMeta {
            audio_level,
            csrcs,
            arrival,
            stream: self.stream,
            ..RtpMeta::default()
        };
        self.sender.encode(pcm, meta)
    }
}

fn speaker(id: u32, level: Option<u8>) -> Csrcs {
    let mut c = Csrcs::new();
    c.push(id, level).unwrap();
    c
}

/// The meeting: the mix (listing the three speakers) and, when `unmixed` > 0, speaker
/// 11 then 14 on stream 1, 12 on stream 2 (with a csrc level), 13 on stream 3 (with only
/// an ssrc level), and nothing on the streams above. Returns every received frame.
fn meeting(unmixed: u8) -> (Vec<ReceivedFrame>, CallStats) {
    let cfg = CallConfig {
        unmixed_streams: unmixed,
        ..CallConfig::default()
    };
    let (mut call, mut halves) = ManualCall::new(cfg).unwrap();
    let mut mix = ServiceStream::new(0);
    let mut mix_tone = Tone::new(MIX_HZ, 8000.0);
    let mut streams: Vec<ServiceStream> = (1..=3).map(ServiceStream::new).collect();
    let mut tones: Vec<Tone> = TONES.iter().map(|&(_, hz)| Tone::new(hz, 8000.0)).collect();
    let t0 = Ticks::from_millis(10_000);
    let mut frames = Vec::new();
    for i in 0..TICKS {
        let now = t0 + Ticks(i * FRAME_DURATION.0);
        let mut all = Csrcs::new();
        for (id, level) in [(11, 20), (12, 30), (13, 40)] {
            all.push(
                if id == 11 && i >= SWITCH_AT { 14 } else { id },
                Some(level),
            )
            .unwrap();
        }
        let p = mix.next(&mix_tone.frame(), all, Some(25), now);
        halves.network.push_packet(p).unwrap();
        if unmixed > 0 {
            let pcm: Vec<Pcm16K> = tones.iter_mut().map(Tone::frame).collect();
            let (first, first_pcm) = if i < SWITCH_AT {
                (11, &pcm[0])
            } else {
                (14, &pcm[3])
            };
            let sent = [
                streams[0].next(first_pcm, speaker(first, Some(20)), None, now),
                streams[1].next(&pcm[1], speaker(12, Some(30)), Some(50), now),
                streams[2].next(&pcm[2], speaker(13, None), Some(40), now),
            ];
            for p in sent {
                halves.network.push_packet(p).unwrap();
            }
        }
        call.tick(now, false);
        frames.extend(std::iter::from_fn(|| halves.bot.try_recv()));
    }
    (frames, halves.handle.stats())
}

#[test]
fn each_speaker_arrives_on_its_stream_with_its_source_id_and_tone() {
    let (frames, stats) = meeting(4);
    assert_eq!(frames.len(), TICKS as usize);
    let mut entries = [0u64; 4];
    for f in &frames {
        let streams: Vec<u8> = f.unmixed.iter().map(|e| e.stream).collect();
        assert!(streams.is_sorted(), "stream order: {streams:?}");
        for e in &f.unmixed {
            entries[usize::from(e.stream - 1)] += 1;
            assert_ne!(e.source, FrameSource::NoSignal);
            match e.stream {
                2 => {
                    assert_eq!((e.source_id, e.level), (12, Some(30)), "csrc level wins");
                    assert_eq!(dominant_speaker(&e.pcm), Some(12), "{e:?}");
                }
                3 => {
                    assert_eq!((e.source_id, e.level), (13, Some(40)), "else ssrc level");
                    assert_eq!(dominant_speaker(&e.pcm), Some(13), "{e:?}");
                }
                1 => assert!(matches!(e.source_id, 11 | 14), "{e:?}"),
                _ => panic!("an entry for a stream that got no packets: {e:?}"),
            }
            assert_eq!(f.unmixed.get(e.source_id), Some(e));
        }
    }
    // Every stream with a speaker plays from the jitter buffer's start-up on.
    for (stream, &n) in entries.iter().take(3).enumerate() {
        assert!(n >= TICKS - 5, "stream {}: {n} entries", stream + 1);
    }
    assert_eq!(entries[3], 0, "stream 4 never got a packet");
    assert_eq!(stats.unmixed_packets_received, 3 * TICKS);
    assert_eq!(stats.unmixed_frames, entries.iter().sum::<u64>());
    assert_eq!(stats.unmixed_speaker_changes, 1, "{stats:?}");
    assert_eq!(stats.unmixed_concealed, 0, "{stats:?}");
    assert_eq!(
        stats.unmixed_lost_packets + stats.unmixed_dropped_packets,
        0
    );
    assert_eq!(stats.packets_received, TICKS, "the mix's packets alone");
    assert_eq!(stats.invalid_packets, 0);
    // The mix carries its own tone and speakers, never a speaker stream's.
    let last = frames.last().unwrap();
    assert_eq!(last.active_speakers.ids(), &[14, 12, 13]);
    let speakers_power = TONES
        .iter()
        .map(|&(_, hz)| goertzel(&last.pcm.samples, hz))
        .fold(0.0, f64::max);
    assert!(goertzel(&last.pcm.samples, MIX_HZ) > 100.0 * speakers_power);
    assert!(last.unmixed.get(11).is_none() && last.unmixed.get(99).is_none());
}

#[test]
fn a_speaker_switch_is_attributed_within_two_frames() {
    let (frames, _) = meeting(4);
    // Stream 1's entries: (tick, source id, speaker whose tone is heard).
    let stream1: Vec<(usize, u32, Option<u32>)> = frames
        .iter()
        .enumerate()
        .filter_map(|(tick, f)| {
            let e = f.unmixed.iter().find(|e| e.stream == 1)?;
            Some((tick, e.source_id, dominant_speaker(&e.pcm)))
        })
        .collect();
    let switch = stream1
        .iter()
        .position(|&(_, id, _)| id == 14)
        .expect("speaker 14 appears");
    assert!(
        stream1[..switch].iter().all(|&(_, id, _)| id == 11)
            && stream1[switch..].iter().all(|&(_, id, _)| id == 14),
        "one switch, no flapping: {stream1:?}"
    );
    let switch_tick = stream1[switch].0;
    assert!(
        (SWITCH_AT as usize..SWITCH_AT as usize + 5).contains(&switch_tick),
        "switch heard at tick {switch_tick}, sent at {SWITCH_AT}"
    );
    // Every frame's tone is its label's, except within two frames of the switch.
    for &(tick, id, heard) in &stream1 {
        if tick.abs_diff(switch_tick) <= 2 {
            continue;
        }
        assert_eq!(
            heard,
            Some(id),
            "tick {tick}: labelled {id}, heard {heard:?}"
        );
    }
    let wrong = stream1
        .iter()
        .filter(|&&(_, id, heard)| heard != Some(id))
        .count();
    assert!(wrong <= 2, "{wrong} frames misattributed around the switch");
}

#[test]
fn the_mix_is_unchanged_by_unmixed_streams() {
    let (plain, plain_stats) = meeting(0);
    let (with, mut with_stats) = meeting(4);
    assert_eq!(plain.len(), with.len());
    for (i, (a, b)) in plain.iter().zip(&with).enumerate() {
        assert!(a.unmixed.is_empty());
        assert!(a.pcm == b.pcm, "tick {i}: mix audio differs");
        assert_eq!(
            (a.timestamp, a.source, a.is_silence, a.late, a.seq, a.gap),
            (b.timestamp, b.source, b.is_silence, b.late, b.seq, b.gap),
            "tick {i}"
        );
        assert_eq!(
            (a.active_speakers, a.audio_level, a.arrival),
            (b.active_speakers, b.audio_level, b.arrival),
            "tick {i}"
        );
    }
    assert!(with_stats.unmixed_frames > 0);
    with_stats.unmixed_packets_received = 0;
    with_stats.unmixed_frames = 0;
    with_stats.unmixed_speaker_changes = 0;
    assert_eq!(plain_stats, with_stats, "the mix's figures");
}

#[test]
fn packets_for_a_stream_the_call_lacks_are_counted_invalid() {
    let cfg = CallConfig {
        unmixed_streams: MAX_UNMIXED_STREAMS as u8,
        ..CallConfig::default()
    };
    let (mut call, mut halves) = ManualCall::new(cfg).unwrap();
    let mut stray = ServiceStream::new(5);
    let mut beyond = ServiceStream::new(u8::MAX);
    // A stream the service keeps open with no speaker: packets list no CSRC.
    let mut empty = ServiceStream::new(4);
    let mut tone = Tone::new(300.0, 8000.0);
    let t0 = Ticks::from_millis(10_000);
    let mut frames = Vec::new();
    for i in 0..50 {
        let now = t0 + Ticks(i * FRAME_DURATION.0);
        let pcm = tone.frame();
        for p in [
            stray.next(&pcm, speaker(11, None), None, now),
            beyond.next(&pcm, speaker(12, None), None, now),
            empty.next(&pcm, Csrcs::new(), Some(30), now),
        ] {
            halves.network.push_packet(p).unwrap();
        }
        call.tick(now, false);
        frames.extend(std::iter::from_fn(|| halves.bot.try_recv()));
    }
    let stats = halves.handle.stats();
    assert_eq!(stats.invalid_packets, 100, "{stats:?}");
    assert_eq!(stats.dropped_packets, 100, "{stats:?}");
    assert_eq!(stats.unmixed_packets_received, 50, "stream 4's");
    assert_eq!(stats.unmixed_frames, 0);
    assert!(frames.iter().all(|f| f.unmixed.is_empty()));

    // Without unmixed streams, any stream but the mix is invalid.
    let (mut call, mut halves) = ManualCall::new(CallConfig::default()).unwrap();
    let mut one = ServiceStream::new(1);
    for i in 0..10 {
        let now = t0 + Ticks(i * FRAME_DURATION.0);
        let p = one.next(&tone.frame(), speaker(11, None), None, now);
        halves.network.push_packet(p).unwrap();
        call.tick(now, false);
    }
    let stats = halves.handle.stats();
    assert_eq!(
        (stats.invalid_packets, stats.unmixed_packets_received),
        (10, 0)
    );
}

#[test]
fn more_unmixed_streams_than_supported_are_refused() {
    let cfg = CallConfig {
        unmixed_streams: MAX_UNMIXED_STREAMS as u8 + 1,
        ..CallConfig::default()
    };
    let err = ManualCall::new(cfg).unwrap_err();
    assert!(
        matches!(
            err,
            audio_pipeline::AdmissionError::Config(ConfigError::UnmixedStreams {
                requested: 5,
                max: 4
            })
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "5 unmixed streams requested; a call receives at most 4"
    );
}
