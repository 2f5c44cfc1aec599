//! Two legs in simulated time: the service's offerer and the endpoint's answerer, negotiated
//! through the real SDP path (the service's offer, the endpoint's offer check and answer),
//! joined by a seeded network model (loss, delay, jitter, reordering, duplicates) that moves
//! their datagrams by address. Time only advances, to the next delivery, leg timer or media
//! tick; nothing sleeps, so seconds of a call pass in milliseconds.
//!
//! The tests in `sim_tests.rs` and the `leg_datagrams` fuzz target ([`crate::fuzzing`])
//! drive it. The stack draws its own randomness (ICE credentials, DTLS, SSRCs), so a seed fixes
//! the network's decisions, not every byte on the wire.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::sdp::RTCSessionDescription;
use tokio::sync::mpsc;

use super::pump::LegSockets;
use super::{Leg, LegControl, LegCore, LegSettings, Negotiation, negotiate, ports};
use crate::bridge::{OutboundAudio, QueueLink};
use crate::config::IceAddress;
use crate::events::{EndReason, EndpointEvent};
use crate::sdp::{Negotiated, read_answer};
use crate::service::{self, ServiceLegConfig};

/// The spacing of the simulated media: one 20 ms Opus packet per tick.
pub(crate) const MEDIA_TICK: Duration = Duration::from_millis(20);
/// Bytes of a simulated Opus packet (64 kb/s at 20 ms is 160; speech is often less).
const PAYLOAD_BYTES: usize = 80;
/// TOC byte of a 20 ms CELT fullband frame (config 31, one frame): 960 samples.
const OPUS_TOC_20MS: u8 = 31 << 3;
/// Packets each leg's port holds either way.
const QUEUE: usize = 4096;
/// Steps at one instant before the loop is declared stuck (a timer that never moves on).
const STUCK_STEPS: u32 = 100_000;

/// A small deterministic generator (SplitMix64): the network's decisions, per seed.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`; draws nothing when `p` is 0, so a clean link leaves the
    /// sequence of the other draws as it is.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..=max`.
    fn duration(&mut self, max: Duration) -> Duration {
        if max.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % (max.as_nanos() as u64 + 1))
    }
}

/// One direction of the network.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LinkModel {
    /// Probability a datagram is lost.
    pub(crate) loss: f64,
    /// Delay every datagram takes.
    pub(crate) delay: Duration,
    /// Extra delay, uniform in `0..=jitter` per datagram (reorders when above the spacing).
    pub(crate) jitter: Duration,
    /// Probability a datagram is held back a further `hold`, arriving after later ones.
    pub(crate) reorder: f64,
    pub(crate) hold: Duration,
    /// Probability a datagram arrives twice.
    pub(crate) duplicate: f64,
}

impl LinkModel {
    /// 10 ms one way, nothing else.
    pub(crate) fn clean() -> LinkModel {
        LinkModel {
            delay: Duration::from_millis(10),
            ..LinkModel::default()
        }
    }
}

/// Which end of the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The service side, which offers.
    Offerer = 0,
    /// The endpoint side, which answers.
    Answerer = 1,
}

impl Side {
    pub(crate) fn other(self) -> Side {
        match self {
            Side::Offerer => Side::Answerer,
            Side::Answerer => Side::Offerer,
        }
    }
}

/// The RTP payload type and sequence number of a datagram, when it is (S)RTP rather than
/// (S)RTCP, STUN or DTLS (RFC 7983; SRTP leaves the header in the clear).
pub(crate) fn rtp_id(data: &[u8]) -> Option<(u8, u16)> {
    if data.len() < 12 || data[0] >> 6 != 2 {
        return None;
    }
    let pt = data[1] & 0x7f;
    // RTCP packet types 192..=223 read as payload types 64..=95 once the marker is masked.
    if (64..=95).contains(&pt) {
        return None;
    }
    Some((pt, u16::from_be_bytes([data[2], data[3]])))
}

/// What one direction of the network did with the RTP it carried, in order.
#[derive(Debug, Default)]
pub(crate) struct LinkLog {
    /// Payload type and sequence number of each RTP datagram lost.
    pub(crate) lost: Vec<(u8, u16)>,
    /// Of each RTP datagram delivered, as it arrived (a duplicate twice).
    pub(crate) delivered: Vec<(u8, u16)>,
    /// Datagrams of any kind sent into this direction.
    pub(crate) datagrams: u64,
}

