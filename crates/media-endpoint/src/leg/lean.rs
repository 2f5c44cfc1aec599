//! The lean media path of a bot's leg ([`EndpointConfig::lean_media`](crate::EndpointConfig)):
//! once the answer is written, the leg does the transport itself from the `rtc` stack's
//! parts instead of running its whole peer connection for every packet.
//!
//! - **ICE lite** (RFC 8445 §2.5): the answer says `a=ice-lite`; the peer's Binding requests
//!   that name this leg's username fragment and carry its password's MESSAGE-INTEGRITY are
//!   answered, and the path of the last nominated (or, before any nomination, the first
//!   valid) request is where everything is sent. The requests are the peer's consent
//!   (RFC 7675): none for [`CONSENT_TIMEOUT`] fails the leg.
//! - **DTLS** as the server (`a=setup:passive`), with the leg's certificate, the peer's
//!   certificate checked against the offer's fingerprint; the SRTP keys are exported from
//!   it when the handshake completes (RFC 5764).
//! - **SRTP and SRTCP**: one context per direction. A packet is parsed once, decrypted once,
//!   and handed to the leg as RTP or RTCP; an outbound packet is written once into a reused
//!   buffer and encrypted from there.
//!
//! The leg's own code does the rest as on the full stack: the timeline, tones, watchdogs,
//! and the receiver and sender reports ([`super::core`]).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc::dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, VerifyPeerCertificateFn,
};
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::shared::TransportProtocol;
use rtc::shared::error::Error as RtcError;
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};
use rtc::srtp::config::{Config as SrtpConfig, LABEL_EXTRACTOR_DTLS_SRTP};
use rtc::srtp::context::Context as SrtpContext;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;
use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, is_stun_message};
use rtc::stun::textattrs::TextAttribute;
use rtc::stun::xoraddr::XorMappedAddress;
use rtc::{rtcp, rtp};

use super::core::Transmit;

/// How long the peer may send no valid Binding request (its consent, RFC 7675 §5.1) before
/// the leg fails.
pub(crate) const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// SRTP and SRTCP replay windows, in packets (as the full stack's default).
const REPLAY_WINDOW: usize = 64;
/// Where the DTLS endpoint believes its one peer is. The association belongs to the leg,
/// not to an address: the peer may move to another ICE path after the handshake, and
/// records are sent on whichever path is selected then.
const DTLS_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1)), 9);
/// Most addresses of the peer kept as checked (its candidates' paths).
const MAX_CHECKED_ADDRESSES: usize = 8;
/// Most times the handshake's last flight is sent again for a peer that repeats its own.
const MAX_FLIGHT_REPEATS: u8 = 8;
/// Longest RTP packet written (header, payload, and the tag SRTP adds).
const MAX_PACKET: usize = 1500;

/// What negotiation leaves the lean path: the leg's ICE credentials and certificate as the
/// answer states them, and what the offer says of the peer.
pub(crate) struct LeanSetup {
    /// `a=ice-ufrag` of the answer.
    pub(crate) local_ufrag: String,
    /// `a=ice-pwd` of the answer.
    pub(crate) local_pwd: String,
    /// The leg's DTLS certificate (its fingerprint is the answer's).
    pub(crate) certificate: rtc::dtls::crypto::Certificate,
    /// The offer's `sha-256` fingerprints, lower case ([`crate::sdp::Offer::fingerprints`]).
    pub(crate) remote_fingerprints: Vec<String>,
    /// The track of each SSRC the offer declares ([`crate::sdp::Offer::ssrc_tracks`]).
    pub(crate) ssrc_tracks: Vec<(u32, String)>,
    pub(crate) crypto: Arc<dyn RTCCryptoProvider>,
}

/// What the lean path tells the leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeanEvent {
    /// DTLS completed and SRTP is keyed: media flows.
    Connected,
    /// The handshake failed, or the peer's consent expired.
    Failed,
    /// The peer closed DTLS (`close_notify`).
    Closed,
}

