//! One call's state on its pipeline thread, and the handles the other threads hold.

use crate::codec::Encoder;
use crate::config::{CallConfig, FrameCallback};
use crate::error::{AdmissionError, PushPacketError, SendError};
use crate::frame::{FrameSource, Pcm16K, ReceivedFrame};
use crate::jitter::JitterStats;
use crate::latency::{CallLatency, LatencyCells};
use crate::pacer::Pacer;
use crate::packet::{AUDIO_LEVEL_SILENT, Csrcs, EncodedPacket};
use crate::receive::{Receiver, ReceiverStats};
use crate::send::SendBuffer;
use crate::stats::{CallCounters, CallStats, add, bump, set};
use crate::time::Ticks;
use crate::unmixed::UnmixedStreams;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;

/// Identifies a call within one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

const NO_LOSS_REPORT: u8 = u8::MAX;

/// State shared between a call's handles and its pipeline thread (atomics only).
#[derive(Debug)]
pub(crate) struct CallShared {
    pub(crate) id: CallId,
    pub(crate) counters: CallCounters,
    pub(crate) removed: AtomicBool,
    pub(crate) send_active: AtomicBool,
    pub(crate) loss_percent: AtomicU8,
    pub(crate) latency: LatencyCells,
    /// Woken after a tick that queued packets to send: the network side's driver.
    pub(crate) outbound_waker: OnceLock<Waker>,
}

/// A call's processing state, owned by one pipeline thread. Everything is allocated in
/// [`CallState::create`], on the thread adding the call.
pub(crate) struct CallState {
    pub(crate) shared: Arc<CallShared>,
    inbound: rtrb::Consumer<EncodedPacket>,
    outbound: rtrb::Producer<Outbound>,
    send_queue: rtrb::Consumer<OutgoingFrame>,
    receive_queue: Option<rtrb::Producer<ReceivedFrame>>,
    on_frame: Option<FrameCallback>,
    receiver: Receiver,
    /// The unmixed speaker streams' receive paths (none unless configured).
    unmixed: UnmixedStreams,
    encoder: Encoder,
    pacer: Pacer,
    sender: SendBuffer,
    inbound_capacity: usize,
    bot_started: bool,
    frame: ReceivedFrame,
    packet: EncodedPacket,
    /// Jitter buffer counters already added to the call's counters.
    seen: JitterStats,
    /// Receive path counters already added to the call's counters.
    seen_receiver: ReceiverStats,
}

/// A frame the bot queued, with the contributing sources its packet lists (a mixer's
/// active speakers; empty for a plain endpoint).
#[derive(Clone, Copy)]
pub(crate) struct OutgoingFrame {
    pcm: Pcm16K,
    csrcs: Csrcs,
    /// When the bot queued it, for the send latency figure.
    queued: Ticks,
}

/// An encoded packet on its way to the network side, with when the bot queued its frame
/// (`None` for silence the pacer filled in).
#[derive(Clone, Copy)]
pub(crate) struct Outbound {
    packet: EncodedPacket,
    queued: Option<Ticks>,
}

/// The halves returned by [`crate::Pipeline::add_call`].
pub(crate) struct Halves {
    pub(crate) state: Box<CallState>,
    pub(crate) call: Call,
}

