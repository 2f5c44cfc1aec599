//! The endpoint wired to the real audio pipeline, against a webrtc-rs peer playing the
//! calling service: Opus in, jitter buffer and decode to 16 kHz, an echo bot sending every
//! frame back, encode, Opus out.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use audio_pipeline::{CallConfig, OpusConfig, Pipeline, PipelineConfig, Realtime};
use common::{PEER_OPUS_PT, Peer, alignment_at, chirp, post_offer};
use media_endpoint::{
    EndReason, EndpointConfig, EndpointEvent, MediaEndpoint, SendStatus, SessionHooks,
};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

/// Sends `signal` as 20 ms Opus packets at real pace, losing every packet `lose(i)` says.
async fn send_signal(peer: &mut Peer, signal: &[f32], fec: bool, lose: impl Fn(usize) -> bool) {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
        .expect("encoder");
    enc.set_bitrate(opus::Bitrate::Bits(64_000))
        .expect("bitrate");
    if fec {
        enc.set_inband_fec(true).expect("fec");
        enc.set_packet_loss_perc(10).expect("loss");
    }
    let mut buf = [0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for (i, frame) in signal.chunks_exact(960).enumerate() {
        tick.tick().await;
        let n = enc.encode_float(frame, &mut buf).expect("encode");
        if lose(i) {
            peer.lose_one();
            continue;
        }
        peer.send(
            PEER_OPUS_PT,
            (i * 960) as u32,
            i == 0,
            &[],
            Some(40),
            &buf[..n],
        )
        .await;
    }
}

fn decode(received: &[common::Received]) -> Vec<f32> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut out = [0f32; 5760];
    let mut pcm = Vec::new();
    for r in received {
        let n = dec
            .decode_float(&r.packet.payload, &mut out, false)
            .expect("decode");
        pcm.extend_from_slice(&out[..n]);
    }
    pcm
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_the_pipeline_correlates_and_survives_loss() {
    common::init_tracing();
    let pipeline = Pipeline::start(PipelineConfig {
        threads: 1,
        realtime: Realtime::Off,
        ..PipelineConfig::default()
    })
    .expect("pipeline");
    let mut cfg = CallConfig {
        send_active: false,
        ..CallConfig::default()
    };
    cfg.opus = OpusConfig {
        bitrate_bps: 64_000,
        ..OpusConfig::default()
    };
    let call = pipeline.add_call(cfg).expect("call");
    let (handle, network, mut bot) = (call.handle, call.network, call.bot);

    // The echo bot: every received frame goes straight back.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let bot_thread = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !stop2.load(Ordering::Relaxed) && Instant::now() < deadline {
            while let Some(frame) = bot.try_recv() {
                let _ = bot.try_send(frame.pcm);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    });

    let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    let (tx, mut events) = mpsc::channel(1024);
    let session = MediaSessionId::random();
    let session_handle = endpoint
        .register(session, SessionHooks::new(ContextId::random(), network, tx))
        .expect("register");

    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let r = post_offer(&endpoint, session, &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    peer.accept(r.body).await;
    peer.wait_connected().await;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(EndpointEvent::SendStatus(SendStatus::Active))) => break,
            Ok(Some(_)) => {}
            other => panic!("no Active send status: {other:?}"),
        }
    }
    assert!(session_handle.is_active());

    // Let the pipeline's first packets (silence) through, then measure from a clean start.
    tokio::time::sleep(Duration::from_millis(200)).await;
    peer.take_received();
    let signal = chirp(48_000 * 4, 200.0, 2_000.0);
    let started = Instant::now();
    send_signal(&mut peer, &signal, false, |_| false).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let echoed = peer.take_received();
    let elapsed = started.elapsed();
    assert!(
        echoed.len() >= 200,
        "{} packets echoed in {elapsed:?}",
        echoed.len()
    );
    for w in echoed.windows(2) {
        let (a, b) = (&w[0].packet.header, &w[1].packet.header);
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        assert_eq!(a.payload_type, PEER_OPUS_PT);
    }
    let pcm = decode(&echoed);
    // An adaptive jitter buffer may stretch or compress under load, which moves the delay
    // by a frame at a time: align each quarter-second segment on its own (tracking the
    // delay from one to the next); the median segment must match.
    let mut lag = alignment_at(&signal, &pcm, -48_000..0, pcm.len() / 8, 12_000).0;
    let mut segments: Vec<(i64, f64)> = Vec::new();
    for k in 1..14 {
        let start = k * 12_000;
        if start + 12_000 > pcm.len() {
            break;
        }
        let seg = alignment_at(&signal, &pcm, lag - 1_500..lag + 1_500, start, 12_000);
        lag = seg.0;
        segments.push(seg);
    }
    let stats = handle.stats();
    let mut corrs: Vec<f64> = segments.iter().map(|s| s.1).collect();
    corrs.sort_by(f64::total_cmp);
    let median = corrs[corrs.len() / 2];
    let delays: Vec<String> = segments
        .iter()
        .map(|(l, _)| format!("{:.0}", -*l as f64 / 48.0))
        .collect();
    println!(
        "pipeline echo: median correlation {median:.3} over {} segments (min {:.3}), mouth-to-ear round trip per segment {} ms",
        segments.len(),
        corrs[0],
        delays.join(" ")
    );
    assert!(
        segments.len() >= 10 && median > 0.9,
        "echo correlations {segments:?}, call {stats:?}"
    );
    let before = stats;
    assert_eq!(before.inbound_queue_full, 0);

    // 10 % loss on the way in: concealment (or FEC) covers it and the echo keeps flowing.
    peer.take_received();
    send_signal(&mut peer, &signal[..48_000 * 2], true, |i| i % 10 == 4).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = handle.stats();
    let covered =
        (after.concealed + after.fec_recovered) - (before.concealed + before.fec_recovered);
    println!(
        "10 % loss: concealed +{}, fec recovered +{}",
        after.concealed - before.concealed,
        after.fec_recovered - before.fec_recovered
    );
    assert!(covered >= 8, "{before:?} -> {after:?}");
    let echoed = peer.take_received();
    assert!(echoed.len() >= 95, "echo kept flowing: {}", echoed.len());
    assert!(session_handle.is_active());

    // The bot removes the call: the next packet from the peer ends the leg.
    stop.store(true, Ordering::Relaxed);
    bot_thread.join().expect("bot thread");
    drop(handle);
    for i in 0..3u32 {
        peer.send(PEER_OPUS_PT, i * 960, false, &[], None, &[0xf8, 0xff, 0xfe])
            .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    loop {
        match tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            Ok(Some(EndpointEvent::LegEnded(EndReason::Closed))) => break,
            Ok(Some(EndpointEvent::StreamFailure(f))) => panic!("failure {f:?}"),
            Ok(Some(_)) => {}
            other => panic!("leg did not end with the call: {other:?}"),
        }
    }
    assert!(!session_handle.is_active());
    peer.pc.close().await.expect("close");
    drop(session_handle);
    endpoint.shutdown().await;
    pipeline.shutdown();
}
