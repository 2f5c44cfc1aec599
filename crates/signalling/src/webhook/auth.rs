//! Validation of the bearer JWT on notification callbacks: RS256 against the keys of an
//! OpenID configuration (cached, refreshed on an unknown `kid`), issuer, audience, lifetime
//! and tenant, with `jsonwebtoken` doing the cryptography and the claim checks.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::token::read_limited;

/// Where the calling service's signing keys are described, by default.
pub const DEFAULT_OPENID_CONFIGURATION: &str =
    "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration";
/// The issuers the calling service signs callbacks as.
pub const DEFAULT_ISSUERS: [&str; 2] = [
    "https://api.botframework.com",
    "https://graph.microsoft.com",
];
/// The claim naming the tenant of a callback.
pub const TENANT_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
/// Longest `Authorization` header accepted.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 * 1024;
/// Longest OpenID configuration or key set read.
const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Most keys kept from a key set.
const MAX_KEYS: usize = 64;

/// Settings of callback authentication.
#[derive(Debug, Clone)]
pub struct CallbackAuthConfig {
    /// The OpenID configuration whose `jwks_uri` lists the signing keys.
    pub openid_configuration_url: String,
    /// Expected audience: the bot's app id.
    pub app_id: String,
    /// Accepted issuers.
    pub issuers: Vec<String>,
    /// Expected tenant; `None` accepts any tenant (the claim must still be there).
    pub tenant: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Shortest time between two key refreshes caused by unknown `kid`s.
    pub min_refresh_interval: Duration,
    /// Keys older than this are fetched again.
    pub max_key_age: Duration,
    /// Timeout of one key fetch.
    pub timeout: Duration,
}

