//! The answering end of a leg: a peer connection for the service's offer, and the
//! non-trickle answer sent back. Synchronous: the leg's sockets are its only candidates.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Instant;

use rtc::crypto::RTCCryptoProvider;
use rtc::peer_connection::RTCPeerConnection;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters};
use rtc::shared::error::Error as RtcError;

use super::core::Negotiation;
use super::lean::{self, LeanLink, LeanSetup};
use super::peer::{
    LeasedBindError, SetupError, add_host_candidates, bind_leased, build_lean_answerer,
    build_peer_connection, local_addrs, opus_codec, opus_track, telephone_event_codec,
};
use super::pump::{LegSockets, PoolKind, SharedError};
use super::{LegSettings, mux, ports, pump};
use crate::config::IceAddress;
use crate::sdp::{
    Direction, Offer, OfferError, drop_rtcp_candidates, ensure_opus_fec, read_answer,
};

/// Why negotiating a leg failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NegotiateError {
    /// The offer was refused (HTTP 400).
    #[error(transparent)]
    Offer(#[from] OfferError),
    /// The WebRTC stack failed for a reason unrelated to the offer (HTTP 500).
    #[error("the WebRTC stack failed while {step}")]
    Stack {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// ICE gathering produced no candidate on the configured addresses (HTTP 500).
    #[error("no ICE candidate could be gathered on the configured addresses")]
    NoCandidates,
    /// Every port of an ICE address's range is taken: the leg is refused before anything
    /// is built (HTTP 503 with this message and `Retry-After: 1`: ports free up as legs end).
    #[error(
        "no free UDP port for ICE on {address} in {}-{}: every port of the range is in use \
         (by other legs or other programs)",
        ports.start(),
        ports.end()
    )]
    NoIcePort {
        address: IpAddr,
        ports: RangeInclusive<u16>,
    },
}

impl From<SetupError> for NegotiateError {
    fn from(e: SetupError) -> Self {
        NegotiateError::Stack {
            step: e.step(),
            source: e.into_source(),
        }
    }
}

impl From<LeasedBindError> for NegotiateError {
    fn from(e: LeasedBindError) -> Self {
        match e {
            LeasedBindError::NoPort(e) => e.into(),
            LeasedBindError::Setup(e) => e.into(),
        }
    }
}

impl From<SharedError> for NegotiateError {
    fn from(e: SharedError) -> Self {
        match e {
            SharedError::Bind(e) => e.into(),
            SharedError::TooMany => NegotiateError::Stack {
                step: "opening a shared ICE socket",
                source: "the network pump has as many shared sockets as it takes".into(),
            },
        }
    }
}

impl From<ports::NoFreePort> for NegotiateError {
    fn from(e: ports::NoFreePort) -> Self {
        NegotiateError::NoIcePort {
            address: e.address,
            ports: e.ports,
        }
    }
}

