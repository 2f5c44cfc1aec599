//! The network pumps: a small fixed pool of threads, each driving many [`LegCore`]s on
//! their sockets. A pump sleeps in one `epoll` wait over all its legs' sockets and wakes
//! when a datagram arrives (it reads what waits in batches, with the kernel's receive
//! times: see [`recv`]), when a pipeline tick queued packets to send (the call's port
//! wakes it through a [`Waker`], at most once per tick and pump), or when a leg's timer is
//! due; no leg has a task or timer of its own.
//!
//! There are two pools per process, started on first use: one for the legs of every
//! [`MediaEndpoint`](crate::MediaEndpoint) (threads `bm-net-N`), one for the service side's
//! legs ([`ServiceLeg`](crate::service::ServiceLeg), threads `svc-net-N`), so that a process
//! holding both (a test bed, the load tool) can tell the bot's network work from the
//! service's. A leg goes to the pump of its pool with the fewest legs.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};

use super::core::{LegCore, Transmit};
use super::ports::PortLease;
use super::recv;
use crate::events::EndReason;

/// The token of the pump's own waker; leg sockets use `slot * SOCKETS_PER_LEG + index`.
const WAKE: Token = Token(usize::MAX);
/// At most this many sockets per leg (one per ICE address).
const SOCKETS_PER_LEG: usize = 16;
/// Most reads of one socket per wake-up (each up to a batch of datagrams).
const MAX_READS: usize = 64;
/// The longest a pump sleeps with nothing due (legs always have a housekeeping timer).
const IDLE: Duration = Duration::from_millis(100);

/// Counters of every pump of the process, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkStats {
    /// Pump threads running (none before the first leg).
    pub pumps: usize,
    /// Legs the pumps drive now.
    pub legs: usize,
    /// Times a pump woke from its wait (a datagram, a pipeline tick, a timer, a new leg).
    pub wakeups: u64,
    /// Datagrams read from the legs' sockets.
    pub datagrams_in: u64,
    /// Datagrams written to the legs' sockets.
    pub datagrams_out: u64,
    /// Datagrams the kernel refused to send (a full buffer, an unreachable peer).
    pub send_errors: u64,
    /// Datagrams dropped because they were longer than a receive slot (4 KiB).
    pub datagrams_cut: u64,
}

#[derive(Default)]
struct Counters {
    legs: AtomicUsize,
    wakeups: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    send_errors: AtomicU64,
    datagrams_cut: AtomicU64,
}

/// Wakes a pump once however many calls ask before it ran: the pipeline's threads call it
/// after every tick that queued a packet.
struct Signal {
    pending: AtomicBool,
    waker: mio::Waker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // Fails only when the eventfd's counter would overflow: it is awake anyway.
            let _ = self.waker.wake();
        }
    }
}

struct NewLeg {
    core: LegCore,
    sockets: Vec<UdpSocket>,
    ports: PortLease,
}

struct Pump {
    queue: Arc<Mutex<Vec<NewLeg>>>,
    signal: Arc<Signal>,
    counters: Arc<Counters>,
}

struct Pool {
    pumps: Vec<Pump>,
}

/// Which pool a leg runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolKind {
    /// The bot's side: legs answered by a media endpoint.
    Endpoint,
    /// The calling service's side: legs a `ServiceLeg` offered.
    Service,
}

/// Started by the first leg of their kind.
static ENDPOINT: OnceLock<Pool> = OnceLock::new();
static SERVICE: OnceLock<Pool> = OnceLock::new();

fn pool(kind: PoolKind) -> &'static Pool {
    match kind {
        PoolKind::Endpoint => ENDPOINT.get_or_init(|| Pool::start("bm-net")),
        PoolKind::Service => SERVICE.get_or_init(|| Pool::start("svc-net")),
    }
}

