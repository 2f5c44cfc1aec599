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

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token};

use bytes::BytesMut;

use super::core::{LegCore, Transmit};
use super::mux::Demux;
use super::peer::{LeasedBindError, SetupError, bind_leased};
use super::ports::PortLease;
use super::{recv, send};
use crate::config::IceAddress;
use crate::events::EndReason;

/// The token of the pump's own waker; leg sockets use `slot * SOCKETS_PER_LEG + index`,
/// the pump's shared sockets count down from `SHARED_TOKENS`.
const WAKE: Token = Token(usize::MAX);
/// The token of the pump's first shared socket.
const SHARED_TOKENS: usize = usize::MAX - 1;
/// At most this many shared sockets per pump (one per distinct ICE address and range).
const MAX_SHARED: usize = 64;
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
    /// Of those, legs on the lean media path
    /// ([`EndpointConfig::lean_media`](crate::EndpointConfig::lean_media)).
    pub lean_legs: usize,
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
    /// System calls that sent datagrams: one per datagram on a leg's own socket, one per
    /// batch of up to 64 on a shared socket.
    pub send_calls: u64,
    /// Shared sockets open (one per pump and ICE address, in shared-UDP mode).
    pub shared_sockets: usize,
    /// Datagrams a shared socket received that belonged to no leg (an unknown address
    /// that sent no Binding request for a leg's ICE username fragment), dropped.
    pub datagrams_unrouted: u64,
    /// Times a remote address moved from one leg of a shared socket to another.
    pub path_conflicts: u64,
}

#[derive(Default)]
struct Counters {
    legs: AtomicUsize,
    lean_legs: AtomicUsize,
    wakeups: AtomicU64,
    datagrams_in: AtomicU64,
    datagrams_out: AtomicU64,
    send_errors: AtomicU64,
    datagrams_cut: AtomicU64,
    send_calls: AtomicU64,
    datagrams_unrouted: AtomicU64,
    path_conflicts: AtomicU64,
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

/// Where a leg's datagrams come in and go out.
pub(crate) enum LegSockets {
    /// Sockets of its own, one per ICE address, and the ranged ports they hold.
    Own(Vec<UdpSocket>, PortLease),
    /// The shared sockets of pump `pump` (see [`shared_sockets`]); the leg's datagrams
    /// are told from other legs' by its ICE username fragment and then by path.
    Shared { pump: usize, ufrag: String },
}

impl Default for LegSockets {
    fn default() -> Self {
        LegSockets::Own(Vec::new(), PortLease::default())
    }
}

/// What a pump takes from its queue, in order: a shared socket comes before the legs that
/// use it.
enum Arrival {
    Leg(Box<LegCore>, LegSockets),
    Shared(UdpSocket),
}

/// A shared socket as the negotiating side knows it: what it was made for, and where.
struct SharedAddress {
    ip: IpAddr,
    ports: Option<RangeInclusive<u16>>,
    local: SocketAddr,
    _lease: PortLease,
}

struct Pump {
    queue: Arc<Mutex<Vec<Arrival>>>,
    signal: Arc<Signal>,
    counters: Arc<Counters>,
    /// This pump's shared sockets, kept for the life of the process.
    shared: Mutex<Vec<SharedAddress>>,
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
                    shared: Mutex::new(Vec::new()),
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
        s.lean_legs += c.lean_legs.load(Ordering::Relaxed);
        s.wakeups += c.wakeups.load(Ordering::Relaxed);
        s.datagrams_in += c.datagrams_in.load(Ordering::Relaxed);
        s.datagrams_out += c.datagrams_out.load(Ordering::Relaxed);
        s.send_errors += c.send_errors.load(Ordering::Relaxed);
        s.datagrams_cut += c.datagrams_cut.load(Ordering::Relaxed);
        s.send_calls += c.send_calls.load(Ordering::Relaxed);
        s.datagrams_unrouted += c.datagrams_unrouted.load(Ordering::Relaxed);
        s.path_conflicts += c.path_conflicts.load(Ordering::Relaxed);
        s.shared_sockets += p.shared.lock().unwrap_or_else(|p| p.into_inner()).len();
    }
    s
}