/// Builds a peer connection for `offer` on freshly bound sockets and returns it with its
/// non-trickle answer (in [`Negotiation::local_sdp`]).
///
/// `unmixed` are the session's unmixed render contexts in stream order: the offer's speaker
/// streams named by them are received as unmixed streams 1, 2, ... (in
/// [`Negotiation::speaker_tracks`]); any other speaker stream is answered and ignored.
pub(crate) fn negotiate(
    now: Instant,
    offer: Offer,
    track_id: String,
    unmixed: &[String],
    settings: &LegSettings,
) -> Result<Negotiation, NegotiateError> {
    let speaker_tracks: Vec<(String, u8)> = unmixed
        .iter()
        .zip(1u8..)
        .filter(|(context, _)| offer.speaker_tracks.iter().any(|s| &s.track == *context))
        .map(|(context, stream)| (context.clone(), stream))
        .collect();
    // Told apart by track only when there is something to tell it from: a peer whose
    // track ids the stack does not learn from the offer still has its one stream taken.
    let main_track = if offer.speaker_tracks.is_empty() {
        None
    } else {
        offer.main_track.clone()
    };
    // The sockets first: a leg refused for want of a port is refused before anything is built.
    let (mut sockets, addrs) = if settings.shared_udp {
        let (pump, addrs) = pump::shared_sockets(PoolKind::Endpoint, &settings.ice_addresses)?;
        // The fragment is the answer's, filled in below.
        let ufrag = String::new();
        (LegSockets::Shared { pump, ufrag }, addrs)
    } else {
        let (sockets, ports) = bind_leased(&settings.ice_addresses)?;
        let addrs = local_addrs(&sockets)?;
        (LegSockets::Own(sockets, ports), addrs)
    };
    // On the lean path the peer connection only writes the answer, with the certificate
    // and DTLS role the lean path then takes over.
    let lean_offer = settings
        .lean_media
        .then(|| lean_from_offer(&offer))
        .transpose()?;
    let (mut pc, certificate) = match &lean_offer {
        Some(_) => {
            let (pc, certificate) = build_lean_answerer(now, &lean_offer_crypto()?)?;
            (pc, Some(certificate))
        }
        None => (build_peer_connection(now, None)?, None),
    };
    add_host_candidates(&mut pc, &addrs)?;
    let answered = answer_offer(now, &mut pc, offer, track_id, settings);
    let is_lean = lean_offer.is_some();
    let answered = answered.map(|(negotiated, ssrc, answer)| {
        if is_lean {
            (negotiated, ssrc, lean::declare_ice_lite(&answer))
        } else {
            (negotiated, ssrc, answer)
        }
    });
    // A leg on shared sockets is told from the others by its ICE username fragment.
    let answered = answered.and_then(|(negotiated, ssrc, answer)| {
        if let LegSockets::Shared { ufrag, .. } = &mut sockets {
            let answered = mux::sdp_ufrag(&answer).ok_or_else(|| NegotiateError::Stack {
                step: "reading the answer's ICE username fragment",
                source: "the answer has no a=ice-ufrag".into(),
            })?;
            answered.clone_into(ufrag);
        }
        Ok((negotiated, ssrc, answer))
    });
    let answered = answered.and_then(|(negotiated, ssrc, answer)| {
        let link = match (lean_offer, certificate) {
            (Some((remote_fingerprints, ssrc_tracks)), Some(certificate)) => Some(lean_link(
                &answer,
                remote_fingerprints,
                ssrc_tracks,
                certificate.dtls_certificate,
            )?),
            _ => None,
        };
        Ok((negotiated, ssrc, answer, link))
    });
    match answered {
        Ok((negotiated, ssrc, answer, lean)) => Ok(Negotiation {
            pc,
            negotiated,
            ssrc,
            local_sdp: answer,
            sockets,
            speaker_tracks,
            main_track,
            speaker_ssrcs: Vec::new(),
            lean,
        }),
        Err(e) => {
            let _ = rtc::sansio::Protocol::close(&mut pc);
            Err(e)
        }
    }
}

type Answered = (crate::sdp::Negotiated, u32, String);

/// The offer's `sha-256` fingerprints, and the track of each SSRC it declares.
type LeanOffer = (Vec<String>, Vec<(u32, String)>);

/// What the lean path needs of the offer: the peer's certificate fingerprints and the
/// track of each SSRC it declares. An offer without a `sha-256` fingerprint is refused.
fn lean_from_offer(offer: &Offer) -> Result<LeanOffer, NegotiateError> {
    if offer.fingerprints.is_empty() {
        return Err(OfferError::Rejected {
            detail: "the offer has no a=fingerprint:sha-256 to check the peer's DTLS \
                     certificate against"
                .to_owned(),
        }
        .into());
    }
    Ok((offer.fingerprints.clone(), offer.ssrc_tracks.clone()))
}

fn lean_offer_crypto() -> Result<Arc<dyn RTCCryptoProvider>, NegotiateError> {
    rtc::crypto::default_provider().map_err(|e| NegotiateError::Stack {
        step: "choosing the crypto provider of the lean media path",
        source: Box::new(e),
    })
}

