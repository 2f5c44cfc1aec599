//! The leg task: RTP between the peer connection and the [`NetworkPort`](crate::NetworkPort),
//! tones, RTCP reports, the connect and media watchdogs, and the leg's end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rtc::rtcp::goodbye::Goodbye;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::{rtcp, rtp};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{PeerConnection, RTCPeerConnectionState};

use super::peer::PcEvent;
use super::timeline::RtpTimeline;
use super::{Leg, LegOutcome, Negotiation, OPUS_CLOCK, ToneRequest, ports};
use crate::bridge::{InboundRtp, OutboundAudio, PushError, opus_packet_samples_48k};
use crate::dtmf::{EventReceiver, EventSender};
use crate::events::{EndReason, EndpointEvent, FailureReason, SendStatus};
use crate::quality::{InboundStats, QualityData, ntp_mid32, round_trip};
use crate::sdp::{CSRC_AUDIO_LEVEL_URI, Negotiated, SSRC_AUDIO_LEVEL_URI};

/// How often the task drains the outbound queue: a quarter of a packet.
const OUTBOUND_TICK: Duration = Duration::from_millis(5);
const TONE_PACKET_INTERVAL: Duration = Duration::from_millis(20);

struct PlayingTone {
    sender: EventSender,
    timestamp: u32,
    next_at: Instant,
}

struct Runner {
    pc: Arc<dyn PeerConnection>,
    /// Held until the leg ends (after its peer connection closed).
    _ports: ports::PortLease,
    track: Arc<TrackLocalStaticRTP>,
    remote: Option<Arc<dyn TrackRemote>>,
    negotiated: Negotiated,
    /// Header extension id for `ssrc-audio-level` as the sender applies it.
    send_level_id: Option<u8>,
    /// Same for `csrc-audio-level` (levels of the CSRCs a mixing producer lists).
    send_csrc_level_id: Option<u8>,
    ssrc: u32,
    /// The peer's SSRC, once a packet arrived.
    remote_ssrc: Option<u32>,
    leg: Leg,
    started: Instant,
    connected_once: bool,
    active: bool,
    last_heard: Instant,
    timeline: RtpTimeline,
    tone: Option<PlayingTone>,
    dtmf_in: EventReceiver,
    stats: InboundStats,
    quality: QualityData,
    unknown_pt: u64,
}

