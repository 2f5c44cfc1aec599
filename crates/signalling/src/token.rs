//! Access tokens for the Graph API: OAuth2 client credentials against a configurable
//! authority, cached and refreshed ahead of expiry, one refresh at a time; or a static token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

/// The Microsoft identity platform, `{tenant}` replaced by the tenant id.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token";
/// The scope of a Graph application token.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// A token is refreshed when it has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// Longest token response read.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// A secret string (an app secret, an access token): `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        SecretString(secret.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretString(<redacted, {} bytes>)", self.0.len())
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        SecretString(value.to_owned())
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

/// An access token and when it stops being usable.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The bearer token.
    pub token: SecretString,
    /// When it expires (`None`: never, for static tokens).
    pub expires_at: Option<Instant>,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint unreachable: {source}")]
    Transport {
        /// What the HTTP client said.
        #[source]
        source: Arc<reqwest::Error>,
    },
    /// The token endpoint refused (`invalid_client`, `invalid_scope`, ...).
    #[error("token endpoint refused with HTTP {status}: {code}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// HTTP status.
        status: u16,
        /// OAuth2 `error` (empty when the body had none).
        code: String,
        /// OAuth2 `error_description`, if any.
        description: Option<String>,
    },
    /// The token endpoint answered 2xx with a body that is not a token response.
    #[error("token endpoint answered with an unusable body: {problem}")]
    BadResponse {
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The authority URL is not usable.
    #[error("authority URL is invalid: {0}")]
    InvalidAuthority(&'static str),
}

impl TokenError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            TokenError::Transport { .. } => true,
            TokenError::Refused { status, .. } => *status == 429 || *status >= 500,
            TokenError::BadResponse { .. } | TokenError::InvalidAuthority(_) => false,
        }
    }
}

/// The future a [`TokenProvider`] returns.
pub type TokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, TokenError>> + Send + 'a>>;

/// Something that hands out Graph access tokens.
pub trait TokenProvider: Send + Sync + fmt::Debug + 'static {
    /// A token valid for a while; cached by the implementation.
    fn token(&self) -> TokenFuture<'_>;

    /// Forgets the cached token (the API refused it as expired or revoked).
    fn invalidate(&self) {}
}

/// A fixed token, for tests and for tokens obtained elsewhere.
#[derive(Debug, Clone)]
pub struct StaticToken(SecretString);

impl StaticToken {
    /// A provider that always returns `token`.
    pub fn new(token: impl Into<SecretString>) -> Self {
        StaticToken(token.into())
    }
}

impl TokenProvider for StaticToken {
    fn token(&self) -> TokenFuture<'_> {
        let token = AccessToken {
            token: self.0.clone(),
            expires_at: None,
        };
        Box::pin(async move { Ok(token) })
    }
}

/// OAuth2 client credentials settings.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    /// The token endpoint; `{tenant}` in it is replaced by [`Self::tenant`].
    pub authority: String,
    /// Tenant id.
    pub tenant: String,
    /// Application (client) id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
    /// Scope asked for.
    pub scope: String,
    /// Timeout of one token request.
    pub timeout: Duration,
}

