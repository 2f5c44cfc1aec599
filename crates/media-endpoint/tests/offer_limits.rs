//! Bounded work per offer: the number of ICE candidates an offer may carry, at the limit and
//! past it, and what an offer full of candidates that never answer costs the endpoint.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{HttpResponse, Peer, http};
use media_endpoint::{EndpointConfig, EndpointEvent, MediaEndpoint, QueueLink, SessionHooks};
use media_session::{ContextId, MediaSessionId};
use tokio::sync::mpsc;

/// Largest SDP body the endpoint takes (its `DefaultBodyLimit`).
const MAX_SDP_BYTES: usize = 64 * 1024;

struct Session {
    endpoint: MediaEndpoint,
    path: String,
    events: mpsc::Receiver<EndpointEvent>,
    _handle: media_endpoint::SessionHandle,
    _far: QueueLink,
}

async fn session() -> Session {
    session_with(EndpointConfig::new("127.0.0.1:0".parse().expect("addr"))).await
}

async fn session_with(config: EndpointConfig) -> Session {
    common::init_tracing();
    let endpoint = MediaEndpoint::bind(config).await.expect("bind");
    let (far, link) = QueueLink::new(256);
    let (tx, events) = mpsc::channel(1024);
    let id = MediaSessionId::random();
    let handle = endpoint
        .register(id, SessionHooks::new(ContextId::random(), link, tx))
        .expect("register");
    Session {
        path: format!("/MediaProcessor/sessions/{}", id.expose()),
        endpoint,
        events,
        _handle: handle,
        _far: far,
    }
}

async fn post_sdp(addr: SocketAddr, path: &str, sdp: &str) -> HttpResponse {
    http(addr, "POST", path, Some("application/sdp"), sdp.as_bytes()).await
}

fn candidates(sdp: &str) -> usize {
    sdp.lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .count()
}

/// `offer` without its own candidates.
fn without_candidates(offer: &str) -> String {
    offer
        .split_inclusive("\r\n")
        .filter(|l| !l.starts_with("a=candidate:"))
        .collect()
}

/// `offer` with host candidates on 127.0.0.1 at `ports`, after the first m-line's `a=mid`.
/// Their priority is the lowest, so the peer's own candidate is still the one nominated;
/// the short lines let about 1 200 fit under the body cap.
fn with_candidates(offer: &str, ports: impl IntoIterator<Item = u16>) -> String {
    let mut out = String::with_capacity(offer.len() + 64 * 1024);
    let mut ports = Some(ports);
    for line in offer.split_inclusive("\r\n") {
        out.push_str(line);
        if line.starts_with("a=mid:")
            && let Some(ports) = ports.take()
        {
            for (i, port) in ports.into_iter().enumerate() {
                out.push_str(&format!(
                    "a=candidate:d{i} 1 udp 1 127.0.0.1 {port} typ host\r\n"
                ));
            }
        }
    }
    assert!(ports.is_none(), "no a=mid in {offer}");
    out
}

/// `n` candidates on ports nobody listens on.
fn dead_ports(n: usize) -> impl Iterator<Item = u16> {
    (0..n).map(|i| 20_000 + i as u16)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_past_the_candidate_limit_is_refused_and_one_at_it_connects() {
    let limit = MediaEndpoint::MAX_OFFER_CANDIDATES;
    let mut s = session().await;
    let addr = s.endpoint.local_addr();
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    let own = candidates(&offer);
    assert!((1..limit).contains(&own), "{offer}");

    let over = with_candidates(&offer, dead_ports(limit + 1 - own));
    let r = post_sdp(addr, &s.path, &over).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.body,
        format!(
            "the SDP offer lists {} ICE candidates; the endpoint accepts at most {limit} per offer\n",
            limit + 1
        )
    );
    // Refused before any leg was built: no event, and the session takes the next offer.
    assert!(s.events.try_recv().is_err());

    let at = with_candidates(&offer, dead_ports(limit - own));
    assert_eq!(candidates(&at), limit);
    let r = post_sdp(addr, &s.path, &at).await;
    assert_eq!(r.status, 201, "{}", r.body);
    peer.accept(r.body).await;
    peer.wait_connected().await;
}

