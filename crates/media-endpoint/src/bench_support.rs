//! Entry points for the crate's benches (`benches/srtp.rs`), and the SRTP keys and packets
//! the unit tests of `leg::srtp` share with them: not part of the API.

use bytes::BytesMut;
use rtc::srtp::context::Context as TheirContext;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

use crate::leg::srtp::{Context, Profile, REPLAY_WINDOW};

/// The SSRC of [`rtp_packet`]'s packets.
pub const SSRC: u32 = 0x1234_5678;

/// An RTP packet of [`SSRC`] with sequence number `seq`, a CSRC and a one-byte header
/// extension (as the bot's audio packets have), and `payload_len` bytes of payload.
pub fn rtp_packet(seq: u16, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x91, 111];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&0xdead_beefu32.to_be_bytes());
    p.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0x85, 0, 0]);
    p.extend((0..payload_len).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// The master key and salt every test and bench context of `profile` is keyed with.
pub(crate) fn master(profile: Profile) -> (Vec<u8>, Vec<u8>) {
    let key = (0..profile.master_key_len() as u8)
        .map(|i| i.wrapping_mul(7) ^ 0x5a)
        .collect();
    let salt = (0..profile.master_salt_len() as u8)
        .map(|i| i.wrapping_mul(13) ^ 0xa5)
        .collect();
    (key, salt)
}

/// The lean path's SRTP context of `profile`, keyed with [`master`].
pub(crate) fn our_context(profile: Profile) -> Context {
    let (key, salt) = master(profile);
    let provider = rtc::crypto::default_provider().expect("the rtc stack's crypto provider");
    Context::new(profile, &key, &salt, provider.crypto()).expect("our SRTP context")
}

/// `rtc-srtp`'s context of `profile`, keyed with [`master`], with the lean path's replay
/// window.
pub(crate) fn their_context(profile: Profile) -> TheirContext {
    let (key, salt) = master(profile);
    let provider = rtc::crypto::default_provider().expect("the rtc stack's crypto provider");
    let their_profile = match profile {
        Profile::Aes128CmHmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Profile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
        Profile::AeadAes256Gcm => ProtectionProfile::AeadAes256Gcm,
    };
    TheirContext::new(
        &key,
        &salt,
        their_profile,
        Some(srtp_replay_protection(REPLAY_WINDOW as usize)),
        Some(srtcp_replay_protection(REPLAY_WINDOW as usize)),
        provider.crypto(),
    )
    .expect("rtc-srtp's context")
}

/// The protection profiles the lean path's SRTP implements, by their RFC names, in the
/// order [`SrtpPairs::new`] takes them.
pub const SRTP_PROFILES: [&str; 3] = [
    "AES_CM_128_HMAC_SHA1_80",
    "AEAD_AES_128_GCM",
    "AEAD_AES_256_GCM",
];

/// A sender and a receiver of the lean path's SRTP (`leg::srtp`, in place) and of the `rtc`
/// stack's (`rtc-srtp`, a new buffer per packet), all four keyed with one master key and
/// salt, for one profile. Every call panics on an SRTP error: a bench that measured a
/// refusal would measure the wrong thing.
pub struct SrtpPairs {
    ours: (Context, Context),
    theirs: (TheirContext, TheirContext),
}

impl SrtpPairs {
    /// The pairs for profile `index` of [`SRTP_PROFILES`]; `None` past its end.
    pub fn new(index: usize) -> Option<SrtpPairs> {
        let profile = *[
            Profile::Aes128CmHmacSha1_80,
            Profile::AeadAes128Gcm,
            Profile::AeadAes256Gcm,
        ]
        .get(index)?;
        Some(SrtpPairs {
            ours: (our_context(profile), our_context(profile)),
            theirs: (their_context(profile), their_context(profile)),
        })
    }

    /// Bytes SRTP adds to an RTP packet in this profile (the room `protect` needs).
    pub fn rtp_overhead(&self) -> usize {
        self.ours.0.profile().rtp_overhead()
    }

    /// Protects the RTP packet `buf[..len]` in place with the lean path's sender; the
    /// protected length.
    pub fn protect(&mut self, buf: &mut [u8], len: usize) -> usize {
        self.ours.0.protect_rtp(buf, len).expect("protect")
    }

    /// Unprotects `buf` in place with the lean path's receiver; the RTP packet's length.
    pub fn unprotect(&mut self, buf: &mut [u8]) -> usize {
        self.ours.1.unprotect_rtp(buf).expect("unprotect")
    }

    /// Protects the RTP packet `plain` with the `rtc` stack's sender.
    pub fn their_protect(&mut self, plain: &[u8]) -> BytesMut {
        self.theirs.0.encrypt_rtp(plain).expect("rtc-srtp protect")
    }

    /// Unprotects `protected` with the `rtc` stack's receiver.
    pub fn their_unprotect(&mut self, protected: &[u8]) -> BytesMut {
        self.theirs
            .1
            .decrypt_rtp(protected)
            .expect("rtc-srtp unprotect")
    }
}
