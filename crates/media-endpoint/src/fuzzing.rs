//! Entry points for the fuzz targets in `fuzz/` and the tests that replay their corpora: not
//! part of the API.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtp;
use rtc::rtp::header::{EXTENSION_PROFILE_ONE_BYTE, EXTENSION_PROFILE_TWO_BYTE};
use rtc::sansio::Protocol;

use crate::events::EndpointEvent;
use crate::leg::mux::{Demux, binding_request_ufrag};
use crate::leg::sim::{Side, Sim, SimConfig};

/// The fuzz input, read front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn next(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u8(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// The endpoint's leg fed hostile datagrams: builds a connected pair in simulated time
/// (see `leg::sim`; the endpoint's leg on the lean media path for odd seeds), with the
/// service side sending media, then plays `data` as a script of
/// raw datagrams to the endpoint's leg (whatever bytes, from the peer's address or another),
/// datagrams shaped to reach each branch of the demultiplexer (STUN, DTLS, SRTP, SRTCP;
/// each also through a shared socket's [`Demux`]),
/// arbitrary RTP written through the connected peer's stack (so it arrives SRTP-protected
/// and reaches the leg's RTP handling: header fields, CSRCs, the negotiated and other
/// payload types, header extensions) and the passing of time. The leg must not panic, and
/// must either keep running (still sending) or end with exactly one final event.
pub fn leg_datagrams(data: &[u8]) {
    let mut input = Input(data);
    let seed = u64::from(input.u32());
    // Odd seeds put the endpoint's leg on the lean media path.
    let config = SimConfig {
        lean_media: seed & 1 == 1,
        ..SimConfig::new(seed)
    };
    let Ok(mut sim) = Sim::new(&config) else {
        // Setup (binding a loopback port) failed: nothing about the input.
        return;
    };
    // Nothing of the input has been played yet: a clean network always connects.
    assert!(
        sim.connect(Duration::from_secs(10)),
        "the pair did not connect"
    );
    sim.start_feed(Side::Offerer, None);
    let local = sim.legs[Side::Answerer as usize].addrs[0];
    let peer = sim.legs[Side::Offerer as usize].addrs[0];
    while let Some(op) = input.next() {
        if sim.legs[Side::Answerer as usize].core.outcome().is_some() {
            break;
        }
        // The low three bits pick the operation, the others are its flags.
        match op & 0x07 {
            0 => {
                let len = usize::from(input.u8()) * if op & 0x40 != 0 { 8 } else { 1 };
                let from = if op & 0x80 != 0 {
                    SocketAddr::new(peer.ip(), input.u16())
                } else {
                    peer
                };
                let datagram = input.take(len);
                inject(&mut sim, local, from, datagram);
            }
            1 => write_rtp(&mut sim, op, &mut input),
            3 => {
                // A prefix that routes the rest into one branch of the demultiplexer.
                let mut datagram = match (op >> 3) % 4 {
                    // STUN binding request with the magic cookie.
                    0 => vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42],
                    // DTLS 1.2 application data, epoch 1.
                    1 => vec![23, 0xfe, 0xfd, 0x00, 0x01],
                    // RTP with the negotiated Opus payload type.
                    2 => vec![0x80, sim.legs[Side::Answerer as usize].negotiated.opus_pt],
                    // RTCP receiver report.
                    _ => vec![0x81, 201],
                };
                let len = usize::from(input.u8());
                datagram.extend_from_slice(input.take(len));
                inject(&mut sim, local, peer, &datagram);
            }
            4 => {
                // A tone from the service, for the endpoint's telephone-event receiver.
                let tone =
                    crate::Tone::from_event_code((op >> 3) % 16).unwrap_or(crate::Tone::Tone0);
                let ms = u64::from(input.u8()) * 20;
                let _ = sim.legs[Side::Offerer as usize]
                    .control
                    .send_tone(tone, Duration::from_millis(ms));
            }
            _ => sim.run_for(Duration::from_millis(u64::from(input.u8() % 64) + 1)),
        }
    }
    let before = sim.net.logs[Side::Answerer as usize].datagrams;
    sim.run_for(Duration::from_secs(2));
    check(&sim, before);
}

