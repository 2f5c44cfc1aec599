//! ICE addresses with a port range and an announced (1:1 NAT) address, over HTTP and UDP
//! on 127.0.0.1: each leg's socket takes a free port of the range (skipping ports other
//! legs hold or other programs bound), its host candidate names the announced address, legs
//! on ranged ports connect, and a leg for which the range has no free port is refused with
//! 503 (`Retry-After: 1`) naming the range, its session left waiting for a later offer.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use common::{Peer, host_candidates, http, post_offer};
use media_endpoint::{EndpointConfig, IceAddress, MediaEndpoint, QueueLink, SessionHooks};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PUBLIC: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));

/// `len` consecutive UDP ports starting at one that was free a moment ago (others may be
/// taken: the endpoint skips them).
fn port_range(len: u16) -> RangeInclusive<u16> {
    let probe = UdpSocket::bind((LOCAL, 0)).unwrap();
    let low = probe.local_addr().unwrap().port().min(u16::MAX - len);
    low..=low + len - 1
}

/// A registered session and what its hooks hand out (kept alive with it).
struct Session {
    id: MediaSessionId,
    _handle: media_endpoint::SessionHandle,
    _far: media_endpoint::QueueLink,
    _events: mpsc::Receiver<media_endpoint::EndpointEvent>,
}

fn register(endpoint: &MediaEndpoint) -> Session {
    let (far, link) = QueueLink::new(64);
    let (tx, events) = mpsc::channel(64);
    let id = MediaSessionId::random();
    let handle = endpoint
        .register(id, SessionHooks::new(ContextId::random(), link, tx))
        .unwrap();
    Session {
        id,
        _handle: handle,
        _far: far,
        _events: events,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_take_free_ports_of_the_range_and_announce_the_public_address() {
    common::init_tracing();
    let range = port_range(20);
    // Another program holds the range's first port.
    let squatter = UdpSocket::bind((LOCAL, *range.start()));
    let endpoint = MediaEndpoint::bind(
        EndpointConfig::new("127.0.0.1:0".parse().unwrap()).with_ice(vec![
            IceAddress::new(LOCAL)
                .with_ports(range.clone())
                .announced_as(PUBLIC),
        ]),
    )
    .await
    .unwrap();
    let mut ports = Vec::new();
    let mut legs = Vec::new();
    for _ in 0..3 {
        let session = register(&endpoint);
        let mut peer = Peer::new().await;
        let offer = peer.offer().await;
        let answer = post_offer(&endpoint, session.id, &offer).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let candidates = host_candidates(&answer.body);
        assert_eq!(candidates.len(), 1, "{}", answer.body);
        let c = candidates[0];
        assert_eq!(c.ip(), PUBLIC, "{}", answer.body);
        assert!(range.contains(&c.port()), "{c} outside {range:?}");
        if squatter.is_ok() {
            assert_ne!(c.port(), *range.start(), "a port in use was taken");
        }
        // The local address appears nowhere in what the peer is told.
        assert!(!answer.body.contains("127.0.0.1"), "{}", answer.body);
        ports.push(c.port());
        legs.push((session, peer));
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "two live legs share a port: {ports:?}");
    endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_on_ranged_ports_connect() {
    common::init_tracing();
    let range = port_range(20);
    let endpoint = MediaEndpoint::bind(
        EndpointConfig::new("127.0.0.1:0".parse().unwrap())
            .with_ice(vec![IceAddress::new(LOCAL).with_ports(range.clone())]),
    )
    .await
    .unwrap();
    let mut legs = Vec::new();
    for _ in 0..3 {
        let session = register(&endpoint);
        let mut peer = Peer::new().await;
        let offer = peer.offer().await;
        let answer = post_offer(&endpoint, session.id, &offer).await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let candidates = host_candidates(&answer.body);
        assert!(
            candidates
                .iter()
                .all(|c| c.ip() == LOCAL && range.contains(&c.port())),
            "{candidates:?}"
        );
        peer.accept(answer.body).await;
        legs.push((session, peer));
    }
    for (_, peer) in &mut legs {
        peer.wait_connected().await;
    }
    endpoint.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_range_refuses_the_leg_naming_it_and_the_session_waits() {
    common::init_tracing();
    let range = port_range(1);
    let port = *range.start();
    let endpoint = MediaEndpoint::bind(
        EndpointConfig::new("127.0.0.1:0".parse().unwrap())
            .with_ice(vec![IceAddress::new(LOCAL).with_ports(range)]),
    )
    .await
    .unwrap();
    let first = register(&endpoint);
    let mut first_peer = Peer::new().await;
    let offer = first_peer.offer().await;
    let answer = post_offer(&endpoint, first.id, &offer).await;
    assert_eq!(answer.status, 201, "{}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert_eq!(
        host_candidates(&answer.body),
        [SocketAddr::new(LOCAL, port)]
    );

    // The only port is taken: the second leg is refused, naming the range.
    let second = register(&endpoint);
    let mut second_peer = Peer::new().await;
    let offer = second_peer.offer().await;
    let refused = post_offer(&endpoint, second.id, &offer).await;
    // Load, not a fault: 503, to be tried again shortly.
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(
        refused.body.contains(&format!("in {port}-{port}")),
        "{}",
        refused.body
    );
    // Refused again while the first leg lives: nothing of the failed attempt stayed.
    let again = post_offer(&endpoint, second.id, &offer).await;
    assert_eq!(again.status, 503, "{}", again.body);

    // The first leg ends: the second session, still waiting, gets its leg on the port.
    let deleted = http(endpoint.local_addr(), "DELETE", &location, None, b"").await;
    assert_eq!(deleted.status, 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let answer = loop {
        let answer = post_offer(&endpoint, second.id, &offer).await;
        if answer.status == 201 {
            break answer;
        }
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            Instant::now() < deadline,
            "the port was not released: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        host_candidates(&answer.body),
        [SocketAddr::new(LOCAL, port)]
    );
    second_peer.accept(answer.body).await;
    second_peer.wait_connected().await;
    endpoint.shutdown().await;
}
