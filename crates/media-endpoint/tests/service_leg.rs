//! The service side (`media_endpoint::service`) against the endpoint, both over HTTP and
//! UDP on 127.0.0.1: connect, audio both ways with CSRCs and their levels, DTMF both ways,
//! close with DELETE, a modelled network under the leg, and the refusals.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use media_endpoint::service::{ConnectError, PathPacket, SendPath, ServiceLeg, ServiceLegConfig};
use media_endpoint::{
    EndReason, EndpointConfig, EndpointEvent, MediaEndpoint, OutboundAudio, QueueLink,
    ReceivedPacket, SendStatus, SessionHooks, Tone,
};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

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

/// A 20 ms SILK wideband Opus TOC byte and a few payload bytes.
fn opus_like(tag: u8) -> Bytes {
    Bytes::from(vec![9 << 3, tag, tag, tag])
}

/// Sends `n` packets, one per 20 ms, and collects what arrives on `from` meanwhile (plus
/// a 300 ms tail).
async fn exchange(
    to: &mut rtrb::Producer<OutboundAudio>,
    from: &mut rtrb::Consumer<ReceivedPacket>,
    n: u32,
    make: impl Fn(u32) -> OutboundAudio,
) -> Vec<ReceivedPacket> {
    let mut got = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..n + 15 {
        tick.tick().await;
        if i < n {
            to.push(make(i)).expect("room to send");
        }
        while let Ok(p) = from.pop() {
            got.push(p);
        }
    }
    got
}

/// An endpoint on 127.0.0.1 with one registered session whose bot side is a
/// [`QueueLink`], and the session's URL for a service leg.
struct Bed {
    endpoint: MediaEndpoint,
    session: MediaSessionId,
    handle: media_endpoint::SessionHandle,
    bot_far: QueueLink,
    bot_events: mpsc::Receiver<EndpointEvent>,
    url: String,
}

async fn bed() -> Bed {
    bed_with(Vec::new()).await
}

