//! The HTTP side: `POST {mpUri}/sessions/{id}` with an SDP offer, `DELETE` of the leg.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use media_session::MediaSessionId;
use tokio::sync::{mpsc, oneshot};

use crate::config::EndpointConfig;
use crate::error::{BindError, RegisterError};
use crate::events::EndpointEvent;
use crate::leg::{self, Leg, LegSettings, NegotiateError};
use crate::registry::{ClaimError, LegId, Registry, SessionHandle, SessionHooks};
use crate::sdp::{MAX_SDP_BYTES, check_offer};
use crate::tls;

#[derive(Clone)]
struct AppState {
    registry: Arc<Registry>,
    settings: Arc<LegSettings>,
    base_path: Arc<str>,
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut body = body.into();
    body.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn claim_refusal(e: ClaimError) -> Response {
    match e {
        ClaimError::Unknown => text(StatusCode::NOT_FOUND, "no such media session"),
        ClaimError::Finished => text(
            StatusCode::NOT_FOUND,
            "this media session has ended and takes no new leg",
        ),
        ClaimError::Busy => text(
            StatusCode::CONFLICT,
            "this media session already has a leg; DELETE it before posting another offer",
        ),
    }
}

fn is_sdp(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/sdp"))
}

async fn post_offer(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(id) = id.parse::<MediaSessionId>() else {
        return claim_refusal(ClaimError::Unknown);
    };
    if let Err(e) = st.registry.check(&id) {
        tracing::info!(session = %id, refusal = ?e, "offer refused");
        return claim_refusal(e);
    }
    if !is_sdp(&headers) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent with Content-Type: application/sdp",
        );
    }
    let offer = match check_offer(&body) {
        Ok(o) => o,
        Err(e) => {
            tracing::info!(session = %id, error = %e, "bad offer");
            return text(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let (pending, shared) = match st.registry.claim(&id) {
        Ok(p) => p,
        Err(e) => return claim_refusal(e),
    };
    let leg_id = LegId::random();
    let label = format!("{id}/{}", &leg_id.to_string()[..8]);
    let track_id = pending.hooks.source_context.to_string();
    let unmixed: Vec<String> = pending
        .hooks
        .unmixed_contexts
        .iter()
        .map(ToString::to_string)
        .collect();
    // Building the peer connection makes its DTLS certificate: CPU work, off the runtime.
    let negotiated = tokio::task::spawn_blocking({
        let settings = Arc::clone(&st.settings);
        move || leg::negotiate(Instant::now(), offer, track_id, &unmixed, &settings)
    })
    .await;
    let negotiated = match negotiated {
        Ok(n) => n,
        Err(e) => {
            st.registry.unclaim(&id, pending);
            tracing::error!(leg = %label, error = %e, "negotiation task failed");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "negotiation failed".to_owned(),
            );
        }
    };
    let neg = match negotiated {
        Ok(n) => n,
        Err(e) => {
            st.registry.unclaim(&id, pending);
            return match e {
                NegotiateError::Offer(e) => {
                    tracing::info!(leg = %label, error = %e, "offer refused by the WebRTC stack");
                    text(StatusCode::BAD_REQUEST, e.to_string())
                }
                // Load, not a fault: the range frees up as legs end, so the caller may retry.
                e @ NegotiateError::NoIcePort { .. } => {
                    tracing::warn!(leg = %label, error = %e, "offer refused: no free ICE port");
                    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    response
                }
                other => {
                    tracing::error!(leg = %label, error = %other, source = ?std::error::Error::source(&other), "negotiation failed");
                    text(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
                }
            };
        }
    };
    let answer = neg.local_sdp.clone();
    let (stop_tx, stop_rx) = mpsc::channel(1);
    let pending = *pending;
    let _ = pending.hooks.events.try_send(EndpointEvent::LegCreated);
    let requested = pending.hooks.unmixed_contexts.len();
    if requested > 0 {
        let offered = neg.speaker_tracks.len();
        if offered < requested {
            tracing::info!(leg = %label, requested, offered, "the service offers fewer unmixed speaker streams than the session asked for");
        }
        let _ = pending
            .hooks
            .events
            .try_send(EndpointEvent::UnmixedStreams {
                requested: u8::try_from(requested).unwrap_or(u8::MAX),
                offered: u8::try_from(offered).unwrap_or(u8::MAX),
            });
    }
    let leg = Leg {
        link: pending.hooks.link,
        events: pending.hooks.events,
        tones: pending.tones,
        stop: stop_rx,
        shared,
        settings: (*st.settings).clone(),
        label: label.clone(),
        on_end: Some(Box::new({
            let registry = Arc::clone(&st.registry);
            move || registry.finish(&id)
        })),
    };
    if !st.registry.go_live(&id, leg_id, stop_tx.clone()) {
        // Unregistered while negotiating: the leg starts and ends at once.
        let _ = stop_tx.try_send(crate::events::EndReason::Closed);
    }
    leg::start(Instant::now(), leg::pump::PoolKind::Endpoint, neg, leg);
    tracing::info!(leg = %label, "leg created");
    let location = format!(
        "{}/sessions/{}/legs/{leg_id}",
        st.base_path,
        id.expose().as_hyphenated()
    );
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    response
}

async fn delete_leg(
    State(st): State<AppState>,
    Path((id, leg)): Path<(String, String)>,
) -> Response {
    let (Ok(id), Some(leg)) = (id.parse::<MediaSessionId>(), LegId::parse(&leg)) else {
        return text(StatusCode::NOT_FOUND, "no such leg");
    };
    if st
        .registry
        .stop_leg(&id, leg, crate::events::EndReason::Deleted)
    {
        tracing::info!(session = %id, "leg deleted");
        text(StatusCode::OK, "leg ended")
    } else {
        text(StatusCode::NOT_FOUND, "no such leg")
    }
}

/// Browsers post from pages of another origin: allow it. The session id in the URL is the
/// capability, so an open origin policy grants nothing a caller did not already have.
async fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location"),
    );
    response
}

