//! Attacks on the emulator's Graph API with forged or mangled access tokens: each is
//! refused with 401 in Graph's error envelope and creates no call. (Claims of tokens signed
//! with the emulator's own key, such as expiry, are checked by the identity's unit tests:
//! only the emulator holds that key.)

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use emulator::identity::{AppRegistration, Identity};
use emulator::scenario::{DEFAULT_APP_ID, DEFAULT_TENANT, Scenario};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::collections::BTreeMap;

mod common;
use common::{app_token, call_to_john, http_client, start_emulator};

fn part(token: &str, i: usize) -> &str {
    token.split('.').nth(i).unwrap_or("")
}

fn decode(segment: &str) -> Value {
    serde_json::from_slice(&B64.decode(segment).expect("base64url")).expect("JSON")
}

fn encode(v: &Value) -> String {
    B64.encode(v.to_string())
}

#[tokio::test]
async fn forged_and_mangled_tokens_get_401_and_create_nothing() {
    let emu = start_emulator(Scenario::default()).await;
    let http = http_client();
    let good = app_token(&http, &emu).await;
    let claims = decode(part(&good, 1));
    let header = decode(part(&good, 0));
    let url = format!("{}/communications/calls", emu.graph_url());
    let body = call_to_john(json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    }));

    let mut cases: Vec<(&str, String)> = Vec::new();
    // alg: none with the real claims and no signature.
    let none = json!({ "alg": "none", "typ": "JWT", "kid": header["kid"] });
    cases.push(("alg none", format!("{}.{}.", encode(&none), part(&good, 1))));
    // The real token with its signature altered, or removed.
    let mut sig = B64.decode(part(&good, 2)).expect("signature");
    sig[10] ^= 0x01;
    cases.push((
        "bad signature",
        format!("{}.{}.{}", part(&good, 0), part(&good, 1), B64.encode(&sig)),
    ));
    cases.push((
        "signature removed",
        format!("{}.{}.", part(&good, 0), part(&good, 1)),
    ));
    // The real signature over changed claims: another tenant, another audience, another
    // issuer, an expiry in the past, a start in the future, more roles.
    let now = claims["iat"].as_u64().unwrap_or(0);
    for (name, field, value) in [
        (
            "another tenant",
            "tid",
            json!("11111111-2222-3333-4444-555555555555"),
        ),
        ("wrong audience", "aud", json!("https://evil.example.com")),
        (
            "wrong issuer",
            "iss",
            json!("https://sts.evil.example.com/"),
        ),
        ("expired", "exp", json!(now.saturating_sub(7_200))),
        ("not yet valid", "nbf", json!(now + 7_200)),
        (
            "more roles",
            "roles",
            json!(["Calls.Initiate.All", "Admin.All"]),
        ),
    ] {
        let mut c = claims.clone();
        c[field] = value;
        cases.push((
            name,
            format!("{}.{}.{}", part(&good, 0), encode(&c), part(&good, 2)),
        ));
    }
    // HS256 keyed with the public key (algorithm confusion): with the JWKS text and with
    // the modulus bytes as the HMAC secret.
    let openid: Value = http
        .get(emu.openid_configuration_url())
        .send()
        .await
        .expect("openid")
        .json()
        .await
        .expect("openid JSON");
    let jwks_text = http
        .get(openid["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .text()
        .await
        .expect("jwks text");
    let jwks: Value = serde_json::from_str(&jwks_text).expect("jwks JSON");
    let modulus = B64
        .decode(jwks["keys"][0]["n"].as_str().expect("n"))
        .expect("modulus");
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = header["kid"].as_str().map(str::to_owned);
    for (name, secret) in [
        ("HS256 keyed with the JWKS", jwks_text.as_bytes().to_vec()),
        ("HS256 keyed with the modulus", modulus),
    ] {
        let t = jsonwebtoken::encode(
            &hs,
            &claims,
            &EncodingKey::from_secret(&secret).expect("HMAC key"),
        )
        .expect("HS256 token");
        cases.push((name, t));
    }
    // A well-formed RS256 token from another identity provider (another key).
    let other = Identity::generate([AppRegistration {
        app_id: DEFAULT_APP_ID.into(),
        secret: "x".into(),
        tenant_id: DEFAULT_TENANT.into(),
        roles: vec!["Calls.Initiate.All".into()],
    }])
    .expect("other identity");
    let form: BTreeMap<String, String> = [
        ("grant_type", "client_credentials"),
        ("client_id", DEFAULT_APP_ID),
        ("client_secret", "x"),
        ("scope", "https://graph.microsoft.com/.default"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    cases.push((
        "another issuer's key",
        other
            .issue_access_token(DEFAULT_TENANT, &form)
            .expect("other token"),
    ));
    // Oversized: a token far beyond any real one.
    cases.push(("oversized", format!("{good}{}", "A".repeat(20_000))));

    for (name, t) in cases {
        let r = http
            .post(&url)
            .bearer_auth(&t)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        // 431: the HTTP layer refuses a header that large before the API sees it.
        assert!(matches!(status, 401 | 431), "{name}: {status}");
        if status == 401 {
            let e: Value = r.json().await.expect("Graph error JSON");
            assert_eq!(
                e["error"]["code"], "InvalidAuthenticationToken",
                "{name}: {e}"
            );
            assert!(e["error"]["innerError"]["request-id"].is_string(), "{name}");
        }
    }
    // Authentication comes before the body is read, so nothing was created; the good
    // token still works.
    let r = http
        .post(&url)
        .bearer_auth(&good)
        .json(&body)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 201, "the good token is accepted");
    emu.shutdown().await;
}
