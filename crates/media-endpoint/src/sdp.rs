//! What the endpoint checks in an offer before handing it to the WebRTC stack, and what it
//! reads back from its own answer (payload types and header extension ids as negotiated).

use std::io::Cursor;

use rtc::sdp::SessionDescription;
use rtc::sdp::description::media::MediaDescription;

/// URI of the RFC 6464 client-to-mixer audio level extension.
pub(crate) const SSRC_AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
/// URI of the RFC 6465 mixer-to-client audio level extension.
pub(crate) const CSRC_AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:csrc-audio-level";
/// URI of the RFC 8843 MID extension, needed by peers that demultiplex a bundle by MID.
pub(crate) const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

/// Largest SDP body accepted, far above any real audio offer.
pub(crate) const MAX_SDP_BYTES: usize = 64 * 1024;

/// Most ICE candidates (`a=candidate` lines, all m-lines together) an offer may list.
///
/// Why a limit: the ICE agent pairs every remote candidate with each local one (one host
/// candidate per configured ICE address and family) and, answering as the controlled agent,
/// checks every pair until one works. webrtc 0.21's agent (rtc-ice: `check_interval` 200 ms,
/// `max_binding_requests` 7, both left at their defaults by the leg's `SettingEngine`) sends
/// a pair's binding request on each 200 ms round while its count is at most 7, so a pair
/// that never answers gets 8 checks, 200 ms apart, and then fails. A leg thus sends at most
///
/// `pairs x 8 = remote candidates x local candidates x 8` connectivity checks,
///
/// 256 per configured ICE address with this limit (`tests/offer_limits.rs` counts them on
/// the wire). The agent also looks every pair and pending request up by linear search, so
/// the cost of a round grows with the square of the pairs: before this limit an offer of
/// 1 093 dead candidates (57 KB, under [`MAX_SDP_BYTES`]) kept a core 30 % busy for 2 s
/// (0.7 s of CPU until the connect timeout; unoptimised, 80 % then 40 %, 2.8 s). Not bounded here: peer-reflexive candidates,
/// which the agent adds for each authenticated binding request from a new address.
///
/// Why 32: a browser lists a handful per m-line (host, server-reflexive and relay, per
/// interface, address family and transport: 4 to 16 on a multi-homed machine), and an
/// audio offer has one m-line; 32 leaves room for VPN and container interfaces.
pub(crate) const MAX_OFFER_CANDIDATES: usize = 32;

/// Why an offer was refused before negotiation; the message is the HTTP 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OfferError {
    /// The body is not UTF-8 text.
    #[error("the SDP offer is not UTF-8 text")]
    NotUtf8,
    /// The body is empty.
    #[error("the SDP offer is empty")]
    Empty,
    /// The SDP grammar was violated.
    #[error("the SDP offer does not parse: {detail}")]
    Syntax {
        /// What the parser reported.
        detail: String,
    },
    /// No usable audio m-line.
    #[error("the SDP offer has no active audio m-line")]
    NoAudio,
    /// The audio m-line offers no Opus 48000/2.
    #[error("the SDP offer's audio m-line has no opus/48000/2 payload type")]
    NoOpus,
    /// DTLS-SRTP is required.
    #[error("the SDP offer has no a=fingerprint: DTLS-SRTP is required")]
    NoFingerprint,
    /// ICE is required.
    #[error("the SDP offer has no a=ice-ufrag/a=ice-pwd: ICE is required")]
    NoIceCredentials,
    /// The offer lists more ICE candidates than the endpoint checks (see
    /// [`MediaEndpoint::MAX_OFFER_CANDIDATES`](crate::MediaEndpoint::MAX_OFFER_CANDIDATES)).
    #[error(
        "the SDP offer lists {count} ICE candidates; the endpoint accepts at most {limit} per offer"
    )]
    TooManyCandidates {
        /// The `a=candidate` lines of the offer, all m-lines together.
        count: usize,
        /// The most accepted.
        limit: usize,
    },
    /// The WebRTC stack refused the offer.
    #[error("the SDP offer was refused: {detail}")]
    Rejected {
        /// What the WebRTC stack reported.
        detail: String,
    },
}

