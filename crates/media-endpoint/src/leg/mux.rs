//! Telling the legs of a shared socket apart (the endpoint's
//! [`shared_udp`](crate::EndpointConfig::shared_udp) mode): every leg of a network pump
//! uses that pump's one socket per ICE address, so a datagram's local address no longer
//! names its leg. As media servers do, the pump routes by the path (local and remote
//! address) a leg already uses, and learns a new path from a STUN Binding request whose
//! USERNAME starts with a leg's own ICE username fragment (RFC 8445 §7.2.2: the receiver's
//! fragment, a colon, the sender's) or from a datagram the leg itself sends. Anything else
//! from an unknown address is dropped before any leg sees it.
//!
//! Two legs whose peers share one address (a peer multiplexing its own legs on one port)
//! cannot be told apart after ICE: the newest Binding request wins the path, and the
//! change is counted ([`Demux::take_conflicts`]).

use std::collections::HashMap;
use std::net::SocketAddr;

/// STUN's magic cookie (RFC 5389 §6).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
/// The Binding request's message type.
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
/// The USERNAME attribute's type.
const USERNAME: u16 = 0x0006;
/// STUN's header length.
const HEADER: usize = 20;
/// The longest ICE username fragment a leg answers with (RFC 8839: at most 256 characters).
const MAX_UFRAG: usize = 256;

