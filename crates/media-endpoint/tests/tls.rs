//! `https` at the endpoint with a configured certificate, and the errors of a bad one.

use std::path::PathBuf;
use std::sync::Arc;

use media_endpoint::{BindError, EndpointConfig, MediaEndpoint, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "media-endpoint-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn serves_https_with_the_configured_certificate() {
    let dir = TempDir::new("tls");
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let cert_path = dir.0.join("cert.pem");
    let key_path = dir.0.join("key.pem");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, signing_key.serialize_pem()).expect("write key");

    let config = EndpointConfig::new("127.0.0.1:0".parse().expect("addr")).with_tls(TlsConfig {
        cert_chain_pem: cert_path,
        private_key_pem: key_path,
    });
    let endpoint = MediaEndpoint::bind(config).await.expect("bind");
    assert!(endpoint.mp_uri().starts_with("https://127.0.0.1:"));
    assert!(endpoint.mp_uri().ends_with("/MediaProcessor"));

    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(cert.der().to_vec()))
        .expect("root");
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(endpoint.local_addr())
        .await
        .expect("connect");
    let mut tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake with the configured certificate");
    let path = format!("/MediaProcessor/sessions/{}", uuid::Uuid::new_v4());
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/sdp\r\nContent-Length: 3\r\n\r\nv=0"
    );
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // A close_notify-less shutdown is fine here: the body has arrived by then.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains("no such media session"), "{text}");
    endpoint.shutdown().await;
}

#[tokio::test]
async fn a_bad_certificate_is_named() {
    let dir = TempDir::new("badtls");
    let missing = dir.0.join("missing.pem");
    let garbage = dir.0.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate").expect("write");
    let addr = "127.0.0.1:0".parse().expect("addr");

    let err = MediaEndpoint::bind(EndpointConfig::new(addr).with_tls(TlsConfig {
        cert_chain_pem: missing.clone(),
        private_key_pem: missing.clone(),
    }))
    .await
    .expect_err("missing file");
    assert!(matches!(err, BindError::TlsFile { ref path, .. } if *path == missing));

    let err = MediaEndpoint::bind(EndpointConfig::new(addr).with_tls(TlsConfig {
        cert_chain_pem: garbage.clone(),
        private_key_pem: garbage.clone(),
    }))
    .await
    .expect_err("garbage");
    assert!(
        matches!(err, BindError::TlsPem { ref path, expected: "certificate" } if *path == garbage),
        "{err}"
    );

    let err = MediaEndpoint::bind(EndpointConfig::new(addr).with_base_path("MediaProcessor/"))
        .await
        .expect_err("bad path");
    assert!(matches!(err, BindError::BasePath { .. }), "{err}");
    let err = MediaEndpoint::bind(EndpointConfig::new(addr).with_ice_addresses(vec![]))
        .await
        .expect_err("no ICE address");
    assert!(matches!(err, BindError::NoIceAddress), "{err}");
}
