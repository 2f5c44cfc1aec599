//! SRTP and SRTCP (RFC 3711, RFC 7714) protected and unprotected in place, in the caller's
//! buffer: the lean path's per-packet security without a buffer per packet.
//!
//! - [`Profile`]s: `AEAD_AES_128_GCM`, `AEAD_AES_256_GCM` (RFC 7714) and
//!   `AES_CM_128_HMAC_SHA1_80` (RFC 3711), the three the lean path offers in DTLS-SRTP.
//! - Session keys are derived once per [`Context`] (RFC 3711 §4.3, the key derivation rate
//!   0 of RFC 5764; RFC 7714 §11 uses the same function) and the ciphers keyed then: no key
//!   schedule per packet.
//! - The RTP index (RFC 3711 Appendix A) and the replay windows are per SSRC, in a table of
//!   at most [`MAX_STREAMS`] sized at construction. A received packet changes them only once
//!   it authenticated.
//! - AES-GCM comes from the `rtc` stack's crypto provider (its keyed AEAD seals and opens in
//!   place with a detached tag); AES-CM and HMAC-SHA1 from the `aes`, `hmac` and `sha1`
//!   crates the provider itself builds on.

use aes::Block;
use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockEncrypt, BlockSizeUser, KeyInit};
use aes::{Aes128, Aes256};
use hmac::{Hmac, Mac};
use rtc::crypto::{AeadAlgorithm, AeadCipher, RTCCrypto};
use sha1::Sha1;

/// SRTP and SRTCP replay windows, in packets: an index this far behind the highest one
/// authenticated is refused as too old.
pub(crate) const REPLAY_WINDOW: u64 = 64;
/// Most SSRCs a context keeps an index and a replay window for. Sized for a leg's streams (a
/// main stream and a few speaker streams each way), not for a conference. Unprotecting, the
/// SSRC used least recently gives its place to a new one; protecting, a new one is refused
/// ([`SrtpError::TooManyStreams`]): a sender that forgot an SSRC's index would use its
/// keystream again.
pub(crate) const MAX_STREAMS: usize = 16;
/// Largest 48-bit SRTP index (RFC 3711 §3.3.1).
const MAX_RTP_INDEX: u64 = (1 << 48) - 1;
/// Largest 31-bit SRTCP index (RFC 3711 §3.4).
const MAX_RTCP_INDEX: u32 = 0x7fff_ffff;
/// The E bit of the SRTCP trailer: the packet's payload is encrypted.
const RTCP_ENCRYPTED: u32 = 0x8000_0000;
/// The fixed RTCP header SRTCP leaves in the clear (RFC 3711 §3.4): first word and SSRC.
const RTCP_HEADER: usize = 8;
/// The E bit and SRTCP index after an SRTCP packet's payload.
const RTCP_TRAILER: usize = 4;
/// `HMAC-SHA1` tag of `AES_CM_128_HMAC_SHA1_80`, truncated (RFC 3711 §4.2).
const HMAC_TAG: usize = 10;
/// AES-GCM's tag (RFC 7714 §7).
const GCM_TAG: usize = 16;