/// The username fragment a STUN Binding request is addressed to: its USERNAME attribute
/// up to the first colon. `None` for anything else (RTP, RTCP, DTLS, other STUN messages,
/// a malformed or truncated request).
pub(crate) fn binding_request_ufrag(data: &[u8]) -> Option<&[u8]> {
    if data.len() < HEADER || data[0..2] != BINDING_REQUEST || data[4..8] != MAGIC_COOKIE {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let body = data.get(HEADER..HEADER + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == USERNAME {
            let end = value.iter().position(|&b| b == b':')?;
            let ufrag = &value[..end];
            return (!ufrag.is_empty() && ufrag.len() <= MAX_UFRAG).then_some(ufrag);
        }
        // Attributes are padded to four bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The ICE username fragment of a session description (`a=ice-ufrag:`, session or first
/// media level).
pub(crate) fn sdp_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .filter(|u| !u.is_empty() && u.len() <= MAX_UFRAG)
}

/// A path: (local, remote) address.
type Path = (SocketAddr, SocketAddr);

/// The routing table of one pump's shared sockets: legs by ICE username fragment and by
/// path. A leg is known by its slot in the pump.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    by_ufrag: HashMap<Box<[u8]>, usize>,
    by_path: HashMap<Path, usize>,
    /// Each slot's fragment and paths, to forget them when the leg ends.
    owned: HashMap<usize, (Box<[u8]>, Vec<Path>)>,
    conflicts: u64,
}

impl Demux {
    /// Routes Binding requests for `ufrag` to `slot`. A fragment already in use (random
    /// fragments do not collide in practice) keeps its first leg: `false`.
    pub(crate) fn add(&mut self, slot: usize, ufrag: &[u8]) -> bool {
        if self.by_ufrag.contains_key(ufrag) {
            return false;
        }
        let key: Box<[u8]> = ufrag.into();
        self.by_ufrag.insert(key.clone(), slot);
        self.owned.insert(slot, (key, Vec::new()));
        true
    }

    /// Forgets the leg in `slot`: its fragment and every path it used.
    pub(crate) fn remove(&mut self, slot: usize) {
        let Some((ufrag, paths)) = self.owned.remove(&slot) else {
            return;
        };
        self.by_ufrag.remove(&ufrag);
        for p in paths {
            if self.by_path.get(&p) == Some(&slot) {
                self.by_path.remove(&p);
            }
        }
    }

    /// The leg a datagram that arrived on `local` from `remote` belongs to; learns the path
    /// when it is a Binding request for a leg's fragment. `None`: nobody's (dropped).
    pub(crate) fn route(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        data: &[u8],
    ) -> Option<usize> {
        if let Some(ufrag) = binding_request_ufrag(data) {
            let slot = *self.by_ufrag.get(ufrag)?;
            self.learn(slot, local, remote);
            return Some(slot);
        }
        self.by_path.get(&(local, remote)).copied()
    }

    /// Notes that the leg in `slot` sends from `local` to `remote`: the answers come back
    /// on that path (connectivity checks the leg starts, its media).
    pub(crate) fn learn(&mut self, slot: usize, local: SocketAddr, remote: SocketAddr) {
        let path = (local, remote);
        match self.by_path.insert(path, slot) {
            Some(old) if old == slot => return,
            Some(_) => self.conflicts += 1,
            None => {}
        }
        if let Some((_, paths)) = self.owned.get_mut(&slot)
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }

    /// Times a path moved from one leg to another (peers sharing an address) since the
    /// last call.
    pub(crate) fn take_conflicts(&mut self) -> u64 {
        std::mem::take(&mut self.conflicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Binding request with `attrs` (type, value) after the header.
    fn request(attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in attrs {
            body.extend_from_slice(&kind.to_be_bytes());
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
            body.resize(body.len().div_ceil(4) * 4, 0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(body.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&body);
        m
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn reads_the_receivers_fragment_after_other_attributes() {
        // PRIORITY (4 bytes) and a 5-byte attribute padded to 8 before USERNAME.
        let m = request(&[
            (0x0024, &[0, 0, 0, 1]),
            (0x8029, b"abcde"),
            (USERNAME, b"mine:theirs"),
        ]);
        assert_eq!(binding_request_ufrag(&m), Some(&b"mine"[..]));
    }

    #[test]
    fn anything_but_a_well_formed_binding_request_names_no_fragment() {
        let good = request(&[(USERNAME, b"mine:theirs")]);
        // A Binding success response (0x0101).
        let mut response = good.clone();
        response[0] = 0x01;
        assert_eq!(binding_request_ufrag(&response), None);
        // A wrong cookie, a truncated body, a length past the end, no colon, empty fragment.
        let mut cookie = good.clone();
        cookie[4] = 0;
        assert_eq!(binding_request_ufrag(&cookie), None);
        assert_eq!(binding_request_ufrag(&good[..good.len() - 2]), None);
        let mut long = good.clone();
        long[3] = 200;
        assert_eq!(binding_request_ufrag(&long), None);
        assert_eq!(
            binding_request_ufrag(&request(&[(USERNAME, b"nocolon")])),
            None
        );
        assert_eq!(
            binding_request_ufrag(&request(&[(USERNAME, b":theirs")])),
            None
        );
        // An attribute whose length runs past the message.
        let mut past = request(&[(USERNAME, b"mine:theirs")]);
        past[22] = 0;
        past[23] = 250;
        assert_eq!(binding_request_ufrag(&past), None);
        // RTP and DTLS.
        assert_eq!(binding_request_ufrag(&[0x80; 40]), None);
        assert_eq!(binding_request_ufrag(&[22, 254, 253, 0, 0]), None);
        assert_eq!(binding_request_ufrag(&[]), None);
    }

    #[test]
    fn the_sdp_fragment_is_the_first_ice_ufrag_line() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\na=ice-ufrag:AbCd\r\na=ice-pwd:x\r\n";
        assert_eq!(sdp_ufrag(sdp), Some("AbCd"));
        assert_eq!(sdp_ufrag("v=0\r\n"), None);
        assert_eq!(sdp_ufrag("a=ice-ufrag:\r\n"), None);
    }

    #[test]
    fn paths_are_learned_from_requests_and_sends_and_forgotten_with_the_leg() {
        let mut d = Demux::default();
        let local = addr(5000);
        assert!(d.add(1, b"one"));
        assert!(d.add(2, b"two"));
        assert!(!d.add(3, b"one"), "a fragment in use keeps its leg");
        let rtp = [0x80u8; 30];
        // Unknown address, not a request: dropped.
        assert_eq!(d.route(local, addr(6001), &rtp), None);
        // A request for leg 1 from 6001 teaches the path.
        let to_one = request(&[(USERNAME, b"one:peer")]);
        assert_eq!(d.route(local, addr(6001), &to_one), Some(1));
        assert_eq!(d.route(local, addr(6001), &rtp), Some(1));
        // The same remote on another local address is another path.
        assert_eq!(d.route(addr(5001), addr(6001), &rtp), None);
        // Leg 2 sends first (its own checks); the answers come back to it.
        d.learn(2, local, addr(6002));
        d.learn(2, local, addr(6002));
        assert_eq!(d.route(local, addr(6002), &rtp), Some(2));
        // A request for an unknown fragment is nobody's.
        let stray = request(&[(USERNAME, b"zzz:peer")]);
        assert_eq!(d.route(local, addr(6003), &stray), None);
        assert_eq!(
            d.take_conflicts(),
            0,
            "learning a path again is no conflict"
        );
        // A peer address that moves to another leg is counted.
        let to_two = request(&[(USERNAME, b"two:peer")]);
        assert_eq!(d.route(local, addr(6001), &to_two), Some(2));
        assert_eq!(d.take_conflicts(), 1);
        assert_eq!(d.take_conflicts(), 0, "taken");
        assert_eq!(d.route(local, addr(6001), &rtp), Some(2));
        // Removing leg 2 forgets its fragment and paths; leg 1 keeps what it has left.
        d.remove(2);
        assert_eq!(d.route(local, addr(6002), &rtp), None);
        assert_eq!(d.route(local, addr(6001), &rtp), None);
        assert_eq!(d.route(local, addr(6002), &to_two), None);
        assert_eq!(d.route(local, addr(6001), &to_one), Some(1));
        d.remove(1);
        assert!(d.by_path.is_empty() && d.by_ufrag.is_empty() && d.owned.is_empty());
        // The fragment is free again.
        assert!(d.add(4, b"one"));
    }
}