/// Why a pump's shared socket could not be had.
#[derive(Debug)]
pub(crate) enum SharedError {
    /// No port of the address's range was free, or binding failed.
    Bind(LeasedBindError),
    /// The pump already has as many shared sockets as it takes.
    TooMany,
}

/// For a leg about to be negotiated in shared-UDP mode: the pump of `kind`'s pool with the
/// fewest legs and its shared socket on each of `addresses` (bound on first use, a port of
/// the address's range leased for good), in order. The leg is then started with
/// [`LegSockets::Shared`] naming that pump.
pub(crate) fn shared_sockets(
    kind: PoolKind,
    addresses: &[IceAddress],
) -> Result<(usize, Vec<SocketAddr>), SharedError> {
    let pool = pool(kind);
    let (index, pump) = pool
        .pumps
        .iter()
        .enumerate()
        .min_by_key(|(_, p)| p.counters.legs.load(Ordering::Relaxed))
        .expect("the pool has a pump");
    let mut table = pump.shared.lock().unwrap_or_else(|p| p.into_inner());
    let mut locals = Vec::with_capacity(addresses.len());
    let mut bound = false;
    for a in addresses {
        if let Some(s) = table.iter().find(|s| s.ip == a.ip && s.ports == a.ports) {
            locals.push(s.local);
            continue;
        }
        if table.len() >= MAX_SHARED {
            return Err(SharedError::TooMany);
        }
        let (mut sockets, lease) =
            bind_leased(std::slice::from_ref(a)).map_err(SharedError::Bind)?;
        let socket = sockets.pop().expect("one address, one socket");
        let local = socket
            .local_addr()
            .map_err(|e| SharedError::Bind(LeasedBindError::Setup(SetupError::Bind(e))))?;
        table.push(SharedAddress {
            ip: a.ip,
            ports: a.ports.clone(),
            local,
            _lease: lease,
        });
        pump.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arrival::Shared(socket));
        bound = true;
        locals.push(local);
    }
    if bound {
        pump.signal.wake_by_ref();
    }
    Ok((index, locals))
}

/// Hands a negotiated leg to a pump: the one whose shared sockets it uses, or else the one
/// with the fewest legs. The leg runs until it ends, then its own sockets close and their
/// ports go back.
pub(crate) fn start(kind: PoolKind, core: LegCore, sockets: LegSockets) {
    let pool = pool(kind);
    let pump = match &sockets {
        LegSockets::Shared { pump, .. } => &pool.pumps[*pump],
        LegSockets::Own(..) => pool
            .pumps
            .iter()
            .min_by_key(|p| p.counters.legs.load(Ordering::Relaxed))
            .expect("the pool has a pump"),
    };
    pump.counters.legs.fetch_add(1, Ordering::Relaxed);
    if core.is_lean() {
        pump.counters.lean_legs.fetch_add(1, Ordering::Relaxed);
    }
    pump.queue
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arrival::Leg(Box::new(core), sockets));
    pump.signal.wake_by_ref();
}

struct Entry {
    core: LegCore,
    /// Its own sockets (none when it uses the pump's shared ones).
    sockets: Vec<(MioSocket, SocketAddr)>,
    _ports: PortLease,
    /// It uses the pump's shared sockets.
    shared: bool,
    /// A shared socket handed it a datagram in this wake-up.
    touched: bool,
    /// When the leg asked to be called next.
    next: Option<Instant>,
}

/// A pump's shared sockets and what goes with them.
#[derive(Default)]
struct Shared {
    sockets: Vec<(MioSocket, SocketAddr)>,
    demux: Demux,
    /// Slots a shared socket handed datagrams to in this wake-up.
    touched: Vec<usize>,
    /// What the legs have for the wire, per shared socket, sent at the end of the
    /// wake-up in batches (kept allocated between wake-ups).
    outbox: Vec<Vec<(SocketAddr, BytesMut)>>,
}

