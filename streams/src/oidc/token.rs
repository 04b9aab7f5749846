//! The verification of one token against a key set, with no I/O and the time given.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::Error;

/// The issuers of Google-signed OIDC tokens (Google's doc names both forms).
pub const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// What a push request's token must say to be accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The token's `aud`: the push endpoint's URL, unless the subscription sets a custom
    /// audience (`--push-auth-token-audience`).
    pub audience: String,
    /// The service account the subscription signs as (`--push-auth-service-account`): the
    /// token's `email`, which must also be verified.
    pub service_account_email: String,
    /// The clock difference allowed on `exp` and `iat`.
    pub leeway: Duration,
}

impl Expected {
    /// Expects tokens for `audience` from `service_account_email`, with 30 s of leeway.
    pub fn new(audience: impl Into<String>, service_account_email: impl Into<String>) -> Expected {
        Expected {
            audience: audience.into(),
            service_account_email: service_account_email.into(),
            leeway: Duration::from_secs(30),
        }
    }
}

/// Who a verified push request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushIdentity {
    /// The service account's email (the expected one).
    pub email: String,
    /// The service account's unique id (`sub`), when the token has one.
    pub subject: Option<String>,
    /// The token's `iat`.
    pub issued_at: SystemTime,
    /// The token's `exp`: the request's authentication is not valid after it.
    pub expires_at: SystemTime,
}

/// The RS256 signing keys of a JWKS, by key id.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl KeySet {
    /// Reads a JWKS document; keys that cannot verify RS256 signatures (another type or
    /// algorithm, an encryption key, no `kid`) are left out.
    pub fn from_json(json: &[u8]) -> Result<KeySet, Error> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|error| Error::JwksInvalid(error.to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = &jwk.common.key_id else { continue };
            let rs256 = matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
                && jwk.common.key_algorithm.is_none_or(|algorithm| algorithm == KeyAlgorithm::RS256)
                && jwk.common.public_key_use.as_ref().is_none_or(|usage| *usage == PublicKeyUse::Signature);
            if !rs256 {
                continue;
            }
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(kid.clone(), key);
                }
                Err(error) => tracing::warn!(kid, %error, "leaving out a JWKS key that cannot be read"),
            }
        }
        Ok(KeySet { keys })
    }

    /// The key ids in the set, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }
}

/// The token of an `Authorization` header's value: `Bearer <token>`, the scheme in any case.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, Error> {
    let value = authorization.ok_or(Error::BearerMissing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(Error::BearerMissing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(Error::BearerMissing);
    }
    Ok(token)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Several(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    aud: Audience,
    exp: u64,
    iat: u64,
    email: Option<String>,
    email_verified: Option<bool>,
    sub: Option<String>,
}

/// Verifies a Pub/Sub push token: an RS256 JWT signed by a key of `keys`, issued by Google
/// for `expected.audience` to the verified email `expected.service_account_email`, and
/// valid at `now` (within the leeway). [`Error::TokenKeyUnknown`] says the key set may be
/// out of date.
pub fn verify(token: &str, keys: &KeySet, expected: &Expected, now: SystemTime) -> Result<PushIdentity, Error> {
    let header = token.split('.').next().unwrap_or_default();
    let header = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|error| Error::TokenMalformed(format!("header: {error}")))
        .and_then(|json| {
            serde_json::from_slice::<Header>(&json).map_err(|error| Error::TokenMalformed(format!("header: {error}")))
        })?;
    if header.alg != "RS256" {
        return Err(Error::TokenAlgorithm(header.alg));
    }
    let kid = header.kid.ok_or(Error::TokenKeyIdMissing)?;
    let key = keys.keys.get(&kid).ok_or(Error::TokenKeyUnknown(kid))?;

    // The signature only: the claims are checked below against the time given.
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
        .map_err(|error| match error.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => Error::TokenSignature,
            _ => Error::TokenMalformed(error.to_string()),
        })?
        .claims;
    check_claims(claims, expected, now)
}