/// An SRTP protection profile the lean path negotiates (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Profile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80`: AES-128 counter mode, an 80-bit HMAC-SHA1 tag.
    Aes128CmHmacSha1_80,
    /// `SRTP_AEAD_AES_128_GCM`.
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM`.
    AeadAes256Gcm,
}

impl Profile {
    /// Bytes of a master key.
    pub(crate) const fn master_key_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 | Profile::AeadAes128Gcm => 16,
            Profile::AeadAes256Gcm => 32,
        }
    }

    /// Bytes of a master salt.
    pub(crate) const fn master_salt_len(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 => 14,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => 12,
        }
    }

    /// Bytes DTLS exports for both directions' keys and salts (RFC 5764 §4.2).
    pub(crate) const fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// Bytes protection adds to an RTP packet (the tag).
    pub(crate) const fn rtp_overhead(self) -> usize {
        match self {
            Profile::Aes128CmHmacSha1_80 => HMAC_TAG,
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => GCM_TAG,
        }
    }

    /// Bytes protection adds to an RTCP packet (the E bit and index, and the tag).
    pub(crate) const fn rtcp_overhead(self) -> usize {
        RTCP_TRAILER + self.rtp_overhead()
    }
}

/// Why a packet was not protected or unprotected, or a context not built. Cheap to copy:
/// it is returned per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum SrtpError {
    /// Shorter than its header, its extension or its tag say it must be, or not RTP
    /// version 2.
    #[error("malformed or truncated packet")]
    Malformed,
    /// The tag did not match: tampered, or keyed otherwise.
    #[error("authentication failed")]
    Authentication,
    /// An index already authenticated in the replay window.
    #[error("replayed packet")]
    Replayed,
    /// An index older than the replay window.
    #[error("packet older than the replay window")]
    TooOld,
    /// The caller's buffer has no room after the packet for what protection adds.
    #[error("no room for the tag in the buffer")]
    NoRoom,
    /// A packet of a new SSRC to protect when [`MAX_STREAMS`] are kept already.
    #[error("too many SSRCs to protect")]
    TooManyStreams,
    /// The index space of an SSRC is used up (RFC 3711 §9.2: the keys must change).
    #[error("SRTP or SRTCP index exhausted")]
    IndexExhausted,
    /// A master key or salt of the wrong length for the profile.
    #[error("master key or salt of the wrong length")]
    KeyLength,
    /// The crypto provider has no AES-GCM, or refused the key.
    #[error("the crypto provider cannot key AES-GCM")]
    Provider,
}

/// What one direction's keys of one profile need per packet, keyed once.
enum Keys {
    /// AES-CM with HMAC-SHA1 (boxed: the expanded key and the HMAC's state are most of a
    /// kilobyte).
    Cm(Box<CmKeys>),
    /// AES-GCM: the provider's keyed AEAD and the session salt.
    Gcm {
        aead: Box<dyn AeadCipher>,
        salt: [u8; 12],
    },
}

/// AES-CM with HMAC-SHA1: an expanded AES key, the session salt, and an HMAC keyed once
/// (cloned per packet: its inner and outer pads are already hashed).
struct CmKeys {
    aes: Aes128,
    salt: [u8; 14],
    mac: Hmac<Sha1>,
}

/// One SSRC's indices and replay windows.
#[derive(Clone, Copy, Debug)]
struct Stream {
    ssrc: u32,
    /// The highest SRTP index protected or authenticated (ROC in the top 32 of 48 bits).
    rtp_index: Option<u64>,
    /// Bit `n`: index `rtp_index - n` authenticated (receiving only).
    rtp_window: u64,
    /// Sending: the last SRTCP index used; receiving: the highest authenticated.
    rtcp_index: Option<u32>,
    /// Bit `n`: SRTCP index `rtcp_index - n` authenticated (receiving only).
    rtcp_window: u64,
    /// When the stream was last used, in packets of the context, for eviction.
    used: u64,
}

impl Stream {
    fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            rtp_index: None,
            rtp_window: 0,
            rtcp_index: None,
            rtcp_window: 0,
            used: 0,
        }
    }
}

/// One direction's SRTP and SRTCP: a context protects what this side sends, or unprotects
/// what the peer sends (its replay windows are kept then). Built once from the master key
/// and salt; allocates nothing per packet.
pub(crate) struct Context {
    profile: Profile,
    rtp: Keys,
    rtcp: Keys,
    streams: Vec<Stream>,
    /// Packets handled, the clock of `Stream::used`.
    clock: u64,
}

impl Context {
    /// A context for `profile` from a master key and salt (RFC 3711 §4.3 key derivation,
    /// rate 0). `crypto` keys AES-GCM for the GCM profiles.
    pub(crate) fn new(
        profile: Profile,
        master_key: &[u8],
        master_salt: &[u8],
        crypto: &dyn RTCCrypto,
    ) -> Result<Context, SrtpError> {
        if master_key.len() != profile.master_key_len()
            || master_salt.len() != profile.master_salt_len()
        {
            return Err(SrtpError::KeyLength);
        }
        let (rtp, rtcp) = match profile {
            Profile::Aes128CmHmacSha1_80 => (
                cm_keys(master_key, master_salt, 0)?,
                cm_keys(master_key, master_salt, 3)?,
            ),
            Profile::AeadAes128Gcm | Profile::AeadAes256Gcm => (
                gcm_keys(profile, master_key, master_salt, 0, crypto)?,
                gcm_keys(profile, master_key, master_salt, 3, crypto)?,
            ),
        };
        Ok(Context {
            profile,
            rtp,
            rtcp,
            streams: Vec::with_capacity(MAX_STREAMS),
            clock: 0,
        })
    }

    /// The profile the context was keyed for.
    pub(crate) fn profile(&self) -> Profile {
        self.profile
    }

    /// Protects the RTP packet in `buf[..len]` in place: the payload encrypted, the tag
    /// written after it. `buf` must have [`Profile::rtp_overhead`] bytes of room after
    /// `len`. Returns the protected length. The SSRC's rollover counter moves on when its
    /// sequence number wraps.
    pub(crate) fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        let out_len = len.checked_add(tag_len).ok_or(SrtpError::NoRoom)?;
        if out_len > buf.len() {
            return Err(SrtpError::NoRoom);
        }
        let header_len = rtp_header_len(&buf[..len])?;
        let (ssrc, seq) = rtp_ssrc_seq(buf);
        let slot = self.sending(ssrc)?;
        let stream = &mut self.streams[slot];
        let index = match stream.rtp_index {
            None => u64::from(seq),
            Some(highest) => estimate_index(highest, seq).ok_or(SrtpError::TooOld)?,
        };
        if index > MAX_RTP_INDEX {
            return Err(SrtpError::IndexExhausted);
        }
        if stream.rtp_index.is_none_or(|h| index > h) {
            stream.rtp_index = Some(index);
        }
        let roc = (index >> 16) as u32;
        match &mut self.rtp {
            Keys::Cm(keys) => {
                let CmKeys { aes, salt, mac } = &**keys;
                let iv = cm_iv(salt, ssrc, index);
                cm_apply(aes, &iv, &mut buf[header_len..len]);
                let mut mac = mac.clone();
                mac.update(&buf[..len]);
                mac.update(&roc.to_be_bytes());
                let tag = mac.finalize().into_bytes();
                buf[len..out_len].copy_from_slice(&tag[..HMAC_TAG]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                let (packet, tag) = buf[..out_len].split_at_mut(len);
                let (aad, payload) = packet.split_at_mut(header_len);
                aead.seal_in_place(&iv, aad, payload, tag)
                    .map_err(|_| SrtpError::Provider)?;
            }
        }
        Ok(out_len)
    }

    /// Authenticates and decrypts the SRTP packet `buf` in place. Returns the length of the
    /// RTP packet in clear at the start of `buf` (the tag dropped). Refused packets leave
    /// the SSRC's index and replay window as they were; their bytes may be changed.
    pub(crate) fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.profile.rtp_overhead();
        let len = buf.len().checked_sub(tag_len).ok_or(SrtpError::Malformed)?;
        let header_len = rtp_header_len(&buf[..len])?;
        let (ssrc, seq) = rtp_ssrc_seq(buf);
        let known = self.find(ssrc);
        let index = match known.and_then(|i| self.streams[i].rtp_index) {
            None => u64::from(seq),
            Some(highest) => {
                let index = estimate_index(highest, seq)
                    .filter(|&i| i <= MAX_RTP_INDEX)
                    .ok_or(SrtpError::TooOld)?;
                let window = known.map_or(0, |i| self.streams[i].rtp_window);
                check_replay(highest, window, index)?;
                index
            }
        };
        let roc = (index >> 16) as u32;
        match &mut self.rtp {
            Keys::Cm(keys) => {
                let CmKeys { aes, salt, mac } = &**keys;
                let mut mac = mac.clone();
                mac.update(&buf[..len]);
                mac.update(&roc.to_be_bytes());
                mac.verify_truncated_left(&buf[len..])
                    .map_err(|_| SrtpError::Authentication)?;
                let iv = cm_iv(salt, ssrc, index);
                cm_apply(aes, &iv, &mut buf[header_len..len]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_rtp_iv(salt, ssrc, roc, seq);
                let (packet, tag) = buf.split_at_mut(len);
                let (aad, payload) = packet.split_at_mut(header_len);
                aead.open_in_place(&iv, aad, payload, tag)
                    .map_err(|_| SrtpError::Authentication)?;
            }
        }
        let slot = match known {
            Some(i) => i,
            None => self.receiving(ssrc),
        };
        let stream = &mut self.streams[slot];
        let (highest, window) = accept(stream.rtp_index, stream.rtp_window, index);
        stream.rtp_index = Some(highest);
        stream.rtp_window = window;
        Ok(len)
    }

    /// Protects the compound RTCP packet in `buf[..len]` in place: everything after the
    /// first 8 bytes encrypted, then the E bit and SRTCP index and the tag written after it
    /// (in the profile's order). `buf` must have [`Profile::rtcp_overhead`] bytes of room
    /// after `len`. Returns the protected length.
    pub(crate) fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let out_len = len
            .checked_add(self.profile.rtcp_overhead())
            .ok_or(SrtpError::NoRoom)?;
        if len < RTCP_HEADER {
            return Err(SrtpError::Malformed);
        }
        if out_len > buf.len() {
            return Err(SrtpError::NoRoom);
        }
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let slot = self.sending(ssrc)?;
        let stream = &mut self.streams[slot];
        // The sender chooses where an SSRC's SRTCP index starts; like libsrtp and the `rtc`
        // stack, this side starts at 1.
        let index = match stream.rtcp_index {
            None => 1,
            Some(MAX_RTCP_INDEX) => return Err(SrtpError::IndexExhausted),
            Some(i) => i + 1,
        };
        stream.rtcp_index = Some(index);
        let trailer = (RTCP_ENCRYPTED | index).to_be_bytes();
        match &mut self.rtcp {
            Keys::Cm(keys) => {
                let CmKeys { aes, salt, mac } = &**keys;
                let iv = cm_iv(salt, ssrc, u64::from(index));
                cm_apply(aes, &iv, &mut buf[RTCP_HEADER..len]);
                buf[len..len + RTCP_TRAILER].copy_from_slice(&trailer);
                let mut mac = mac.clone();
                mac.update(&buf[..len + RTCP_TRAILER]);
                let tag = mac.finalize().into_bytes();
                buf[len + RTCP_TRAILER..out_len].copy_from_slice(&tag[..HMAC_TAG]);
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let aad = rtcp_aad(&buf[..RTCP_HEADER], trailer);
                let (packet, rest) = buf[..out_len].split_at_mut(len);
                let (tag, tail) = rest.split_at_mut(GCM_TAG);
                aead.seal_in_place(&iv, &aad, &mut packet[RTCP_HEADER..], tag)
                    .map_err(|_| SrtpError::Provider)?;
                tail.copy_from_slice(&trailer);
            }
        }
        Ok(out_len)
    }

    /// Authenticates and, when its E bit says so, decrypts the SRTCP packet `buf` in
    /// place. Returns the length of the compound RTCP packet in clear at the start of
    /// `buf`. Refused packets leave the SSRC's replay window as it was; their bytes may be
    /// changed.
    pub(crate) fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf
            .len()
            .checked_sub(self.profile.rtcp_overhead())
            .filter(|&l| l >= RTCP_HEADER)
            .ok_or(SrtpError::Malformed)?;
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let trailer_at = match self.rtcp {
            Keys::Cm(_) => len,
            Keys::Gcm { .. } => len + GCM_TAG,
        };
        let word = u32::from_be_bytes([
            buf[trailer_at],
            buf[trailer_at + 1],
            buf[trailer_at + 2],
            buf[trailer_at + 3],
        ]);
        let encrypted = word & RTCP_ENCRYPTED != 0;
        let index = word & MAX_RTCP_INDEX;
        let known = self.find(ssrc);
        if let Some(Stream {
            rtcp_index: Some(highest),
            rtcp_window,
            ..
        }) = known.map(|i| self.streams[i])
        {
            check_replay(u64::from(highest), rtcp_window, u64::from(index))?;
        }
        match &mut self.rtcp {
            Keys::Cm(keys) => {
                let CmKeys { aes, salt, mac } = &**keys;
                let mut mac = mac.clone();
                mac.update(&buf[..len + RTCP_TRAILER]);
                mac.verify_truncated_left(&buf[len + RTCP_TRAILER..])
                    .map_err(|_| SrtpError::Authentication)?;
                if encrypted {
                    let iv = cm_iv(salt, ssrc, u64::from(index));
                    cm_apply(aes, &iv, &mut buf[RTCP_HEADER..len]);
                }
            }
            Keys::Gcm { aead, salt } => {
                let iv = gcm_rtcp_iv(salt, ssrc, index);
                let trailer = word.to_be_bytes();
                let (packet, rest) = buf.split_at_mut(len);
                let tag = &rest[..GCM_TAG];
                if encrypted {
                    let aad = rtcp_aad(&packet[..RTCP_HEADER], trailer);
                    aead.open_in_place(&iv, &aad, &mut packet[RTCP_HEADER..], tag)
                } else {
                    // RFC 7714 §9.2: unencrypted SRTCP is all AAD, the packet then the
                    // trailer. The tag moves aside so that the trailer can follow the
                    // packet in the buffer.
                    let mut moved = [0u8; GCM_TAG];
                    moved.copy_from_slice(tag);
                    buf[len..len + RTCP_TRAILER].copy_from_slice(&trailer);
                    aead.open_in_place(&iv, &buf[..len + RTCP_TRAILER], &mut [], &moved)
                }
                .map_err(|_| SrtpError::Authentication)?;
            }
        }
        let slot = match known {
            Some(i) => i,
            None => self.receiving(ssrc),
        };
        let stream = &mut self.streams[slot];
        let (highest, window) = accept(
            stream.rtcp_index.map(u64::from),
            stream.rtcp_window,
            u64::from(index),
        );
        stream.rtcp_index = Some(highest as u32);
        stream.rtcp_window = window;
        Ok(len)
    }

    /// The slot of `ssrc`'s stream, marked used now.
    fn find(&mut self, ssrc: u32) -> Option<usize> {
        let i = self.streams.iter().position(|s| s.ssrc == ssrc)?;
        self.clock += 1;
        self.streams[i].used = self.clock;
        Some(i)
    }

    /// The slot of `ssrc`'s stream to protect with, a new one if there is room.
    fn sending(&mut self, ssrc: u32) -> Result<usize, SrtpError> {
        if let Some(i) = self.find(ssrc) {
            return Ok(i);
        }
        if self.streams.len() == MAX_STREAMS {
            return Err(SrtpError::TooManyStreams);
        }
        self.clock += 1;
        let mut stream = Stream::new(ssrc);
        stream.used = self.clock;
        self.streams.push(stream);
        Ok(self.streams.len() - 1)
    }

    /// A new slot for `ssrc`'s stream, whose packet just authenticated: in the place of the
    /// stream used least recently when the table is full.
    fn receiving(&mut self, ssrc: u32) -> usize {
        self.clock += 1;
        let mut stream = Stream::new(ssrc);
        stream.used = self.clock;
        if self.streams.len() < MAX_STREAMS {
            self.streams.push(stream);
            return self.streams.len() - 1;
        }
        let oldest = (0..self.streams.len()).min_by_key(|&i| self.streams[i].used);
        let i = oldest.unwrap_or(0);
        self.streams[i] = stream;
        i
    }
}

/// Length of the RTP header at the start of `packet`: the fixed header, the CSRCs and the
/// header extension (RFC 3550 §5.1, §5.3.1). An error when `packet` is not RTP version 2 or
/// is shorter than its header says.
pub(crate) fn rtp_header_len(packet: &[u8]) -> Result<usize, SrtpError> {
    let first = *packet.first().ok_or(SrtpError::Malformed)?;
    if first >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut len = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(len..len + 4).ok_or(SrtpError::Malformed)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    if packet.len() < len {
        return Err(SrtpError::Malformed);
    }
    Ok(len)
}

/// SSRC and sequence number of an RTP packet whose header length was checked.
fn rtp_ssrc_seq(packet: &[u8]) -> (u32, u16) {
    (
        u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        u16::from_be_bytes([packet[2], packet[3]]),
    )
}

/// The index of sequence number `seq` given the highest index `highest` so far (RFC 3711
/// Appendix A): the rollover counter one less, the same, or one more, whichever puts `seq`
/// nearest. `None` when that would be before index 0.
fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let last = (highest & 0xffff) as u16;
    let roc = if last < 0x8000 {
        if seq > last && seq - last > 0x8000 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if last - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    Some(roc << 16 | u64::from(seq))
}

/// Whether `index` may be taken given the highest index authenticated and its window.
fn check_replay(highest: u64, window: u64, index: u64) -> Result<(), SrtpError> {
    if index > highest {
        return Ok(());
    }
    let behind = highest - index;
    if behind >= REPLAY_WINDOW {
        Err(SrtpError::TooOld)
    } else if window & (1 << behind) != 0 {
        Err(SrtpError::Replayed)
    } else {
        Ok(())
    }
}

/// The highest index and window once `index` authenticated.
fn accept(highest: Option<u64>, window: u64, index: u64) -> (u64, u64) {
    match highest {
        Some(h) if index <= h => (h, window | 1 << (h - index)),
        Some(h) => {
            let ahead = index - h;
            let moved = if ahead >= REPLAY_WINDOW {
                0
            } else {
                window << ahead
            };
            (index, moved | 1)
        }
        None => (index, 1),
    }
}

/// The AES-CM IV of a packet (RFC 3711 §4.1.1): the session salt, with the SSRC and the
/// 48-bit index XORed in, and a zero block counter.
fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

/// XORs the AES-CM keystream from `iv` into `data` (RFC 3711 §4.1.1: the IV's last 16
/// bits count the blocks), eight blocks to a call of the cipher so that it can pipeline them.
fn cm_apply<C: BlockEncrypt + BlockSizeUser<BlockSize = U16>>(
    aes: &C,
    iv: &[u8; 16],
    data: &mut [u8],
) {
    const BATCH: usize = 8;
    let mut counter = u128::from_be_bytes(*iv);
    let mut blocks = [Block::default(); BATCH];
    for chunk in data.chunks_mut(16 * BATCH) {
        let n = chunk.len().div_ceil(16);
        for block in &mut blocks[..n] {
            block.copy_from_slice(&counter.to_be_bytes());
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut blocks[..n]);
        for (bytes, block) in chunk.chunks_mut(16).zip(&blocks) {
            for (b, k) in bytes.iter_mut().zip(block) {
                *b ^= k;
            }
        }
    }
}

/// The AES-GCM IV of an RTP packet (RFC 7714 §8.1).
fn gcm_rtp_iv(salt: &[u8; 12], ssrc: u32, roc: u32, seq: u16) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[6..10].copy_from_slice(&roc.to_be_bytes());
    iv[10..12].copy_from_slice(&seq.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// The AES-GCM IV of an RTCP packet (RFC 7714 §9.1).
fn gcm_rtcp_iv(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
    iv[8..12].copy_from_slice(&index.to_be_bytes());
    for (b, s) in iv.iter_mut().zip(salt) {
        *b ^= s;
    }
    iv
}

/// The AAD of an encrypted SRTCP packet under AES-GCM (RFC 7714 §9.1): the first 8 bytes
/// and the E bit and index.
fn rtcp_aad(header: &[u8], trailer: [u8; 4]) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..8].copy_from_slice(header);
    aad[8..].copy_from_slice(&trailer);
    aad
}

/// RFC 3711 §4.3.1's key derivation at rate 0: the AES-CM keystream of the master key from
/// the master salt (left-aligned in the block) with `label` XORed into its eighth byte.
fn derive(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    out.fill(0);
    match master_key.len() {
        32 => cm_apply(&Aes256::new(GenericArray::from_slice(master_key)), &iv, out),
        _ => cm_apply(&Aes128::new(GenericArray::from_slice(master_key)), &iv, out),
    }
}

/// The AES-CM and HMAC keys of SRTP (`base` 0: labels 0, 1, 2) or SRTCP (`base` 3).
fn cm_keys(master_key: &[u8], master_salt: &[u8], base: u8) -> Result<Keys, SrtpError> {
    let mut key = [0u8; 16];
    let mut auth = [0u8; 20];
    let mut salt = [0u8; 14];
    derive(master_key, master_salt, base, &mut key);
    derive(master_key, master_salt, base + 1, &mut auth);
    derive(master_key, master_salt, base + 2, &mut salt);
    let mac = <Hmac<Sha1> as Mac>::new_from_slice(&auth).map_err(|_| SrtpError::KeyLength)?;
    let keys = Keys::Cm(Box::new(CmKeys {
        aes: Aes128::new(GenericArray::from_slice(&key)),
        salt,
        mac,
    }));
    key.fill(0);
    auth.fill(0);
    Ok(keys)
}

/// The AES-GCM key and salt of SRTP (`base` 0: labels 0 and 2) or SRTCP (`base` 3).
fn gcm_keys(
    profile: Profile,
    master_key: &[u8],
    master_salt: &[u8],
    base: u8,
    crypto: &dyn RTCCrypto,
) -> Result<Keys, SrtpError> {
    let (algorithm, key_len) = match profile {
        Profile::AeadAes256Gcm => (AeadAlgorithm::Aes256Gcm, 32),
        _ => (AeadAlgorithm::Aes128Gcm, 16),
    };
    let mut key = [0u8; 32];
    let mut salt = [0u8; 12];
    derive(master_key, master_salt, base, &mut key[..key_len]);
    derive(master_key, master_salt, base + 2, &mut salt);
    let aead = crypto.new_aead(algorithm, &key[..key_len]);
    key.fill(0);
    let aead = aead.map_err(|_| SrtpError::Provider)?;
    if aead.tag_len() != GCM_TAG {
        return Err(SrtpError::Provider);
    }
    Ok(Keys::Gcm { aead, salt })
}

#[cfg(test)]
mod tests {

    use crate::bench_support::{SSRC, master, our_context, rtp_packet, their_context};
    use rtc::srtp::context::Context as TheirContext;

    use super::*;

    const PROFILES: [Profile; 3] = [
        Profile::Aes128CmHmacSha1_80,
        Profile::AeadAes128Gcm,
        Profile::AeadAes256Gcm,
    ];

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn ours(profile: Profile) -> Context {
        our_context(profile)
    }

    fn theirs(profile: Profile) -> TheirContext {
        their_context(profile)
    }

    /// An RTP packet with a one-byte header extension and a CSRC, `payload_len` bytes of
    /// payload.
    fn rtp(seq: u16, payload_len: usize) -> Vec<u8> {
        rtp_packet(seq, payload_len)
    }

    /// A receiver report of [`SSRC`] with one reception block.
    fn rtcp(n: u8) -> Vec<u8> {
        let mut p = vec![0x81, 201, 0, 7];
        p.extend_from_slice(&SSRC.to_be_bytes());
        p.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
        p.extend((0..20).map(|i| i ^ n));
        p
    }

    fn protect_rtp(ctx: &mut Context, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + ctx.profile().rtp_overhead(), 0);
        let n = ctx.protect_rtp(&mut buf, plain.len())?;
        assert_eq!(n, buf.len());
        Ok(buf)
    }

    fn unprotect_rtp(ctx: &mut Context, protected: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = protected.to_vec();
        let n = ctx.unprotect_rtp(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn protect_rtcp(ctx: &mut Context, plain: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = plain.to_vec();
        buf.resize(plain.len() + ctx.profile().rtcp_overhead(), 0);
        let n = ctx.protect_rtcp(&mut buf, plain.len())?;
        assert_eq!(n, buf.len());
        Ok(buf)
    }

    fn unprotect_rtcp(ctx: &mut Context, protected: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut buf = protected.to_vec();
        let n = ctx.unprotect_rtcp(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    #[test]
    fn rtp_matches_the_rtc_stack_both_ways_across_a_sequence_wrap() {
        for profile in PROFILES {
            let (mut our_tx, mut our_rx) = (ours(profile), ours(profile));
            let (mut their_tx, mut their_rx) = (theirs(profile), theirs(profile));
            // From 65530 over the wrap: the second lap is under ROC 1.
            for i in 0..20u16 {
                let seq = 65530u16.wrapping_add(i);
                let plain = rtp(seq, 100);
                let mine = protect_rtp(&mut our_tx, &plain).unwrap();
                let theirs = their_tx.encrypt_rtp(&plain).unwrap();
                assert_eq!(&mine[..], &theirs[..], "{profile:?} seq {seq}: same bytes");
                assert_eq!(&their_rx.decrypt_rtp(&mine).unwrap()[..], &plain[..]);
                assert_eq!(unprotect_rtp(&mut our_rx, &theirs).unwrap(), plain);
            }
            let stream = our_rx.streams[0];
            assert_eq!(stream.rtp_index, Some((1 << 16) + 13), "{profile:?}");
        }
    }

    #[test]
    fn rtcp_matches_the_rtc_stack_both_ways() {
        for profile in PROFILES {
            let (mut our_tx, mut our_rx) = (ours(profile), ours(profile));
            let (mut their_tx, mut their_rx) = (theirs(profile), theirs(profile));
            for n in 0..5 {
                let plain = rtcp(n);
                let mine = protect_rtcp(&mut our_tx, &plain).unwrap();
                let theirs = their_tx.encrypt_rtcp(&plain).unwrap();
                assert_eq!(&mine[..], &theirs[..], "{profile:?} {n}: same bytes");
                assert_eq!(&their_rx.decrypt_rtcp(&mine).unwrap()[..], &plain[..]);
                assert_eq!(unprotect_rtcp(&mut our_rx, &theirs).unwrap(), plain);
            }
            // A replayed SRTCP packet is refused, and the next one still taken.
            let mut tx = ours(profile);
            let first = protect_rtcp(&mut tx, &rtcp(9)).unwrap();
            let second = protect_rtcp(&mut tx, &rtcp(10)).unwrap();
            let mut rx = ours(profile);
            unprotect_rtcp(&mut rx, &second).unwrap();
            unprotect_rtcp(&mut rx, &first).unwrap();
            assert_eq!(unprotect_rtcp(&mut rx, &first), Err(SrtpError::Replayed));
        }
    }

    #[test]
    fn reordering_within_the_window_is_taken_and_replays_and_old_packets_are_not() {
        for profile in PROFILES {
            let mut tx = ours(profile);
            // 65500.. over the wrap, so that late packets sit under the previous ROC.
            let sent: Vec<Vec<u8>> = (0..100u16)
                .map(|i| protect_rtp(&mut tx, &rtp(65500u16.wrapping_add(i), 60)).unwrap())
                .collect();
            let mut rx = ours(profile);
            for i in [0, 2, 1, 5, 4, 3, 30, 40, 35, 36, 50, 99, 98, 41] {
                let plain = unprotect_rtp(&mut rx, &sent[i]).unwrap();
                assert_eq!(plain, rtp(65500u16.wrapping_add(i as u16), 60), "{i}");
            }
            assert_eq!(
                unprotect_rtp(&mut rx, &sent[98]),
                Err(SrtpError::Replayed),
                "{profile:?}"
            );
            assert_eq!(unprotect_rtp(&mut rx, &sent[30]), Err(SrtpError::TooOld));
            assert_eq!(unprotect_rtp(&mut rx, &sent[0]), Err(SrtpError::TooOld));
            // The last lap's packet still counted under ROC 1.
            assert_eq!(rx.streams[0].rtp_index, Some((1 << 16) + 63));
        }
    }

    #[test]
    fn a_tampered_packet_is_refused_and_leaves_the_window_as_it_was() {
        for profile in PROFILES {
            let mut tx = ours(profile);
            let good = protect_rtp(&mut tx, &rtp(7, 100)).unwrap();
            let mut rx = ours(profile);
            for at in [0usize, 3, 13, 30, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x01;
                assert!(
                    unprotect_rtp(&mut rx, &bad).is_err(),
                    "{profile:?} byte {at}"
                );
            }
            assert!(rx.streams.iter().all(|s| s.rtp_index.is_none()));
            assert_eq!(unprotect_rtp(&mut rx, &good).unwrap(), rtp(7, 100));

            let good = protect_rtcp(&mut tx, &rtcp(1)).unwrap();
            for at in [1usize, 9, good.len() - 5, good.len() - 1] {
                let mut bad = good.clone();
                bad[at] ^= 0x80;
                assert!(
                    unprotect_rtcp(&mut rx, &bad).is_err(),
                    "{profile:?} byte {at}"
                );
            }
            assert_eq!(unprotect_rtcp(&mut rx, &good).unwrap(), rtcp(1));
            // Keyed otherwise: refused.
            let crypto = rtc::crypto::default_provider().unwrap();
            let (key, _) = master(profile);
            let salt = vec![0; profile.master_salt_len()];
            let mut other = Context::new(profile, &key, &salt, crypto.crypto()).unwrap();
            let foreign = protect_rtp(&mut other, &rtp(8, 100)).unwrap();
            assert_eq!(
                unprotect_rtp(&mut rx, &foreign),
                Err(SrtpError::Authentication)
            );
        }
    }

    #[test]
    fn truncated_and_garbage_packets_are_errors_not_panics() {
        for profile in PROFILES {
            let mut tx = ours(profile);
            let packet = protect_rtp(&mut tx, &rtp(1, 40)).unwrap();
            let report = protect_rtcp(&mut tx, &rtcp(1)).unwrap();
            let mut rx = ours(profile);
            for n in 0..packet.len() {
                assert!(unprotect_rtp(&mut rx, &packet[..n]).is_err(), "{n}");
            }
            for n in 0..report.len() {
                assert!(unprotect_rtcp(&mut rx, &report[..n]).is_err(), "{n}");
            }
            // Header extensions and CSRC counts that point past the end.
            for garbage in [
                vec![0x9f; 30],
                vec![
                    0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0xff, 0xff,
                ],
                vec![0x80; 12],
                vec![0x40; 40],
                Vec::new(),
            ] {
                assert!(unprotect_rtp(&mut rx, &garbage).is_err(), "{garbage:?}");
                assert!(unprotect_rtcp(&mut rx, &garbage).is_err(), "{garbage:?}");
            }
            // Protecting: no room for the tag, or not RTP.
            let mut buf = rtp(2, 10);
            let len = buf.len();
            assert_eq!(tx.protect_rtp(&mut buf, len), Err(SrtpError::NoRoom));
            assert_eq!(
                tx.protect_rtp(&mut [0u8; 40], 20),
                Err(SrtpError::Malformed)
            );
            assert_eq!(
                tx.protect_rtcp(&mut [0x80; 40], 4),
                Err(SrtpError::Malformed)
            );
            assert_eq!(
                tx.protect_rtp(&mut [0x80; 40], usize::MAX),
                Err(SrtpError::NoRoom)
            );
        }
        let crypto = rtc::crypto::default_provider().unwrap();
        assert!(matches!(
            Context::new(Profile::AeadAes128Gcm, &[0; 16], &[0; 14], crypto.crypto()),
            Err(SrtpError::KeyLength)
        ));
    }

    #[test]
    fn received_streams_beyond_the_table_take_the_place_of_the_one_used_least_recently() {
        let mut rx = ours(Profile::AeadAes128Gcm);
        for ssrc in 0..(MAX_STREAMS as u32 + 4) {
            let mut plain = rtp(1, 20);
            plain[8..12].copy_from_slice(&ssrc.to_be_bytes());
            // A sender per SSRC: one sender keeps no more than the table.
            let p = protect_rtp(&mut ours(Profile::AeadAes128Gcm), &plain).unwrap();
            assert_eq!(unprotect_rtp(&mut rx, &p).unwrap(), plain);
        }
        assert_eq!(rx.streams.len(), MAX_STREAMS);
        assert_eq!(rx.streams.capacity(), MAX_STREAMS, "no growth per stream");
        assert!(rx.streams.iter().all(|s| s.ssrc >= 4));
    }

    /// A sender never forgets an SSRC's index: it would use the keystream of its first
    /// packets again.
    #[test]
    fn a_sender_refuses_more_streams_than_the_table_holds() {
        let mut tx = ours(Profile::Aes128CmHmacSha1_80);
        for ssrc in 0..(MAX_STREAMS as u32 + 1) {
            let mut plain = rtp(1, 20);
            plain[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let result = protect_rtp(&mut tx, &plain);
            if (ssrc as usize) < MAX_STREAMS {
                assert!(result.is_ok());
            } else {
                assert_eq!(result, Err(SrtpError::TooManyStreams));
            }
        }
        let mut report = rtcp(1);
        report[4..8].copy_from_slice(&99u32.to_be_bytes());
        assert_eq!(
            protect_rtcp(&mut tx, &report),
            Err(SrtpError::TooManyStreams)
        );
    }

    /// SRTCP with the E bit clear (authenticated, not encrypted), which this side never
    /// sends but must take.
    #[test]
    fn unencrypted_srtcp_is_authenticated_and_taken() {
        for profile in PROFILES {
            let mut keyed = ours(profile);
            let plain = rtcp(3);
            let trailer = 5u32.to_be_bytes();
            let mut packet = plain.clone();
            match &mut keyed.rtcp {
                Keys::Cm(keys) => {
                    let mac = &mut keys.mac;
                    packet.extend_from_slice(&trailer);
                    let mut mac = mac.clone();
                    mac.update(&packet);
                    packet.extend_from_slice(&mac.finalize().into_bytes()[..HMAC_TAG]);
                }
                Keys::Gcm { aead, salt } => {
                    let mut aad = plain.clone();
                    aad.extend_from_slice(&trailer);
                    let mut tag = [0u8; GCM_TAG];
                    let iv = gcm_rtcp_iv(salt, SSRC, 5);
                    aead.seal_in_place(&iv, &aad, &mut [], &mut tag).unwrap();
                    packet.extend_from_slice(&tag);
                    packet.extend_from_slice(&trailer);
                }
            }
            let mut rx = ours(profile);
            let mut bad = packet.clone();
            bad[12] ^= 1;
            assert_eq!(
                unprotect_rtcp(&mut rx, &bad),
                Err(SrtpError::Authentication),
                "{profile:?}"
            );
            assert_eq!(
                unprotect_rtcp(&mut rx, &packet).unwrap(),
                plain,
                "{profile:?}"
            );
            assert_eq!(unprotect_rtcp(&mut rx, &packet), Err(SrtpError::Replayed));
        }
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream.
    #[test]
    fn aes_cm_keystream_is_rfc_3711_b2() {
        let aes = Aes128::new(GenericArray::from_slice(&hex(
            "2B7E151628AED2A6ABF7158809CF4F3C",
        )));
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));
        let mut out = [0u8; 48];
        cm_apply(&aes, &iv, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("E03EAD0935C95E80E166B16DD92B4EB4
                 D23513162B02D0F72A43A2FE4A5F97AB
                 41E95B3BB0A2E8DD477901E4FCA894C0")
        );
        iv[14..].copy_from_slice(&[0xfe, 0xff]);
        let mut out = [0u8; 48];
        cm_apply(&aes, &iv, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("EC8CDF7398607CB0F2D21675EA9EA1E4
                 362B7C3C6773516318A077D7FC5073AE
                 6A2CC3787889374FBEB4C81B17BA6C44")
        );
    }

    /// RFC 3711 Appendix B.3: the session keys derived from a master key and salt.
    #[test]
    fn key_derivation_is_rfc_3711_b3() {
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut cipher_key = [0u8; 16];
        derive(&key, &salt, 0, &mut cipher_key);
        assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut cipher_salt = [0u8; 14];
        derive(&key, &salt, 2, &mut cipher_salt);
        assert_eq!(cipher_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth_key = [0u8; 20];
        derive(&key, &salt, 1, &mut auth_key);
        assert_eq!(
            auth_key.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn the_index_estimate_follows_rfc_3711_appendix_a() {
        let roc1 = 1u64 << 16;
        assert_eq!(estimate_index(roc1 | 100, 101), Some(roc1 | 101));
        assert_eq!(estimate_index(roc1 | 100, 65000), Some(65000));
        assert_eq!(estimate_index(roc1 | 65000, 3), Some((2 * roc1) | 3));
        assert_eq!(estimate_index(roc1 | 65000, 40000), Some(roc1 | 40000));
        assert_eq!(estimate_index(10, 65000), None);
    }
}