/// The lean path of a leg whose answer is `answer`: its ICE credentials from the answer,
/// DTLS as the server (which the answer must say).
fn lean_link(
    answer: &str,
    remote_fingerprints: Vec<String>,
    ssrc_tracks: Vec<(u32, String)>,
    certificate: rtc::dtls::crypto::Certificate,
) -> Result<Box<LeanLink>, NegotiateError> {
    let stack = |step: &'static str, detail: String| NegotiateError::Stack {
        step,
        source: detail.into(),
    };
    let read = |name: &str| {
        lean::sdp_attribute(answer, name)
            .map(str::to_owned)
            .ok_or_else(|| {
                stack(
                    "reading the answer for the lean media path",
                    format!("the answer has no a={name}"),
                )
            })
    };
    let (local_ufrag, local_pwd) = (read("ice-ufrag")?, read("ice-pwd")?);
    if lean::sdp_attribute(answer, "setup") != Some("passive") {
        // The offer asked this side to start DTLS (a=setup:passive): the lean path only
        // answers handshakes.
        return Err(OfferError::Rejected {
            detail: "this endpoint is the DTLS server (a=setup:passive in its answer); the \
                     offer must allow that with a=setup:actpass or a=setup:active"
                .to_owned(),
        }
        .into());
    }
    let setup = LeanSetup {
        local_ufrag,
        local_pwd,
        certificate,
        remote_fingerprints,
        ssrc_tracks,
        crypto: lean_offer_crypto()?,
    };
    LeanLink::new(setup)
        .map(Box::new)
        .map_err(|e| stack("configuring DTLS for the lean media path", e))
}

fn answer_offer(
    now: Instant,
    pc: &mut RTCPeerConnection,
    offer: Offer,
    track_id: String,
    settings: &LegSettings,
) -> Result<Answered, NegotiateError> {
    let refused = |e: RtcError| OfferError::Rejected {
        detail: e.to_string(),
    };
    let speaker_mids: Vec<String> = offer.speaker_tracks.iter().map(|s| s.mid.clone()).collect();
    let desc = RTCSessionDescription::offer(offer.sdp.clone()).map_err(refused)?;
    pc.set_remote_description(now, desc).map_err(refused)?;

    let (track, ssrc) = opus_track(
        format!("botmedia-{track_id}"),
        track_id,
        "botmedia-audio".to_owned(),
    );
    // From here on the stack works on what the offer set up: a failure is the offer's
    // (the sdp_offer fuzz target found offers that failed here with 500).
    let sender = pc.add_track(track).map_err(refused)?;
    // add_track narrows the transceiver to the track's one codec; widen it again so the
    // answer keeps telephone-event beside Opus.
    let transceivers: Vec<_> = pc.get_transceivers().collect();
    for id in transceivers {
        let Some(mut t) = pc.rtp_transceiver(id) else {
            continue;
        };
        // With the offer's payload types: the receiver looks a stream's first packet up
        // by payload type in these preferences, and opens no track if it is missing.
        let mut prefs = vec![RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                sdp_fmtp_line: offer.opus.fmtp.clone(),
                ..opus_codec()
            },
            payload_type: offer.opus.payload_type,
        }];
        if t.sender() != Some(sender) {
            // A further audio section: a speaker stream the service sends, received only.
            let speaker = t
                .mid()
                .as_ref()
                .is_some_and(|mid| speaker_mids.iter().any(|m| m == mid));
            if speaker {
                t.set_codec_preferences(prefs).map_err(refused)?;
                t.set_direction(RTCRtpTransceiverDirection::Recvonly);
            }
            continue;
        }
        if let Some(te) = &offer.telephone_event {
            prefs.push(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    clock_rate: te.clock_rate,
                    sdp_fmtp_line: te.fmtp.clone(),
                    ..telephone_event_codec()
                },
                payload_type: te.payload_type,
            });
        }
        t.set_codec_preferences(prefs).map_err(refused)?;
        // RFC 3264 §6.1: the answer mirrors the offer (webrtc-rs keeps what it is told).
        let direction = match offer.direction.answer() {
            Direction::SendRecv => RTCRtpTransceiverDirection::Sendrecv,
            Direction::SendOnly => RTCRtpTransceiverDirection::Sendonly,
            Direction::RecvOnly => RTCRtpTransceiverDirection::Recvonly,
            Direction::Inactive => RTCRtpTransceiverDirection::Inactive,
        };
        t.set_direction(direction);
    }
    let answer = pc.create_answer(None).map_err(refused)?;
    pc.set_local_description(now, answer).map_err(refused)?;
    let local = pc.local_description().ok_or(NegotiateError::NoCandidates)?;
    // webrtc-rs echoes the offer's Opus parameters and refuses an edited local description,
    // so the declaration of in-band FEC goes into the text sent only; it tells the peer's
    // encoder what this endpoint's decoder uses and changes nothing in the stack.
    let sdp = drop_rtcp_candidates(&ensure_opus_fec(&local.sdp, offer.opus.payload_type));
    let sdp = announce(&sdp, &settings.ice_addresses);
    // An offer the stack answers with no usable audio gathers nothing either: that is the
    // offer's fault (400), checked before the missing candidates (500) it also causes.
    let negotiated = read_answer(&sdp).ok_or_else(|| OfferError::Rejected {
        detail: "no audio section could be answered with Opus".to_owned(),
    })?;
    if !local.sdp.contains("a=candidate:") {
        return Err(NegotiateError::NoCandidates);
    }
    Ok((negotiated, ssrc, sdp))
}