/// Runs the leg until it ends; returns how.
pub(crate) async fn run(neg: Negotiation, leg: Leg) -> LegOutcome {
    let now = Instant::now();
    let send_level_id = send_extension_id(&neg.pc, SSRC_AUDIO_LEVEL_URI).await;
    let send_csrc_level_id = send_extension_id(&neg.pc, CSRC_AUDIO_LEVEL_URI).await;
    leg.shared
        .telephone_event
        .store(neg.negotiated.telephone_event.is_some(), Ordering::Release);
    let mut r = Runner {
        pc: neg.pc,
        _ports: neg.ports,
        track: neg.track,
        remote: None,
        negotiated: neg.negotiated,
        send_level_id,
        send_csrc_level_id,
        ssrc: neg.ssrc,
        remote_ssrc: None,
        leg,
        started: now,
        connected_once: false,
        active: false,
        last_heard: now,
        timeline: RtpTimeline::new(now),
        tone: None,
        dtmf_in: EventReceiver::default(),
        stats: InboundStats::default(),
        quality: QualityData::default(),
        unknown_pt: 0,
    };
    let mut pc_events = neg.events;
    let mut outcome = None;
    for ev in neg.early {
        outcome = outcome.or(r.on_pc_event(ev));
    }
    let mut tick = tokio::time::interval(OUTBOUND_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut local_rtcp = true;
    while outcome.is_none() {
        let remote = r.remote.clone();
        let track = Arc::clone(&r.track);
        tokio::select! {
            ev = pc_events.recv() => {
                outcome = match ev {
                    Some(ev) => r.on_pc_event(ev),
                    None => Some(LegOutcome::Failed(FailureReason::TransportFailed)),
                };
            }
            ev = async { match &remote { Some(t) => t.poll().await, None => std::future::pending().await } } => {
                match ev {
                    Some(TrackRemoteEvent::OnRtpPacket(p)) => outcome = r.on_rtp(p),
                    Some(TrackRemoteEvent::OnRtcpPacket(p)) => outcome = r.on_rtcp(&p),
                    Some(TrackRemoteEvent::OnEnded) | None => r.remote = None,
                    Some(_) => {}
                }
            }
            ev = async { if local_rtcp { track.poll().await } else { std::future::pending().await } } => {
                match ev {
                    Some(TrackLocalEvent::OnRtcpPacket(p)) => outcome = r.on_rtcp(&p),
                    Some(_) => {}
                    None => local_rtcp = false,
                }
            }
            // Tones wait in the channel while one plays, so a sequence plays in order.
            req = r.leg.tones.recv(), if r.tone.is_none() => {
                if let Some(req) = req { r.on_tone_request(req); }
            }
            reason = r.leg.stop.recv() => {
                outcome = Some(LegOutcome::Ended(reason.unwrap_or(EndReason::Closed)));
            }
            _ = tick.tick() => {
                r.on_tick().await;
                outcome = r.watchdog();
            }
        }
    }
    let outcome = outcome.unwrap_or(LegOutcome::Ended(EndReason::Closed));
    r.finish(outcome).await;
    outcome
}

async fn send_extension_id(pc: &Arc<dyn PeerConnection>, uri: &str) -> Option<u8> {
    for s in pc.get_senders().await {
        if let Ok(params) = s.get_parameters().await
            && let Some(ext) = params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
        {
            return u8::try_from(ext.id).ok();
        }
    }
    None
}

impl Runner {
    fn emit(&self, ev: EndpointEvent) {
        if self.leg.events.try_send(ev).is_err() {
            tracing::debug!(leg = %self.leg.label, "event dropped: the session's event queue is full or closed");
        }
    }

    fn set_active(&mut self, active: bool) {
        if self.active == active {
            return;
        }
        self.active = active;
        self.leg.shared.active.store(active, Ordering::Release);
        self.leg.link.set_send_active(active);
        if active {
            self.timeline.resync = true;
        } else {
            self.tone = None;
        }
        self.emit(EndpointEvent::SendStatus(if active {
            SendStatus::Active
        } else {
            SendStatus::Inactive
        }));
    }

    fn on_pc_event(&mut self, ev: PcEvent) -> Option<LegOutcome> {
        match ev {
            PcEvent::Track(t) => {
                self.remote = Some(t);
                None
            }
            PcEvent::Gathering(_) => None,
            PcEvent::Connection(state) => {
                tracing::debug!(leg = %self.leg.label, ?state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        self.connected_once = true;
                        self.last_heard = Instant::now();
                        self.set_active(true);
                        None
                    }
                    RTCPeerConnectionState::Disconnected => {
                        self.set_active(false);
                        None
                    }
                    RTCPeerConnectionState::Failed => {
                        self.set_active(false);
                        Some(LegOutcome::Failed(FailureReason::TransportFailed))
                    }
                    RTCPeerConnectionState::Closed => {
                        self.set_active(false);
                        Some(LegOutcome::Ended(EndReason::PeerLeft))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Handles one RTP packet from the peer; returns an outcome when the leg must end.
    fn on_rtp(&mut self, p: rtp::Packet) -> Option<LegOutcome> {
        let now = Instant::now();
        self.last_heard = now;
        let h = &p.header;
        self.remote_ssrc = Some(h.ssrc);
        if h.payload_type == self.negotiated.opus_pt {
            let since = now.saturating_duration_since(self.started);
            let arrival_units =
                (since.as_micros() as u64 * u64::from(OPUS_CLOCK) / 1_000_000) as i64;
            self.stats
                .on_packet(h.sequence_number, h.timestamp, arrival_units);
            let audio_level = self
                .negotiated
                .ssrc_audio_level_id
                .and_then(|id| h.get_extension(id))
                .and_then(|b| b.first().map(|v| v & 0x7f));
            let levels = self
                .negotiated
                .csrc_audio_level_id
                .and_then(|id| h.get_extension(id))
                .filter(|l| l.len() >= h.csrc.len());
            let mut csrcs = audio_pipeline::Csrcs::new();
            for (i, id) in h.csrc.iter().enumerate() {
                let level = levels.as_ref().and_then(|l| l.get(i)).map(|v| v & 0x7f);
                // RTP carries at most 15 CSRCs, as many as the list holds.
                let _ = csrcs.push(*id, level);
            }
            let packet = InboundRtp {
                seq: h.sequence_number,
                rtp_timestamp: h.timestamp,
                ssrc: h.ssrc,
                audio_level,
                csrcs,
                payload: &p.payload,
            };
            match self.leg.link.push(packet) {
                Ok(()) => {}
                Err(PushError::Full) => {
                    self.leg
                        .shared
                        .inbound_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(PushError::Removed) => {
                    // The bot removed the call: nothing is left to carry media for.
                    return Some(LegOutcome::Ended(EndReason::Closed));
                }
                Err(_) => {
                    tracing::debug!(leg = %self.leg.label, len = p.payload.len(), "inbound packet the pipeline cannot carry");
                }
            }
        } else if self
            .negotiated
            .telephone_event
            .is_some_and(|(pt, _)| pt == h.payload_type)
        {
            self.stats.on_sequence(h.sequence_number);
            if let Some(tone) = self.dtmf_in.on_packet(h.timestamp, &p.payload) {
                tracing::debug!(leg = %self.leg.label, %tone, "tone received");
                self.emit(EndpointEvent::ToneReceived(tone));
            }
        } else {
            self.unknown_pt += 1;
        }
        None
    }

    /// Handles RTCP from the peer; returns an outcome when the peer said goodbye.
    fn on_rtcp(&mut self, packets: &[Box<dyn rtcp::Packet>]) -> Option<LegOutcome> {
        self.last_heard = Instant::now();
        let mut bye = false;
        for p in packets {
            let any = p.as_any();
            if let Some(b) = any.downcast_ref::<Goodbye>() {
                // A BYE for the peer's own stream ends the leg; one for a CSRC is a speaker
                // leaving a mix.
                bye |= self
                    .remote_ssrc
                    .is_some_and(|ssrc| b.sources.contains(&ssrc));
                continue;
            }
            let reports: &[ReceptionReport] = if let Some(rr) = any.downcast_ref::<ReceiverReport>()
            {
                &rr.reports
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                &sr.reports
            } else {
                continue;
            };
            let ssrc = self.ssrc;
            for r in reports.iter().filter(|r| r.ssrc == ssrc) {
                self.on_report(r);
            }
        }
        bye.then_some(LegOutcome::Ended(EndReason::PeerLeft))
    }

    fn on_report(&mut self, r: &ReceptionReport) {
        let q = &mut self.quality;
        q.outbound_fraction_lost = f32::from(r.fraction_lost) / 256.0;
        q.outbound_total_lost = r.total_lost;
        q.outbound_jitter =
            Duration::from_nanos(u64::from(r.jitter) * 1_000_000_000 / u64::from(OPUS_CLOCK));
        if let Some(rtt) = round_trip(ntp_mid32(SystemTime::now()), r.last_sender_report, r.delay) {
            q.round_trip = Some(rtt);
        }
        q.inbound_packets = self.stats.received();
        q.inbound_lost = self.stats.lost();
        q.inbound_jitter = self.stats.jitter(OPUS_CLOCK);
        self.leg.link.set_remote_fraction_lost(r.fraction_lost);
        let snapshot = *q;
        self.emit(EndpointEvent::Quality(snapshot));
    }

    fn on_tone_request(&mut self, req: ToneRequest) {
        let Some((_, rate)) = self.negotiated.telephone_event else {
            return;
        };
        if !self.active {
            // The handle refuses tones while inactive; this one raced a disconnect.
            tracing::debug!(leg = %self.leg.label, "tone dropped: transport inactive");
            return;
        }
        let now = Instant::now();
        self.timeline.catch_up(now);
        let ms = u32::try_from(req.duration.as_millis()).unwrap_or(u32::MAX);
        self.tone = Some(PlayingTone {
            sender: EventSender::new(req.tone, ms, rate),
            timestamp: self.timeline.next_ts,
            next_at: now,
        });
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        while let Some(audio) = self.leg.link.pop() {
            // Media before Active is discarded, and a tone replaces the audio it overlaps.
            if self.active && self.tone.is_none() {
                self.send_audio(audio, now).await;
            }
        }
        self.send_tone_packets(now).await;
    }

    async fn send_audio(&mut self, audio: OutboundAudio, now: Instant) {
        let samples = opus_packet_samples_48k(&audio.payload).unwrap_or(960);
        let (seq, ts, marker) =
            self.timeline
                .audio(samples, audio.rtp_timestamp, audio.marker, now);
        let mut header = rtp::header::Header {
            version: 2,
            marker,
            payload_type: self.negotiated.opus_pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if let (Some(id), Some(level)) = (self.send_level_id, audio.audio_level) {
            // V bit set when the level is above silence: the pipeline has no separate VAD.
            let v = if level < 127 { 0x80 } else { 0 };
            let _ = header.set_extension(id, Bytes::copy_from_slice(&[v | (level & 0x7f)]));
        }
        if !audio.csrcs.is_empty() {
            header.csrc = audio.csrcs.ids().to_vec();
            // RFC 6465: one level per CSRC, in order; only when every level is known.
            let mut levels = [0u8; audio_pipeline::MAX_CSRCS];
            let known = audio.csrcs.levels().iter().all(Option::is_some);
            if let (Some(id), true) = (self.send_csrc_level_id, known) {
                for (d, l) in levels.iter_mut().zip(audio.csrcs.levels()) {
                    *d = l.unwrap_or(127) & 0x7f;
                }
                let n = audio.csrcs.len();
                let _ = header.set_extension(id, Bytes::copy_from_slice(&levels[..n]));
            }
        }
        let packet = rtp::packet::Packet {
            header,
            payload: audio.payload,
        };
        if let Err(e) = self.track.write_rtp(packet).await {
            tracing::debug!(leg = %self.leg.label, error = %e, "RTP write failed");
        }
    }

    async fn send_tone_packets(&mut self, now: Instant) {
        let Some(pt) = self.negotiated.telephone_event.map(|(pt, _)| pt) else {
            return;
        };
        let Some(tone) = self.tone.as_mut() else {
            return;
        };
        if now < tone.next_at {
            return;
        }
        tone.next_at += TONE_PACKET_INTERVAL;
        let Some(ev) = tone.sender.next_packet() else {
            return;
        };
        let header = rtp::header::Header {
            version: 2,
            marker: ev.marker,
            payload_type: pt,
            sequence_number: self.timeline.seq(),
            timestamp: tone.timestamp,
            ssrc: self.ssrc,
            ..Default::default()
        };
        if tone.sender.is_done() {
            self.tone = None;
            // Audio resumes on the clock's timeline, as a new talkspurt.
            self.timeline.resync = true;
        }
        let packet = rtp::packet::Packet {
            header,
            payload: Bytes::copy_from_slice(&ev.payload),
        };
        if let Err(e) = self.track.write_rtp(packet).await {
            tracing::debug!(leg = %self.leg.label, error = %e, "tone write failed");
        }
    }

    fn watchdog(&self) -> Option<LegOutcome> {
        let now = Instant::now();
        if !self.connected_once {
            return (now.saturating_duration_since(self.started)
                > self.leg.settings.connect_timeout)
                .then_some(LegOutcome::Failed(FailureReason::ConnectTimeout));
        }
        (now.saturating_duration_since(self.last_heard) > self.leg.settings.media_timeout)
            .then_some(LegOutcome::Failed(FailureReason::PeerSilent))
    }

    async fn finish(&mut self, outcome: LegOutcome) {
        self.set_active(false);
        self.leg.shared.ended.store(true, Ordering::Release);
        if let Err(e) = self.pc.close().await {
            tracing::debug!(leg = %self.leg.label, error = %e, "closing the peer connection");
        }
        tracing::info!(
            leg = %self.leg.label,
            ?outcome,
            received = self.stats.received(),
            lost = self.stats.lost(),
            unknown_payload_types = self.unknown_pt,
            "leg ended"
        );
        if let Some(on_end) = self.leg.on_end.take() {
            on_end();
        }
        self.emit(match outcome {
            LegOutcome::Ended(r) => EndpointEvent::LegEnded(r),
            LegOutcome::Failed(r) => EndpointEvent::StreamFailure(r),
        });
    }
}