fn run(
    mut poll: Poll,
    queue: Arc<Mutex<Vec<Arrival>>>,
    signal: Arc<Signal>,
    counters: Arc<Counters>,
) {
    let waker = Waker::from(Arc::clone(&signal));
    let mut events = Events::with_capacity(1024);
    let mut slots: Vec<Option<Entry>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut receiver = recv::Receiver::new();
    let mut shared = Shared::default();
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
            if ev.token().0 > SHARED_TOKENS - MAX_SHARED {
                read_shared(
                    SHARED_TOKENS - ev.token().0,
                    &mut shared,
                    &mut slots,
                    &mut receiver,
                    &counters,
                    now,
                );
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
            let core = &mut entry.core;
            read_socket(&mut receiver, socket, local, &counters, |d| {
                core.handle_input(now, d.arrival, local, d.peer, d.data);
            });
            flush(slot, entry, &mut shared, &counters);
            entry.next = entry.core.poll_timeout();
        }
        // The legs shared sockets handed datagrams to answer what they read.
        for slot in std::mem::take(&mut shared.touched) {
            if let Some(Some(entry)) = slots.get_mut(slot) {
                entry.touched = false;
                flush(slot, entry, &mut shared, &counters);
                entry.next = entry.core.poll_timeout();
            }
        }
        // New shared sockets, then new legs.
        let added = std::mem::take(&mut *queue.lock().unwrap_or_else(|p| p.into_inner()));
        for arrival in added {
            match arrival {
                Arrival::Shared(socket) => add_shared(&poll, &mut shared, socket),
                Arrival::Leg(core, sockets) => add(
                    &mut poll,
                    &mut slots,
                    &mut free,
                    &mut shared,
                    *core,
                    sockets,
                    &waker,
                    now,
                ),
            }
        }
        // A pipeline tick queued packets (or a leg was added): every leg whose port has
        // some sends them; legs whose timer is due run it.
        let ticked = signal.pending.swap(false, Ordering::AcqRel);
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(entry) = slot else { continue };
            if entry.next.is_some_and(|t| t <= now) || (ticked && entry.core.has_outbound()) {
                entry.core.handle_timeout(now);
                flush(i, entry, &mut shared, &counters);
                entry.next = entry.core.poll_timeout();
            }
            if entry.core.outcome().is_some() {
                let entry = slot.take().expect("the slot holds a leg");
                if entry.shared {
                    shared.demux.remove(i);
                }
                if entry.core.is_lean() {
                    counters.lean_legs.fetch_sub(1, Ordering::Relaxed);
                }
                remove(&poll, entry);
                free.push(i);
                counters.legs.fetch_sub(1, Ordering::Relaxed);
            }
        }
        send_shared(&mut shared, &counters);
    }
}

/// Reads shared socket `index` until it is drained, handing each datagram to the leg it
/// belongs to (see [`Demux`]); those legs are flushed after every socket was read.
fn read_shared(
    index: usize,
    shared: &mut Shared,
    slots: &mut [Option<Entry>],
    receiver: &mut recv::Receiver,
    counters: &Counters,
    now: Instant,
) {
    let Shared {
        sockets,
        demux,
        touched,
        ..
    } = shared;
    let Some((socket, local)) = sockets.get(index) else {
        return;
    };
    let local = *local;
    let mut unrouted = 0u64;
    read_socket(receiver, socket, local, counters, |d| {
        let entry = demux
            .route(local, d.peer, d.data)
            .and_then(|slot| Some((slot, slots.get_mut(slot)?.as_mut()?)));
        let Some((slot, entry)) = entry else {
            unrouted += 1;
            return;
        };
        entry
            .core
            .handle_input(now, d.arrival, local, d.peer, d.data);
        if !entry.touched {
            entry.touched = true;
            touched.push(slot);
        }
    });
    if unrouted > 0 {
        counters
            .datagrams_unrouted
            .fetch_add(unrouted, Ordering::Relaxed);
    }
}

