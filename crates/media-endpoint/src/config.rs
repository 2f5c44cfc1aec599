//! Endpoint configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
    /// Local addresses ICE gathers host candidates on (one UDP socket each, ephemeral port).
    pub ice_addresses: Vec<IpAddr>,
    /// How long ICE gathering may take before the answer is sent with what was gathered.
    pub gathering_timeout: Duration,
    /// How long a leg may take to connect after its answer before it counts as failed.
    pub connect_timeout: Duration,
    /// How long a connected leg may receive neither RTP nor RTCP before it counts as dead.
    pub media_timeout: Duration,
}

impl EndpointConfig {
    /// Plain `http` on `listen`, ICE on 127.0.0.1, path `/MediaProcessor`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            base_path: "/MediaProcessor".to_owned(),
            tls: None,
            ice_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            gathering_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(20),
            media_timeout: Duration::from_secs(10),
        }
    }

    /// Serve `https` with this certificate.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Gather ICE host candidates on these addresses only.
    pub fn with_ice_addresses(mut self, addresses: Vec<IpAddr>) -> Self {
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