impl Pool {
    /// Half as many pumps as cores (at least one, at most eight), threads `{name}-N`.
    fn start(name: &'static str) -> Pool {
        let n = std::thread::available_parallelism()
            .map(|n| n.get().div_ceil(2))
            .unwrap_or(1)
            .clamp(1, 8);
        let pumps = (0..n)
            .map(|i| {
                let poll = Poll::new().expect("an epoll instance for the network pump");
                let waker = mio::Waker::new(poll.registry(), WAKE)
                    .expect("an eventfd for the network pump");
                let signal = Arc::new(Signal {
                    pending: AtomicBool::new(false),
                    waker,
                });
                let counters = Arc::new(Counters::default());
                let queue = Arc::new(Mutex::new(Vec::new()));
                let pump = Pump {
                    queue: Arc::clone(&queue),
                    signal: Arc::clone(&signal),
                    counters: Arc::clone(&counters),
                };
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || run(poll, queue, signal, counters))
                    .expect("spawning a network pump thread");
                pump
            })
            .collect();
        Pool { pumps }
    }
}

/// Counters of the network pumps of the process's media endpoints (the bot's side; the
/// service side's legs run on pumps of their own and are not counted here).
pub fn network_stats() -> NetworkStats {
    // Reading the counters starts no pump: before the first leg there are none.
    let Some(pool) = ENDPOINT.get() else {
        return NetworkStats::default();
    };
    let mut s = NetworkStats {
        pumps: pool.pumps.len(),
        ..NetworkStats::default()
    };
    for p in &pool.pumps {
        let c = &p.counters;
        s.legs += c.legs.load(Ordering::Relaxed);
        s.wakeups += c.wakeups.load(Ordering::Relaxed);
        s.datagrams_in += c.datagrams_in.load(Ordering::Relaxed);
        s.datagrams_out += c.datagrams_out.load(Ordering::Relaxed);
        s.send_errors += c.send_errors.load(Ordering::Relaxed);
        s.datagrams_cut += c.datagrams_cut.load(Ordering::Relaxed);
    }
    s
}

/// Hands a negotiated leg and its sockets to the pump with the fewest legs; the leg runs
/// until it ends, then its sockets close and its ports go back.
pub(crate) fn start(kind: PoolKind, core: LegCore, sockets: Vec<UdpSocket>, ports: PortLease) {
    let pool = pool(kind);
    let pump = pool
        .pumps
        .iter()
        .min_by_key(|p| p.counters.legs.load(Ordering::Relaxed))
        .expect("the pool has a pump");
    pump.counters.legs.fetch_add(1, Ordering::Relaxed);
    pump.queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(NewLeg {
            core,
            sockets,
            ports,
        });
    pump.signal.wake_by_ref();
}

struct Entry {
    core: LegCore,
    sockets: Vec<(MioSocket, SocketAddr)>,
    _ports: PortLease,
    /// When the leg asked to be called next.
    next: Option<Instant>,
}