impl CallState {
    pub(crate) fn create(id: CallId, cfg: CallConfig) -> Result<Halves, AdmissionError> {
        cfg.validate()?;
        let shared = Arc::new(CallShared {
            id,
            counters: CallCounters::default(),
            removed: AtomicBool::new(false),
            send_active: AtomicBool::new(cfg.send_active),
            loss_percent: AtomicU8::new(NO_LOSS_REPORT),
            latency: LatencyCells::new(),
            outbound_waker: OnceLock::new(),
        });
        // Room for each received stream's packets, so speaker streams cannot crowd out
        // the mix.
        let inbound_capacity = cfg
            .inbound_queue_packets
            .saturating_mul(1 + usize::from(cfg.unmixed_streams));
        let (in_tx, in_rx) = rtrb::RingBuffer::new(inbound_capacity);
        let (out_tx, out_rx) = rtrb::RingBuffer::new(cfg.outbound_queue_packets);
        let (send_tx, send_rx) = rtrb::RingBuffer::new(cfg.send_queue_frames);
        let (recv_tx, recv_rx) = if cfg.receive_queue_frames > 0 {
            let (tx, rx) = rtrb::RingBuffer::new(cfg.receive_queue_frames);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let state = Box::new(CallState {
            inbound: in_rx,
            outbound: out_tx,
            send_queue: send_rx,
            receive_queue: recv_tx,
            on_frame: cfg.on_frame,
            receiver: Receiver::new(cfg.jitter)?,
            unmixed: UnmixedStreams::new(cfg.unmixed_streams, cfg.jitter)?,
            encoder: Encoder::new(&cfg.opus)?,
            sender: SendBuffer::new(cfg.send_queue_target),
            // The network side moves the timestamps into its own timeline, keeping only
            // their spacing, so any start will do.
            pacer: Pacer::new(0, cfg.jitter.rtp_clock_hz),
            inbound_capacity,
            bot_started: false,
            frame: ReceivedFrame::no_signal(Ticks::ZERO),
            packet: EncodedPacket::empty(),
            seen: JitterStats::default(),
            seen_receiver: ReceiverStats::default(),
            shared: Arc::clone(&shared),
        });
        let call = Call {
            handle: CallHandle {
                shared: Arc::clone(&shared),
            },
            network: NetworkHalf {
                shared: Arc::clone(&shared),
                inbound: in_tx,
                outbound: out_rx,
            },
            bot: BotHalf {
                shared,
                send: send_tx,
                receive: recv_rx,
            },
        };
        Ok(Halves { state, call })
    }

    /// One 20 ms step in both directions. `now` is the tick's deadline.
    pub(crate) fn tick(&mut self, now: Ticks, late: bool) {
        self.receive_tick(now, late);
        if self.send_tick(now)
            && let Some(w) = self.shared.outbound_waker.get()
        {
            w.wake_by_ref();
        }
    }

    /// The receive half of a tick: packets in, one frame out to the bot.
    pub(crate) fn receive_tick(&mut self, now: Ticks, late: bool) {
        if late {
            bump(&self.shared.counters.late_ticks);
        }
        self.receive(now, late);
    }

    /// The send half of a tick: the bot's frames encoded and queued for the network.
    /// The send half of a tick; says whether it queued a packet for the network side.
    pub(crate) fn send_tick(&mut self, now: Ticks) -> bool {
        let before = self.outbound.slots();
        self.send(now);
        self.outbound.slots() < before
    }

    fn receive(&mut self, now: Ticks, late: bool) {
        let c = &self.shared.counters;
        // Bounded: a flood cannot keep this call (or its thread) busy past one queue's worth.
        for _ in 0..self.inbound_capacity {
            let Ok(packet) = self.inbound.pop() else {
                break;
            };
            match packet.meta.stream {
                0 => {
                    bump(&c.packets_received);
                    self.receiver.insert(&packet, now);
                }
                stream => {
                    if self.unmixed.insert(stream, &packet, now) {
                        bump(&c.unmixed_packets_received);
                    } else {
                        // A stream this call does not receive: the network side's mistake.
                        bump(&c.packets_received);
                        bump(&c.invalid_packets);
                        bump(&c.dropped_packets);
                    }
                }
            }
        }

        let frame = &mut self.frame;
        frame.timestamp = now;
        frame.late = late;
        let pulled = self.receiver.pull(now, &mut frame.pcm);
        frame.source = pulled.source;
        frame.gap = pulled.gap;
        frame.arrival = pulled.arrival;
        frame.seq = pulled.seq;
        frame.active_speakers = pulled.speakers;
        frame.audio_level = pulled.audio_level;
        if pulled.source == FrameSource::FecRecovered {
            bump(&c.fec_recovered);
        }
        if frame.source == FrameSource::Concealed {
            bump(&c.concealed);
        }
        frame.is_silence = frame.source == FrameSource::NoSignal
            || frame.audio_level == Some(AUDIO_LEVEL_SILENT)
            || frame.pcm.is_digital_silence();
        // The speaker streams, for the same tick and deadline (no-op without them).
        if self.unmixed.count() > 0 {
            self.unmixed.pull(now, &mut frame.unmixed, c);
        }

        if let Some(callback) = self.on_frame.as_mut() {
            if let Some(arrival) = frame.arrival {
                let reached = crate::time::now();
                self.shared
                    .latency
                    .receive
                    .record(reached.saturating_sub(arrival));
            }
            callback(frame);
        }
        if let Some(queue) = self.receive_queue.as_mut()
            && queue.push(*frame).is_err()
        {
            bump(&c.receive_queue_full);
        }
        bump(&c.frames_received);

        let jitter = self.receiver.jitter();
        let js = jitter.stats();
        set(&c.late_packets, js.late);
        set(&c.duplicate_packets, js.duplicates);
        set(&c.lost_packets, js.lost);
        set(&c.resyncs, js.resyncs);
        set(&c.jitter_ticks, jitter.jitter().0);
        set(&c.buffer_delay_ticks, jitter.current_delay().0);
        set(&c.filtered_delay_ticks, jitter.filtered_delay().0);
        set(&c.target_delay_ticks, jitter.target_delay().0);
        let rs = self.receiver.stats();
        set(&c.accelerated_samples, rs.accelerated_samples);
        set(&c.expanded_samples, rs.expanded_samples);
        set(&c.concealed_samples, rs.concealed_samples);
        set(&c.merged_samples, rs.merged_samples);
        // Packets the jitter buffer refused count as dropped (and garbage as invalid),
        // and so do payloads the decoder rejected.
        let new_invalid = (js.invalid - self.seen.invalid)
            + (rs.invalid_packets - self.seen_receiver.invalid_packets);
        let new_unconfirmed = js.unconfirmed - self.seen.unconfirmed;
        add(&c.invalid_packets, new_invalid);
        add(&c.dropped_packets, new_invalid + new_unconfirmed);
        self.seen = js;
        self.seen_receiver = rs;
    }

    fn send(&mut self, now: Ticks) {
        let c = &self.shared.counters;
        let loss = self.shared.loss_percent.load(Ordering::Relaxed);
        if loss != NO_LOSS_REPORT {
            self.encoder.set_loss_percent(loss);
        }
        let due = self.pacer.frames_due(now);
        self.sender.observe(self.send_queue.slots());
        for _ in 0..due {
            // Assemble a frame from the bot's queue, absorbing a standing excess.
            while !self.sender.has_frame() {
                let Ok(f) = self.send_queue.pop() else {
                    break;
                };
                self.bot_started = true;
                self.shared
                    .latency
                    .send_queue
                    .record(crate::time::now().saturating_sub(f.queued));
                self.sender.push(&f.pcm, f.csrcs, f.queued);
            }
            let from_bot = self.sender.take();
            if !self.shared.send_active.load(Ordering::Relaxed) {
                if from_bot.is_some() {
                    bump(&c.discarded_inactive);
                }
                self.sender.clear();
                let _ = self.pacer.next_frame(None);
                self.pacer.not_sent();
                continue;
            }
            if from_bot.is_none() && self.bot_started {
                bump(&c.underruns);
            }
            let paced = self.pacer.next_frame(from_bot.as_ref().map(|f| &f.pcm));
            let queued = from_bot.map(|f| f.queued);
            let packet = &mut self.packet;
            packet.meta.csrcs = from_bot.map_or(Csrcs::new(), |f| f.csrcs);
            let Some(len) = self.encoder.encode(&paced.pcm, packet.payload_buffer_mut()) else {
                self.pacer.not_sent();
                continue;
            };
            packet.set_payload_len(len);
            self.pacer.stamp(&paced, &mut packet.meta);
            packet.meta.arrival = now;
            if self
                .outbound
                .push(Outbound {
                    packet: *packet,
                    queued,
                })
                .is_err()
            {
                bump(&c.outbound_queue_full);
            } else {
                bump(&c.frames_sent);
            }
        }
        let absorbed = self.sender.stats();
        set(&c.send_absorbed_samples, absorbed.cut_samples);
        set(&c.send_dropped_frames, absorbed.dropped_frames);
        set(&c.send_standing_ticks, absorbed.standing.0);
        set(&c.encoder_bitrate_bps, u64::from(self.encoder.bitrate()));
    }
}

/// A new call: its three handles. Send each where it is used.
#[derive(Debug)]
#[non_exhaustive]
pub struct Call {
    /// Owns the call: dropping it (or [`CallHandle::remove`]) removes the call.
    pub handle: CallHandle,
    /// For the network side: packets in and out, loss reports, send status.
    pub network: NetworkHalf,
    /// For the bot: frames in and out.
    pub bot: BotHalf,
}

/// Owns a call: dropping it removes the call from its pipeline thread without stalling
/// the others; its memory is freed off the pipeline threads.
#[derive(Debug)]
pub struct CallHandle {
    shared: Arc<CallShared>,
}

impl CallHandle {
    /// The call's id.
    pub fn id(&self) -> CallId {
        self.shared.id
    }

