// The cases of tests/webrtc_peer.rs and tests/webrtc_peer_lean.rs, which include this
// file with `LEAN_MEDIA` set: the same peer, the endpoint on either media path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{HttpResponse, PEER_OPUS_PT, PEER_TE_PT, Peer, best_alignment, chirp, http};
use media_endpoint::{
    EndReason, EndpointConfig, EndpointEvent, FailureReason, MediaEndpoint, OutboundAudio,
    QueueLink, ReceivedPacket, SendStatus, SessionHandle, SessionHooks, Tone,
};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

struct Setup {
    endpoint: MediaEndpoint,
    session: MediaSessionId,
    context: ContextId,
    handle: SessionHandle,
    events: mpsc::Receiver<EndpointEvent>,
    far: Option<QueueLink>,
}

async fn setup(media_timeout: Duration) -> Setup {
    common::init_tracing();
    let config = EndpointConfig::new("127.0.0.1:0".parse().expect("addr"))
        .with_media_timeout(media_timeout)
        .with_lean_media(LEAN_MEDIA);
    let endpoint = MediaEndpoint::bind(config).await.expect("bind");
    let (far, link) = QueueLink::new(256);
    let (tx, events) = mpsc::channel(1024);
    let session = MediaSessionId::random();
    let context = ContextId::random();
    let handle = endpoint
        .register(session, SessionHooks::new(context, link, tx))
        .expect("register");
    Setup {
        endpoint,
        session,
        context,
        handle,
        events,
        far: Some(far),
    }
}

fn session_path(s: &Setup) -> String {
    format!("/MediaProcessor/sessions/{}", s.session.expose())
}

async fn post_sdp(addr: SocketAddr, path: &str, sdp: &str) -> HttpResponse {
    http(addr, "POST", path, Some("application/sdp"), sdp.as_bytes()).await
}

/// Waits for the first event matching `pred`, returning it, or panics after `limit`.
async fn wait_event(
    events: &mut mpsc::Receiver<EndpointEvent>,
    limit: Duration,
    mut pred: impl FnMut(&EndpointEvent) -> bool,
) -> EndpointEvent {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(ev)) if pred(&ev) => return ev,
            Ok(Some(_)) => {}
            Ok(None) => panic!("event channel closed"),
            Err(_) => panic!("no matching event within {limit:?}"),
        }
    }
}

async fn connect(s: &mut Setup) -> (Peer, String) {
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let r = post_sdp(s.endpoint.local_addr(), &session_path(s), &offer).await;
    assert_eq!(r.status, 201, "body: {}", r.body);
    let location = r.header("location").expect("Location").to_owned();
    peer.accept(r.body.clone()).await;
    peer.wait_connected().await;
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::SendStatus(SendStatus::Active)
    })
    .await;
    (peer, location)
}