fn run(
    mut poll: Poll,
    queue: Arc<Mutex<Vec<NewLeg>>>,
    signal: Arc<Signal>,
    counters: Arc<Counters>,
) {
    let waker = Waker::from(Arc::clone(&signal));
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Entry>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut receiver = recv::Receiver::new();
    loop {
        let now = Instant::now();
        let next = slots
            .iter()
            .flatten()
            .filter_map(|e| e.next)
            .min()
            .unwrap_or(now + IDLE);
        let timeout = next.saturating_duration_since(now);
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %e, "network pump wait failed");
                std::thread::sleep(Duration::from_millis(1));
            }
            continue;
        }
        counters.wakeups.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for ev in events.iter() {
            if ev.token() == WAKE {
                continue;
            }
            let (slot, sock) = (
                ev.token().0 / SOCKETS_PER_LEG,
                ev.token().0 % SOCKETS_PER_LEG,
            );
            let Some(Some(entry)) = slots.get_mut(slot) else {
                continue;
            };
            let Some((socket, local)) = entry.sockets.get(sock) else {
                continue;
            };
            let local = *local;
            // Until the socket is drained (its readiness is edge-triggered); bounded, so a
            // socket that keeps failing cannot hold the pump.
            for _ in 0..MAX_READS {
                let core = &mut entry.core;
                let read = receiver.read(socket, |d| {
                    core.handle_input(now, d.arrival, local, d.peer, d.data);
                });
                match read {
                    Ok((n, cut)) => {
                        counters.datagrams_in.fetch_add(n as u64, Ordering::Relaxed);
                        counters
                            .datagrams_cut
                            .fetch_add(cut as u64, Ordering::Relaxed);
                        if n < recv::BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        // ICMP errors surface here once each (a peer's port closed); what
                        // waits behind one is read on the next turn. The leg's timers
                        // notice a peer that is gone.
                        tracing::trace!(leg = %entry.core.label(), error = %e, "receive error");
                    }
                }
            }
            flush(entry, &counters);
            entry.next = entry.core.poll_timeout();
        }
        // New legs.
        let added = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
        for new in added {
            add(&mut poll, &mut slots, &mut free, new, &waker, now);
        }
        // A pipeline tick queued packets (or a leg was added): every leg sends what it has.
        let ticked = signal.pending.swap(false, Ordering::AcqRel);
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(entry) = slot else { continue };
            if ticked || entry.next.is_some_and(|t| t <= now) {
                entry.core.handle_timeout(now);
                flush(entry, &counters);
                entry.next = entry.core.poll_timeout();
            }
            if entry.core.outcome().is_some() {
                let entry = slot.take().expect("the slot holds a leg");
                remove(&poll, entry);
                free.push(i);
                counters.legs.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn add(
    poll: &mut Poll,
    slots: &mut Vec<Option<Entry>>,
    free: &mut Vec<usize>,
    new: NewLeg,
    waker: &Waker,
    now: Instant,
) {
    let slot = free.pop().unwrap_or_else(|| {
        slots.push(None);
        slots.len() - 1
    });
    let mut core = new.core;
    core.set_outbound_waker(waker, now);
    let mut sockets = Vec::with_capacity(new.sockets.len());
    for (i, s) in new.sockets.into_iter().take(SOCKETS_PER_LEG).enumerate() {
        let local = match s.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(leg = %core.label(), error = %e, "a leg's socket has no address");
                continue;
            }
        };
        if let Err(e) = recv::enable_timestamps(&s) {
            // Arrivals are then stamped when the pump reads them.
            tracing::debug!(leg = %core.label(), error = %e, "no kernel receive timestamps");
        }
        let mut s = MioSocket::from_std(s);
        let token = Token(slot * SOCKETS_PER_LEG + i);
        if let Err(e) = poll.registry().register(&mut s, token, Interest::READABLE) {
            tracing::warn!(leg = %core.label(), error = %e, "registering a leg's socket failed");
            continue;
        }
        sockets.push((s, local));
    }
    if sockets.is_empty() {
        core.close(now, EndReason::Closed);
    }
    let next = core.poll_timeout();
    slots[slot] = Some(Entry {
        core,
        sockets,
        _ports: new.ports,
        next,
    });
}

/// Sends what the leg has for the wire, each datagram from the socket it names.
fn flush(entry: &mut Entry, counters: &Counters) {
    while let Some(Transmit { from, to, data }) = entry.core.poll_transmit() {
        let socket = entry
            .sockets
            .iter()
            .find(|(_, local)| *local == from)
            .or_else(|| entry.sockets.first())
            .map(|(s, _)| s);
        let Some(socket) = socket else { return };
        match socket.send_to(&data, to) {
            Ok(_) => {
                counters.datagrams_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(leg = %entry.core.label(), error = %e, "send error");
            }
        }
    }
}

fn remove(poll: &Poll, mut entry: Entry) {
    for (s, _) in &mut entry.sockets {
        let _ = poll.registry().deregister(s);
    }
}