impl ClientCredentials {
    /// Settings for the Microsoft identity platform and the Graph scope.
    pub fn new(
        tenant: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<SecretString>,
    ) -> Self {
        ClientCredentials {
            authority: DEFAULT_AUTHORITY.to_owned(),
            tenant: tenant.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scope: GRAPH_SCOPE.to_owned(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Uses another token endpoint (`{tenant}` is substituted).
    pub fn with_authority(mut self, authority: impl Into<String>) -> Self {
        self.authority = authority.into();
        self
    }

    fn token_url(&self) -> Result<String, TokenError> {
        let url = self.authority.replace("{tenant}", &self.tenant);
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(TokenError::InvalidAuthority("it must be an http(s) URL"));
        }
        Ok(url)
    }
}

/// Client-credentials token provider: one cached token, refreshed [`REFRESH_MARGIN`] before
/// expiry; concurrent callers share one refresh.
#[derive(Debug)]
pub struct ClientCredentialsProvider {
    settings: ClientCredentials,
    http: reqwest::Client,
    cached: Mutex<Option<AccessToken>>,
    invalidated: std::sync::atomic::AtomicBool,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
    error_description: Option<String>,
}

impl ClientCredentialsProvider {
    /// A provider using `http` for its requests.
    pub fn new(settings: ClientCredentials, http: reqwest::Client) -> Self {
        ClientCredentialsProvider {
            settings,
            http,
            cached: Mutex::new(None),
            invalidated: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn usable(token: &AccessToken, now: Instant) -> bool {
        token
            .expires_at
            .is_none_or(|at| at.saturating_duration_since(now) > REFRESH_MARGIN)
    }

    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let url = self.settings.token_url()?;
        let started = Instant::now();
        let response = self
            .http
            .post(&url)
            .timeout(self.settings.timeout)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.settings.client_id.as_str()),
                ("client_secret", self.settings.client_secret.expose()),
                ("scope", self.settings.scope.as_str()),
            ])
            .send()
            .await
            .map_err(|e| TokenError::Transport {
                source: Arc::new(e.without_url()),
            })?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_TOKEN_RESPONSE_BYTES)
            .await
            .map_err(|e| match e {
                Some(e) => TokenError::Transport {
                    source: Arc::new(e.without_url()),
                },
                None => TokenError::BadResponse {
                    problem: "the body is too large",
                },
            })?;
        if !(200..300).contains(&status) {
            let parsed: Option<OAuthError> = serde_json::from_slice(&body).ok();
            return Err(TokenError::Refused {
                status,
                code: parsed
                    .as_ref()
                    .and_then(|p| p.error.clone())
                    .unwrap_or_default(),
                description: parsed.and_then(|p| p.error_description),
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| TokenError::BadResponse {
                problem: "the body is not a JSON token response",
            })?;
        let token =
            parsed
                .access_token
                .filter(|t| !t.is_empty())
                .ok_or(TokenError::BadResponse {
                    problem: "`access_token` is missing",
                })?;
        // Some endpoints send `expires_in` as a string.
        let lifetime = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or(TokenError::BadResponse {
            problem: "`expires_in` is missing or not a number of seconds",
        })?;
        Ok(AccessToken {
            token: SecretString(token),
            // Counted from when the request started: the token may have been issued then.
            expires_at: Some(started + Duration::from_secs(lifetime.min(86_400 * 365))),
        })
    }
}

impl TokenProvider for ClientCredentialsProvider {
    fn token(&self) -> TokenFuture<'_> {
        Box::pin(async move {
            // Holding the lock across the refresh is what makes concurrent callers wait for
            // the one request in flight instead of each sending their own.
            let mut cached = self.cached.lock().await;
            let invalidated = self
                .invalidated
                .swap(false, std::sync::atomic::Ordering::AcqRel);
            if let Some(token) = cached.as_ref().filter(|_| !invalidated)
                && Self::usable(token, Instant::now())
            {
                return Ok(token.clone());
            }
            let fresh = self.fetch().await?;
            *cached = Some(fresh.clone());
            Ok(fresh)
        })
    }

    fn invalidate(&self) {
        self.invalidated
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// Reads a response body up to `limit` bytes. `Err(None)`: longer than that.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, Option<reqwest::Error>> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Some)? {
        if out.len() + chunk.len() > limit {
            return Err(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let creds = ClientCredentials::new("tenant", "app", "hunter2-very-secret");
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let provider = StaticToken::new("eyJ.secret.token");
        assert!(!format!("{provider:?}").contains("secret"));
    }

    #[test]
    fn authority_substitutes_the_tenant() {
        let creds = ClientCredentials::new("t1", "app", "s");
        assert_eq!(
            creds.token_url().unwrap(),
            "https://login.microsoftonline.com/t1/oauth2/v2.0/token"
        );
        let bad = creds.with_authority("ftp://x/{tenant}");
        assert!(matches!(
            bad.token_url(),
            Err(TokenError::InvalidAuthority(_))
        ));
    }

    #[test]
    fn tokens_near_expiry_are_not_usable() {
        let now = Instant::now();
        let fresh = AccessToken {
            token: "a".into(),
            expires_at: Some(now + Duration::from_secs(3600)),
        };
        let stale = AccessToken {
            token: "a".into(),
            expires_at: Some(now + Duration::from_secs(60)),
        };
        assert!(ClientCredentialsProvider::usable(&fresh, now));
        assert!(!ClientCredentialsProvider::usable(&stale, now));
    }
}
