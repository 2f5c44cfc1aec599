//! Shared-UDP mode over HTTP and UDP on 127.0.0.1, against independent WebRTC peers
//! (webrtc-rs): every leg's host candidate names its pump's one socket (a port of the
//! range), the legs connect, and each one's audio reaches its own session and only it,
//! both ways, while the pump sends in batches; a leg that ends leaves the others running,
//! and datagrams from nobody's address are dropped and counted.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use common::{PEER_OPUS_PT, Peer, host_candidates, http, post_offer};
use media_endpoint::{
    EndpointConfig, EndpointEvent, IceAddress, MediaEndpoint, OutboundAudio, QueueLink,
    SessionHooks, network_stats,
};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LEGS: usize = 3;

/// One leg: its session's bot side and the peer at the far end.
struct Leg {
    _handle: media_endpoint::SessionHandle,
    far: QueueLink,
    _events: mpsc::Receiver<EndpointEvent>,
    peer: Peer,
    location: String,
}

async fn connect(endpoint: &MediaEndpoint) -> (Leg, SocketAddr) {
    let (far, link) = QueueLink::new(512);
    let (tx, events) = mpsc::channel(256);
    let id = MediaSessionId::random();
    let handle = endpoint
        .register(id, SessionHooks::new(ContextId::random(), link, tx))
        .unwrap();
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let answer = post_offer(endpoint, id, &offer).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let candidates = host_candidates(&answer.body);
    assert_eq!(candidates.len(), 1, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    peer.accept(answer.body).await;
    let leg = Leg {
        _handle: handle,
        far,
        _events: events,
        peer,
        location,
    };
    (leg, candidates[0])
}

/// A STUN Binding request for username fragment `ufrag`.
fn binding_request(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:someone");
    let mut attr = 0x0006u16.to_be_bytes().to_vec();
    attr.extend_from_slice(&(user.len() as u16).to_be_bytes());
    attr.extend_from_slice(user.as_bytes());
    attr.resize(attr.len().div_ceil(4) * 4, 0);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[9; 12]);
    m.extend_from_slice(&attr);
    m
}

/// Each peer sends `n` packets tagged with its own index (payload byte 1) and the bot of
/// each session sends `n` tagged with 100 + its index; what every side received, by leg.
async fn exchange(legs: &mut [Leg], n: u32) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut at_bot = vec![Vec::new(); legs.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for i in 0..n + 15 {
        tick.tick().await;
        for (k, leg) in legs.iter_mut().enumerate() {
            if i < n {
                let tag = k as u8;
                leg.peer
                    .send(PEER_OPUS_PT, i * 960, false, &[], None, &[9 << 3, tag, tag])
                    .await;
                let tag = 100 + k as u8;
                let out = OutboundAudio::new(Bytes::from(vec![9 << 3, tag, tag]), None);
                leg.far.to_send.push(out).expect("room to send");
            }
            while let Ok(p) = leg.far.received.pop() {
                at_bot[k].push(p.payload[1]);
            }
        }
    }
    let at_peer = legs
        .iter()
        .map(|l| {
            l.peer
                .take_received()
                .iter()
                .filter_map(|r| r.packet.payload.get(1).copied())
                .collect()
        })
        .collect();
    (at_bot, at_peer)
}

fn assert_own(what: &str, got: &[Vec<u8>], tag: impl Fn(usize) -> u8, n: usize) {
    for (k, tags) in got.iter().enumerate() {
        assert!(
            tags.len() >= n * 8 / 10,
            "{what} {k} got {} of {n} packets",
            tags.len()
        );
        assert!(
            tags.iter().all(|&t| t == tag(k)),
            "{what} {k} got another leg's packets: {tags:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_share_the_pumps_socket_and_each_hears_only_its_own_peer() {
    common::init_tracing();
    let probe = UdpSocket::bind((LOCAL, 0)).unwrap();
    let low = probe.local_addr().unwrap().port().min(u16::MAX - 10);
    drop(probe);
    let range = low..=low + 9;
    let endpoint = MediaEndpoint::bind(
        EndpointConfig::new("127.0.0.1:0".parse().unwrap())
            .with_ice(vec![IceAddress::new(LOCAL).with_ports(range.clone())])
            .with_shared_udp(true)
            // The whole stack on shared sockets (Chromium's interop test has the lean path
            // on them).
            .with_lean_media(false),
    )
    .await
    .unwrap();
    let mut legs = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..LEGS {
        let (leg, addr) = connect(&endpoint).await;
        legs.push(leg);
        addrs.push(addr);
    }
    // One pump per two cores: the legs name at most that many sockets, all in the range.
    let stats = network_stats();
    assert!(stats.shared_sockets >= 1 && stats.shared_sockets <= stats.pumps);
    let mut distinct = addrs.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() <= stats.pumps, "{addrs:?}");
    assert!(
        addrs
            .iter()
            .all(|a| a.ip() == LOCAL && range.contains(&a.port()))
    );
    for leg in &mut legs {
        leg.peer.wait_connected().await;
    }

    let before = network_stats();
    let n = 40;
    let (at_bot, at_peer) = exchange(&mut legs, n).await;
    assert_own("session", &at_bot, |k| k as u8, n as usize);
    assert_own("peer", &at_peer, |k| 100 + k as u8, n as usize);
    let after = network_stats();
    let out = after.datagrams_out - before.datagrams_out;
    let calls = after.send_calls - before.send_calls;
    assert!(
        out >= u64::from(n) * LEGS as u64 * 8 / 10,
        "{out} datagrams out"
    );
    // One tick's packets of all legs leave together: fewer calls than datagrams.
    assert!(calls < out, "{calls} send calls for {out} datagrams");
    assert_eq!(after.datagrams_unrouted, before.datagrams_unrouted);

    // Nobody's datagrams: a stranger's RTP and a Binding request for an unknown fragment.
    let stranger = UdpSocket::bind((LOCAL, 0)).unwrap();
    stranger.send_to(&[0x80; 40], addrs[0]).unwrap();
    stranger
        .send_to(&binding_request("nobody"), addrs[0])
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while network_stats().datagrams_unrouted < before.datagrams_unrouted + 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            network_stats()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The first leg ends; the others keep their paths.
    let first = legs.remove(0);
    let deleted = http(endpoint.local_addr(), "DELETE", &first.location, None, b"").await;
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    drop(first);
    let (at_bot, at_peer) = exchange(&mut legs, 20).await;
    assert_own("session", &at_bot, |k| k as u8, 20);
    assert_own("peer", &at_peer, |k| 100 + k as u8, 20);
    endpoint.shutdown().await;
}
