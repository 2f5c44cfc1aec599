//! The Graph calling REST client: calls, call actions and participants, with a fresh
//! `client-request-id` per request, typed errors, retries and timeouts.

mod actions;
mod error;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::token::{TokenProvider, read_limited};

pub use self::actions::{
    AnswerOptions, CreatedCall, Prompt, RecordOptions, RejectReason, ScreenSharingRole,
};
pub use self::error::{ApiError, GraphApiError};

/// Graph v1.0.
pub const GRAPH_V1: &str = "https://graph.microsoft.com/v1.0";
/// Graph beta.
pub const GRAPH_BETA: &str = "https://graph.microsoft.com/beta";
/// Longest response body read.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// When and how often a request is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1: never retry).
    pub max_attempts: u32,
    /// Backoff before the first retry when the service gave no `Retry-After`; doubled each
    /// time, with full jitter.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
    /// Longest `Retry-After` honoured; a longer one ends the retries with the error.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (0-based): uniformly random in
    /// `[0, min(max_delay, base_delay * 2^retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(fastrand::u64(0..=millis))
    }
}

/// Settings of a [`GraphClient`].
#[derive(Debug, Clone)]
pub struct GraphClientConfig {
    /// API base, `https://graph.microsoft.com/v1.0` by default ([`GRAPH_BETA`] for beta, or an
    /// emulator's URL).
    pub base_url: String,
    /// Timeout of one HTTP attempt.
    pub timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl Default for GraphClientConfig {
    fn default() -> Self {
        GraphClientConfig {
            base_url: GRAPH_V1.to_owned(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpClientError {
    /// The TLS configuration failed (feature `tls`): no CA certificates on the system, or
    /// an extra root certificate that is not a usable CA certificate.
    #[cfg(feature = "tls")]
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The extra root certificates given are not PEM `CERTIFICATE` blocks, or this build
    /// has no HTTPS (feature `tls` off).
    #[error("the extra root certificates are unusable: {problem}")]
    RootCertificates {
        /// What is wrong with them.
        problem: &'static str,
    },
    /// reqwest refused the configuration.
    #[error("the HTTP client could not be built: {0}")]
    Build(#[source] Arc<reqwest::Error>),
}

/// An HTTP client for Graph and the identity platform: HTTPS to `https://` URLs, plain HTTP
/// to `http://` ones (an emulator on loopback).
///
/// With the `tls` feature (on by default): rustls with the `ring` provider and the
/// platform's certificate verifier (the system's CA certificates). `ring` is also installed
/// as the process's default rustls provider when none is, so that code calling
/// `rustls::ClientConfig::builder()` finds one; reqwest clients built elsewhere in the
/// process do not depend on that (reqwest's `rustls` feature brings its own provider).
/// Without the feature: plain HTTP only.
pub fn http_client() -> Result<reqwest::Client, HttpClientError> {
    build_http_client(None)
}

/// [`http_client`], also trusting the CA certificates in `pem` (one or more PEM
/// `CERTIFICATE` blocks) besides the system's: a test server's self-signed certificate, or
/// the root of a TLS-inspecting proxy.
pub fn http_client_with_roots(pem: &[u8]) -> Result<reqwest::Client, HttpClientError> {
    build_http_client(Some(pem))
}

fn build_http_client(extra_roots_pem: Option<&[u8]>) -> Result<reqwest::Client, HttpClientError> {
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
    #[cfg(feature = "tls")]
    let builder = {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Err only means another provider is already the default: that one stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let extra_roots = match extra_roots_pem {
            Some(pem) => pem_certificates(pem)?,
            None => Vec::new(),
        };
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            extra_roots,
            provider.clone(),
        )?;
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        builder.tls_backend_preconfigured(tls)
    };
    #[cfg(not(feature = "tls"))]
    if extra_roots_pem.is_some() {
        return Err(HttpClientError::RootCertificates {
            problem: "this build has no HTTPS (feature `tls`)",
        });
    }
    builder
        .build()
        .map_err(|e| HttpClientError::Build(Arc::new(e)))
}

/// The DER certificates of a PEM text; other PEM sections (keys) are skipped.
#[cfg(feature = "tls")]
fn pem_certificates(
    pem: &[u8],
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, HttpClientError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| HttpClientError::RootCertificates {
            problem: "the PEM text is malformed",
        })?;
    if certificates.is_empty() {
        return Err(HttpClientError::RootCertificates {
            problem: "the PEM text has no CERTIFICATE block",
        });
    }
    Ok(certificates)
}

/// The Graph calling API client.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Arc<str>,
    tokens: Arc<dyn TokenProvider>,
    config: GraphClientConfig,
}

/// A successful answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Option<Value>,
}

impl GraphClient {
    /// A client with `tokens` for authentication, sending through `http`.
    pub fn new(
        config: GraphClientConfig,
        tokens: Arc<dyn TokenProvider>,
        http: reqwest::Client,
    ) -> Self {
        GraphClient {
            http,
            base: config.base_url.trim_end_matches('/').into(),
            tokens,
            config,
        }
    }

    /// The API base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The client's settings.
    pub fn config(&self) -> &GraphClientConfig {
        &self.config
    }

    /// Sends one request, retrying as the [`RetryPolicy`] says.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ApiError> {
        let url = format!("{}{path}", self.base);
        let idempotent = matches!(method, Method::GET | Method::DELETE);
        let policy = self.config.retry;
        let mut refreshed_token = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.token.expose())
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true")
                .timeout(self.config.timeout);
            request = match body {
                Some(b) => request.json(b),
                // Graph wants a length on a body-less POST.
                None if method == Method::POST => request.header("content-length", "0"),
                None => request,
            };
            tracing::debug!(%method, path, attempt, client_request_id, "graph request");
            let retry_in = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    let bytes = read_limited(response, MAX_RESPONSE_BYTES)
                        .await
                        .map_err(|e| match e {
                            Some(e) => transport(e, &client_request_id, self.config.timeout),
                            None => ApiError::BadResponse {
                                status: status.as_u16(),
                                problem: "the body is larger than 4 MiB",
                            },
                        })?;
                    if status.is_success() {
                        return success(status, &headers, &bytes);
                    }
                    let error = graph_error(status, &headers, &bytes, &client_request_id);
                    tracing::debug!(%method, path, attempt, status = status.as_u16(), code = error.code, "graph error");
                    if status == StatusCode::UNAUTHORIZED && !refreshed_token {
                        refreshed_token = true;
                        self.tokens.invalidate();
                        attempt -= 1;
                        continue;
                    }
                    let retryable = matches!(status.as_u16(), 429 | 503 | 504);
                    if !retryable || attempt >= policy.max_attempts {
                        return Err(ApiError::Graph(Box::new(error)));
                    }
                    match retry_after(&headers, SystemTime::now()) {
                        Some(wait) if wait > policy.max_retry_after => {
                            return Err(ApiError::Graph(Box::new(error)));
                        }
                        Some(wait) => wait,
                        None => policy.backoff(attempt - 1),
                    }
                }
                Err(e) => {
                    // A connection that never opened carried nothing: safe to repeat. After a
                    // timeout a POST may have been applied, so only idempotent requests retry.
                    let repeatable = e.is_connect() || (idempotent && e.is_timeout());
                    if !repeatable || attempt >= policy.max_attempts {
                        return Err(transport(e, &client_request_id, self.config.timeout));
                    }
                    policy.backoff(attempt - 1)
                }
            };
            tokio::time::sleep(retry_in).await;
        }
    }
}