fn parse(sdp: &str) -> Result<SessionDescription, OfferError> {
    SessionDescription::unmarshal(&mut Cursor::new(sdp.as_bytes())).map_err(|e| {
        OfferError::Syntax {
            detail: e.to_string(),
        }
    })
}

fn is_active_audio(m: &MediaDescription) -> bool {
    m.media_name.media.eq_ignore_ascii_case("audio") && m.media_name.port.value != 0
}

/// One codec of the offer's audio m-line, as the answer must name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OfferedCodec {
    pub(crate) payload_type: u8,
    pub(crate) clock_rate: u32,
    pub(crate) fmtp: String,
}

/// What the endpoint needs from a valid offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    /// The offer with CRLF line ends.
    pub(crate) sdp: String,
    pub(crate) opus: OfferedCodec,
    /// `telephone-event`, at 48 kHz when offered, else at another rate.
    pub(crate) telephone_event: Option<OfferedCodec>,
    /// Direction of the audio m-line, from the offerer's side.
    pub(crate) direction: Direction,
    /// The `a=msid` track ids of the offer's further active audio m-lines that the offerer
    /// sends (sendonly), in order: a meeting service's unmixed speaker streams, each named
    /// by one of the session's unmixed render contexts. An m-line without a track id is
    /// left out.
    pub(crate) speaker_tracks: Vec<SpeakerSection>,
    /// The track id of the main audio m-line, when its `a=msid` names one.
    pub(crate) main_track: Option<String>,
    /// The `sha-256` certificate fingerprints (session level and the main audio m-line),
    /// lower case: what the lean media path checks the peer's DTLS certificate against.
    pub(crate) fingerprints: Vec<String>,
    /// Each SSRC the active audio m-lines declare (`a=ssrc:N`), with the track it carries:
    /// its own `msid:` value, else its m-line's (the lean media path routes by SSRC).
    pub(crate) ssrc_tracks: Vec<(u32, String)>,
}

/// A further audio m-line of an offer that the offerer sends: a speaker stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SpeakerSection {
    /// Its `a=mid`.
    pub(crate) mid: String,
    /// The track id its `a=msid` names.
    pub(crate) track: String,
}

/// An m-line direction (RFC 3264 §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The answer's direction for an offer of `self`, from an endpoint that can do both.
    pub(crate) fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            other => other,
        }
    }

    fn of(s: &SessionDescription, m: &MediaDescription) -> Self {
        let find = |has: &dyn Fn(&str) -> bool| {
            [
                ("sendrecv", Self::SendRecv),
                ("sendonly", Self::SendOnly),
                ("recvonly", Self::RecvOnly),
                ("inactive", Self::Inactive),
            ]
            .into_iter()
            .find(|(k, _)| has(k))
            .map(|(_, d)| d)
        };
        find(&|k| m.has_attribute(k))
            .or_else(|| find(&|k| s.has_attribute(k)))
            .unwrap_or(Self::SendRecv)
    }
}

fn offered(c: &rtc::sdp::util::Codec) -> OfferedCodec {
    OfferedCodec {
        payload_type: c.payload_type,
        clock_rate: c.clock_rate,
        fmtp: c.fmtp.clone(),
    }
}

fn find_opus(m: &MediaDescription) -> Option<OfferedCodec> {
    let codecs = m.codecs();
    // The m-line's format order is the offerer's preference; HashMap order is not.
    m.media_name
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| codecs.get(&pt))
        .find(|c| {
            c.name.eq_ignore_ascii_case("opus")
                && c.clock_rate == 48_000
                && c.encoding_parameters == "2"
        })
        .map(offered)
}