/// A packet read from the peer.
pub(crate) enum LeanRead {
    /// RTP, with the track its SSRC belongs to (empty when the offer did not say).
    Rtp(rtp::Packet, usize),
    /// A compound RTCP packet.
    Rtcp(Vec<Box<dyn rtcp::Packet>>),
}

/// Why a datagram was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// STUN that is not a Binding request for this leg with its password's integrity.
    #[error("STUN that is not a Binding request for this leg with its integrity")]
    Stun,
    /// DTLS the endpoint refused.
    #[error("DTLS refused: {0}")]
    Dtls(String),
    /// RTP or RTCP before the keys, or that failed authentication or parsing.
    #[error("SRTP refused: {0}")]
    Srtp(String),
    /// Neither STUN, DTLS nor RTP/RTCP (RFC 7983's first-byte ranges).
    #[error("neither STUN, DTLS, RTP nor RTCP")]
    Unknown,
    /// DTLS, RTP or RTCP from an address that sent no valid Binding request.
    #[error("DTLS or media from an address that passed no ICE check")]
    Unchecked,
}

struct Srtp {
    local: SrtpContext,
    remote: SrtpContext,
}

/// The lean transport of one leg. See the module documentation.
pub(crate) struct LeanLink {
    setup: LeanSetup,
    dtls: Endpoint,
    srtp: Option<Srtp>,
    /// The selected path (local, remote), once a valid Binding request came.
    path: Option<(SocketAddr, SocketAddr)>,
    /// The peer's addresses that sent a valid Binding request (at most
    /// [`MAX_CHECKED_ADDRESSES`]): DTLS, RTP and RTCP are taken from these only.
    checked: Vec<SocketAddr>,
    /// When the last valid Binding request came.
    consent: Option<Instant>,
    /// The DTLS endpoint's next timer, read after every call that can change it (reading
    /// it walks the endpoint's table: not once per packet).
    dtls_timeout: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LeanEvent>,
    reads: VecDeque<LeanRead>,
    /// Reused for the plaintext of every outbound RTP packet.
    scratch: Vec<u8>,
    /// The DTLS endpoint's last flight of the handshake, sent again when the peer repeats
    /// its own (RFC 6347 §4.2.4: ours was lost), which the endpoint does not do itself.
    last_flight: Vec<BytesMut>,
    /// Times the last flight was sent again.
    flight_repeats: u8,
    /// Index into `setup.ssrc_tracks` of the last SSRC looked up (the same stream, nearly
    /// always).
    last_ssrc: Option<(u32, usize)>,
    closed: bool,
}

impl LeanLink {
    /// The lean transport for `setup`, waiting for the peer's checks and handshake.
    pub(crate) fn new(setup: LeanSetup) -> Result<LeanLink, String> {
        let fingerprints = setup.remote_fingerprints.clone();
        let crypto = Arc::clone(&setup.crypto);
        let verify: VerifyPeerCertificateFn = Arc::new(move |certs: &[Vec<u8>], _| {
            let first = certs.first().ok_or(RtcError::ErrNoCertificates)?;
            let hash = crypto
                .crypto()
                .hash(HashAlgorithm::Sha256, first)
                .map_err(|e| RtcError::Other(e.to_string()))?;
            let seen = hex_fingerprint(&hash);
            if fingerprints.contains(&seen) {
                Ok(())
            } else {
                Err(RtcError::Other(
                    "the peer's certificate does not match the offer's fingerprint".into(),
                ))
            }
        });
        let config = ConfigBuilder::default()
            .with_crypto_provider(Arc::clone(&setup.crypto))
            .with_certificates(vec![setup.certificate.clone()])
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_client_auth(ClientAuthType::RequireAnyClientCert)
            .with_insecure_skip_verify(true)
            .with_verify_peer_certificate(Some(verify))
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .build(false, None)
            .map_err(|e| e.to_string())?;
        let dtls = Endpoint::new(DTLS_PEER, TransportProtocol::UDP, Some(Arc::new(config)));
        Ok(LeanLink {
            setup,
            dtls,
            srtp: None,
            path: None,
            checked: Vec::new(),
            consent: None,
            dtls_timeout: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            reads: VecDeque::new(),
            scratch: Vec::with_capacity(MAX_PACKET),
            last_flight: Vec::new(),
            flight_repeats: 0,
            last_ssrc: None,
            closed: false,
        })
    }

