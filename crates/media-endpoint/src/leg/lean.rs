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
//! - **SRTP and SRTCP** ([`super::srtp`]): one context per direction, keyed from the
//!   handshake's exported material. A datagram is copied once into a reused block, decrypted
//!   there in place, and handed to the leg as RTP (its header parsed into a recycled packet,
//!   the payload a view of the block) or RTCP; an outbound packet is written once into
//!   another reused block and encrypted there, its tag after it, and queued as a view of the
//!   block. Blocks are taken back once the leg and the pump dropped every packet of them, so
//!   that at steady state no packet allocates.
//!
//! The leg's own code does the rest as on the full stack: the timeline, tones, watchdogs,
//! and the receiver and sender reports ([`super::core`]).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::crypto::{HashAlgorithm, RTCCryptoProvider};
use rtc::dtls::config::{
    ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, VerifyPeerCertificateFn,
};
use rtc::dtls::endpoint::{Endpoint, EndpointEvent};
use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc::shared::TransportProtocol;
use rtc::shared::error::Error as RtcError;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::config::LABEL_EXTRACTOR_DTLS_SRTP;
use rtc::stun::attributes::{ATTR_USE_CANDIDATE, ATTR_USERNAME};
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, is_stun_message};
use rtc::stun::textattrs::TextAttribute;
use rtc::stun::xoraddr::XorMappedAddress;
use rtc::{rtcp, rtp};

use super::core::Transmit;
use super::flight::is_clear_handshake;
use super::srtp::{self, Context as SrtpContext, Profile, SrtpError};

/// How long the peer may send no valid Binding request (its consent, RFC 7675 §5.1) before
/// the leg fails.
pub(crate) const CONSENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Where the DTLS endpoint believes its one peer is. The association belongs to the leg,
/// not to an address: the peer may move to another ICE path after the handshake, and
/// records are sent on whichever path is selected then.
const DTLS_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1)), 9);
/// Most addresses of the peer kept as checked (its candidates' paths).
const MAX_CHECKED_ADDRESSES: usize = 8;
/// Most times the handshake's last flight is sent again for a peer that repeats its own.
const MAX_FLIGHT_REPEATS: u8 = 8;
/// Bytes of a block packets are split from ([`PacketBlock`]): room for a few dozen
/// packets, so that one still queued or held does not make the next packet allocate.
const BLOCK: usize = 16 * 1024;

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
    /// RTP, with the index of the track its SSRC belongs to ([`LeanLink::track`]). Its
    /// payload and extensions are views of the link's receive block: handed back with
    /// [`LeanLink::recycle`] once read, the next packet is parsed into it and the block is
    /// reused.
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
    /// RTP or RTCP before the DTLS handshake gave the keys.
    #[error("media before the DTLS handshake completed")]
    NotKeyed,
    /// RTP or RTCP that failed authentication, the replay check or parsing.
    #[error("SRTP refused: {0}")]
    Srtp(#[from] SrtpError),
    /// Neither STUN, DTLS nor RTP/RTCP (RFC 7983's first-byte ranges).
    #[error("neither STUN, DTLS, RTP nor RTCP")]
    Unknown,
    /// DTLS, RTP or RTCP from an address that sent no valid Binding request.
    #[error("DTLS or media from an address that passed no ICE check")]
    Unchecked,
}

struct Srtp {
    /// Protects what this side sends.
    local: SrtpContext,
    /// Unprotects what the peer sends, with its replay windows.
    remote: SrtpContext,
}

/// A reused block of bytes each packet is written into and split from: the packets are
/// views of it, and once every one of them was dropped (sent by the pump, read by the leg)
/// the block is taken back instead of allocating. A packet still held when the block is
/// full costs one new block, not one allocation per packet.
#[derive(Default)]
struct PacketBlock {
    buf: BytesMut,
}

impl PacketBlock {
    /// An empty buffer with room for `room` bytes, in the block when it has them.
    fn start(&mut self, room: usize) -> &mut BytesMut {
        self.buf.clear();
        if self.buf.capacity() < room && !self.buf.try_reclaim(room) {
            self.buf = BytesMut::with_capacity(BLOCK.max(room));
        }
        &mut self.buf
    }