    /// A snapshot of the call's counters.
    pub fn stats(&self) -> CallStats {
        self.shared.counters.snapshot()
    }

    /// A snapshot of the latency the call's pipeline added, receive and send.
    pub fn latency(&self) -> CallLatency {
        self.shared.latency.snapshot()
    }

    /// Removes the call (same as dropping the handle).
    pub fn remove(self) {}

    /// A reader of the call's counters and latency that does not own the call: it keeps
    /// answering (with the final figures) after the call is removed.
    pub fn observer(&self) -> CallObserver {
        CallObserver {
            shared: self.shared.clone(),
        }
    }
}

/// Reads one call's counters and latency from anywhere (a metrics endpoint, say) without
/// owning the call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CallObserver {
    shared: Arc<CallShared>,
}

impl CallObserver {
    /// The call's id.
    pub fn id(&self) -> CallId {
        self.shared.id
    }

    /// A snapshot of the call's counters.
    pub fn stats(&self) -> CallStats {
        self.shared.counters.snapshot()
    }

    /// A snapshot of the latency the call's pipeline added.
    pub fn latency(&self) -> CallLatency {
        self.shared.latency.snapshot()
    }

    /// Whether the call was removed from its pipeline.
    pub fn is_removed(&self) -> bool {
        self.shared.removed.load(Ordering::Acquire)
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.shared.removed.store(true, Ordering::Release);
    }
}