impl CallbackAuthConfig {
    /// Defaults for the calling service and `app_id`.
    pub fn new(app_id: impl Into<String>) -> Self {
        CallbackAuthConfig {
            openid_configuration_url: DEFAULT_OPENID_CONFIGURATION.to_owned(),
            app_id: app_id.into(),
            issuers: DEFAULT_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            tenant: None,
            leeway: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            max_key_age: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// Why a callback's token is refused. Every variant ends in 403.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    Missing,
    /// Not `Bearer <token>`.
    #[error("the Authorization header is not a bearer token")]
    NotBearer,
    /// The header is longer than [`MAX_AUTHORIZATION_BYTES`].
    #[error("the Authorization header is larger than {MAX_AUTHORIZATION_BYTES} bytes")]
    TooLarge,
    /// The token is not a JWT with a readable header.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The header names an algorithm other than RS256.
    #[error("the token is signed with {found:?}, only RS256 is accepted")]
    WrongAlgorithm {
        /// The algorithm named.
        found: Algorithm,
    },
    /// The header has no `kid`.
    #[error("the token header has no `kid`")]
    MissingKeyId,
    /// No key of the configuration has the token's `kid`, even after a refresh.
    #[error("no signing key with the token's `kid`")]
    UnknownKey,
    /// The signing keys could not be fetched.
    #[error("the signing keys could not be fetched: {problem}")]
    Keys {
        /// What went wrong.
        problem: &'static str,
    },
    /// Signature or claims refused by the JWT library.
    #[error("token refused: {kind}")]
    Invalid {
        /// What the library refused (signature, expiry, audience, issuer, ...).
        kind: TokenProblem,
    },
    /// The tenant claim is missing.
    #[error("the token has no tenant claim")]
    MissingTenant,
    /// The tenant claim names another tenant.
    #[error("the token is for another tenant")]
    WrongTenant,
}

/// What the JWT library refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenProblem {
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// Expired (beyond the leeway).
    #[error("expired")]
    Expired,
    /// Not valid yet (beyond the leeway).
    #[error("not valid yet")]
    NotYetValid,
    /// Wrong audience.
    #[error("wrong audience")]
    Audience,
    /// Wrong issuer.
    #[error("wrong issuer")]
    Issuer,
    /// A required claim is missing.
    #[error("a required claim is missing")]
    MissingClaim,
    /// Anything else (malformed claims, wrong key type, ...).
    #[error("malformed")]
    Malformed,
}

/// The claims of a verified callback token that the bot may care about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallbackClaims {
    /// `iss`.
    pub issuer: String,
    /// The tenant claim.
    pub tenant: String,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

/// Verifies callback tokens; cheap to share.
pub struct CallbackAuth {
    config: CallbackAuthConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    refreshing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CallbackAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackAuth")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct OpenIdConfiguration {
    jwks_uri: String,
}

impl CallbackAuth {
    /// A verifier fetching keys with `http`.
    pub fn new(config: CallbackAuthConfig, http: reqwest::Client) -> Self {
        CallbackAuth {
            config,
            http,
            cache: RwLock::new(KeyCache::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CallbackAuthConfig {
        &self.config
    }

    /// Verifies an `Authorization` header value.
    pub async fn verify(&self, authorization: Option<&[u8]>) -> Result<CallbackClaims, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        if header.len() > MAX_AUTHORIZATION_BYTES {
            return Err(AuthError::TooLarge);
        }
        let header = std::str::from_utf8(header).map_err(|_| AuthError::NotBearer)?;
        let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::NotBearer);
        }
        let token = token.trim();
        let jwt_header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        if jwt_header.alg != Algorithm::RS256 {
            return Err(AuthError::WrongAlgorithm {
                found: jwt_header.alg,
            });
        }
        let kid = jwt_header.kid.ok_or(AuthError::MissingKeyId)?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.config.app_id]);
        validation.set_issuer(&self.config.issuers);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let kind = match e.kind() {
                K::InvalidSignature => TokenProblem::Signature,
                K::ExpiredSignature => TokenProblem::Expired,
                K::ImmatureSignature => TokenProblem::NotYetValid,
                K::InvalidAudience => TokenProblem::Audience,
                K::InvalidIssuer => TokenProblem::Issuer,
                K::MissingRequiredClaim(_) => TokenProblem::MissingClaim,
                _ => TokenProblem::Malformed,
            };
            AuthError::Invalid { kind }
        })?;
        let tenant = data.claims[TENANT_CLAIM]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingTenant)?;
        if let Some(expected) = &self.config.tenant
            && !expected.eq_ignore_ascii_case(tenant)
        {
            return Err(AuthError::WrongTenant);
        }
        Ok(CallbackClaims {
            issuer: data.claims["iss"].as_str().unwrap_or_default().to_owned(),
            tenant: tenant.to_owned(),
        })
    }

    fn cached(&self, kid: &str) -> (Option<Arc<DecodingKey>>, bool) {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let fresh = cache
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.config.max_key_age);
        (cache.keys.get(kid).cloned(), fresh)
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let (Some(key), true) = self.cached(kid) {
            return Ok(key);
        }
        // One refresh at a time; whoever waited finds the keys the first one fetched.
        let _guard = self.refreshing.lock().await;
        let (key, fresh) = self.cached(kid);
        if let (Some(key), true) = (&key, fresh) {
            return Ok(key.clone());
        }
        let recently_tried = {
            let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
            cache
                .last_attempt
                .is_some_and(|at| at.elapsed() < self.config.min_refresh_interval)
        };
        // Unknown kids must not let anyone make us hammer the key endpoint.
        if recently_tried {
            return key.ok_or(AuthError::UnknownKey);
        }
        self.cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .last_attempt = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.keys.get(kid).cloned().ok_or(AuthError::UnknownKey)
            }
            // Keys we already had stay usable while the endpoint is down.
            Err(e) => key.ok_or(e),
        }
    }

    async fn get_json(&self, url: &str) -> Result<Value, AuthError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(AuthError::Keys {
                problem: "the URL is not http(s)",
            });
        }
        let response = self
            .http
            .get(url)
            .timeout(self.config.timeout)
            .send()
            .await
            .map_err(|_| AuthError::Keys {
                problem: "the key endpoint is unreachable",
            })?;
        if !response.status().is_success() {
            return Err(AuthError::Keys {
                problem: "the key endpoint answered with an error",
            });
        }
        let bytes = read_limited(response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(|_| AuthError::Keys {
                problem: "the document could not be read or is too large",
            })?;
        serde_json::from_slice(&bytes).map_err(|_| AuthError::Keys {
            problem: "the document is not JSON",
        })
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, Arc<DecodingKey>>, AuthError> {
        let config: OpenIdConfiguration =
            serde_json::from_value(self.get_json(&self.config.openid_configuration_url).await?)
                .map_err(|_| AuthError::Keys {
                    problem: "the OpenID configuration has no `jwks_uri`",
                })?;
        let set = self.get_json(&config.jwks_uri).await?;
        let Some(list) = set["keys"].as_array() else {
            return Err(AuthError::Keys {
                problem: "the key set has no `keys` array",
            });
        };
        // Keys are read one by one: one of a kind this library does not know must not hide
        // the others.
        let keys: HashMap<String, Arc<DecodingKey>> = list
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter(|jwk| {
                matches!(
                    jwk.algorithm,
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                )
            })
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(&jwk).ok().map(|k| (kid, Arc::new(k)))
            })
            .take(MAX_KEYS)
            .collect();
        if keys.is_empty() {
            return Err(AuthError::Keys {
                problem: "the key set has no usable RSA key",
            });
        }
        Ok(keys)
    }
}