/// [`bed`] for a session that asked for unmixed speaker streams named `unmixed`.
async fn bed_with(unmixed: Vec<ContextId>) -> Bed {
    common::init_tracing();
    let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    let (bot_far, bot_link) = QueueLink::new(512);
    let (bot_tx, bot_events) = mpsc::channel(1024);
    let session = MediaSessionId::random();
    let handle = endpoint
        .register(
            session,
            SessionHooks::new(ContextId::random(), bot_link, bot_tx).with_unmixed_contexts(unmixed),
        )
        .expect("register");
    let url = format!("{}/sessions/{}", endpoint.mp_uri(), session.expose());
    Bed {
        endpoint,
        session,
        handle,
        bot_far,
        bot_events,
        url,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_leg_reaches_the_endpoint_with_csrcs_and_dtmf_both_ways() {
    let Bed {
        endpoint,
        session,
        handle,
        mut bot_far,
        mut bot_events,
        url,
    } = bed().await;

    let (mut svc_far, svc_link) = QueueLink::new(512);
    let (svc_tx, mut svc_events) = mpsc::channel(1024);
    let leg = ServiceLeg::connect(&url, ServiceLegConfig::default(), svc_link, svc_tx)
        .await
        .expect("connect");
    let active = |e: &EndpointEvent| *e == EndpointEvent::SendStatus(SendStatus::Active);
    wait_event(&mut svc_events, Duration::from_secs(10), active).await;
    wait_event(&mut bot_events, Duration::from_secs(10), active).await;
    assert!(leg.is_active() && handle.is_active());
    assert!(
        !format!("{leg:?}").contains(&session.expose().to_string()),
        "Debug hides the session"
    );

    // Service to bot: a mixer's packets, two active speakers with levels.
    let mut speakers = audio_pipeline::Csrcs::new();
    speakers.push(1001, Some(12)).expect("room");
    speakers.push(1002, Some(40)).expect("room");
    let got = exchange(&mut svc_far.to_send, &mut bot_far.received, 25, |i| {
        OutboundAudio::new(opus_like(i as u8), Some(20)).with_csrcs(speakers)
    })
    .await;
    assert!(got.len() >= 20, "bot received {} of 25 packets", got.len());
    for p in &got {
        assert_eq!(p.csrcs.ids(), &[1001, 1002]);
        assert_eq!(p.csrcs.levels(), &[Some(12), Some(40)]);
        assert_eq!(p.audio_level, Some(20));
    }

    // Bot to service: plain packets, no CSRCs.
    let got = exchange(&mut bot_far.to_send, &mut svc_far.received, 25, |i| {
        OutboundAudio::new(opus_like(100 + i as u8), None)
    })
    .await;
    assert!(
        got.len() >= 20,
        "service received {} of 25 packets",
        got.len()
    );
    assert!(got.iter().all(|p| p.csrcs.is_empty()));
    assert!(got.iter().any(|p| p.payload[1] == 110));

    // DTMF both ways.
    leg.send_tone(Tone::Tone5, Duration::from_millis(120))
        .expect("tone towards the bot");
    let ev = wait_event(&mut bot_events, Duration::from_secs(5), |e| {
        matches!(e, EndpointEvent::ToneReceived(_))
    })
    .await;
    assert_eq!(ev, EndpointEvent::ToneReceived(Tone::Tone5));
    handle
        .send_tone(Tone::Pound, Duration::from_millis(120))
        .expect("tone from the bot");
    let ev = wait_event(&mut svc_events, Duration::from_secs(5), |e| {
        matches!(e, EndpointEvent::ToneReceived(_))
    })
    .await;
    assert_eq!(ev, EndpointEvent::ToneReceived(Tone::Pound));

    // Close: the endpoint hears a DELETE.
    leg.close().await.expect("close");
    wait_event(&mut bot_events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::LegEnded(EndReason::Deleted)
    })
    .await;
    wait_event(&mut svc_events, Duration::from_secs(5), |e| {
        *e == EndpointEvent::LegEnded(EndReason::Closed)
    })
    .await;
    drop(handle);
    endpoint.shutdown().await;
}

/// A session asking for the speaker streams `asked`, reached by a service leg offering
/// `offered`, connected and active: the bed, the service's far end, the leg, and what the
/// session was told of the speaker streams.
async fn speaker_bed(
    asked: Vec<ContextId>,
    offered: Vec<ContextId>,
) -> (Bed, QueueLink, ServiceLeg, EndpointEvent) {
    let mut bed = bed_with(asked).await;
    let (svc_far, svc_link) = QueueLink::new(512);
    let (svc_tx, _svc_events) = mpsc::channel(1024);
    let config = ServiceLegConfig::default().with_speaker_streams(offered);
    let leg = ServiceLeg::connect(&bed.url, config, svc_link, svc_tx)
        .await
        .expect("connect");
    let told = wait_event(&mut bed.bot_events, Duration::from_secs(10), |e| {
        matches!(e, EndpointEvent::UnmixedStreams { .. })
    })
    .await;
    wait_event(&mut bed.bot_events, Duration::from_secs(10), |e| {
        *e == EndpointEvent::SendStatus(SendStatus::Active)
    })
    .await;
    (bed, svc_far, leg, told)
}

/// A session that asked for two unmixed speaker streams: a service offering both delivers
/// each speaker's packets on its stream, with its CSRC; a service without unmixed audio
/// still delivers the mix, and the session hears that no speaker stream comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaker_streams_reach_the_session_that_asked_and_their_absence_is_told() {
    let streams = vec![ContextId::random(), ContextId::random()];
    let (mut bed, mut svc_far, leg, told) = speaker_bed(streams.clone(), streams.clone()).await;
    assert_eq!(
        told,
        EndpointEvent::UnmixedStreams {
            requested: 2,
            offered: 2
        }
    );
    let one = |id: u32| {
        let mut c = audio_pipeline::Csrcs::new();
        c.push(id, Some(25)).expect("room");
        c
    };
    // Three packets a tick: the mix (two speakers) and each speaker on its stream.
    let mut mix = audio_pipeline::Csrcs::new();
    mix.push(21, Some(25)).expect("room");
    mix.push(22, Some(30)).expect("room");
    let got = exchange(&mut svc_far.to_send, &mut bed.bot_far.received, 60, |i| {
        let (stream, csrcs) = match i % 3 {
            0 => (0, mix),
            1 => (1, one(21)),
            _ => (2, one(22)),
        };
        OutboundAudio::new(opus_like(i as u8), Some(25))
            .with_csrcs(csrcs)
            .on_stream(stream)
    })
    .await;
    for stream in 0..3u8 {
        let on: Vec<&ReceivedPacket> = got.iter().filter(|p| p.stream == stream).collect();
        assert!(
            on.len() >= 15,
            "stream {stream}: {} of 20 packets",
            on.len()
        );
        let expected: &[u32] = match stream {
            0 => &[21, 22],
            1 => &[21],
            _ => &[22],
        };
        assert!(
            on.iter().all(|p| p.csrcs.ids() == expected),
            "stream {stream}"
        );
        assert!(
            on.iter()
                .all(|p| u32::from(p.payload[1]) % 3 == u32::from(stream))
        );
    }
    leg.close().await.expect("close");
    drop(bed.handle);
    bed.endpoint.shutdown().await;

    // A service that sends the mix only.
    let (mut bed, mut svc_far, leg, told) = speaker_bed(streams, Vec::new()).await;
    assert_eq!(
        told,
        EndpointEvent::UnmixedStreams {
            requested: 2,
            offered: 0
        }
    );
    let got = exchange(&mut svc_far.to_send, &mut bed.bot_far.received, 20, |i| {
        OutboundAudio::new(opus_like(i as u8), Some(25)).with_csrcs(mix)
    })
    .await;
    assert!(got.len() >= 15, "the mix: {} of 20 packets", got.len());
    assert!(got.iter().all(|p| p.stream == 0));
    leg.close().await.expect("close");
    drop(bed.handle);
    bed.endpoint.shutdown().await;
}