struct InFlight {
    at: Instant,
    order: u64,
    from: Side,
    to: Side,
    local: SocketAddr,
    peer: SocketAddr,
    data: BytesMut,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed: the heap pops the earliest, ties in sending order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

/// The datagrams between the two legs.
pub(crate) struct Network {
    rng: Rng,
    /// Indexed by the sending side.
    pub(crate) links: [LinkModel; 2],
    pub(crate) logs: [LinkLog; 2],
    in_flight: BinaryHeap<InFlight>,
    order: u64,
    /// Datagrams addressed to neither leg.
    pub(crate) unroutable: u64,
}

impl Network {
    fn next_at(&self) -> Option<Instant> {
        self.in_flight.peek().map(|f| f.at)
    }

    fn send(
        &mut self,
        now: Instant,
        from: Side,
        to: Side,
        local: SocketAddr,
        peer: SocketAddr,
        data: BytesMut,
    ) {
        let model = self.links[from as usize];
        let log = &mut self.logs[from as usize];
        log.datagrams += 1;
        let id = rtp_id(&data);
        if self.rng.chance(model.loss) {
            log.lost.extend(id);
            return;
        }
        let copies = if self.rng.chance(model.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = model.delay + self.rng.duration(model.jitter);
            if self.rng.chance(model.reorder) {
                delay += model.hold;
            }
            self.order += 1;
            self.in_flight.push(InFlight {
                at: now + delay,
                order: self.order,
                from,
                to,
                local,
                peer,
                data: data.clone(),
            });
        }
    }

    fn pop_due(&mut self, now: Instant) -> Option<InFlight> {
        if self.in_flight.peek().is_some_and(|f| f.at <= now) {
            let f = self.in_flight.pop()?;
            if let Some(id) = rtp_id(&f.data) {
                self.logs[f.from as usize].delivered.push(id);
            }
            return Some(f);
        }
        None
    }
}

/// A stream of 20 ms packets a leg's pipeline stand-in pushes, one per tick; each payload
/// carries its index after the TOC byte.
struct Feed {
    next_at: Instant,
    remaining: Option<u32>,
}

/// One leg of the pair and the far ends of everything it owns.
pub(crate) struct SimLeg {
    pub(crate) core: LegCore,
    /// The pipeline's side of the leg's port.
    pub(crate) link: QueueLink,
    /// Every event the leg emitted so far.
    pub(crate) events: Vec<EndpointEvent>,
    events_rx: mpsc::Receiver<EndpointEvent>,
    /// The owner's side: tones and state.
    pub(crate) control: LegControl,
    /// The owner's stop request (dropping it would end the leg).
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "held for the leg; the tests send on it")
    )]
    pub(crate) stop: mpsc::Sender<EndReason>,
    /// The addresses of the leg's sockets (host candidates).
    pub(crate) addrs: Vec<SocketAddr>,
    /// The SSRC the leg sends with.
    pub(crate) ssrc: u32,
    pub(crate) negotiated: Negotiated,
    feed: Option<Feed>,
    /// Packets the feed pushed, by index.
    pub(crate) fed: u32,
    // Held so the ports stay the leg's while it runs, as in production; never read.
    _sockets: LegSockets,
}

impl SimLeg {
    fn new(now: Instant, mut neg: Negotiation, settings: LegSettings, label: &str) -> SimLeg {
        let sockets = std::mem::take(&mut neg.sockets);
        let addrs = match &sockets {
            LegSockets::Own(own, _) => own.iter().filter_map(|s| s.local_addr().ok()).collect(),
            LegSockets::Shared { .. } => Vec::new(),
        };
        let (link, port) = QueueLink::new(QUEUE);
        let (events, events_rx) = mpsc::channel(QUEUE);
        let (control, tones) = LegControl::new(16);
        let (stop, stop_rx) = mpsc::channel(1);
        let ssrc = neg.ssrc;
        let negotiated = neg.negotiated.clone();
        let leg = Leg {
            link: Box::new(port),
            events,
            tones,
            stop: stop_rx,
            shared: Arc::clone(control.shared()),
            settings,
            label: label.to_owned(),
            on_end: None,
        };
        // The simulation calls the leg after every tick that queued a packet, as the pump
        // does for a port that wakes it.
        let core = LegCore::new(now, neg, leg, true);
        SimLeg {
            core,
            link,
            events: Vec::new(),
            events_rx,
            control,
            stop,
            addrs,
            ssrc,
            negotiated,
            feed: None,
            fed: 0,
            _sockets: sockets,
        }
    }