fn transport(e: reqwest::Error, client_request_id: &str, timeout: Duration) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            client_request_id: client_request_id.to_owned(),
        }
    } else {
        ApiError::Transport {
            source: Arc::new(e.without_url()),
            client_request_id: client_request_id.to_owned(),
        }
    }
}

fn success(status: StatusCode, headers: &HeaderMap, bytes: &[u8]) -> Result<Answer, ApiError> {
    let location = headers
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(
            crate::parse_value_bytes(bytes, crate::ParseMode::Tolerant).map_err(|_| {
                ApiError::BadResponse {
                    status: status.as_u16(),
                    problem: "the body is not JSON",
                }
            })?,
        )
    };
    Ok(Answer {
        status,
        location,
        body,
    })
}

/// Parses Graph's error envelope; a body that is not one still gives status and request id.
pub(crate) fn graph_error(
    status: StatusCode,
    headers: &HeaderMap,
    bytes: &[u8],
    client_request_id: &str,
) -> GraphApiError {
    let envelope: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let error = &envelope["error"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let inner = if error["innerError"].is_object() {
        &error["innerError"]
    } else {
        &error["innererror"]
    };
    let request_id = text(&inner["request-id"]).or_else(|| {
        headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    GraphApiError {
        status: status.as_u16(),
        code: text(&error["code"]).unwrap_or_default(),
        message: text(&error["message"]).unwrap_or_default(),
        request_id,
        client_request_id: client_request_id.to_owned(),
    }
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date (relative to `now`).
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Percent-encodes one path segment (ids come from the service and from bots).
pub(crate) fn segment(name: &'static str, id: &str) -> Result<String, ApiError> {
    if id.is_empty() {
        return Err(ApiError::InvalidArgument {
            name,
            problem: "it is empty",
        });
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&past).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        let samples: Vec<Duration> = (0..200).map(|_| p.backoff(30)).collect();
        assert!(samples.iter().all(|d| *d <= p.max_delay));
        assert!(samples.iter().any(|d| *d != samples[0]), "no jitter");
        assert!((0..50).all(|_| p.backoff(0) <= p.base_delay));
    }

    #[test]
    fn error_envelope_is_parsed() {
        let body = br#"{"error":{"code":"Forbidden","message":"no","innerError":{"request-id":"r-1","date":"x"}}}"#;
        let e = graph_error(StatusCode::FORBIDDEN, &HeaderMap::new(), body, "c-1");
        assert_eq!(e.code, "Forbidden");
        assert_eq!(e.message, "no");
        assert_eq!(e.request_id.as_deref(), Some("r-1"));
        assert_eq!(e.client_request_id, "c-1");
        let mut h = HeaderMap::new();
        h.insert("request-id", HeaderValue::from_static("r-2"));
        let e = graph_error(StatusCode::BAD_GATEWAY, &h, b"<html>", "c-2");
        assert_eq!((e.status, e.code.as_str()), (502, ""));
        assert_eq!(e.request_id.as_deref(), Some("r-2"));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn the_tls_client_builds_with_ring_and_the_platform_verifier() {
        http_client().unwrap();
        // ring is now the process default: rustls's own builder finds it.
        rustls::ClientConfig::builder();
        reqwest::Client::builder().build().unwrap();
    }

    #[cfg(feature = "tls")]
    #[test]
    fn extra_roots_must_be_pem_certificates() {
        for (pem, problem) in [
            (&b""[..], "no CERTIFICATE block"),
            (b"not pem at all", "no CERTIFICATE block"),
            (
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                "no CERTIFICATE block",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "malformed",
            ),
        ] {
            let err = http_client_with_roots(pem).unwrap_err();
            assert!(err.to_string().contains(problem), "{err}");
        }
        // Well-formed PEM around bytes that are no certificate: webpki refuses it.
        let junk = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            http_client_with_roots(junk),
            Err(HttpClientError::Tls(_))
        ));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("id", "a-b_c.9").unwrap(), "a-b_c%2E9");
        assert_eq!(segment("id", "../x?y").unwrap(), "%2E%2E%2Fx%3Fy");
        assert!(segment("id", "").is_err());
    }
}
