//! Entry points for the crate's benches (`benches/srtp.rs`): not part of the API.

use bytes::BytesMut;
use rtc::srtp::context::Context as TheirContext;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

use crate::leg::srtp::{Context, Profile, REPLAY_WINDOW};

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
        let (profile, their_profile) = match index {
            0 => (
                Profile::Aes128CmHmacSha1_80,
                ProtectionProfile::Aes128CmHmacSha1_80,
            ),
            1 => (Profile::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
            2 => (Profile::AeadAes256Gcm, ProtectionProfile::AeadAes256Gcm),
            _ => return None,
        };
        let key: Vec<u8> = (0..profile.master_key_len() as u8)
            .map(|i| i.wrapping_mul(7) ^ 0x5a)
            .collect();
        let salt: Vec<u8> = (0..profile.master_salt_len() as u8)
            .map(|i| i.wrapping_mul(13) ^ 0xa5)
            .collect();
        let provider = rtc::crypto::default_provider().expect("the rtc stack's crypto provider");
        let crypto = provider.crypto();
        let ours = || Context::new(profile, &key, &salt, crypto).expect("our SRTP context");
        let theirs = || {
            TheirContext::new(
                &key,
                &salt,
                their_profile,
                Some(srtp_replay_protection(REPLAY_WINDOW as usize)),
                Some(srtcp_replay_protection(REPLAY_WINDOW as usize)),
                crypto,
            )
            .expect("rtc-srtp's context")
        };
        Some(SrtpPairs {
            ours: (ours(), ours()),
            theirs: (theirs(), theirs()),
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