    /// Whether the leg emitted `ev`.
    pub(crate) fn saw(&self, ev: &EndpointEvent) -> bool {
        self.events.contains(ev)
    }
}

/// The payload of the feed's packet `index`.
pub(crate) fn feed_payload(index: u32) -> bytes::Bytes {
    let mut p = vec![0u8; PAYLOAD_BYTES];
    p[0] = OPUS_TOC_20MS;
    p[1..5].copy_from_slice(&index.to_be_bytes());
    bytes::Bytes::from(p)
}

/// The feed index a received payload carries.
#[cfg(test)]
pub(crate) fn feed_index(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(1..5)?.try_into().ok()?))
}

/// How to build a pair.
#[derive(Clone, Debug)]
pub(crate) struct SimConfig {
    pub(crate) seed: u64,
    /// Indexed by the sending side.
    pub(crate) links: [LinkModel; 2],
    pub(crate) connect_timeout: Duration,
    pub(crate) media_timeout: Duration,
    /// The unmixed speaker streams the offerer offers, by their track ids.
    pub(crate) speakers_offered: Vec<media_session::ContextId>,
    /// The unmixed render contexts of the answerer's session (the streams it asks for).
    pub(crate) speakers_asked: Vec<media_session::ContextId>,
    /// The answerer runs on the lean media path.
    pub(crate) lean_media: bool,
}

impl SimConfig {
    pub(crate) fn new(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            links: [LinkModel::clean(); 2],
            connect_timeout: Duration::from_secs(10),
            media_timeout: Duration::from_secs(5),
            speakers_offered: Vec::new(),
            speakers_asked: Vec::new(),
            lean_media: false,
        }
    }
}