/// A network that loses the 4th audio packet, swaps the 6th and 7th and sends the 9th
/// twice (counted from the first packet it carries).
#[derive(Default)]
struct Jumbled {
    first: Option<u16>,
    held: Option<PathPacket>,
    out: std::collections::VecDeque<PathPacket>,
}

impl SendPath for Jumbled {
    fn send(&mut self, _now: Instant, packet: PathPacket) {
        let seq = packet.sequence_number();
        let index = seq.wrapping_sub(*self.first.get_or_insert(seq));
        match index {
            3 => {}
            5 => self.held = Some(packet),
            8 => self.out.extend([packet.clone(), packet]),
            _ => {
                self.out.push_back(packet);
                self.out.extend(self.held.take());
            }
        }
    }

    fn poll_receive(&mut self, _now: Instant) -> Option<PathPacket> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_under_the_leg_loses_and_reorders_what_the_leg_numbered() {
    let Bed {
        endpoint,
        session: _,
        handle,
        mut bot_far,
        mut bot_events,
        url,
    } = bed().await;
    let (mut svc_far, svc_link) = QueueLink::new(512);
    let (svc_tx, mut svc_events) = mpsc::channel(1024);
    let config = ServiceLegConfig::default();
    let leg = ServiceLeg::connect_over(&url, config, svc_link, Jumbled::default(), svc_tx)
        .await
        .expect("connect");
    let active = |e: &EndpointEvent| *e == EndpointEvent::SendStatus(SendStatus::Active);
    wait_event(&mut svc_events, Duration::from_secs(10), active).await;
    wait_event(&mut bot_events, Duration::from_secs(10), active).await;

    let got = exchange(&mut svc_far.to_send, &mut bot_far.received, 12, |i| {
        OutboundAudio::new(opus_like(i as u8), None)
    })
    .await;
    let tags: Vec<u8> = got.iter().map(|p| p.payload[1]).collect();
    let first = got.first().expect("packets").seq;
    let seqs: Vec<u16> = got.iter().map(|p| p.seq.wrapping_sub(first)).collect();
    // The leg numbered the packets in order; the network lost #3, swapped #5 and #6 and
    // sent #8 twice, which SRTP's replay check at the endpoint drops.
    assert_eq!(tags, [0, 1, 2, 4, 6, 5, 7, 8, 9, 10, 11], "{seqs:?}");
    assert_eq!(seqs, [0, 1, 2, 4, 6, 5, 7, 8, 9, 10, 11]);
    leg.close().await.expect("close");
    drop(handle);
    endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_named() {
    common::init_tracing();
    let endpoint = MediaEndpoint::bind(EndpointConfig::new("127.0.0.1:0".parse().expect("addr")))
        .await
        .expect("bind");
    let unknown = format!(
        "{}/sessions/{}",
        endpoint.mp_uri(),
        MediaSessionId::random().expose()
    );
    let (_far, link) = QueueLink::new(8);
    let (tx, _rx) = mpsc::channel(8);
    let err = ServiceLeg::connect(&unknown, ServiceLegConfig::default(), link, tx)
        .await
        .expect_err("unknown session");
    assert!(
        matches!(err, ConnectError::Refused { status: 404 }),
        "{err:?}"
    );

    let (_far, link) = QueueLink::new(8);
    let (tx, _rx) = mpsc::channel(8);
    let err = ServiceLeg::connect("not a url", ServiceLegConfig::default(), link, tx)
        .await
        .expect_err("bad url");
    assert!(matches!(err, ConnectError::BadUrl), "{err:?}");

    // Nobody listens there: a closed port is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let (_far, link) = QueueLink::new(8);
    let (tx, _rx) = mpsc::channel(8);
    let err = ServiceLeg::connect(
        &format!("http://{addr}/MediaProcessor/sessions/x"),
        ServiceLegConfig::default(),
        link,
        tx,
    )
    .await
    .expect_err("nobody listening");
    assert!(matches!(err, ConnectError::Unreachable(_)), "{err:?}");
    endpoint.shutdown().await;
}