fn find_telephone_event(m: &MediaDescription) -> Option<OfferedCodec> {
    m.codecs()
        .values()
        .filter(|c| c.name.eq_ignore_ascii_case("telephone-event"))
        .max_by_key(|c| {
            (
                c.clock_rate == 48_000,
                c.clock_rate,
                u8::MAX - c.payload_type,
            )
        })
        .map(offered)
}

/// The track id an m-line's `a=msid:<stream> <track>` (or `a=ssrc:<n> msid:<stream> <track>`)
/// names.
fn msid_track(m: &MediaDescription) -> Option<String> {
    m.attributes.iter().find_map(|a| {
        let value = a.value.as_deref()?;
        let msid = match a.key.as_str() {
            "msid" => value,
            "ssrc" => value.split_once(' ')?.1.strip_prefix("msid:")?,
            _ => return None,
        };
        let mut parts = msid.split_whitespace();
        let _stream = parts.next()?;
        parts.next().map(str::to_owned)
    })
}

fn session_or_media_attr(s: &SessionDescription, m: &MediaDescription, key: &str) -> bool {
    s.has_attribute(key) || m.has_attribute(key)
}

/// The offer's ICE candidates, in every m-line (the stack reads those of each m-line that is
/// not inactive) and at session level (where it reads none, but counting them costs nothing).
fn candidate_count(s: &SessionDescription) -> usize {
    let media = s.media_descriptions.iter().flat_map(|m| &m.attributes);
    s.attributes
        .iter()
        .chain(media)
        .filter(|a| a.is_ice_candidate())
        .count()
}

/// Checks the parts of an offer the endpoint relies on; the WebRTC stack checks the rest.
pub(crate) fn check_offer(body: &[u8]) -> Result<Offer, OfferError> {
    let text = std::str::from_utf8(body).map_err(|_| OfferError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(OfferError::Empty);
    }
    // Some clients send bare LF line ends; the parser wants CRLF.
    let normalised = if text.contains("\r\n") {
        text.to_owned()
    } else {
        text.replace('\n', "\r\n")
    };
    let parsed = parse(&normalised)?;
    // First, so an offer the endpoint will not check is not looked at further either.
    let count = candidate_count(&parsed);
    if count > MAX_OFFER_CANDIDATES {
        return Err(OfferError::TooManyCandidates {
            count,
            limit: MAX_OFFER_CANDIDATES,
        });
    }
    let mut active = parsed
        .media_descriptions
        .iter()
        .filter(|m| is_active_audio(m));
    let audio = active.next().ok_or(OfferError::NoAudio)?;
    let speaker_tracks = active
        .filter(|m| Direction::of(&parsed, m) == Direction::SendOnly && find_opus(m).is_some())
        .filter_map(|m| {
            Some(SpeakerSection {
                mid: m.attribute("mid").flatten()?.to_owned(),
                track: msid_track(m)?,
            })
        })
        .collect();
    let opus = find_opus(audio).ok_or(OfferError::NoOpus)?;
    if !session_or_media_attr(&parsed, audio, "fingerprint") {
        return Err(OfferError::NoFingerprint);
    }
    if !(session_or_media_attr(&parsed, audio, "ice-ufrag")
        && session_or_media_attr(&parsed, audio, "ice-pwd"))
    {
        return Err(OfferError::NoIceCredentials);
    }
    let telephone_event = find_telephone_event(audio);
    let direction = Direction::of(&parsed, audio);
    let fingerprints = sha256_fingerprints(&parsed, audio);
    let ssrc_tracks = parsed
        .media_descriptions
        .iter()
        .filter(|m| is_active_audio(m))
        .flat_map(ssrc_tracks)
        .fold(Vec::new(), |mut all: Vec<(u32, String)>, (ssrc, track)| {
            if !all.iter().any(|(s, _)| *s == ssrc) {
                all.push((ssrc, track));
            }
            all
        });
    Ok(Offer {
        sdp: normalised,
        opus,
        telephone_event,
        direction,
        speaker_tracks,
        main_track: msid_track(audio),
        fingerprints,
        ssrc_tracks,
    })
}

