//! The emulator's identity provider: app registrations, client-credentials access tokens
//! for its Graph API, and RS256-signed tokens on the notifications it sends, with the
//! OpenID configuration and JWKS a bot uses to check them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::{Deserialize, Serialize};

/// Issuer of the tokens on notifications, as the real service's.
pub const CALLBACK_ISSUER: &str = "https://api.botframework.com";
/// Audience of access tokens for the Graph API.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Claim holding the tenant id on notification tokens.
pub const TENANT_CLAIM: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
/// How long issued tokens live, in seconds.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;

/// One app registration: who may ask for tokens, and which application permissions
/// (`roles`) its tokens carry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppRegistration {
    /// The app (client) id.
    pub app_id: String,
    /// The client secret.
    pub secret: String,
    /// The tenant the app belongs to.
    pub tenant_id: String,
    /// Granted application permissions, e.g. `Calls.Initiate.All`.
    pub roles: Vec<String>,
}

impl fmt::Debug for AppRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRegistration")
            .field("app_id", &self.app_id)
            .field("secret", &"<redacted>")
            .field("tenant_id", &self.tenant_id)
            .field("roles", &self.roles)
            .finish()
    }
}

/// Claims of an access token the emulator issues for its Graph API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Audience: [`GRAPH_AUDIENCE`].
    pub aud: String,
    /// Issuer: `https://sts.windows.net/{tenant}/`.
    pub iss: String,
    /// The app id.
    pub appid: String,
    /// The tenant id.
    pub tid: String,
    /// Granted application permissions.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
}

/// Why a token request or an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The client id is not registered or the secret does not match.
    #[error("invalid_client: unknown client id or wrong secret")]
    InvalidClient,
    /// The grant type is not `client_credentials`.
    #[error("unsupported_grant_type: only client_credentials is supported, got `{0}`")]
    UnsupportedGrant(String),
    /// The scope is not `https://graph.microsoft.com/.default`.
    #[error("invalid_scope: expected `https://graph.microsoft.com/.default`")]
    InvalidScope,
    /// A form field is missing.
    #[error("invalid_request: missing `{0}`")]
    MissingField(&'static str),
    /// The tenant in the token URL is not the app's.
    #[error("invalid_request: the app is not registered in tenant `{0}`")]
    WrongTenant(String),
    /// An access token is missing, malformed, expired or not signed by this emulator.
    #[error("invalid token: {0}")]
    InvalidToken(String),
}

/// The emulator's signing key and app registrations.
pub struct Identity {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    modulus: String,
    exponent: String,
    apps: BTreeMap<String, AppRegistration>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("kid", &self.kid)
            .field("apps", &self.apps.values().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Identity {
    /// A fresh 2048-bit RSA signing key and the given app registrations.
    pub fn generate(apps: impl IntoIterator<Item = AppRegistration>) -> Result<Self, rsa::Error> {
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048)?;
        let der = key.to_pkcs1_der().map_err(rsa::Error::from)?;
        let public = key.to_public_key();
        let modulus = URL_SAFE_NO_PAD.encode(public.n_bytes());
        let exponent = URL_SAFE_NO_PAD.encode(public.e_bytes());
        let decoding = DecodingKey::from_rsa_raw_components(&public.n_bytes(), &public.e_bytes());
        let mut kid_bytes = [0u8; 12];
        getrandom::fill(&mut kid_bytes).map_err(|_| rsa::Error::Internal)?;
        Ok(Self {
            kid: URL_SAFE_NO_PAD.encode(kid_bytes),
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            decoding,
            modulus,
            exponent,
            apps: apps.into_iter().map(|a| (a.app_id.clone(), a)).collect(),
        })
    }

    /// The registered apps.
    pub fn apps(&self) -> impl Iterator<Item = &AppRegistration> {
        self.apps.values()
    }

    /// The key id in the JWKS and in every token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Answers a client-credentials token request (the form fields of
    /// `POST /{tenant}/oauth2/v2.0/token`) with a signed access token.
    pub fn issue_access_token(
        &self,
        tenant_in_url: &str,
        form: &BTreeMap<String, String>,
    ) -> Result<String, IdentityError> {
        let field = |name: &'static str| {
            form.get(name)
                .map(String::as_str)
                .ok_or(IdentityError::MissingField(name))
        };
        let grant = field("grant_type")?;
        if grant != "client_credentials" {
            return Err(IdentityError::UnsupportedGrant(
                grant.chars().take(64).collect(),
            ));
        }
        let app = self
            .apps
            .get(field("client_id")?)
            .filter(|a| {
                constant_time_eq(
                    a.secret.as_bytes(),
                    field("client_secret").unwrap_or("").as_bytes(),
                )
            })
            .ok_or(IdentityError::InvalidClient)?;
        field("client_secret")?;
        if field("scope")? != "https://graph.microsoft.com/.default" {
            return Err(IdentityError::InvalidScope);
        }
        if tenant_in_url != app.tenant_id
            && tenant_in_url != "common"
            && tenant_in_url != "organizations"
        {
            return Err(IdentityError::WrongTenant(
                tenant_in_url.chars().take(64).collect(),
            ));
        }
        let now = now_secs();
        let claims = AccessClaims {
            aud: GRAPH_AUDIENCE.into(),
            iss: format!("https://sts.windows.net/{}/", app.tenant_id),
            appid: app.app_id.clone(),
            tid: app.tenant_id.clone(),
            roles: app.roles.clone(),
            iat: now,
            nbf: now,
            exp: now + TOKEN_LIFETIME_SECS,
        };
        Ok(self.sign(&claims))
    }