/// Pops what the endpoint received and pushes each payload straight back: a packet-level
/// echo standing in for a bot.
fn spawn_reflector(
    mut far: QueueLink,
) -> (
    Arc<Mutex<Vec<ReceivedPacket>>>,
    Arc<AtomicBool>,
    tokio::task::JoinHandle<QueueLink>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (seen2, stop2) = (Arc::clone(&seen), Arc::clone(&stop));
    let task = tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            while let Ok(p) = far.received.pop() {
                let _ = far
                    .to_send
                    .push(OutboundAudio::new(p.payload.clone(), p.audio_level));
                seen2.lock().expect("seen").push(p);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        far
    });
    (seen, stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_status_codes_and_leg_lifecycle() {
    let mut s = setup(Duration::from_secs(10)).await;
    let addr = s.endpoint.local_addr();
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;

    let unknown = format!("/MediaProcessor/sessions/{}", uuid::Uuid::new_v4());
    let r = post_sdp(addr, &unknown, &offer).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no such media session"), "{}", r.body);
    assert_eq!(
        post_sdp(addr, "/MediaProcessor/sessions/not-a-uuid", &offer)
            .await
            .status,
        404
    );

    let path = session_path(&s);
    // Pages of other origins may post offers (CORS preflight, exposed Location).
    let r = http(addr, "OPTIONS", &path, None, b"").await;
    assert_eq!(r.status, 204);
    assert!(
        r.header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let r = http(addr, "POST", &path, Some("text/plain"), offer.as_bytes()).await;
    assert_eq!(r.status, 415);
    assert!(r.body.contains("application/sdp"), "{}", r.body);
    let r = http(addr, "POST", &path, None, offer.as_bytes()).await;
    assert_eq!(r.status, 415);

    let r = post_sdp(addr, &path, "this is not SDP").await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("does not parse"), "{}", r.body);
    let no_opus = offer
        .replace("opus/48000/2", "PCMU/8000")
        .replace("a=fmtp:109 minptime=10;useinbandfec=1\r\n", "");
    let r = post_sdp(addr, &path, &no_opus).await;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("opus"), "{}", r.body);
    // Found by the sdp_offer fuzz target: an offer whose direction line is mangled passed
    // the checks and failed in the stack, which answered 500.
    for mangled in [
        &include_bytes!("../data/fuzz-sdp-offer-500.sdp")[..],
        &include_bytes!("../data/fuzz-sdp-offer-500-2.sdp")[..],
    ] {
        let r = http(addr, "POST", &path, Some("application/sdp"), mangled).await;
        assert_eq!(r.status, 400, "{}", r.body);
    }

    // A refused offer leaves the session waiting: a good one is accepted next.
    let r = post_sdp(addr, &path, &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert_eq!(r.header("access-control-expose-headers"), Some("Location"));
    let location = r.header("location").expect("Location").to_owned();
    assert!(
        location.starts_with(&format!("{path}/legs/")),
        "Location {location}"
    );
    let answer = r.body.clone();
    assert!(answer.contains("a=candidate:"), "{answer}");
    assert!(answer.contains(" 127.0.0.1 "), "{answer}");
    assert!(!answer.contains(".local"), "mDNS candidate in {answer}");
    assert!(
        !answer.contains(" typ srflx") && !answer.contains(" typ relay"),
        "{answer}"
    );
    assert!(answer.contains("a=fingerprint:"), "{answer}");
    if LEAN_MEDIA {
        // The lean path answers checks and handshakes; it starts neither.
        assert!(answer.contains("a=setup:passive"), "{answer}");
        assert!(answer.contains("a=ice-lite"), "{answer}");
    } else {
        assert!(answer.contains("a=setup:active"), "{answer}");
        assert!(!answer.contains("a=ice-lite"), "{answer}");
    }
    assert!(
        answer.contains(&format!("a=rtpmap:{PEER_OPUS_PT} opus/48000/2")),
        "{answer}"
    );
    assert!(answer.contains("useinbandfec=1"), "{answer}");
    assert!(
        answer.contains(&format!("a=rtpmap:{PEER_TE_PT} telephone-event/48000")),
        "{answer}"
    );
    assert!(answer.contains(common::SSRC_AUDIO_LEVEL), "{answer}");
    assert!(answer.contains("a=sendrecv"), "{answer}");
    assert!(
        answer.contains(&format!(" {}", s.context)),
        "msid track id should be the source context: {answer}"
    );
    assert!(
        !answer.contains(&s.session.expose().to_string()),
        "the session id leaked into the answer"
    );

    peer.accept(answer).await;
    peer.wait_connected().await;
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::SendStatus(SendStatus::Active)
    })
    .await;
    assert!(s.handle.is_active());

    let mut second = Peer::new().await;
    let offer2 = second.offer().await;
    let r = post_sdp(addr, &path, &offer2).await;
    assert_eq!(r.status, 409);
    assert!(r.body.contains("already has a leg"), "{}", r.body);

    let r = http(addr, "DELETE", &location, None, b"").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Straight after, while the leg is still closing: nothing left to end.
    let again = http(addr, "DELETE", &location, None, b"").await;
    assert_eq!(again.status, 404, "{}", again.body);
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::LegEnded(EndReason::Deleted)
    })
    .await;
    assert!(!s.handle.is_active());
    assert!(!s.far.as_ref().expect("far end").status.is_active());

    let r = post_sdp(addr, &path, &offer2).await;
    assert_eq!(r.status, 404, "a finished session takes no new leg");
    assert!(r.body.contains("ended"), "{}", r.body);
    assert_eq!(http(addr, "DELETE", &location, None, b"").await.status, 404);

    peer.pc.close().await.expect("close");
    second.pc.close().await.expect("close");
    s.endpoint.shutdown().await;
}