    /// A datagram that arrived on `local` from `peer`.
    pub(crate) fn handle_read(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
    ) -> Result<(), Refused> {
        if self.closed {
            return Ok(());
        }
        // RFC 7983 §7: the first byte tells the protocols apart.
        match data.first() {
            Some(0..=3) => self.on_stun(now, local, peer, data),
            // RFC 8445 §7.1: nothing but checks from an address that was not checked.
            Some(20..=63 | 128..=191) if !self.checked.contains(&peer) => Err(Refused::Unchecked),
            Some(20..=63) => self.on_dtls(now, data),
            Some(128..=191) => self.on_srtp(data),
            _ => Err(Refused::Unknown),
        }
    }

    fn on_stun(
        &mut self,
        now: Instant,
        local: SocketAddr,
        peer: SocketAddr,
        data: &[u8],
    ) -> Result<(), Refused> {
        if !is_stun_message(data) {
            return Err(Refused::Stun);
        }
        let mut m = Message::new();
        m.unmarshal_binary(data).map_err(|_| Refused::Stun)?;
        if m.typ != BINDING_REQUEST {
            // Responses and indications: this side sends no checks to be answered.
            return Err(Refused::Stun);
        }
        let username = TextAttribute::get_from_as(&m, ATTR_USERNAME).map_err(|_| Refused::Stun)?;
        let ours = username
            .text
            .split_once(':')
            .is_some_and(|(to, _)| to == self.setup.local_ufrag);
        if !ours {
            return Err(Refused::Stun);
        }
        let crypto = self.setup.crypto.crypto();
        MessageIntegrity::check(&mut m, self.setup.local_pwd.as_bytes(), crypto)
            .map_err(|_| Refused::Stun)?;
        let nominated = m.contains(ATTR_USE_CANDIDATE);
        if !self.checked.contains(&peer) {
            if self.checked.len() == MAX_CHECKED_ADDRESSES {
                self.checked.remove(0);
            }
            self.checked.push(peer);
        }
        if nominated || self.path.is_none() {
            self.path = Some((local, peer));
        }
        self.consent = Some(now);
        let mut out = Message::new();
        let integrity = MessageIntegrity::new_short_term_integrity_with_provider(
            self.setup.local_pwd.clone(),
            crypto,
        );
        let setters: [Box<dyn Setter + '_>; 5] = [
            Box::new(m.transaction_id),
            Box::new(BINDING_SUCCESS),
            Box::new(XorMappedAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
            Box::new(integrity),
            Box::new(FINGERPRINT),
        ];
        out.build(&setters).map_err(|_| Refused::Stun)?;
        self.transmits.push_back(Transmit {
            from: local,
            to: peer,
            data: BytesMut::from(&out.raw[..]),
        });
        Ok(())
    }

    fn on_dtls(&mut self, now: Instant, data: &[u8]) -> Result<(), Refused> {
        let queued = self.transmits.len();
        let result = self.dtls.read(now, DTLS_PEER, None, BytesMut::from(data));
        self.collect_dtls();
        self.repeat_lost_flight(queued, data);
        // A record the endpoint refuses (a duplicate, one out of order, a stranger's on a
        // checked address) is dropped and the handshake goes on: one bad datagram must not
        // end the leg. A handshake that never completes fails by the connect timeout.
        let (events, refused) = match result {
            Ok(events) => (events, None),
            // The endpoint drops what it reported with the error: a handshake that
            // completed in this datagram is found below by its keys.
            Err(e) => (Vec::new(), Some(Refused::Dtls(e.to_string()))),
        };
        let mut completed = refused.is_some();
        for ev in events {
            match ev {
                EndpointEvent::HandshakeComplete => completed = true,
                EndpointEvent::PeerClosed => {
                    self.closed = true;
                    self.events.push_back(LeanEvent::Closed);
                }
                // No data channel is negotiated: application data means nothing here.
                _ => {}
            }
        }
        if completed && self.srtp.is_none() && !self.closed {
            match self.key_srtp() {
                Ok(srtp) => {
                    self.srtp = Some(srtp);
                    self.last_flight.clear();
                    self.events.push_back(LeanEvent::Connected);
                }
                // Not yet keyed: the handshake is still going.
                Err(_) if refused.is_some() => {}
                Err(e) => {
                    self.events.push_back(LeanEvent::Failed);
                    return Err(Refused::Dtls(e));
                }
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// Keeps the flight the endpoint just sent (the transmits from `queued` on); or, when a
    /// handshake record of the peer got no answer before the handshake completed, the peer
    /// repeated its flight because ours was lost: ours goes again (at most
    /// [`MAX_FLIGHT_REPEATS`] times).
    fn repeat_lost_flight(&mut self, queued: usize, data: &[u8]) {
        if self.srtp.is_some() {
            self.last_flight.clear();
            return;
        }
        if self.transmits.len() > queued {
            self.last_flight = self
                .transmits
                .range(queued..)
                .map(|t| t.data.clone())
                .collect();
            self.flight_repeats = 0;
            return;
        }
        // Content type 22: a handshake record (a repeated ClientHello or client flight).
        let Some((local, remote)) = self.path else {
            return;
        };
        if data.first() != Some(&22)
            || self.last_flight.is_empty()
            || self.flight_repeats >= MAX_FLIGHT_REPEATS
        {
            return;
        }
        self.flight_repeats += 1;
        for i in 0..self.last_flight.len() {
            let data = self.last_flight[i].clone();
            self.queue(local, remote, Some(data));
        }
    }

    /// The SRTP contexts from the completed handshake's exported keys (RFC 5764 §4.2).
    fn key_srtp(&self) -> Result<Srtp, String> {
        let state = self
            .dtls
            .get_connection_state(DTLS_PEER)
            .ok_or("the DTLS association is gone")?;
        let profile = match state.srtp_protection_profile() {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => ProtectionProfile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => ProtectionProfile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                ProtectionProfile::Aes128CmHmacSha1_80
            }
            other => return Err(format!("no SRTP protection profile agreed ({other:?})")),
        };
        let mut config = SrtpConfig {
            profile,
            ..SrtpConfig::default()
        };
        let material = state
            .export_keying_material(LABEL_EXTRACTOR_DTLS_SRTP, &[], config.keying_material_len())
            .map_err(|e| e.to_string())?;
        config
            .set_session_keys_from_keying_material(material.as_ref(), state.is_client())
            .map_err(|e| e.to_string())?;
        let crypto = self.setup.crypto.crypto();
        let keys = &config.keys;
        let local = SrtpContext::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            profile,
            None,
            None,
            crypto,
        )
        .map_err(|e| e.to_string())?;
        let remote = SrtpContext::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            profile,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            crypto,
        )
        .map_err(|e| e.to_string())?;
        Ok(Srtp { local, remote })
    }

    fn on_srtp(&mut self, data: &[u8]) -> Result<(), Refused> {
        let Some(srtp) = &mut self.srtp else {
            return Err(Refused::Srtp(
                "media before the DTLS handshake completed".into(),
            ));
        };
        // RFC 5761 §4: payload types 64-95 (with the marker bit: 192-223) are RTCP.
        if data.len() > 1 && (192..=223).contains(&data[1]) {
            let plain = srtp
                .remote
                .decrypt_rtcp(data)
                .map_err(|e| Refused::Srtp(e.to_string()))?;
            let packets = rtcp::packet::unmarshal(&mut plain.freeze())
                .map_err(|e| Refused::Srtp(e.to_string()))?;
            self.reads.push_back(LeanRead::Rtcp(packets));
            return Ok(());
        }
        let header = rtp::header::Header::unmarshal(&mut &data[..])
            .map_err(|e| Refused::Srtp(e.to_string()))?;
        let plain = srtp
            .remote
            .decrypt_rtp_with_header(data, &header)
            .map_err(|e| Refused::Srtp(e.to_string()))?;
        let packet = rtp::packet::Packet::unmarshal(&mut plain.freeze())
            .map_err(|e| Refused::Srtp(e.to_string()))?;
        let track = self.track_index(packet.header.ssrc);
        self.reads.push_back(LeanRead::Rtp(packet, track));
        Ok(())
    }

    /// Index into the offer's SSRC table of `ssrc`'s track, or past its end when unknown.
    fn track_index(&mut self, ssrc: u32) -> usize {
        if let Some((last, i)) = self.last_ssrc
            && last == ssrc
        {
            return i;
        }
        let tracks = &self.setup.ssrc_tracks;
        let i = tracks
            .iter()
            .position(|(s, _)| *s == ssrc)
            .unwrap_or(tracks.len());
        self.last_ssrc = Some((ssrc, i));
        i
    }

    /// The track of an index [`LeanRead::Rtp`] carries: empty when the offer named none.
    pub(crate) fn track(&self, index: usize) -> &str {
        self.setup
            .ssrc_tracks
            .get(index)
            .map_or("", |(_, t)| t.as_str())
    }

    fn collect_dtls(&mut self) {
        self.dtls_timeout = self.dtls.poll_timeout(&DTLS_PEER);
        while let Some(msg) = self.dtls.poll_transmit() {
            if let Some((local, remote)) = self.path {
                self.queue(local, remote, Some(msg.message));
            }
        }
    }

    /// Protects and queues one RTP packet for the selected path; `false` when it cannot be
    /// sent (no keys or path yet, or SRTP refused it).
    pub(crate) fn write_rtp(&mut self, header: &rtp::header::Header, payload: &[u8]) -> bool {
        let (Some(srtp), Some((local, remote))) = (&mut self.srtp, self.path) else {
            return false;
        };
        let size = header.marshal_size();
        self.scratch.clear();
        self.scratch.resize(size + payload.len(), 0);
        if header.marshal_to(&mut self.scratch[..size]).is_err() {
            return false;
        }
        self.scratch[size..].copy_from_slice(payload);
        let protected = srtp.local.encrypt_rtp_with_header(&self.scratch, header);
        self.queue(local, remote, protected.ok())
    }

    /// Queues `data` (when there is some) from `local` to `remote`; whether it was queued.
    fn queue(&mut self, local: SocketAddr, remote: SocketAddr, data: Option<BytesMut>) -> bool {
        let Some(data) = data else {
            return false;
        };
        self.transmits.push_back(Transmit {
            from: local,
            to: remote,
            data,
        });
        true
    }

    /// Protects and queues a compound RTCP packet.
    pub(crate) fn write_rtcp(&mut self, packets: &[Box<dyn rtcp::Packet>]) -> bool {
        let (Some(srtp), Some((local, remote))) = (&mut self.srtp, self.path) else {
            return false;
        };
        let Ok(plain) = rtcp::packet::marshal(packets) else {
            return false;
        };
        let protected = srtp.local.encrypt_rtcp(&plain);
        self.queue(local, remote, protected.ok())
    }

    /// Lets time pass: DTLS retransmissions, and the peer's consent.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        if self.dtls_timeout.is_some_and(|t| t <= now) {
            if self.dtls.handle_timeout(DTLS_PEER, now).is_err() && self.srtp.is_none() {
                self.events.push_back(LeanEvent::Failed);
            }
            self.collect_dtls();
        }
        if self
            .consent
            .is_some_and(|t| now.saturating_duration_since(t) > CONSENT_TIMEOUT)
        {
            self.consent = None;
            self.closed = true;
            self.events.push_back(LeanEvent::Failed);
        }
    }

    /// When [`Self::handle_timeout`] is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let consent = self.consent.map(|t| t + CONSENT_TIMEOUT);
        match (self.dtls_timeout, consent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub(crate) fn poll_event(&mut self) -> Option<LeanEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_read(&mut self) -> Option<LeanRead> {
        self.reads.pop_front()
    }

    /// Ends the transport: DTLS `close_notify` is queued for the last transmit.
    pub(crate) fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = self.dtls.close(now);
        self.collect_dtls();
    }
}