/// Reads `socket` (bound to `local`) until it is drained, its readiness being
/// edge-triggered, handing every datagram to `each`; bounded, so a socket that keeps
/// failing cannot hold the pump.
fn read_socket(
    receiver: &mut recv::Receiver,
    socket: &MioSocket,
    local: SocketAddr,
    counters: &Counters,
    mut each: impl FnMut(recv::Datagram<'_>),
) {
    for _ in 0..MAX_READS {
        match receiver.read(socket, &mut each) {
            Ok((n, cut)) => {
                counters.datagrams_in.fetch_add(n as u64, Ordering::Relaxed);
                counters
                    .datagrams_cut
                    .fetch_add(cut as u64, Ordering::Relaxed);
                if n < recv::BATCH {
                    break;
                }
            }
            // ICMP errors surface here once each (a peer's port closed); what waits behind
            // one is read on the next turn. The legs' timers notice a peer that is gone.
            Err(e) => tracing::trace!(socket = %local, error = %e, "receive error"),
        }
    }
}

fn add_shared(poll: &Poll, shared: &mut Shared, socket: UdpSocket) {
    let index = shared.sockets.len();
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "a shared socket has no address");
            return;
        }
    };
    if let Err(e) = recv::enable_timestamps(&socket) {
        tracing::debug!(socket = %local, error = %e, "no kernel receive timestamps");
    }
    let mut socket = MioSocket::from_std(socket);
    let token = Token(SHARED_TOKENS - index);
    if let Err(e) = poll
        .registry()
        .register(&mut socket, token, Interest::READABLE)
    {
        tracing::warn!(socket = %local, error = %e, "registering a shared socket failed");
        return;
    }
    shared.sockets.push((socket, local));
    shared.outbox.push(Vec::new());
}

#[allow(clippy::too_many_arguments)]
fn add(
    poll: &mut Poll,
    slots: &mut Vec<Option<Entry>>,
    free: &mut Vec<usize>,
    shared: &mut Shared,
    mut core: LegCore,
    leg_sockets: LegSockets,
    waker: &Waker,
    now: Instant,
) {
    let slot = free.pop().unwrap_or_else(|| {
        slots.push(None);
        slots.len() - 1
    });
    core.set_outbound_waker(waker, now);
    let mut sockets = Vec::new();
    let (ports, is_shared) = match leg_sockets {
        LegSockets::Own(own, ports) => {
            for (i, s) in own.into_iter().take(SOCKETS_PER_LEG).enumerate() {
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
            (ports, false)
        }
        LegSockets::Shared { ufrag, .. } => {
            if shared.sockets.is_empty() || !shared.demux.add(slot, ufrag.as_bytes()) {
                // No socket (its registration failed) or a fragment in use: nothing would
                // reach this leg.
                tracing::warn!(leg = %core.label(), "the leg cannot be routed on the shared sockets");
                core.close(now, EndReason::Closed);
            }
            (PortLease::default(), true)
        }
    };
    let next = core.poll_timeout();
    slots[slot] = Some(Entry {
        core,
        sockets,
        _ports: ports,
        shared: is_shared,
        touched: false,
        next,
    });
}

/// Takes what the leg has for the wire: sent at once from its own socket named by the
/// datagram, or queued on the shared socket for [`send_shared`].
fn flush(slot: usize, entry: &mut Entry, shared: &mut Shared, counters: &Counters) {
    if entry.shared {
        while let Some(Transmit { from, to, data }) = entry.core.poll_transmit() {
            let Some(index) = shared.sockets.iter().position(|(_, local)| *local == from) else {
                counters.send_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            shared.demux.learn(slot, from, to);
            shared.outbox[index].push((to, data));
        }
        return;
    }
    while let Some(Transmit { from, to, data }) = entry.core.poll_transmit() {
        let socket = entry
            .sockets
            .iter()
            .find(|(_, local)| *local == from)
            .or_else(|| entry.sockets.first())
            .map(|(s, _)| s);
        let Some(socket) = socket else { return };
        counters.send_calls.fetch_add(1, Ordering::Relaxed);
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

/// Sends what the legs queued on the shared sockets, in batches.
fn send_shared(shared: &mut Shared, counters: &Counters) {
    for ((socket, _), out) in shared.sockets.iter().zip(shared.outbox.iter_mut()) {
        if out.is_empty() {
            continue;
        }
        let sent = send::send_all(socket, out);
        counters
            .datagrams_out
            .fetch_add(sent.sent as u64, Ordering::Relaxed);
        counters
            .send_errors
            .fetch_add(sent.failed as u64, Ordering::Relaxed);
        counters
            .send_calls
            .fetch_add(sent.calls as u64, Ordering::Relaxed);
        out.clear();
    }
    let conflicts = shared.demux.take_conflicts();
    if conflicts > 0 {
        counters
            .path_conflicts
            .fetch_add(conflicts, Ordering::Relaxed);
    }
}

fn remove(poll: &Poll, mut entry: Entry) {
    for (s, _) in &mut entry.sockets {
        let _ = poll.registry().deregister(s);
    }
}