/// `sdp` with each host candidate (and connection line) of an ICE address that has an
/// announced address naming that address instead: the 1:1 NAT mapping, in the text sent
/// only (the ICE agent keeps knowing its candidates by their sockets).
fn announce(sdp: &str, addresses: &[IceAddress]) -> String {
    let public_of = |text: &str| -> Option<IpAddr> {
        let ip: IpAddr = text.parse().ok()?;
        addresses
            .iter()
            .find(|a| a.ip == ip)
            .and_then(|a| a.announced)
    };
    if addresses.iter().all(|a| a.announced.is_none()) {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        if let Some(rest) = body.strip_prefix("a=candidate:") {
            // foundation component transport priority address port typ type ...
            let mut fields: Vec<&str> = rest.split(' ').collect();
            let is_host = fields.get(6) == Some(&"typ") && fields.get(7) == Some(&"host");
            if let (true, Some(public)) = (is_host, fields.get(4).and_then(|a| public_of(a))) {
                let public = public.to_string();
                fields[4] = &public;
                out.push_str("a=candidate:");
                out.push_str(&fields.join(" "));
                out.push_str(end);
                continue;
            }
        } else if let Some(addr) = body
            .strip_prefix("c=IN IP4 ")
            .or_else(|| body.strip_prefix("c=IN IP6 "))
            && let Some(public) = public_of(addr)
        {
            let family = if public.is_ipv4() { "IP4" } else { "IP6" };
            out.push_str(&format!("c=IN {family} {public}{end}"));
            continue;
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announced_addresses_replace_their_local_ones_in_host_candidates() {
        let local: IpAddr = "10.0.0.4".parse().unwrap();
        let sdp = "v=0\r\nc=IN IP4 10.0.0.4\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.0.4 40000 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 10.0.0.9 40001 typ host\r\n\
                   a=candidate:3 1 udp 1694498815 10.0.0.4 40002 typ srflx raddr 0.0.0.0 rport 0\r\n";
        let v4 = [IceAddress::new(local).announced_as("52.1.2.3".parse().unwrap())];
        assert_eq!(
            announce(sdp, &v4),
            "v=0\r\nc=IN IP4 52.1.2.3\r\n\
             a=candidate:1 1 udp 2130706431 52.1.2.3 40000 typ host\r\n\
             a=candidate:2 1 udp 2130706431 10.0.0.9 40001 typ host\r\n\
             a=candidate:3 1 udp 1694498815 10.0.0.4 40002 typ srflx raddr 0.0.0.0 rport 0\r\n"
        );
        let v6 = [IceAddress::new(local).announced_as("2001:db8::1".parse().unwrap())];
        let out = announce(sdp, &v6);
        assert!(out.contains("c=IN IP6 2001:db8::1\r\n"), "{out}");
        assert!(out.contains(" 2001:db8::1 40000 typ host"), "{out}");
        // Nothing announced: the text is left as it is.
        assert_eq!(announce(sdp, &[IceAddress::new(local)]), sdp);
    }
}