/// The network side's half of a call. `Send`; use it from one thread at a time.
pub struct NetworkHalf {
    shared: Arc<CallShared>,
    inbound: rtrb::Producer<EncodedPacket>,
    outbound: rtrb::Consumer<Outbound>,
}

impl fmt::Debug for NetworkHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkHalf")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl NetworkHalf {
    /// The call's id.
    pub fn id(&self) -> CallId {
        self.shared.id
    }

    /// Has the pipeline wake `waker` after each tick that queued packets for this call (once
    /// per tick and distinct waker on a pipeline thread, however many of its calls sent):
    /// the network side then sends them at once instead of polling. Set once; says whether
    /// this waker was taken (`false`: one was set before).
    pub fn set_outbound_waker(&self, waker: Waker) -> bool {
        self.shared.outbound_waker.set(waker).is_ok()
    }

    /// Queues a received packet for the jitter buffer. Wait-free. A full queue (a flood,
    /// or a pipeline far behind) hands the packet back and counts it as dropped.
    #[allow(
        clippy::result_large_err,
        reason = "the packet is handed back by value, as rtrb does; boxing would allocate"
    )]
    pub fn push_packet(&mut self, packet: EncodedPacket) -> Result<(), PushPacketError> {
        if self.shared.removed.load(Ordering::Relaxed) || self.inbound.is_abandoned() {
            return Err(PushPacketError::Removed(packet));
        }
        self.inbound
            .push(packet)
            .map_err(|rtrb::PushError::Full(p)| {
                let c = &self.shared.counters;
                bump(&c.inbound_queue_full);
                bump(&c.dropped_packets);
                PushPacketError::Full(p)
            })
    }

    /// Takes the next encoded packet to send, if any. Wait-free. The pipeline numbers
    /// packets itself (sequence, timestamp, marker, SSRC, payload type); the network side
    /// may renumber them into its own sequence space (e.g. to interleave DTMF).
    ///
    /// Taking a packet records the send latency of its frame (see [`CallLatency::send`]).
    pub fn pop_packet(&mut self) -> Option<EncodedPacket> {
        self.pop_packet_with(|p| *p)
    }

    /// [`Self::pop_packet`] without moving the packet: `take` reads it where it waits, so
    /// only the bytes it reads cross from the pipeline's core (a packet's slot is over a
    /// kilobyte; its payload is typically a tenth of that).
    pub fn pop_packet_with<R>(&mut self, take: impl FnOnce(&EncodedPacket) -> R) -> Option<R> {
        let chunk = self.outbound.read_chunk(1).ok()?;
        let (first, _) = chunk.as_slices();
        let out = first.first()?;
        let queued = out.queued;
        let r = take(&out.packet);
        chunk.commit_all();
        if let Some(queued) = queued {
            self.shared
                .latency
                .send
                .record(crate::time::now().saturating_sub(queued));
        }
        Some(r)
    }

    /// Packets waiting to be sent.
    pub fn packets_ready(&self) -> usize {
        self.outbound.slots()
    }

    /// Feeds the loss percentage from the remote receiver report to the encoder.
    pub fn set_remote_loss_percent(&self, percent: u8) {
        let percent = percent.min(100);
        self.shared.loss_percent.store(percent, Ordering::Relaxed);
        set(
            &self.shared.counters.remote_loss_percent,
            u64::from(percent),
        );
    }

    /// Same, from an RTCP report block's `fraction lost` (loss * 256).
    pub fn set_remote_fraction_lost(&self, fraction: u8) {
        self.set_remote_loss_percent(((u16::from(fraction) * 100 + 128) / 256) as u8);
    }

    /// Sets the send status: while inactive, frames the bot sends are discarded
    /// (counted) and no packets are produced.
    pub fn set_send_active(&self, active: bool) {
        self.shared.send_active.store(active, Ordering::Relaxed);
    }

    /// The send status.
    pub fn is_send_active(&self) -> bool {
        self.shared.send_active.load(Ordering::Relaxed)
    }

    /// A snapshot of the call's counters.
    pub fn stats(&self) -> CallStats {
        self.shared.counters.snapshot()
    }
}