async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

async fn not_found() -> Response {
    text(
        StatusCode::NOT_FOUND,
        "not a media endpoint resource: POST an offer to {mpUri}/sessions/{mpMediaSessionId}",
    )
}

fn check_base_path(path: &str) -> Result<(), BindError> {
    if path.starts_with('/') && !path.ends_with('/') && !path.contains("//") {
        Ok(())
    } else {
        Err(BindError::BasePath {
            path: path.to_owned(),
        })
    }
}

/// A running media endpoint. Dropping it (or [`MediaEndpoint::shutdown`]) stops the listener
/// and ends every leg.
#[derive(Debug)]
pub struct MediaEndpoint {
    registry: Arc<Registry>,
    local_addr: SocketAddr,
    mp_uri: String,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl MediaEndpoint {
    /// Most ICE candidates an offer may list (all m-lines together); one with more is refused
    /// with 400 ([`OfferError::TooManyCandidates`](crate::OfferError::TooManyCandidates))
    /// before any peer connection is built. It bounds the connectivity checks of a leg to
    /// 8 per pair, pairing each remote candidate with the host candidate of each configured
    /// ICE address of its family: at most 256 per address.
    pub const MAX_OFFER_CANDIDATES: usize = crate::sdp::MAX_OFFER_CANDIDATES;

    /// Binds the listener and starts serving. Must run inside a Tokio runtime.
    pub async fn bind(config: EndpointConfig) -> Result<MediaEndpoint, BindError> {
        check_base_path(&config.base_path)?;
        if config.ice_addresses.is_empty() {
            return Err(BindError::NoIceAddress);
        }
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| BindError::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| BindError::Listen {
            addr: config.listen,
            source,
        })?;
        let registry = Arc::new(Registry::default());
        let state = AppState {
            registry: Arc::clone(&registry),
            settings: Arc::new(LegSettings {
                ice_addresses: config.ice_addresses.clone(),
                connect_timeout: config.connect_timeout,
                media_timeout: config.media_timeout,
                shared_udp: config.shared_udp,
                lean_media: config.lean_media,
            }),
            base_path: Arc::from(config.base_path.as_str()),
        };
        let base = &config.base_path;
        let app = Router::new()
            .route(
                &format!("{base}/sessions/{{id}}"),
                post(post_offer).options(preflight),
            )
            .route(
                &format!("{base}/sessions/{{id}}/legs/{{leg}}"),
                delete(delete_leg).options(preflight),
            )
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_SDP_BYTES))
            .layer(axum::middleware::map_response(cors))
            .with_state(state);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let stop = async move {
            let _ = shutdown_rx.await;
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = match tls {
            Some(acceptor) => {
                let listener = tls::TlsListener::new(listener, acceptor);
                tokio::spawn(async move {
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::error!(error = %e, "media endpoint listener stopped");
                    }
                })
            }
            None => tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "media endpoint listener stopped");
                }
            }),
        };
        tracing::info!(%local_addr, scheme, "media endpoint listening");
        Ok(MediaEndpoint {
            registry,
            local_addr,
            mp_uri: format!("{scheme}://{local_addr}{base}"),
            shutdown: Some(shutdown_tx),
            server: Some(server),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `mpUri` of this endpoint, `http(s)://ADDR:PORT/MediaProcessor`.
    pub fn mp_uri(&self) -> &str {
        &self.mp_uri
    }

    /// Accepts a leg for session `id`; the returned handle keeps the session registered.
    pub fn register(
        &self,
        id: MediaSessionId,
        hooks: SessionHooks,
    ) -> Result<SessionHandle, RegisterError> {
        self.registry.register(id, hooks)
    }

    /// Stops the listener, ends every leg and waits for the listener to finish.
    pub async fn shutdown(mut self) {
        self.stop();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }

    fn stop(&mut self) {
        self.registry.close_all();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for MediaEndpoint {
    fn drop(&mut self) {
        self.stop();
    }
}
