//! HTTPS by default: a `CommunicationsClient` gets a token and a call from a local HTTPS
//! server whose self-signed certificate it was given as an extra root, refuses the same
//! server without it, and still talks plain http to 127.0.0.1.

#![cfg(feature = "tls")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::{get, post};
use serde_json::json;
use signalling::client::{ApiError, RetryPolicy};
use signalling::token::{SecretString, TokenError};
use signalling::{CallId, CommunicationsClient, CommunicationsSettings, Credentials};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

/// Counts what reached the server.
#[derive(Default)]
struct Seen {
    /// TLS handshakes that failed (the client refused the certificate).
    failed_handshakes: AtomicUsize,
    /// HTTP requests answered.
    requests: AtomicUsize,
}

fn json_body(v: serde_json::Value) -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
}

/// A token endpoint and `GET /v1.0/communications/calls/{id}`.
fn graph_and_identity(seen: Arc<Seen>) -> Router {
    let (s1, s2) = (seen.clone(), seen);
    Router::new()
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(move || {
                s1.requests.fetch_add(1, Ordering::SeqCst);
                async {
                    json_body(json!({
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "access_token": "local-test-token",
                    }))
                }
            }),
        )
        .route(
            "/v1.0/communications/calls/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    s2.requests.fetch_add(1, Ordering::SeqCst);
                    async move {
                        json_body(json!({
                            "@odata.type": "#microsoft.graph.call",
                            "id": id,
                            "state": "established",
                        }))
                    }
                },
            ),
        )
}

/// A TCP listener that completes a TLS handshake before handing a connection to axum;
/// connections whose handshake fails are counted and dropped.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    seen: Arc<Seen>,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            match self.acceptor.accept(tcp).await {
                Ok(tls) => return (tls, addr),
                Err(_) => {
                    self.seen.failed_handshakes.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

struct Server {
    base: String,
    /// The server's certificate, PEM.
    certificate: String,
    seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTPS server on 127.0.0.1 with a fresh self-signed certificate for that address.
async fn https_server() -> Server {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let listener = TlsListener {
        tcp,
        acceptor: TlsAcceptor::from(Arc::new(config)),
        seen: seen.clone(),
    };
    let app = graph_and_identity(seen.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Server {
        base: format!("https://{addr}"),
        certificate: certified.cert.pem(),
        seen,
        task,
    }
}

/// Settings that send the token request and Graph requests to `base`, without retries.
fn settings(base: &str) -> CommunicationsSettings {
    let mut s = CommunicationsSettings::new(
        "app-id",
        "tenant-id",
        Credentials::Secret(SecretString::new("app secret")),
        "https://bot.contoso.com/callback",
    );
    s.authority = format!("{base}/{{tenant}}/oauth2/v2.0/token");
    s.graph_url = format!("{base}/v1.0");
    s.retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    s
}

#[tokio::test]
async fn a_server_certified_by_an_extra_root_is_trusted() {
    let server = https_server().await;
    let mut s = settings(&server.base);
    s.extra_root_certificates = Some(server.certificate.clone());
    let client = CommunicationsClient::new(s).unwrap();
    let call = client
        .graph()
        .get_call(&CallId::new("call-1"))
        .await
        .expect("the call, over HTTPS");
    assert_eq!(call.id.get().map(String::as_str), Some("call-1"));
    // The token request and the call request.
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 2);
    assert_eq!(server.seen.failed_handshakes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_same_server_is_refused_without_its_root() {
    let server = https_server().await;
    let client = CommunicationsClient::new(settings(&server.base)).unwrap();
    let err = client
        .graph()
        .get_call(&CallId::new("call-1"))
        .await
        .expect_err("an unknown issuer");
    // The token request is the first to go, and fails in the handshake.
    assert!(
        matches!(err, ApiError::Token(TokenError::Transport { .. })),
        "{err:?}"
    );
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&format!("{e}; "));
        source = e.source();
    }
    assert!(
        chain.to_ascii_lowercase().contains("certificate"),
        "no certificate error in: {chain}"
    );
    assert_eq!(server.seen.requests.load(Ordering::SeqCst), 0);
    // The server ends its side of the handshake after the client has given up.
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while server.seen.failed_handshakes.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the server saw the handshake fail");
}

#[tokio::test]
async fn plain_http_to_loopback_still_works() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", tcp.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let app = graph_and_identity(seen.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(tcp, app).await;
    });
    let client = CommunicationsClient::new(settings(&base)).unwrap();
    let call = client
        .graph()
        .get_call(&CallId::new("call-2"))
        .await
        .unwrap();
    assert_eq!(call.id.get().map(String::as_str), Some("call-2"));
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    task.abort();
}