    /// The first `len` bytes written since [`Self::start`], split off as a packet.
    fn finish(&mut self, len: usize) -> BytesMut {
        self.buf.truncate(len);
        self.buf.split()
    }
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
    /// Where inbound SRTP and SRTCP is copied to and decrypted.
    rx: PacketBlock,
    /// Where outbound RTP and RTCP is written and encrypted.
    tx: PacketBlock,
    /// A packet the leg handed back ([`Self::recycle`]): the next RTP packet read is parsed
    /// into it, reusing its CSRC and extension lists.
    spare: Option<rtp::Packet>,
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
            rx: PacketBlock::default(),
            tx: PacketBlock::default(),
            spare: None,
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
                    // The last flight is kept until the peer's media shows that it
                    // arrived: a peer that did not get it repeats its own.
                    self.srtp = Some(srtp);
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
    /// handshake record of the peer got no answer, the peer repeated its flight because
    /// ours was lost: ours goes again (at most [`MAX_FLIGHT_REPEATS`] times). After the
    /// handshake completed here, only a flight in the clear (epoch 0) counts: the peer
    /// sends its last flight again when ours, which completed the handshake, was lost.
    fn repeat_lost_flight(&mut self, queued: usize, data: &[u8]) {
        if self.srtp.is_some() {
            if !is_clear_handshake(data) || self.transmits.len() > queued {
                return;
            }
        } else if self.transmits.len() > queued {
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
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Profile::AeadAes128Gcm,
            SrtpProtectionProfile::Srtp_Aead_Aes_256_Gcm => Profile::AeadAes256Gcm,
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => Profile::Aes128CmHmacSha1_80,
            other => return Err(format!("no SRTP protection profile agreed ({other:?})")),
        };
        let material = state
            .export_keying_material(
                LABEL_EXTRACTOR_DTLS_SRTP,
                &[],
                profile.keying_material_len(),
            )
            .map_err(|e| e.to_string())?;
        let material: &[u8] = material.as_ref();
        if material.len() != profile.keying_material_len() {
            return Err("DTLS exported keying material of the wrong length".into());
        }
        // RFC 5764 §4.2: the client's key, the server's, the client's salt, the server's.
        let (keys, salts) = material.split_at(2 * profile.master_key_len());
        let (client_key, server_key) = keys.split_at(profile.master_key_len());
        let (client_salt, server_salt) = salts.split_at(profile.master_salt_len());
        let (local, remote) = if state.is_client() {
            ((client_key, client_salt), (server_key, server_salt))
        } else {
            ((server_key, server_salt), (client_key, client_salt))
        };
        let crypto = self.setup.crypto.crypto();
        let local =
            SrtpContext::new(profile, local.0, local.1, crypto).map_err(|e| e.to_string())?;
        let remote =
            SrtpContext::new(profile, remote.0, remote.1, crypto).map_err(|e| e.to_string())?;
        Ok(Srtp { local, remote })
    }

    /// Unprotects a datagram in the receive block and queues what it carries for the leg.
    fn on_srtp(&mut self, data: &[u8]) -> Result<(), Refused> {
        let Some(srtp) = &mut self.srtp else {
            return Err(Refused::NotKeyed);
        };
        // The one copy: the pump's receive buffer is shared by every datagram of a batch.
        let buf = self.rx.start(data.len());
        buf.extend_from_slice(data);
        // RFC 5761 §4: payload types 64-95 (with the marker bit: 192-223) are RTCP.
        if data.len() > 1 && (192..=223).contains(&data[1]) {
            let len = srtp.remote.unprotect_rtcp(buf)?;
            if !self.last_flight.is_empty() {
                self.last_flight = Vec::new();
            }
            let mut plain = self.rx.finish(len).freeze();
            let packets = rtcp::packet::unmarshal(&mut plain).map_err(|_| SrtpError::Malformed)?;
            self.reads.push_back(LeanRead::Rtcp(packets));
            return Ok(());
        }
        let len = srtp.remote.unprotect_rtp(buf)?;
        if !self.last_flight.is_empty() {
            // The peer's media: it finished the handshake, our last flight reached it.
            self.last_flight = Vec::new();
        }
        let plain = self.rx.finish(len).freeze();
        let mut packet = self.spare.take().unwrap_or_default();
        if let Err(e) = parse_rtp(&plain, &mut packet) {
            self.recycle(packet);
            return Err(e.into());
        }
        let track = self.track_index(packet.header.ssrc);
        self.reads.push_back(LeanRead::Rtp(packet, track));
        Ok(())
    }