/// An offer at `MediaEndpoint::MAX_OFFER_CANDIDATES` whose candidates are sockets that never
/// answer, posted to a session whose endpoint has `config`: the sockets, and the peer and
/// session to keep alive while they are watched.
async fn dead_candidates_offer(
    config: EndpointConfig,
) -> (Vec<std::net::UdpSocket>, Peer, Session) {
    let limit = MediaEndpoint::MAX_OFFER_CANDIDATES;
    let s = session_with(config).await;
    let mut peer = Peer::new().await;
    let offer = without_candidates(&peer.offer().await);
    let sockets: Vec<std::net::UdpSocket> = (0..limit)
        .map(|_| {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            socket.set_nonblocking(true).expect("non-blocking");
            socket
        })
        .collect();
    let ports = sockets
        .iter()
        .map(|s| s.local_addr().expect("address").port());
    let offer = with_candidates(&offer, ports);
    let r = post_sdp(s.endpoint.local_addr(), &s.path, &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    (sockets, peer, s)
}

/// Adds the STUN binding requests (RFC 8489: type 0x0001, magic cookie) each socket received
/// since the last call to `counts`.
fn count_binding_requests(sockets: &[std::net::UdpSocket], counts: &mut [usize]) {
    let mut buf = [0u8; 1500];
    for (socket, count) in sockets.iter().zip(counts.iter_mut()) {
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= 20 && buf[..2] == [0, 1] && buf[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                *count += 1;
            }
        }
    }
}

/// The bound stated at `MediaEndpoint::MAX_OFFER_CANDIDATES`, counted on the wire for a leg
/// on the whole WebRTC stack (a full ICE agent): an offer at the limit whose candidates are
/// sockets that never answer gets at most 8 binding requests per candidate (one local
/// candidate: the endpoint's one ICE address), all within about 1.6 s, and none after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectivity_checks_per_leg_are_bounded() {
    const CHECKS_PER_PAIR: usize = 8;
    let limit = MediaEndpoint::MAX_OFFER_CANDIDATES;
    let config = EndpointConfig::new("127.0.0.1:0".parse().expect("addr")).with_lean_media(false);
    let (sockets, peer, _s) = dead_candidates_offer(config).await;
    let mut counts = vec![0usize; limit];
    // 8 rounds 200 ms apart, with slack for a loaded machine.
    tokio::time::sleep(Duration::from_secs(4)).await;
    count_binding_requests(&sockets, &mut counts);
    let total: usize = counts.iter().sum();
    assert!(
        counts.iter().all(|&c| (1..=CHECKS_PER_PAIR).contains(&c)),
        "binding requests per candidate: {counts:?}"
    );
    assert!(total <= limit * CHECKS_PER_PAIR, "{total}");
    println!("binding requests per candidate: {counts:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let settled = counts.clone();
    count_binding_requests(&sockets, &mut counts);
    assert_eq!(counts, settled, "checks went on after every pair failed");
    drop(peer);
}

/// On the lean media path the leg is an ICE-lite agent (RFC 8445 §2.5): it answers the
/// peer's checks and sends none of its own, so an offer full of dead candidates costs no
/// traffic at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lean_leg_sends_no_connectivity_checks() {
    let limit = MediaEndpoint::MAX_OFFER_CANDIDATES;
    let config = EndpointConfig::new("127.0.0.1:0".parse().expect("addr")).with_lean_media(true);
    let (sockets, peer, _s) = dead_candidates_offer(config).await;
    let mut counts = vec![0usize; limit];
    // A full agent sends its first round at once and all 8 within about 1.6 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    count_binding_requests(&sockets, &mut counts);
    assert!(
        counts.iter().all(|&c| c == 0),
        "binding requests per candidate: {counts:?}"
    );
    drop(peer);
}