/// The `sha-256` values of `a=fingerprint` at session level and in `m`, lower case, once
/// each.
fn sha256_fingerprints(s: &SessionDescription, m: &MediaDescription) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in s.attributes.iter().chain(&m.attributes) {
        let Some((alg, value)) = (a.key == "fingerprint")
            .then_some(a.value.as_deref())
            .flatten()
            .and_then(|v| v.split_once(' '))
        else {
            continue;
        };
        let value = value.trim().to_ascii_lowercase();
        if alg.eq_ignore_ascii_case("sha-256") && !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

/// The SSRCs `m` declares, each with its own `msid:` track or else `m`'s ([`msid_track`]);
/// an SSRC with no track anywhere is left out.
fn ssrc_tracks(m: &MediaDescription) -> Vec<(u32, String)> {
    let section = msid_track(m);
    let mut out: Vec<(u32, Option<String>)> = Vec::new();
    for value in m
        .attributes
        .iter()
        .filter(|a| a.key == "ssrc")
        .filter_map(|a| a.value.as_deref())
    {
        let mut fields = value.split_whitespace();
        let Some(ssrc) = fields.next().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let own = fields
            .next()
            .and_then(|f| f.strip_prefix("msid:"))
            .and_then(|_| fields.next())
            .map(str::to_owned);
        match out.iter_mut().find(|(s, _)| *s == ssrc) {
            Some((_, track)) => {
                if own.is_some() {
                    *track = own;
                }
            }
            None => out.push((ssrc, own)),
        }
    }
    out.into_iter()
        .filter_map(|(ssrc, own)| Some((ssrc, own.or_else(|| section.clone())?)))
        .collect()
}

/// Makes the answer's Opus format parameters say `useinbandfec=1`: the WebRTC stack echoes
/// the offer's, and an offer without them (aiortc sends none) would leave in-band FEC
/// undeclared for the stream the endpoint receives.
pub(crate) fn ensure_opus_fec(sdp: &str, opus_pt: u8) -> String {
    let fmtp = format!("a=fmtp:{opus_pt} ");
    let rtpmap = format!("a=rtpmap:{opus_pt} ");
    let has_fmtp = sdp.split("\r\n").any(|l| l.starts_with(&fmtp));
    let mut out = String::with_capacity(sdp.len() + 40);
    for line in sdp.split_inclusive("\r\n") {
        let bare = line.trim_end_matches("\r\n");
        if let Some(params) = bare.strip_prefix(&fmtp) {
            let mut kept: Vec<&str> = params
                .split(';')
                .map(str::trim)
                .filter(|p| !p.is_empty() && !p.starts_with("useinbandfec="))
                .collect();
            kept.push("useinbandfec=1");
            out.push_str(&fmtp);
            out.push_str(&kept.join(";"));
            out.push_str("\r\n");
            continue;
        }
        out.push_str(line);
        if !has_fmtp && bare.starts_with(&rtpmap) {
            out.push_str(&format!("a=fmtp:{opus_pt} minptime=10;useinbandfec=1\r\n"));
        }
    }
    out
}

/// Removes the RTCP (component 2) ICE candidates from an answer that multiplexes RTCP
/// with RTP: webrtc-rs lists every host candidate a second time as component 2 even
/// then, which peers must ignore (libwebrtc logs "Candidate has an unknown component"
/// for each) and a strict one might not.
pub(crate) fn drop_rtcp_candidates(sdp: &str) -> String {
    if !sdp.split("\r\n").any(|l| l == "a=rtcp-mux") {
        return sdp.to_owned();
    }
    sdp.split_inclusive("\r\n")
        .filter(|line| {
            let Some(candidate) = line.strip_prefix("a=candidate:") else {
                return true;
            };
            candidate.split_ascii_whitespace().nth(1) != Some("2")
        })
        .collect()
}

/// The negotiated audio parameters, read from the endpoint's own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Negotiated {
    pub(crate) opus_pt: u8,
    /// Payload type and clock rate of `telephone-event`, when negotiated.
    pub(crate) telephone_event: Option<(u8, u32)>,
    pub(crate) ssrc_audio_level_id: Option<u8>,
    pub(crate) csrc_audio_level_id: Option<u8>,
}