/// Why a pair could not be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SimSetupError {
    #[error("building the offer")]
    Offer(#[source] service::ConnectError),
    #[error("the endpoint's check refused the service's offer")]
    OfferCheck(#[source] crate::sdp::OfferError),
    #[error("answering the offer")]
    Answer(#[source] super::NegotiateError),
    #[error("the service's stack refused the answer")]
    AnswerRefused,
}

/// The pair, the network between them, and the simulated clock.
pub(crate) struct Sim {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    /// Indexed by [`Side`].
    pub(crate) legs: [SimLeg; 2],
    pub(crate) net: Network,
    stuck: u32,
}

impl Sim {
    /// Negotiates a pair at an arbitrary instant (the only clock reading: time then moves
    /// only as the simulation says).
    pub(crate) fn new(config: &SimConfig) -> Result<Sim, SimSetupError> {
        let start = Instant::now();
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let service_config = ServiceLegConfig::default()
            .with_ice_addresses(vec![localhost])
            .with_connect_timeout(config.connect_timeout)
            .with_media_timeout(config.media_timeout)
            .with_speaker_streams(config.speakers_offered.clone());
        let (mut built, sockets) =
            service::build(start, &service_config, None).map_err(SimSetupError::Offer)?;
        let offer =
            crate::sdp::check_offer(built.offer.as_bytes()).map_err(SimSetupError::OfferCheck)?;
        let settings = LegSettings {
            ice_addresses: vec![IceAddress::new(localhost)],
            connect_timeout: config.connect_timeout,
            media_timeout: config.media_timeout,
            shared_udp: false,
            lean_media: config.lean_media,
        };
        let asked: Vec<String> = config
            .speakers_asked
            .iter()
            .map(ToString::to_string)
            .collect();
        let answer = negotiate(start, offer, "sim".to_owned(), &asked, &settings)
            .map_err(SimSetupError::Answer)?;
        let desc = RTCSessionDescription::answer(answer.local_sdp.clone())
            .map_err(|_| SimSetupError::AnswerRefused)?;
        built
            .pc
            .set_remote_description(start, desc)
            .map_err(|_| SimSetupError::AnswerRefused)?;
        let negotiated = read_answer(&answer.local_sdp).ok_or(SimSetupError::AnswerRefused)?;
        let offerer = Negotiation {
            pc: built.pc,
            negotiated,
            ssrc: built.ssrc,
            local_sdp: built.offer,
            sockets: LegSockets::Own(sockets, ports::PortLease::default()),
            speaker_tracks: Vec::new(),
            main_track: None,
            speaker_ssrcs: built.speaker_ssrcs,
            lean: None,
        };
        let offerer = SimLeg::new(start, offerer, settings.clone(), "sim offerer");
        let answerer = SimLeg::new(start, answer, settings, "sim answerer");
        let mut sim = Sim {
            start,
            now: start,
            legs: [offerer, answerer],
            net: Network {
                rng: Rng::new(config.seed),
                links: config.links,
                logs: [LinkLog::default(), LinkLog::default()],
                in_flight: BinaryHeap::new(),
                order: 0,
                unroutable: 0,
            },
            stuck: 0,
        };
        sim.flush();
        Ok(sim)
    }

    pub(crate) fn leg(&mut self, side: Side) -> &mut SimLeg {
        &mut self.legs[side as usize]
    }

    /// Simulated time since the pair was built.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Starts pushing one packet every 20 ms into `side`'s port, `count` of them (`None`:
    /// for as long as the simulation runs).
    pub(crate) fn start_feed(&mut self, side: Side, count: Option<u32>) {
        let now = self.now;
        self.leg(side).feed = Some(Feed {
            next_at: now,
            remaining: count,
        });
    }

    fn next_event(&mut self) -> Option<Instant> {
        let mut next = self.net.next_at();
        for leg in &mut self.legs {
            let ended = leg.core.outcome().is_some();
            let feed = leg.feed.as_ref().filter(|_| !ended).map(|f| f.next_at);
            for t in [leg.core.poll_timeout(), feed].into_iter().flatten() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        next
    }

    /// Runs the next thing due at or before `limit`; false (with the clock at `limit`) when
    /// nothing is.
    pub(crate) fn step(&mut self, limit: Instant) -> bool {
        let Some(at) = self.next_event().filter(|t| *t <= limit) else {
            self.now = self.now.max(limit);
            return false;
        };
        let at = at.max(self.now);
        if at == self.now {
            self.stuck += 1;
            assert!(
                self.stuck < STUCK_STEPS,
                "the simulation does not move on from {:?}",
                self.elapsed()
            );
        } else {
            self.stuck = 0;
        }
        self.now = at;
        while let Some(f) = self.net.pop_due(at) {
            self.legs[f.to as usize]
                .core
                .handle_input(at, None, f.local, f.peer, &f.data);
        }
        for leg in &mut self.legs {
            let mut woken = false;
            if let Some(feed) = leg.feed.as_mut().filter(|f| f.next_at <= at) {
                feed.next_at += MEDIA_TICK;
                let audio = OutboundAudio::new(feed_payload(leg.fed), Some(40));
                if leg.link.to_send.push(audio).is_ok() {
                    leg.fed += 1;
                }
                if let Some(r) = feed.remaining.as_mut() {
                    *r = r.saturating_sub(1);
                    if *r == 0 {
                        leg.feed = None;
                    }
                }
                woken = true;
            }
            if woken || leg.core.poll_timeout().is_some_and(|t| t <= at) {
                leg.core.handle_timeout(at);
            }
        }
        self.flush();
        true
    }

    /// Moves what the legs want to send onto the network, and their events into
    /// [`SimLeg::events`].
    pub(crate) fn flush(&mut self) {
        let now = self.now;
        for from in [Side::Offerer, Side::Answerer] {
            while let Some(t) = self.legs[from as usize].core.poll_transmit() {
                let to = from.other();
                if self.legs[to as usize].addrs.contains(&t.to) {
                    self.net.send(now, from, to, t.to, t.from, t.data);
                } else {
                    self.net.unroutable += 1;
                }
            }
            let leg = &mut self.legs[from as usize];
            while let Ok(ev) = leg.events_rx.try_recv() {
                leg.events.push(ev);
            }
        }
    }

    /// Runs for `d` of simulated time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
    }

    /// Runs until `done` holds (true) or `limit` of simulated time passed (false).
    pub(crate) fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let limit = self.now + limit;
        loop {
            if done(self) {
                return true;
            }
            if !self.step(limit) {
                return done(self);
            }
        }
    }

    /// Runs until both legs sent status Active; false if they did not within `limit`.
    pub(crate) fn connect(&mut self, limit: Duration) -> bool {
        let active = EndpointEvent::SendStatus(crate::events::SendStatus::Active);
        self.run_until(limit, |s| s.legs.iter().all(|l| l.saw(&active)))
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
