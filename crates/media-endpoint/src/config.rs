//! Endpoint configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// A certificate chain and private key, PEM files, for serving `https`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_chain_pem: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key_pem: PathBuf,
}

/// One local address a leg's ICE gathers a host candidate on: where the leg's UDP socket
/// binds (the address, and the ports it may take) and what its candidate advertises (the
/// address itself, or the public address of a 1:1 NAT in front of it).
///
/// Behind a 1:1 NAT (a cloud VM's elastic IP, a Kubernetes node's public address with
/// `hostNetwork`), the socket binds the private address and the candidate names the public
/// one: the peer sends to the public address, the NAT forwards to the private one, and the
/// ICE agent, which still knows the candidate by its socket, answers. The port range is
/// what a firewall or a security group opens for media.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct IceAddress {
    /// The local address the leg's socket binds.
    pub ip: IpAddr,
    /// The ports the socket may bind, each leg a free one (ports other legs of this process
    /// hold, or other programs have bound, are skipped; the search starts after the port
    /// handed out last). A leg for which no port is free is refused, naming the range.
    /// `None`: an ephemeral port the system picks.
    pub ports: Option<RangeInclusive<u16>>,
    /// The address the host candidate advertises in place of [`Self::ip`] (the public
    /// address of a 1:1 NAT); `None`: [`Self::ip`] itself.
    pub announced: Option<IpAddr>,
}

impl IceAddress {
    /// `ip` on an ephemeral port, advertised as itself.
    pub fn new(ip: IpAddr) -> Self {
        Self {
            ip,
            ports: None,
            announced: None,
        }
    }

    /// This address binding a port of `ports` (both ends included, port 0 never).
    pub fn with_ports(mut self, ports: RangeInclusive<u16>) -> Self {
        self.ports = Some(ports);
        self
    }

    /// This address advertised as `public` in its host candidate.
    pub fn announced_as(mut self, public: IpAddr) -> Self {
        self.announced = Some(public);
        self
    }
}

impl From<IpAddr> for IceAddress {
    fn from(ip: IpAddr) -> Self {
        Self::new(ip)
    }
}

/// How the endpoint listens and how its WebRTC legs behave.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct EndpointConfig {
    /// HTTP listen address; port 0 picks one (read it back from the handle).
    pub listen: SocketAddr,
    /// Path of `mpUri`, the prefix of `{path}/sessions/{id}`.
    pub base_path: String,
    /// Serve `https` with this certificate instead of `http`.
    pub tls: Option<TlsConfig>,
    /// Local addresses ICE gathers host candidates on, one UDP socket each per leg, with the
    /// ports they may bind and the address they advertise.
    pub ice_addresses: Vec<IceAddress>,
    /// How long a leg may take to connect after its answer before it counts as failed.
    pub connect_timeout: Duration,
    /// How long a connected leg may receive neither RTP nor RTCP before it counts as dead.
    pub media_timeout: Duration,
    /// Shared-UDP mode: legs have no sockets of their own; every network pump (one per
    /// two cores) opens one socket per ICE address, on a port of its range leased for
    /// the life of the process, and the legs it drives share it. A datagram is routed to
    /// its leg by the path it arrived on, learned from the ICE Binding requests that name
    /// the leg's username fragment (as media servers do), and what the legs send after a
    /// pipeline tick leaves in `sendmmsg` batches: far fewer system calls, and a port
    /// range as small as the pumps. Needs peers that give each leg an address of its own
    /// (browsers, webrtc-rs, TURN allocations do); two legs whose peer multiplexes them
    /// on one address cannot be told apart. Off: each leg binds its own sockets.
    pub shared_udp: bool,
    /// Lean media path: the `rtc` stack's peer connection only writes a leg's answer;
    /// the leg then answers ICE checks as an ICE-lite agent (`a=ice-lite`), runs DTLS as
    /// the server with the stack's DTLS endpoint, and protects and reads RTP and RTCP with
    /// SRTP contexts of its own, sending its own sender and receiver reports: a fraction
    /// of the per-packet work of the whole stack. Needs offers that let this side be the
    /// DTLS server (`a=setup:actpass` or `active`, as browsers and webrtc-rs send) and a
    /// `sha-256` fingerprint, and ICE addresses the peer's checks reach: an ICE-lite agent
    /// sends no checks, so a peer that will not pair with a loopback candidate (Firefox)
    /// cannot reach a leg on 127.0.0.1, as it can a full agent that checks it first. On
    /// by default; off: the whole stack runs every leg.
    pub lean_media: bool,
}

impl EndpointConfig {
    /// Plain `http` on `listen`, ICE on 127.0.0.1, path `/MediaProcessor`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            base_path: "/MediaProcessor".to_owned(),
            tls: None,
            ice_addresses: vec![IceAddress::new(IpAddr::V4(Ipv4Addr::LOCALHOST))],
            connect_timeout: Duration::from_secs(20),
            media_timeout: Duration::from_secs(10),
            shared_udp: false,
            lean_media: true,
        }
    }

    /// Shared-UDP mode on or off (see [`Self::shared_udp`]).
    pub fn with_shared_udp(mut self, on: bool) -> Self {
        self.shared_udp = on;
        self
    }

    /// Lean media path on or off (see [`Self::lean_media`]).
    pub fn with_lean_media(mut self, on: bool) -> Self {
        self.lean_media = on;
        self
    }

    /// Serve `https` with this certificate.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Gather ICE host candidates on these addresses only, each on an ephemeral port and
    /// advertised as itself.
    pub fn with_ice_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.ice_addresses = addresses.into_iter().map(IceAddress::new).collect();
        self
    }

    /// Gather ICE host candidates on these addresses only, with their port ranges and the
    /// addresses they advertise.
    pub fn with_ice(mut self, addresses: Vec<IceAddress>) -> Self {
        self.ice_addresses = addresses;
        self
    }

    /// Sets the path of `mpUri` (a leading `/`, no trailing one).
    pub fn with_base_path(mut self, path: impl Into<String>) -> Self {
        self.base_path = path.into();
        self
    }

    /// Sets the dead-peer timeout of connected legs.
    pub fn with_media_timeout(mut self, timeout: Duration) -> Self {
        self.media_timeout = timeout;
        self
    }

    /// Sets how long a leg may take to connect.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}