fn check_claims(claims: Claims, expected: &Expected, now: SystemTime) -> Result<PushIdentity, Error> {
    if !GOOGLE_ISSUERS.contains(&claims.iss.as_str()) {
        return Err(Error::TokenIssuer(claims.iss));
    }
    let audiences = match claims.aud {
        Audience::One(audience) => vec![audience],
        Audience::Several(audiences) => audiences,
    };
    if !audiences.contains(&expected.audience) {
        return Err(Error::TokenAudience { got: audiences, expected: expected.audience.clone() });
    }
    let expires_at = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp);
    let issued_at = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.iat);
    if expires_at + expected.leeway <= now {
        return Err(Error::TokenExpired { expired_at: expires_at });
    }
    if issued_at > now + expected.leeway {
        return Err(Error::TokenIssuedInFuture { issued_at });
    }
    if claims.email_verified != Some(true) {
        return Err(Error::TokenEmailNotVerified);
    }
    match claims.email {
        Some(email) if email.eq_ignore_ascii_case(&expected.service_account_email) => {
            Ok(PushIdentity { email, subject: claims.sub, issued_at, expires_at })
        }
        got => Err(Error::TokenEmail { got, expected: expected.service_account_email.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCOUNT: &str = "audit-push@riposte-test.iam.gserviceaccount.com";
    const AUDIENCE: &str = "https://riposte.example.com/pubsub/audit";

    fn claims(change: impl FnOnce(&mut serde_json::Value)) -> Claims {
        let mut value = serde_json::json!({
            "aud": AUDIENCE, "azp": "113774264463038321964", "email": ACCOUNT,
            "email_verified": true, "exp": 1_800_003_600, "iat": 1_800_000_000,
            "iss": "https://accounts.google.com", "sub": "113774264463038321964"
        });
        change(&mut value);
        serde_json::from_value(value).unwrap()
    }

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn check(claims: Claims, now: u64) -> Result<PushIdentity, Error> {
        check_claims(claims, &Expected::new(AUDIENCE, ACCOUNT), at(now))
    }

    #[test]
    fn googles_documented_claims_are_accepted() {
        let identity = check(claims(|_| {}), 1_800_000_100).unwrap();
        assert_eq!(identity.email, ACCOUNT);
        assert_eq!(identity.subject.as_deref(), Some("113774264463038321964"));
        assert_eq!(identity.expires_at, at(1_800_003_600));
        let bare_issuer = claims(|c| c["iss"] = "accounts.google.com".into());
        assert!(check(bare_issuer, 1_800_000_100).is_ok());
        let audiences = claims(|c| c["aud"] = serde_json::json!(["other", AUDIENCE]));
        assert!(check(audiences, 1_800_000_100).is_ok());
    }

    #[test]
    fn time_is_checked_with_the_leeway() {
        assert!(check(claims(|_| {}), 1_800_003_600 + 29).is_ok());
        assert!(matches!(check(claims(|_| {}), 1_800_003_600 + 30), Err(Error::TokenExpired { .. })));
        assert!(check(claims(|_| {}), 1_800_000_000 - 30).is_ok());
        assert!(matches!(check(claims(|_| {}), 1_800_000_000 - 31), Err(Error::TokenIssuedInFuture { .. })));
    }

    #[test]
    fn each_claim_that_is_not_the_expected_one_is_named() {
        let now = 1_800_000_100;
        let cases: [(Claims, &str); 5] = [
            (claims(|c| c["iss"] = "https://evil.example.com".into()), "issued by \"https://evil.example.com\""),
            (claims(|c| c["aud"] = "https://other.example.com".into()), "audience [\"https://other.example.com\"]"),
            (claims(|c| c["email_verified"] = false.into()), "not verified"),
            (claims(|c| c["email"] = "someone@example.com".into()), "for Some(\"someone@example.com\")"),
            (
                claims(|c| {
                    c.as_object_mut().unwrap().remove("email_verified");
                }),
                "not verified",
            ),
        ];
        for (claims, expected) in cases {
            let error = check(claims, now).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(error.kind(), crate::ErrorKind::Unauthenticated);
        }
    }

    #[test]
    fn the_bearer_token_is_taken_from_the_header() {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi")).unwrap(), "abc.def.ghi");
        assert_eq!(bearer_token(Some("bearer  abc")).unwrap(), "abc");
        for refused in [None, Some(""), Some("Basic abc"), Some("Bearer "), Some("abc")] {
            assert!(matches!(bearer_token(refused), Err(Error::BearerMissing)), "{refused:?}");
        }
    }

    #[test]
    fn a_header_that_is_not_rs256_is_refused_before_any_key_is_looked_up() {
        let keys = KeySet::default();
        let expected = Expected::new(AUDIENCE, ACCOUNT);
        let header = |json: &str| format!("{}.e30.", URL_SAFE_NO_PAD.encode(json));
        let cases = [
            (header(r#"{"alg":"none","typ":"JWT"}"#), "signed with \"none\""),
            (header(r#"{"alg":"HS256","kid":"k"}"#), "signed with \"HS256\""),
            (header(r#"{"alg":"RS256"}"#), "names no key"),
            (header(r#"{"alg":"RS256","kid":"k"}"#), "key \"k\" is not in the key set"),
            ("not a token".to_string(), "not a JWT"),
        ];
        for (token, expected_message) in cases {
            let error = verify(&token, &keys, &expected, at(0)).unwrap_err();
            assert!(error.to_string().contains(expected_message), "{token}: {error}");
        }
    }

    #[test]
    fn keys_that_cannot_verify_rs256_are_left_out_of_the_set() {
        let modulus = URL_SAFE_NO_PAD.encode([0xc5; 256]);
        let keys = KeySet::from_json(
            serde_json::json!({"keys": [
                {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "google-1", "n": modulus, "e": "AQAB"},
                {"kty": "RSA", "kid": "no-alg", "n": modulus, "e": "AQAB"},
                {"kty": "RSA", "alg": "RS256", "use": "enc", "kid": "encryption", "n": modulus, "e": "AQAB"},
                {"kty": "RSA", "alg": "RS512", "kid": "rs512", "n": modulus, "e": "AQAB"},
                {"kty": "RSA", "alg": "RS256", "n": modulus, "e": "AQAB"},
                {"kty": "EC", "crv": "P-256", "kid": "ec", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
            ]})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(keys.key_ids(), ["google-1", "no-alg"]);
        assert!(matches!(KeySet::from_json(b"{\"kty\":\"RSA\"}"), Err(Error::JwksInvalid(_))));
    }
}