    /// Takes back an RTP packet read ([`LeanRead::Rtp`]) once the leg is done with it: the
    /// next packet is parsed into it. Its views of the receive block are dropped, so that
    /// the block can be taken back.
    pub(crate) fn recycle(&mut self, mut packet: rtp::Packet) {
        packet.payload = Bytes::new();
        packet.header.extensions.clear();
        self.spare = Some(packet);
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
        let len = size + payload.len();
        let room = len + srtp.local.profile().rtp_overhead();
        let buf = self.tx.start(room);
        buf.resize(room, 0);
        if header.marshal_to(&mut buf[..size]).is_err() {
            return false;
        }
        buf[size..len].copy_from_slice(payload);
        let Ok(protected) = srtp.local.protect_rtp(buf, len) else {
            return false;
        };
        let data = self.tx.finish(protected);
        self.queue(local, remote, Some(data))
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
        let len: usize = packets.iter().map(|p| p.marshal_size()).sum();
        let room = len + srtp.local.profile().rtcp_overhead();
        let buf = self.tx.start(room);
        buf.resize(room, 0);
        let mut at = 0;
        for p in packets {
            match p.marshal_to(&mut buf[at..len]) {
                Ok(n) => at += n,
                Err(_) => return false,
            }
        }
        let Ok(protected) = srtp.local.protect_rtcp(buf, len) else {
            return false;
        };
        let data = self.tx.finish(protected);
        self.queue(local, remote, Some(data))
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

/// Parses the RTP packet `plain` into `packet`, reusing its lists: the extensions and the
/// payload are views of `plain` (RFC 3550 §5.1, RFC 8285 for the one- and two-byte
/// extension forms; another profile's extension is one extension of id 0, as the `rtc`
/// stack reads it). Padding is taken off the payload.
fn parse_rtp(plain: &Bytes, packet: &mut rtp::Packet) -> Result<(), SrtpError> {
    let d = &plain[..];
    let header_len = srtp::rtp_header_len(d)?;
    let h = &mut packet.header;
    h.version = 2;
    h.padding = d[0] & 0x20 != 0;
    h.extension = d[0] & 0x10 != 0;
    h.marker = d[1] & 0x80 != 0;
    h.payload_type = d[1] & 0x7f;
    h.sequence_number = u16::from_be_bytes([d[2], d[3]]);
    h.timestamp = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
    h.ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
    h.csrc.clear();
    h.extensions.clear();
    h.extension_profile = 0;
    h.extensions_padding = 0;
    let csrc_end = 12 + 4 * usize::from(d[0] & 0x0f);
    for c in d[12..csrc_end].chunks_exact(4) {
        h.csrc.push(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    if h.extension {
        // `rtp_header_len` checked that the extension is all there.
        h.extension_profile = u16::from_be_bytes([d[csrc_end], d[csrc_end + 1]]);
        let (mut at, end) = (csrc_end + 4, header_len);
        match h.extension_profile {
            0xbede => {
                while at < end {
                    let b = d[at];
                    at += 1;
                    if b == 0 {
                        h.extensions_padding += 1;
                        continue;
                    }
                    // Id 15: the rest of the block is not to be read (RFC 8285 §4.2).
                    if b >> 4 == 15 {
                        break;
                    }
                    let len = usize::from(b & 0x0f) + 1;
                    if at + len > end {
                        return Err(SrtpError::Malformed);
                    }
                    h.extensions.push(rtp::header::Extension {
                        id: b >> 4,
                        payload: plain.slice(at..at + len),
                    });
                    at += len;
                }
            }
            profile if profile & 0xfff0 == 0x1000 => {
                while at < end {
                    let id = d[at];
                    at += 1;
                    if id == 0 {
                        h.extensions_padding += 1;
                        continue;
                    }
                    let len =
                        usize::from(*d.get(at).filter(|_| at < end).ok_or(SrtpError::Malformed)?);
                    at += 1;
                    if at + len > end {
                        return Err(SrtpError::Malformed);
                    }
                    h.extensions.push(rtp::header::Extension {
                        id,
                        payload: plain.slice(at..at + len),
                    });
                    at += len;
                }
            }
            _ => h.extensions.push(rtp::header::Extension {
                id: 0,
                payload: plain.slice(at..end),
            }),
        }
    }
    let mut payload_end = d.len();
    if h.padding {
        let pad = usize::from(*d.last().ok_or(SrtpError::Malformed)?);
        if payload_end - header_len < pad || payload_end == header_len {
            return Err(SrtpError::Malformed);
        }
        payload_end -= pad;
    }
    packet.payload = plain.slice(header_len..payload_end);
    Ok(())
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
    use rtc::shared::marshal::Unmarshal;
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
            Err(Refused::NotKeyed)
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

    /// An RTP packet of the given parts, with valid one-byte (`two_byte` false) or
    /// two-byte extensions, and padding.
    fn rtp_bytes(
        first: (bool, bool, u8),
        fields: (u8, u16, u32, u32),
        extensions: &[(u8, Vec<u8>)],
        two_byte: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let (padding, marker, cc) = first;
        let (pt, seq, ts, ssrc) = fields;
        let extension = !extensions.is_empty();
        let mut p = vec![
            0x80 | u8::from(padding) << 5 | u8::from(extension) << 4 | cc,
            u8::from(marker) << 7 | pt,
        ];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        for i in 0..u32::from(cc) {
            p.extend_from_slice(&(i * 0x0101_0101).to_be_bytes());
        }
        if extension {
            let mut block = Vec::new();
            for (id, data) in extensions {
                if two_byte {
                    block.extend_from_slice(&[*id, data.len() as u8]);
                } else {
                    block.push(id << 4 | (data.len() as u8 - 1));
                }
                block.extend_from_slice(data);
            }
            while block.len() % 4 != 0 {
                block.push(0);
            }
            let profile: u16 = if two_byte { 0x1000 } else { 0xbede };
            p.extend_from_slice(&profile.to_be_bytes());
            p.extend_from_slice(&((block.len() / 4) as u16).to_be_bytes());
            p.extend_from_slice(&block);
        }
        p.extend_from_slice(payload);
        if padding {
            p.extend_from_slice(&[0, 0, 3]);
        }
        p
    }

    proptest::proptest! {
        /// The in-place parse reads what the `rtc` stack's parser reads, into a packet that
        /// held another one before.
        #[test]
        fn the_rtp_parse_agrees_with_the_stacks(
            first in (proptest::bool::ANY, proptest::bool::ANY, 0u8..4),
            fields in (0u8..128, proptest::num::u16::ANY, proptest::num::u32::ANY, proptest::num::u32::ANY),
            two_byte in proptest::bool::ANY,
            extensions in proptest::collection::vec(
                (1u8..15, proptest::collection::vec(proptest::num::u8::ANY, 1..=16)),
                0..4,
            ),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let raw = Bytes::from(rtp_bytes(first, fields, &extensions, two_byte, &payload));
            let theirs = rtp::packet::Packet::unmarshal(&mut raw.clone()).unwrap();
            let mut packet = rtp::packet::Packet::unmarshal(&mut Bytes::from(rtp_bytes(
                (true, true, 3),
                (1, 2, 3, 4),
                &[(5, vec![1, 2, 3])],
                false,
                &[9; 30],
            )))
            .unwrap();
            parse_rtp(&raw, &mut packet).unwrap();
            proptest::prop_assert_eq!(packet, theirs);
        }

        /// Whatever the bytes, the parse returns.
        #[test]
        fn the_rtp_parse_takes_any_bytes(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            let mut raw = raw;
            if let Some(b) = raw.first_mut() {
                *b = 0x80 | (*b & 0x3f);
            }
            let mut packet = rtp::packet::Packet::default();
            let _ = parse_rtp(&Bytes::from(raw), &mut packet);
        }
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