/// CPU time of this process (all threads, also ended ones), from `/proc/self/stat`.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line (the state, field 3, is index 0 here),
    // in USER_HZ, 100 per second on Linux.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// Share of one core used by this process over `window`.
async fn cpu_share(window: Duration) -> f64 {
    let (cpu0, t0) = (process_cpu(), Instant::now());
    tokio::time::sleep(window).await;
    (process_cpu() - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64()
}

/// The largest offer the body cap lets through (about 1 093 candidates that never answer)
/// is refused with 400 at once and leaves no leg behind; the test prints what it cost (run
/// with `--no-capture`, about 6 s). As a measurement: `OFFER_CANDIDATES` sets the number of
/// candidates (at or below the limit the offer is accepted and the leg watched until its
/// connect timeout, about 25 s); `--cargo-profile bench` for optimised figures. Before the limit, 1 093 cost
/// 0.71 s of CPU in the 20 s until the connect timeout (30 % of a core in the first 2 s
/// window, then the 0.5-1 % any leg waiting to connect costs; unoptimised: 2.8 s, 80 % and
/// 40 % in the first two windows); now they are refused in about 1 ms. At the limit, 32
/// cost 0.15 s, no more than the waiting leg itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cost_of_an_offer_of_dead_candidates() {
    let mut s = session().await;
    let mut peer = Peer::new().await;
    let offer = peer.offer().await;
    // The peer's own candidates go: nothing in this offer ever answers a check.
    let bare = without_candidates(&offer);
    let mut fit = (MAX_SDP_BYTES - bare.len()) / 45;
    while with_candidates(&bare, dead_ports(fit)).len() > MAX_SDP_BYTES {
        fit -= 1;
    }
    let n = std::env::var("OFFER_CANDIDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fit);
    let offer = with_candidates(&bare, dead_ports(n));
    assert!(offer.len() <= MAX_SDP_BYTES, "{} bytes", offer.len());
    let idle = cpu_share(Duration::from_secs(2)).await;
    let (cpu0, t0) = (process_cpu(), Instant::now());
    let r = post_sdp(s.endpoint.local_addr(), &s.path, &offer).await;
    let (post_cpu, post_wall) = (process_cpu() - cpu0, t0.elapsed());
    println!(
        "offer of {n} candidates ({} bytes): HTTP {} in {post_wall:.2?}, {post_cpu:.2?} CPU; idle before: {:.1} % of a core",
        offer.len(),
        r.status,
        idle * 100.0
    );
    if r.status != 201 {
        println!("  body: {}", r.body.trim_end());
    }
    let over = n > MediaEndpoint::MAX_OFFER_CANDIDATES;
    if over {
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains(&format!("{n} ICE candidates")),
            "{}",
            r.body
        );
    }
    // Until the leg's connect timeout (20 s) has ended it; a refused offer has no leg.
    let watch = if r.status == 201 { 22 } else { 4 };
    let mut shares = Vec::new();
    let (cpu0, start) = (process_cpu(), Instant::now());
    let mut ended = None;
    while start.elapsed() < Duration::from_secs(watch) {
        shares.push(cpu_share(Duration::from_secs(2)).await);
        while let Ok(ev) = s.events.try_recv() {
            if matches!(
                ev,
                EndpointEvent::LegEnded(_) | EndpointEvent::StreamFailure(_)
            ) && ended.is_none()
            {
                ended = Some(start.elapsed());
            }
        }
    }
    if over {
        assert_eq!(ended, None, "a refused offer left a leg that ended");
        assert!(
            s.events.try_recv().is_err(),
            "a refused offer produced an event"
        );
    }
    let total = process_cpu() - cpu0 + post_cpu;
    let pct: Vec<String> = shares.iter().map(|c| format!("{:.1}", c * 100.0)).collect();
    println!(
        "  % of a core per 2 s after the answer: {}; leg ended after {ended:.1?}",
        pct.join(" ")
    );
    println!(
        "  CPU from the POST to {watch} s after: {total:.2?} ({:.1} % of a core over 20 s)",
        total.as_secs_f64() / 20.0 * 100.0
    );
    drop(peer);
}
