#![no_main]
//! RTP payloads into the jitter buffer and the decoder: any sequence of packets (numbers,
//! timestamps, SSRCs, payloads, arrival times chosen by the input) is buffered, played
//! out, concealed or dropped one 20 ms tick at a time, never a panic; every tick hands the
//! bot exactly one frame and the counters add up. The call takes four unmixed speaker
//! streams beside the mix, and packets come for any of them (or for streams it lacks).

use audio_pipeline::{CallConfig, Csrcs, EncodedPacket, ManualCall, RtpMeta, Ticks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let config = CallConfig {
        unmixed_streams: 4,
        ..CallConfig::default()
    };
    let Ok((mut call, halves)) = ManualCall::new(config) else {
        return;
    };
    let (mut net, mut bot, handle) = (halves.network, halves.bot, halves.handle);
    let mut now = Ticks::from_millis(1_000);
    let mut ticks = 0u64;
    let mut frames = 0u64;
    // Each record: 1 control byte, 2 seq, 4 timestamp, 1 ssrc and stream selector, 1 length,
    // payload.
    let mut rest = data;
    while rest.len() >= 9 && ticks < 2_000 {
        let control = rest[0];
        let seq = u16::from_be_bytes([rest[1], rest[2]]);
        let ts = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]);
        let ssrc = u32::from(rest[7] & 0x03);
        // 0 the mix, 1..=4 speaker streams, 5..=7 streams the call does not have.
        let stream = (rest[7] >> 2) & 0x07;
        let len = usize::from(rest[8]).min(rest.len() - 9);
        let payload = &rest[9..9 + len];
        rest = &rest[9 + len..];
        let mut csrcs = Csrcs::new();
        for i in 0..(control >> 5) {
            let _ = csrcs.push(u32::from(i), Some(i * 10));
        }
        let meta = RtpMeta {
            seq,
            rtp_timestamp: ts,
            ssrc,
            marker: control & 1 != 0,
            audio_level: (control & 2 != 0).then_some(control & 0x7f),
            csrcs,
            arrival: now,
            stream,
        };
        if let Ok(packet) = EncodedPacket::new(meta, payload) {
            let _ = net.push_packet(packet);
        }
        // Bits 2..4: how many ticks pass before the next packet (0..=7).
        for _ in 0..((control >> 2) & 0x07) {
            call.tick(now, false);
            now += Ticks::from_millis(20);
            ticks += 1;
            while let Some(f) = bot.try_recv() {
                frames += 1;
                assert!(f.gap <= 64 || f.seq.is_some());
                assert!(f.unmixed.len() <= 4);
                assert!(f.unmixed.iter().all(|u| (1..=4).contains(&u.stream)));
            }
        }
    }
    let stats = handle.stats();
    assert_eq!(stats.frames_received, ticks);
    assert!(frames <= ticks);
    assert!(stats.concealed <= ticks);
});