fn inject(sim: &mut Sim, local: SocketAddr, from: SocketAddr, datagram: &[u8]) {
    // A shared socket's demultiplexer reads every datagram first: it must not panic, and
    // with no path known it names a leg only for a Binding request to that leg's fragment.
    let mut demux = Demux::default();
    demux.add(7, b"leg7");
    if let Some(slot) = demux.route(local, from, datagram) {
        assert_eq!(slot, 7);
        assert_eq!(binding_request_ufrag(datagram), Some(&b"leg7"[..]));
    }
    let now = sim.now;
    sim.leg(Side::Answerer)
        .core
        .handle_input(now, None, local, from, datagram);
    sim.flush();
}

/// RTP of the fuzz input's choosing, sent by the service's stack like its own media.
fn write_rtp(sim: &mut Sim, op: u8, input: &mut Input<'_>) {
    let negotiated = sim.legs[Side::Answerer as usize].negotiated.clone();
    let own_ssrc = sim.legs[Side::Offerer as usize].ssrc;
    let payload_type = match (op >> 3) % 4 {
        0 | 1 => negotiated.opus_pt,
        2 => negotiated
            .telephone_event
            .map_or(negotiated.opus_pt, |(pt, _)| pt),
        _ => input.u8() & 0x7f,
    };
    let ssrc = if op & 0x40 != 0 {
        input.u32()
    } else {
        own_ssrc
    };
    let mut header = rtp::header::Header {
        version: 2,
        marker: op & 0x80 != 0,
        payload_type,
        sequence_number: input.u16(),
        timestamp: input.u32(),
        ssrc,
        ..Default::default()
    };
    let csrcs = usize::from(input.u8() % 16);
    header.csrc = (0..csrcs).map(|_| input.u32()).collect();
    let shape = input.u8();
    let profile = match shape % 3 {
        0 => None,
        1 => Some(EXTENSION_PROFILE_ONE_BYTE),
        _ => Some(EXTENSION_PROFILE_TWO_BYTE),
    };
    if let Some(profile) = profile {
        header.extension = true;
        header.extension_profile = profile;
        for _ in 0..(shape >> 2) % 4 {
            let which = input.u8();
            let id = match which % 3 {
                0 => negotiated.ssrc_audio_level_id.unwrap_or(1),
                1 => negotiated.csrc_audio_level_id.unwrap_or(2),
                _ => which >> 2,
            };
            let len = usize::from(input.u8() % 20);
            let value = Bytes::copy_from_slice(input.take(len));
            if value.is_empty() && profile == EXTENSION_PROFILE_ONE_BYTE {
                // rtc-rtp 0.21 takes an empty one-byte element and then panics marshalling
                // it (length 0 - 1); the leg itself never sends one.
                continue;
            }
            // The stack refuses what the profile cannot carry; what it takes is sent.
            let _ = header.set_extension(id, value);
        }
    }
    let len = usize::from(input.u8());
    let packet = rtp::packet::Packet {
        header,
        payload: Bytes::copy_from_slice(input.take(len)),
    };
    let now = sim.now;
    let msg = TaggedRTCMessage {
        now,
        message: RTCMessage::RtpPacket(String::new(), packet),
    };
    // The stack may refuse it (an SSRC it cannot protect): that is its business.
    let _ = sim
        .leg(Side::Offerer)
        .core
        .peer_connection()
        .expect("the service side runs the whole stack")
        .handle_write(msg);
    sim.flush();
}

/// The endpoint's leg either ended with one final event, or runs on: it sent since `before`
/// (receiver reports, consent checks) and has no final event.
fn check(sim: &Sim, before: u64) {
    let leg = &sim.legs[Side::Answerer as usize];
    let finals = leg
        .events
        .iter()
        .filter(|e| {
            matches!(
                e,
                EndpointEvent::LegEnded(_) | EndpointEvent::StreamFailure(_)
            )
        })
        .count();
    match leg.core.outcome() {
        Some(outcome) => assert_eq!(finals, 1, "ended {outcome:?} with {finals} final events"),
        None => {
            assert_eq!(finals, 0, "a running leg sent a final event");
            assert!(
                sim.net.logs[Side::Answerer as usize].datagrams > before,
                "a running leg sent nothing for 2 s"
            );
        }
    }
}