fn extmap_id(m: &MediaDescription, uri: &str) -> Option<u8> {
    m.attributes.iter().find_map(|a| {
        if a.key != "extmap" {
            return None;
        }
        let value = a.value.as_deref()?;
        let mut parts = value.split_whitespace();
        let id = parts.next()?.split('/').next()?.parse::<u8>().ok()?;
        (parts.next()? == uri).then_some(id)
    })
}

/// Reads the answer back. `None` when the answer has no active audio section with Opus,
/// which the offer check makes an internal error.
pub(crate) fn read_answer(sdp: &str) -> Option<Negotiated> {
    let parsed = parse(sdp).ok()?;
    let audio = parsed
        .media_descriptions
        .iter()
        .find(|m| is_active_audio(m))?;
    let codecs = audio.codecs();
    let opus_pt = codecs
        .values()
        .find(|c| c.name.eq_ignore_ascii_case("opus"))?
        .payload_type;
    // Prefer the Opus clock for events; an 8 kHz one is accepted when that is all there is.
    let telephone_event = codecs
        .values()
        .filter(|c| c.name.eq_ignore_ascii_case("telephone-event"))
        .max_by_key(|c| (c.clock_rate == 48_000, c.clock_rate))
        .map(|c| (c.payload_type, c.clock_rate));
    Some(Negotiated {
        opus_pt,
        telephone_event,
        ssrc_audio_level_id: extmap_id(audio, SSRC_AUDIO_LEVEL_URI),
        csrc_audio_level_id: extmap_id(audio, CSRC_AUDIO_LEVEL_URI),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=fingerprint:sha-256 AA:BB\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 110 126\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=setup:actpass\r\na=mid:0\r\n\
a=extmap:1/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:110 telephone-event/8000\r\na=rtpmap:126 telephone-event/48000\r\n";

    #[test]
    fn fingerprints_and_the_tracks_of_ssrcs_are_read() {
        let offer = check_offer(OFFER.as_bytes()).expect("valid");
        assert_eq!(offer.fingerprints, vec!["aa:bb".to_owned()]);
        assert!(offer.ssrc_tracks.is_empty());
        // Media level too, once each; sha-1 is not taken.
        let both = OFFER.replace(
            "a=mid:0\r\n",
            "a=mid:0\r\na=fingerprint:sha-256 aa:bb\r\na=fingerprint:sha-1 00:11\r\n",
        );
        let offer = check_offer(both.as_bytes()).expect("valid");
        assert_eq!(offer.fingerprints, vec!["aa:bb".to_owned()]);
        // An SSRC's own msid, else its section's (as `msid_track` reads it for the section);
        // one with neither is left out, and so is one that does not parse.
        let main = OFFER.replace(
            "a=rtcp-mux\r\n",
            "a=rtcp-mux\r\na=ssrc:11 cname:x\r\na=ssrc:11 msid:s main-track\r\n",
        );
        let speakers = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n\
            a=sendonly\r\na=msid:s speaker-1\r\na=rtpmap:111 opus/48000/2\r\n\
            a=ssrc:22 cname:x\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n\
            a=sendonly\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:33 cname:x\r\n\
            a=ssrc:bad cname:y\r\n";
        let offer = check_offer(format!("{main}{speakers}").as_bytes()).expect("valid");
        assert_eq!(
            offer.ssrc_tracks,
            vec![(11, "main-track".to_owned()), (22, "speaker-1".to_owned())]
        );
    }

    #[test]
    fn accepts_a_plain_offer_and_reads_it_back() {
        let offer = check_offer(OFFER.replace("\r\n", "\n").as_bytes()).expect("valid");
        assert!(offer.sdp.contains("\r\na=mid:0\r\n"));
        assert_eq!(offer.opus.payload_type, 111);
        assert_eq!(offer.opus.fmtp, "minptime=10;useinbandfec=1");
        let te = offer.telephone_event.expect("telephone-event");
        assert_eq!((te.payload_type, te.clock_rate), (126, 48_000));
        assert_eq!(offer.direction, Direction::SendRecv);
        let send_only =
            check_offer(OFFER.replace("a=sendrecv", "a=sendonly").as_bytes()).expect("valid");
        assert_eq!(send_only.direction.answer(), Direction::RecvOnly);
        let session_level = OFFER
            .replace("a=sendrecv\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
        let recv_only = check_offer(session_level.as_bytes()).expect("valid");
        assert_eq!(recv_only.direction.answer(), Direction::SendOnly);
        let n = read_answer(OFFER).expect("audio");
        assert_eq!(n.opus_pt, 111);
        assert_eq!(n.telephone_event, Some((126, 48_000)));
        assert_eq!(n.ssrc_audio_level_id, Some(1));
        assert_eq!(n.csrc_audio_level_id, None);
    }

    #[test]
    fn further_sendonly_audio_sections_are_speaker_streams_named_by_their_track() {
        let speaker = |mid: u8, track: &str, dir: &str| {
            format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{mid}\r\n\
                 a={dir}\r\na=msid:service {track}\r\na=rtpmap:111 opus/48000/2\r\n"
            )
        };
        let offer = format!(
            "{OFFER}{}{}{}",
            speaker(1, "ctx-a", "sendonly"),
            speaker(2, "ctx-b", "sendonly"),
            // Not sent by the offerer: not a speaker stream.
            speaker(3, "ctx-c", "recvonly"),
        );
        let checked = check_offer(offer.as_bytes()).unwrap();
        let tracks: Vec<_> = checked
            .speaker_tracks
            .iter()
            .map(|s| (s.mid.as_str(), s.track.as_str()))
            .collect();
        assert_eq!(tracks, [("1", "ctx-a"), ("2", "ctx-b")]);
        assert_eq!(checked.direction, Direction::SendRecv);
        assert!(
            check_offer(OFFER.as_bytes())
                .unwrap()
                .speaker_tracks
                .is_empty()
        );
    }

    #[test]
    fn answers_that_multiplex_rtcp_list_no_rtcp_candidates() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtcp-mux\r\n\
            a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n\
            a=candidate:1 2 udp 2130706431 127.0.0.1 50000 typ host\r\n\
            a=end-of-candidates\r\n";
        let kept = drop_rtcp_candidates(answer);
        assert!(kept.contains("a=candidate:1 1 udp"), "{kept}");
        assert!(!kept.contains("a=candidate:1 2 udp"), "{kept}");
        assert!(kept.ends_with("a=end-of-candidates\r\n"), "{kept}");
        // Without rtcp-mux, RTCP needs its own candidates: all are kept.
        let separate = answer.replace("a=rtcp-mux\r\n", "");
        assert_eq!(drop_rtcp_candidates(&separate), separate);
    }

    #[test]
    fn answers_declare_in_band_fec() {
        let with = ensure_opus_fec(OFFER, 111);
        assert!(
            with.contains("\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"),
            "{with}"
        );
        let off = OFFER.replace("minptime=10;useinbandfec=1", "useinbandfec=0; stereo=1");
        let fixed = ensure_opus_fec(&off, 111);
        assert!(
            fixed.contains("\r\na=fmtp:111 stereo=1;useinbandfec=1\r\n"),
            "{fixed}"
        );
        let none = OFFER.replace("a=fmtp:111 minptime=10;useinbandfec=1\r\n", "");
        let added = ensure_opus_fec(&none, 111);
        assert!(
            added
                .contains("a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"),
            "{added}"
        );
        assert_eq!(added.len(), OFFER.len());
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(check_offer(&[0xff, 0xfe]), Err(OfferError::NotUtf8));
        assert_eq!(check_offer(b"  \r\n"), Err(OfferError::Empty));
        assert!(matches!(
            check_offer(b"hello world"),
            Err(OfferError::Syntax { .. })
        ));
        let no_opus = OFFER.replace("opus/48000/2", "PCMU/8000");
        assert_eq!(check_offer(no_opus.as_bytes()), Err(OfferError::NoOpus));
        let video = OFFER.replace("m=audio", "m=video");
        assert_eq!(check_offer(video.as_bytes()), Err(OfferError::NoAudio));
        let rejected = OFFER.replace("m=audio 9", "m=audio 0");
        assert_eq!(check_offer(rejected.as_bytes()), Err(OfferError::NoAudio));
        let plain = OFFER.replace("a=fingerprint:sha-256 AA:BB\r\n", "");
        assert_eq!(
            check_offer(plain.as_bytes()),
            Err(OfferError::NoFingerprint)
        );
        let no_ice = OFFER.replace("a=ice-pwd:0123456789012345678901\r\n", "");
        assert_eq!(
            check_offer(no_ice.as_bytes()),
            Err(OfferError::NoIceCredentials)
        );
    }

    fn with_candidates(n: usize) -> String {
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "a=candidate:{i} 1 udp 1 127.0.0.1 {} typ host\r\n",
                    20_000 + i
                )
            })
            .collect();
        OFFER.replace("a=mid:0\r\n", &format!("a=mid:0\r\n{lines}"))
    }

    #[test]
    fn counts_candidates_up_to_the_limit() {
        assert!(check_offer(with_candidates(MAX_OFFER_CANDIDATES).as_bytes()).is_ok());
        let over = check_offer(with_candidates(MAX_OFFER_CANDIDATES + 1).as_bytes());
        assert_eq!(
            over,
            Err(OfferError::TooManyCandidates {
                count: MAX_OFFER_CANDIDATES + 1,
                limit: MAX_OFFER_CANDIDATES
            })
        );
        let message = over.expect_err("refused").to_string();
        assert!(message.contains("33 ICE candidates"), "{message}");
        assert!(message.contains("at most 32"), "{message}");
        // Session-level candidates and those of other m-lines count too.
        let spread = with_candidates(MAX_OFFER_CANDIDATES).replace(
            "t=0 0\r\n",
            "t=0 0\r\na=candidate:s 1 udp 1 127.0.0.1 9 typ host\r\n",
        );
        assert!(matches!(
            check_offer(spread.as_bytes()),
            Err(OfferError::TooManyCandidates { count: 33, .. })
        ));
        let video = format!(
            "{}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=candidate:v 1 udp 1 127.0.0.1 9 typ host\r\n",
            with_candidates(MAX_OFFER_CANDIDATES)
        );
        assert!(matches!(
            check_offer(video.as_bytes()),
            Err(OfferError::TooManyCandidates { count: 33, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            let _ = check_offer(&body);
            let _ = read_answer(&String::from_utf8_lossy(&body));
        }

        #[test]
        fn mangled_offers_never_panic(
            cut in 0usize..OFFER.len(),
            line in 0usize..24,
            junk in "[ -~]{0,40}",
        ) {
            let mut lines: Vec<String> = OFFER.split("\r\n").map(str::to_owned).collect();
            let i = line % lines.len();
            lines[i] = junk.clone();
            let mangled = lines.join("\r\n");
            let _ = check_offer(mangled.as_bytes());
            let _ = read_answer(&mangled);
            let _ = check_offer(&OFFER.as_bytes()[..cut]);
            let inserted = format!("{}{junk}{}", &OFFER[..cut], &OFFER[cut..]);
            let _ = check_offer(inserted.as_bytes());
        }
    }
}