/// The bot's half of a call. `Send`; use it from one thread at a time.
pub struct BotHalf {
    shared: Arc<CallShared>,
    send: rtrb::Producer<OutgoingFrame>,
    receive: Option<rtrb::Consumer<ReceivedFrame>>,
}

impl fmt::Debug for BotHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotHalf")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

impl BotHalf {
    /// The call's id.
    pub fn id(&self) -> CallId {
        self.shared.id
    }

    /// Queues a frame to send; the pacer takes one per 20 ms. Wait-free, never blocks: a
    /// full queue hands the frame back.
    #[allow(
        clippy::result_large_err,
        reason = "the frame is handed back by value, as rtrb does; boxing would allocate"
    )]
    pub fn try_send(&mut self, frame: Pcm16K) -> Result<(), SendError> {
        self.try_send_with(frame, Csrcs::new())
    }

    /// Queues a frame whose packet lists `csrcs` as its contributing sources, with their
    /// `csrc-audio-level` levels: what a mixer sends to say who is speaking in the mix.
    /// Wait-free, as [`BotHalf::try_send`].
    #[allow(
        clippy::result_large_err,
        reason = "the frame is handed back by value, as rtrb does; boxing would allocate"
    )]
    pub fn try_send_with(&mut self, frame: Pcm16K, csrcs: Csrcs) -> Result<(), SendError> {
        if self.shared.removed.load(Ordering::Relaxed) || self.send.is_abandoned() {
            return Err(SendError::Removed(frame));
        }
        self.send
            .push(OutgoingFrame {
                pcm: frame,
                csrcs,
                queued: crate::time::now(),
            })
            .map_err(|rtrb::PushError::Full(f)| SendError::Full(f.pcm))
    }

    /// Frames that can be queued right now.
    pub fn send_capacity_left(&self) -> usize {
        self.send.slots()
    }

    /// Takes the next received frame, if the call has a receive queue and one is ready.
    ///
    /// Taking a decoded frame records its receive latency (see [`CallLatency::receive`]).
    pub fn try_recv(&mut self) -> Option<ReceivedFrame> {
        let frame = self.receive.as_mut()?.pop().ok()?;
        if let Some(arrival) = frame.arrival {
            self.shared
                .latency
                .receive
                .record(crate::time::now().saturating_sub(arrival));
        }
        Some(frame)
    }

    /// A snapshot of the call's counters.
    pub fn stats(&self) -> CallStats {
        self.shared.counters.snapshot()
    }
}