/// Builds the RFC 4733 packets of one event as a peer sends them.
fn event_packets(event: u8, packets: u16) -> Vec<(bool, [u8; 4])> {
    let mut out = Vec::new();
    for i in 1..=packets {
        let end = i == packets;
        let d = (i * 960).to_be_bytes();
        let p = [event, if end { 0x8a } else { 0x0a }, d[0], d[1]];
        out.push((i == 1, p));
        if end {
            out.push((false, p));
            out.push((false, p));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_correlates_and_dtmf_flows_both_ways() {
    let mut s = setup(Duration::from_secs(10)).await;
    let (mut peer, _location) = connect(&mut s).await;
    let (seen, stop, reflector) = spawn_reflector(s.far.take().expect("far end"));

    // 4 s of chirp, Opus-encoded at the peer, paced at 20 ms.
    let signal = chirp(48_000 * 4, 200.0, 4_000.0);
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
        .expect("encoder");
    enc.set_bitrate(opus::Bitrate::Bits(64_000))
        .expect("bitrate");
    let mut buf = [0u8; 1500];
    let mut sent_at = Vec::new();
    let mut sent_payloads = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let csrcs = [0x1111_u32, 0x2222];
    for (i, frame) in signal.chunks_exact(960).enumerate() {
        tick.tick().await;
        let n = enc.encode_float(frame, &mut buf).expect("encode");
        sent_at.push(Instant::now());
        sent_payloads.push(buf[..n].to_vec());
        peer.send(
            PEER_OPUS_PT,
            (i * 960) as u32,
            i == 0,
            &csrcs,
            Some(30),
            &buf[..n],
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // What the endpoint handed to the pipeline side.
    {
        let seen = seen.lock().expect("seen");
        assert!(seen.len() >= 190, "endpoint received {} of 200", seen.len());
        let p = &seen[10];
        assert_eq!(p.csrcs.ids(), csrcs, "CSRCs reach the pipeline");
        assert_eq!(p.audio_level, Some(30));
        assert_eq!(p.csrcs.levels(), &[Some(10), Some(11)]);
    }

    // What came back: decode and correlate with what was sent.
    let echoed = peer.take_received();
    assert!(
        echoed.len() >= 190,
        "peer got {} echoed packets",
        echoed.len()
    );
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = Vec::new();
    let mut out = [0f32; 5760];
    let mut arrivals = Vec::new();
    let ssrc = echoed[0].packet.header.ssrc;
    for r in &echoed {
        let h = &r.packet.header;
        assert_eq!(
            h.payload_type, PEER_OPUS_PT,
            "answer uses the offer's payload type"
        );
        assert_eq!(h.ssrc, ssrc);
        let n = dec
            .decode_float(&r.packet.payload, &mut out, false)
            .expect("decode");
        arrivals.push((pcm.len(), r.at));
        pcm.extend_from_slice(&out[..n]);
    }
    for w in echoed.windows(2) {
        let (a, b) = (&w[0].packet.header, &w[1].packet.header);
        assert_eq!(b.sequence_number, a.sequence_number.wrapping_add(1));
        // Contiguous 20 ms packets, unless a stall of the test's reflector (a loaded
        // machine) made the endpoint start a new talkspurt on the clock.
        let step = b.timestamp.wrapping_sub(a.timestamp);
        assert!(
            step == 960 || (b.marker && step > 960 && step < 48_000),
            "timestamp step {step}, marker {}",
            b.marker
        );
    }
    // The path is a packet reflector: every payload comes back unchanged.
    let same = echoed
        .iter()
        .zip(&sent_payloads)
        .filter(|(r, p)| r.packet.payload[..] == p[..])
        .count();
    assert_eq!(same, echoed.len().min(sent_payloads.len()));
    let (lag, corr) = best_alignment(&signal, &pcm, -2_000..2_000);
    assert!(corr > 0.9, "echo correlation {corr:.3} at lag {lag}");
    // Mouth-to-ear over the network path: echoed sample i was sent as sample i + lag.
    let mut delays: Vec<f64> = arrivals
        .iter()
        .filter_map(|(start, at)| {
            // Nearest frame: the lag includes the codec's sub-frame delay.
            let frame = usize::try_from((*start as i64 + lag + 480).max(0)).ok()? / 960;
            sent_at
                .get(frame)
                .map(|t| at.saturating_duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let median = delays[delays.len() / 2];
    println!(
        "echo: correlation {corr:.3}, lag {lag} samples, network round trip median {median:.1} ms, p95 {:.1} ms",
        delays[delays.len() * 95 / 100]
    );

    // DTMF from the service to the bot: one event, reported once.
    let ts = 300 * 960;
    for (marker, payload) in event_packets(5, 5) {
        peer.send(PEER_TE_PT, ts, marker, &[], None, &payload).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ev = wait_event(&mut s.events, Duration::from_secs(3), |e| {
        matches!(e, EndpointEvent::ToneReceived(_))
    })
    .await;
    assert_eq!(ev, EndpointEvent::ToneReceived(Tone::Tone5));

    // DTMF from the bot to the service, on the audio's SSRC and sequence space.
    peer.take_received();
    s.handle
        .send_tone(Tone::Pound, Duration::from_millis(100))
        .expect("send tone");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = peer.take_received();
    let tones: Vec<_> = got
        .iter()
        .filter(|r| r.packet.header.payload_type == PEER_TE_PT)
        .collect();
    assert_eq!(tones.len(), 7, "5 packets of 20 ms plus 2 repeated ends");
    assert!(tones[0].packet.header.marker);
    assert!(tones.iter().all(|r| r.packet.header.ssrc == ssrc));
    assert!(
        tones.iter().all(|r| r.packet.payload[0] == 11),
        "event # is 11"
    );
    let ts0 = tones[0].packet.header.timestamp;
    assert!(tones.iter().all(|r| r.packet.header.timestamp == ts0));
    let last = &tones[6].packet.payload;
    assert_eq!(last[1] & 0x80, 0x80, "end bit");
    assert_eq!(
        u16::from_be_bytes([last[2], last[3]]),
        4800,
        "100 ms at 48 kHz"
    );
    assert_eq!(
        tones[6]
            .packet
            .header
            .sequence_number
            .wrapping_sub(tones[0].packet.header.sequence_number),
        6
    );

    // Receiver reports from the peer reach the quality data.
    let q = wait_event(
        &mut s.events,
        Duration::from_secs(6),
        |e| matches!(e, EndpointEvent::Quality(q) if q.round_trip.is_some()),
    )
    .await;
    println!("quality: {q:?}");

    stop.store(true, Ordering::Relaxed);
    reflector.await.expect("reflector");
    peer.pc.close().await.expect("close");
    s.endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_loss_is_counted_and_a_vanished_peer_fails_the_stream() {
    let media_timeout = Duration::from_secs(2);
    let mut s = setup(media_timeout).await;
    let (mut peer, _location) = connect(&mut s).await;
    let far = s.far.take().expect("far end");
    let status = Arc::clone(&far.status);
    let (seen, stop, reflector) = spawn_reflector(far);

    let signal = chirp(48_000 * 3, 300.0, 3_000.0);
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).expect("encoder");
    enc.set_inband_fec(true).expect("fec");
    enc.set_packet_loss_perc(10).expect("loss");
    let mut buf = [0u8; 1500];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut lost = 0;
    for (i, frame) in signal.chunks_exact(960).enumerate() {
        tick.tick().await;
        let n = enc.encode_float(frame, &mut buf).expect("encode");
        // 10 % loss on the way in, spread evenly.
        if i % 10 == 7 {
            peer.lose_one();
            lost += 1;
            continue;
        }
        peer.send(PEER_OPUS_PT, (i * 960) as u32, i == 0, &[], None, &buf[..n])
            .await;
    }
    // The first report after the last packet arrived counts every gap.
    let delivered = 150 - lost;
    let q = wait_event(
        &mut s.events,
        Duration::from_secs(6),
        |e| matches!(e, EndpointEvent::Quality(q) if q.inbound_packets == delivered),
    )
    .await;
    let EndpointEvent::Quality(q) = q else {
        unreachable!()
    };
    assert_eq!(q.inbound_lost, lost, "{q:?}");
    assert_eq!(seen.lock().expect("seen").len(), 150 - lost as usize);
    assert!(s.handle.is_active(), "loss does not break the leg");
    assert!(peer.take_received().len() >= 100, "the echo kept flowing");

    // The peer vanishes without a word: its sockets close, nothing more arrives.
    let vanished = Instant::now();
    peer.pc.close().await.expect("close");
    drop(peer);
    let ev = wait_event(&mut s.events, media_timeout + Duration::from_secs(5), |e| {
        matches!(
            e,
            EndpointEvent::StreamFailure(_) | EndpointEvent::LegEnded(_)
        )
    })
    .await;
    println!("the leg ended: {ev:?} after {:?}", vanished.elapsed());
    if LEAN_MEDIA {
        // The peer's close sends DTLS close_notify, which the lean path reads as the peer
        // leaving, at once.
        assert_eq!(ev, EndpointEvent::LegEnded(EndReason::PeerLeft));
        assert!(
            vanished.elapsed() < media_timeout,
            "{:?}",
            vanished.elapsed()
        );
    } else {
        // The whole stack does not report close_notify: the media timeout notices.
        assert!(matches!(
            ev,
            EndpointEvent::StreamFailure(
                FailureReason::PeerSilent | FailureReason::TransportFailed
            )
        ));
    }
    assert!(!status.is_active());
    assert!(!s.handle.is_active());
    assert_eq!(
        s.handle.send_tone(Tone::A, Duration::from_millis(100)),
        Err(media_endpoint::ToneError::Ended)
    );

    stop.store(true, Ordering::Relaxed);
    reflector.await.expect("reflector");
    s.endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_only_service_gets_a_receive_only_answer() {
    let mut s = setup(Duration::from_secs(10)).await;
    let mut peer =
        Peer::with_direction(rtc::rtp_transceiver::RTCRtpTransceiverDirection::Sendonly).await;
    let offer = peer.offer().await;
    assert!(offer.contains("a=sendonly"), "{offer}");
    let r = post_sdp(s.endpoint.local_addr(), &session_path(&s), &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.body.contains("a=recvonly"), "{}", r.body);
    peer.accept(r.body.clone()).await;
    peer.wait_connected().await;
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::SendStatus(SendStatus::Active)
    })
    .await;
    let mut far = s.far.take().expect("far end");
    for i in 0..10u32 {
        peer.send(
            PEER_OPUS_PT,
            i * 960,
            i == 0,
            &[],
            None,
            &[0xf8, 0xff, 0xfe],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut got = 0;
    while far.received.pop().is_ok() {
        got += 1;
    }
    assert_eq!(got, 10, "media from a send-only service arrives");
    peer.pc.close().await.expect("close");
    s.endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_section_is_declined_and_audio_still_connects() {
    let mut s = setup(Duration::from_secs(10)).await;
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let attr = |key: &str| {
        offer
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .expect("attribute")
            .trim()
            .to_owned()
    };
    let (ufrag, pwd, fingerprint) = (
        attr("a=ice-ufrag:"),
        attr("a=ice-pwd:"),
        attr("a=fingerprint:"),
    );
    let with_video = format!(
        "{}m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\na=mid:1\r\n\
         a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:{fingerprint}\r\na=rtcp-mux\r\n\
         a=rtpmap:96 VP8/90000\r\na=sendrecv\r\n",
        offer.replace("a=group:BUNDLE 0", "a=group:BUNDLE 0 1")
    );
    let r = post_sdp(s.endpoint.local_addr(), &session_path(&s), &with_video).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.body.contains("m=video 0 "),
        "video must be declined: {}",
        r.body
    );
    assert!(r.body.contains("m=audio 9 "), "{}", r.body);
    // The offerer expects an answer to its own two sections; the audio one carries the media.
    peer.pc
        .set_remote_description(
            webrtc::peer_connection::RTCSessionDescription::answer(
                r.body
                    .split("m=video")
                    .next()
                    .expect("audio part")
                    .replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0"),
            )
            .expect("answer"),
        )
        .await
        .expect("set remote");
    peer.wait_connected().await;
    wait_event(&mut s.events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::SendStatus(SendStatus::Active)
    })
    .await;
    peer.pc.close().await.expect("close");
    s.endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtcp_bye_ends_the_leg() {
    use webrtc::media_stream::track_local::TrackLocal;
    let mut s = setup(Duration::from_secs(10)).await;
    let (mut peer, _location) = connect(&mut s).await;
    for i in 0..5u32 {
        peer.send(
            PEER_OPUS_PT,
            i * 960,
            i == 0,
            &[],
            None,
            &[0xf8, 0xff, 0xfe],
        )
        .await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    peer.track
        .write_rtcp(vec![Box::new(rtc::rtcp::goodbye::Goodbye {
            sources: vec![peer.ssrc],
            reason: bytes::Bytes::from_static(b"call ended"),
        })])
        .await
        .expect("write BYE");
    let ev = wait_event(&mut s.events, Duration::from_secs(3), |e| {
        matches!(
            e,
            EndpointEvent::LegEnded(_) | EndpointEvent::StreamFailure(_)
        )
    })
    .await;
    assert_eq!(ev, EndpointEvent::LegEnded(EndReason::PeerLeft));
    assert!(!s.handle.is_active());
    peer.pc.close().await.expect("close");
    s.endpoint.shutdown().await;
}