    /// Checks an access token presented to the Graph API: signed by this emulator with
    /// RS256, audience Graph, not expired, issued to a registered app.
    pub fn verify_access_token(&self, token: &str) -> Result<AccessClaims, IdentityError> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[GRAPH_AUDIENCE]);
        validation.leeway = 60;
        validation.set_required_spec_claims(&["exp", "nbf", "aud", "iss"]);
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map_err(|e| IdentityError::InvalidToken(e.to_string()))?;
        let claims = data.claims;
        match self.apps.get(&claims.appid) {
            Some(app) if app.tenant_id == claims.tid => Ok(claims),
            _ => Err(IdentityError::InvalidToken(
                "the app is not registered".into(),
            )),
        }
    }

    /// A token for the `Authorization` header of a notification to the bot `app_id` of
    /// `tenant_id`: issuer [`CALLBACK_ISSUER`], audience the app id, the tenant claim.
    pub fn callback_token(&self, app_id: &str, tenant_id: &str) -> String {
        let now = now_secs();
        let claims = serde_json::json!({
            "iss": CALLBACK_ISSUER,
            "aud": app_id,
            TENANT_CLAIM: tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECS,
        });
        self.sign(&claims)
    }

    fn sign<T: Serialize>(&self, claims: &T) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        // Signing with a key we generated cannot fail for lack of a valid key; serialization
        // of these plain claim types cannot fail either.
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("RS256 signing with a generated key failed: {e}"))
    }

    /// The JSON Web Key Set with this emulator's public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "RSA",
                "use": "sig",
                "alg": "RS256",
                "kid": self.kid,
                "n": self.modulus,
                "e": self.exponent,
                "endorsements": ["msteams"],
            }]
        })
    }

    /// The OpenID configuration served at `/v1/.well-known/OpenIdConfiguration`, pointing to
    /// the JWKS under `base_url`.
    pub fn openid_configuration(&self, base_url: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": CALLBACK_ISSUER,
            "authorization_endpoint": format!("{base_url}/v1/authorize"),
            "jwks_uri": format!("{base_url}/v1/.well-known/keys"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppRegistration {
        AppRegistration {
            app_id: "app-1".into(),
            secret: "s3cret".into(),
            tenant_id: "tenant-1".into(),
            roles: vec!["Calls.Initiate.All".into()],
        }
    }

    fn form(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn good_form() -> BTreeMap<String, String> {
        form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app-1"),
            ("client_secret", "s3cret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
    }

    #[test]
    fn access_tokens_carry_roles_and_verify() {
        let id = Identity::generate([app()]).unwrap();
        let token = id.issue_access_token("tenant-1", &good_form()).unwrap();
        let claims = id.verify_access_token(&token).unwrap();
        assert_eq!(claims.roles, ["Calls.Initiate.All"]);
        assert_eq!(claims.tid, "tenant-1");
        // Another emulator's key does not verify it.
        let other = Identity::generate([app()]).unwrap();
        assert!(other.verify_access_token(&token).is_err());
        // Tampering breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({"aud": GRAPH_AUDIENCE, "iss": "x", "appid": "app-1",
                "tid": "tenant-1", "roles": ["Calls.AccessMedia.All"], "iat": 0, "nbf": 0, "exp": u64::MAX / 4}))
            .unwrap(),
        );
        parts[1] = &forged_claims;
        assert!(id.verify_access_token(&parts.join(".")).is_err());
    }

    #[test]
    fn bad_token_requests_are_refused() {
        let id = Identity::generate([app()]).unwrap();
        let mut f = good_form();
        f.insert("client_secret".into(), "wrong".into());
        assert_eq!(
            id.issue_access_token("tenant-1", &f),
            Err(IdentityError::InvalidClient)
        );
        let mut f = good_form();
        f.insert("grant_type".into(), "password".into());
        assert!(matches!(
            id.issue_access_token("tenant-1", &f),
            Err(IdentityError::UnsupportedGrant(_))
        ));
        let mut f = good_form();
        f.remove("scope");
        assert_eq!(
            id.issue_access_token("tenant-1", &f),
            Err(IdentityError::MissingField("scope"))
        );
        assert!(matches!(
            id.issue_access_token("tenant-2", &good_form()),
            Err(IdentityError::WrongTenant(_))
        ));
    }

    #[test]
    fn callback_tokens_verify_against_the_jwks() {
        let id = Identity::generate([app()]).unwrap();
        let token = id.callback_token("app-1", "tenant-1");
        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(id.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = DecodingKey::from_jwk(jwk).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.set_audience(&["app-1"]);
        v.set_issuer(&[CALLBACK_ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).unwrap();
        assert_eq!(data.claims[TENANT_CLAIM], "tenant-1");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let id = Identity::generate([app()]).unwrap();
        assert!(!format!("{id:?}").contains("s3cret"));
    }
}