/// A call driven by the caller's own clock instead of a pipeline thread: sans-IO, for
/// simulations, offline processing and benchmarks. [`ManualCall::tick`] does exactly
/// what a pipeline thread does for the call every 20 ms.
pub struct ManualCall {
    state: Box<CallState>,
}

impl fmt::Debug for ManualCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualCall")
            .field("id", &self.state.shared.id)
            .finish_non_exhaustive()
    }
}

impl ManualCall {
    /// Allocates the call; the returned [`Call`] handles work as with a pipeline.
    pub fn new(config: CallConfig) -> Result<(ManualCall, Call), AdmissionError> {
        let halves = CallState::create(CallId(0), config)?;
        Ok((
            ManualCall {
                state: halves.state,
            },
            halves.call,
        ))
    }

    /// One 20 ms step in both directions at media time `now` (advance it 20 ms per
    /// call); `late` flags the frames produced as late. Allocation-free.
    pub fn tick(&mut self, now: Ticks, late: bool) {
        self.state.tick(now, late);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_sent_with_csrcs_carry_them_to_their_packets() {
        let (mut call, halves) = ManualCall::new(CallConfig::default()).expect("call");
        let (mut net, mut bot) = (halves.network, halves.bot);
        let mut speakers = Csrcs::new();
        speakers.push(11, Some(20)).expect("room");
        speakers.push(12, Some(35)).expect("room");
        bot.try_send_with(Pcm16K::SILENCE, speakers)
            .expect("queued");
        bot.try_send(Pcm16K::SILENCE).expect("queued");
        let mut now = crate::time::now();
        let mut packets = Vec::new();
        for _ in 0..2 {
            call.tick(now, false);
            now += Ticks::from_millis(20);
            packets.extend(std::iter::from_fn(|| net.pop_packet()));
        }
        assert_eq!(packets.len(), 2);
        assert_eq!(packets[0].meta.csrcs.ids(), &[11, 12]);
        assert_eq!(packets[0].meta.csrcs.levels(), &[Some(20), Some(35)]);
        assert!(
            packets[1].meta.csrcs.is_empty(),
            "a plain frame lists nobody"
        );
    }
}
