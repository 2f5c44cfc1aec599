//! Hostile packet streams: garbage payloads, huge sequence and timestamp jumps, floods.
//! Counted and survived; the other call on the same thread keeps its deadlines.

mod common;

use audio_pipeline::{
    CallConfig, EncodedPacket, FrameSource, Pipeline, PipelineConfig, PushPacketError, Realtime,
    RtpMeta,
};
use common::{OpusSender, Rng};
use std::time::{Duration, Instant};

#[test]
fn a_flood_of_garbage_and_jumps_is_counted_and_does_not_stall_a_neighbour() {
    // One thread: the hostile call and the well-behaved one share every tick.
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    })
    .unwrap();
    let mut hostile = pipeline.add_call(CallConfig::default()).unwrap();
    let mut good = pipeline.add_call(CallConfig::default()).unwrap();
    let mut sender = OpusSender::new(0x600D, 100, 0, true);
    let mut rng = Rng(99);
    let mut full = 0u64;
    let mut offered = 0u64;

    let start = Instant::now();
    let mut sent_good = 0u64;
    let mut good_frames = Vec::new();
    while start.elapsed() < Duration::from_secs(3) {
        // The flood: more packets than the queue takes, every kind of nonsense. (Kept to 100
        // per round: generating them is this thread's work too, and on a loaded machine a
        // slower round would delay the good stream's sender, not the pipeline.)
        for _ in 0..100 {
            let len = (rng.below(1276) + 1) as usize;
            let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let meta = RtpMeta {
                seq: rng.next_u64() as u16,
                rtp_timestamp: rng.next_u64() as u32,
                ssrc: if rng.unit() < 0.5 {
                    7
                } else {
                    rng.next_u64() as u32
                },
                marker: rng.unit() < 0.5,
                audio_level: Some((rng.below(128)) as u8),
                ..RtpMeta::default()
            };
            let p = EncodedPacket::new(meta, &payload).unwrap();
            offered += 1;
            match hostile.network.push_packet(p) {
                Ok(()) => {}
                Err(PushPacketError::Full(_)) => full += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        // The good stream, in real time, three packets ahead so that a late round of this
        // loop does not make them late: what is measured is the pipeline, not this thread.
        let due = (start.elapsed().as_millis() / 20) as u64 + 3;
        while sent_good < due {
            good.network
                .push_packet(sender.next(audio_pipeline::now()))
                .unwrap();
            sent_good += 1;
        }
        while let Some(f) = good.bot.try_recv() {
            good_frames.push(f);
        }
        while hostile.bot.try_recv().is_some() {}
        std::thread::sleep(Duration::from_millis(2));
    }

    let hs = hostile.handle.stats();
    let gs = good.handle.stats();
    assert!(
        full > 0 && hs.inbound_queue_full == full,
        "{hs:?} full={full}"
    );
    assert!(hs.packets_received > 1_000, "{hs:?}");
    assert!(
        hs.dropped_packets + hs.duplicate_packets + hs.late_packets > 1_000,
        "{hs:?}"
    );
    assert!(
        hs.frames_received >= 140,
        "hostile call stopped ticking: {hs:?}"
    );
    assert!(offered > hs.packets_received);

    // The neighbour: every tick ran, and once buffered it decoded nearly everything.
    assert!(gs.frames_received >= 140, "{gs:?}");
    let decoded = good_frames
        .iter()
        .filter(|f| f.source == FrameSource::Decoded)
        .count();
    assert!(
        decoded * 10 >= good_frames.len() * 8,
        "decoded {decoded} of {}: {gs:?}",
        good_frames.len()
    );
    for w in good_frames.windows(2) {
        assert_eq!(
            w[1].timestamp - w[0].timestamp,
            audio_pipeline::FRAME_DURATION
        );
    }
}