/// `AB:CD:...` of a digest, lower case, as SDP writes fingerprints.
fn hex_fingerprint(hash: &[u8]) -> String {
    let mut s = String::with_capacity(hash.len() * 3);
    for (i, b) in hash.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The value of the first `a={name}:` line of an SDP.
pub(crate) fn sdp_attribute<'s>(sdp: &'s str, name: &str) -> Option<&'s str> {
    sdp.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
            .map(str::trim)
    })
}

/// Adds `a=ice-lite` at session level (after the `t=` line): the lean path answers checks
/// and sends none of its own.
pub(crate) fn declare_ice_lite(sdp: &str) -> String {
    if sdp.lines().any(|l| l.trim_end() == "a=ice-lite") {
        return sdp.to_owned();
    }
    let mut out = String::with_capacity(sdp.len() + 16);
    let mut done = false;
    for line in sdp.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.starts_with("t=") {
            out.push_str("a=ice-lite\r\n");
            done = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rtc::stun::message::Getter;

    use super::*;

    const LOCAL: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 5000);
    const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6000);

    fn link() -> LeanLink {
        let crypto = rtc::crypto::default_provider().unwrap();
        let params =
            rtc::peer_connection::certificate::CertificateParams::new(vec!["test".to_owned()])
                .unwrap();
        let certificate = rtc::peer_connection::certificate::RTCCertificate::generate(
            crypto.crypto(),
            rtc::crypto::SignatureScheme::EcdsaP256Sha256,
            params,
        )
        .unwrap();
        LeanLink::new(LeanSetup {
            local_ufrag: "mine".to_owned(),
            local_pwd: "the-password-of-this-leg".to_owned(),
            certificate: certificate.dtls_certificate,
            remote_fingerprints: vec!["ab:cd".to_owned()],
            ssrc_tracks: vec![(7, "track".to_owned())],
            crypto,
        })
        .unwrap()
    }

    /// A Binding request to `ufrag` signed with `pwd`, nominating when `nominate`.
    fn binding(ufrag: &str, pwd: &str, nominate: bool) -> Vec<u8> {
        let crypto = rtc::crypto::default_provider().unwrap();
        let mut m = Message::new();
        let username = TextAttribute::new(ATTR_USERNAME, format!("{ufrag}:peer"));
        let integrity = MessageIntegrity::new_short_term_integrity_with_provider(
            pwd.to_owned(),
            crypto.crypto(),
        );
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(rtc::stun::message::TransactionId([7; 12])),
            Box::new(BINDING_REQUEST),
            Box::new(username),
        ];
        if nominate {
            setters.push(Box::new(rtc::stun::attributes::RawAttribute {
                typ: ATTR_USE_CANDIDATE,
                length: 0,
                value: Vec::new(),
            }));
        }
        setters.push(Box::new(integrity));
        setters.push(Box::new(FINGERPRINT));
        m.build(&setters).unwrap();
        m.raw
    }

    #[test]
    fn a_binding_request_with_the_legs_credentials_is_answered_and_sets_the_path() {
        let mut l = link();
        let now = Instant::now();
        l.handle_read(
            now,
            LOCAL,
            PEER,
            &binding("mine", "the-password-of-this-leg", false),
        )
        .unwrap();
        let t = l.poll_transmit().expect("a response");
        assert_eq!((t.from, t.to), (LOCAL, PEER));
        let mut response = Message::new();
        response.unmarshal_binary(&t.data).unwrap();
        assert_eq!(response.typ, BINDING_SUCCESS);
        assert_eq!(response.transaction_id.0, [7; 12]);
        let crypto = rtc::crypto::default_provider().unwrap();
        MessageIntegrity::check(&mut response, b"the-password-of-this-leg", crypto.crypto())
            .unwrap();
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&response).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), PEER);
        assert_eq!(l.path, Some((LOCAL, PEER)));
        // Consent keeps the leg until it lapses.
        assert_eq!(l.poll_timeout(), Some(now + CONSENT_TIMEOUT));
        l.handle_timeout(now + CONSENT_TIMEOUT + Duration::from_millis(1));
        assert_eq!(l.poll_event(), Some(LeanEvent::Failed));
    }

    #[test]
    fn a_nominated_path_replaces_the_first_one() {
        let mut l = link();
        let now = Instant::now();
        let other = SocketAddr::new(PEER.ip(), 6001);
        let pwd = "the-password-of-this-leg";
        l.handle_read(now, LOCAL, PEER, &binding("mine", pwd, false))
            .unwrap();
        l.handle_read(now, LOCAL, other, &binding("mine", pwd, false))
            .unwrap();
        assert_eq!(
            l.path,
            Some((LOCAL, PEER)),
            "not nominated: the first stays"
        );
        l.handle_read(now, LOCAL, other, &binding("mine", pwd, true))
            .unwrap();
        assert_eq!(l.path, Some((LOCAL, other)));
    }

    #[test]
    fn what_is_not_for_this_leg_is_refused_and_not_answered() {
        let mut l = link();
        let now = Instant::now();
        let refused = [
            binding("mine", "a-wrong-password", false),
            binding("someone-else", "the-password-of-this-leg", false),
            // Not STUN at all, truncated STUN, a zero-length datagram.
            vec![0x00, 0x01, 0x00],
            Vec::new(),
            vec![0xff; 40],
        ];
        for d in refused {
            assert!(l.handle_read(now, LOCAL, PEER, &d).is_err(), "{d:?}");
        }
        // DTLS and media from an address that passed no check.
        assert!(matches!(
            l.handle_read(now, LOCAL, PEER, &[22, 0xfe, 0xfd, 0, 0]),
            Err(Refused::Unchecked)
        ));
        let rtp = [0x80, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7];
        assert!(matches!(
            l.handle_read(now, LOCAL, PEER, &rtp),
            Err(Refused::Unchecked)
        ));
        assert!(l.poll_transmit().is_none());
        // Once checked: a malformed DTLS record is dropped (the leg goes on), media before
        // the handshake refused, and a stranger's DTLS still refused.
        l.handle_read(
            now,
            LOCAL,
            PEER,
            &binding("mine", "the-password-of-this-leg", false),
        )
        .unwrap();
        let _response = l.poll_transmit().expect("a response");
        assert!(matches!(
            l.handle_read(now, LOCAL, PEER, &[22, 0xfe, 0xfd, 0, 0]),
            Err(Refused::Dtls(_))
        ));
        assert!(matches!(
            l.handle_read(now, LOCAL, PEER, &rtp),
            Err(Refused::Srtp(_))
        ));
        let stranger = SocketAddr::new(PEER.ip(), 7000);
        assert!(matches!(
            l.handle_read(now, LOCAL, stranger, &[22, 0xfe, 0xfd, 0, 0]),
            Err(Refused::Unchecked)
        ));
        assert!(l.poll_transmit().is_none());
        assert!(l.poll_event().is_none());
        assert_eq!(l.path, Some((LOCAL, PEER)));
        // Nothing to protect with before the keys.
        let header = rtp::header::Header {
            version: 2,
            ssrc: 1,
            ..Default::default()
        };
        assert!(!l.write_rtp(&header, &[1, 2, 3]));
        assert_eq!(l.track(0), "track");
        assert_eq!(l.track(5), "");
    }

    #[test]
    fn fingerprints_are_written_lower_case_with_colons() {
        assert_eq!(hex_fingerprint(&[0xab, 0x01]), "ab:01");
    }

    #[test]
    fn ice_lite_goes_after_the_timing_line_once() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 X 111\r\n";
        let lite = declare_ice_lite(sdp);
        assert_eq!(
            lite,
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=audio 9 X 111\r\n"
        );
        assert_eq!(declare_ice_lite(&lite), lite);
        assert_eq!(sdp_attribute(sdp, "ice-ufrag"), None);
        assert_eq!(
            sdp_attribute("a=ice-ufrag:abc\r\na=ice-pwd:def\r\n", "ice-pwd"),
            Some("def")
        );
    }
}
