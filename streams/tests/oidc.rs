//! Push-token verification against a key set served over HTTPS by a local server, with
//! tokens signed here by RSA keys generated for the test (aws-lc-rs signs them, not the
//! crate under test).

#[path = "support/google.rs"]
mod google;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use google::{ACCOUNT, AUDIENCE, JwksServer, SigningKey, claims, now};
use riposte_streams::oidc::{Expected, Verifier};
use riposte_streams::{Error, ErrorKind};
use serde_json::json;

#[tokio::test]
async fn a_push_token_from_the_service_account_is_accepted() {
    let key = SigningKey::generate("google-1");
    let server = JwksServer::start(&[&key], "public, max-age=19330, must-revalidate, no-transform").await;
    let verifier = server.verifier();
    let token = key.token(&claims(|_| {}));
    let identity = verifier.verify_authorization(Some(&format!("Bearer {token}"))).await.unwrap();
    assert_eq!(identity.email, ACCOUNT);
    assert_eq!(identity.subject.as_deref(), Some("113774264463038321964"));
    // Within its max-age the key set is not fetched again.
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn tokens_that_are_not_the_subscriptions_are_refused_with_the_reason() {
    let key = SigningKey::generate("google-1");
    let server = JwksServer::start(&[&key], "max-age=3600").await;
    let verifier = server.verifier();
    let cases = [
        (claims(|c| c["exp"] = (now() - 120).into()), "expired"),
        (claims(|c| c["aud"] = "https://other.example.com/push".into()), "audience"),
        (
            claims(|c| c["email"] = "someone-else@riposte-test.iam.gserviceaccount.com".into()),
            "not the push service account",
        ),
        (claims(|c| c["email_verified"] = false.into()), "not verified"),
        (claims(|c| c["iss"] = "https://login.example.com".into()), "not Google"),
        (claims(|c| c["iat"] = (now() + 600).into()), "in the future"),
    ];
    for (claims, reason) in cases {
        let error = verifier.verify(&key.token(&claims)).await.unwrap_err();
        assert!(error.to_string().contains(reason), "{claims}: {error}");
        assert_eq!(error.kind(), ErrorKind::Unauthenticated);
    }
    assert!(matches!(verifier.verify_authorization(None).await, Err(Error::BearerMissing)));
}

#[tokio::test]
async fn a_forged_signature_or_algorithm_is_refused() {
    let key = SigningKey::generate("google-1");
    let forger = SigningKey::generate("forger");
    let server = JwksServer::start(&[&key], "max-age=3600").await;
    let verifier = server.verifier();

    // Signed by another key under the real key's id.
    let forged = forger.sign(json!({"alg": "RS256", "kid": "google-1"}), &claims(|_| {}));
    assert!(matches!(verifier.verify(&forged).await, Err(Error::TokenSignature)));

    // The real signature over other claims.
    let genuine = key.token(&claims(|_| {}));
    let mut parts: Vec<&str> = genuine.split('.').collect();
    let tampered_claims = URL_SAFE_NO_PAD.encode(claims(|c| c["email"] = "attacker@example.com".into()).to_string());
    parts[1] = &tampered_claims;
    assert!(matches!(verifier.verify(&parts.join(".")).await, Err(Error::TokenSignature)));

    // alg none, and HS256 keyed with the public key (algorithm confusion).
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "google-1"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims(|_| {}).to_string())
    );
    match verifier.verify(&unsigned).await {
        Err(Error::TokenAlgorithm(alg)) => assert_eq!(alg, "none"),
        other => panic!("alg none: {other:?}"),
    }
    let confused = format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "kid": "google-1"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims(|_| {}).to_string())
    );
    assert!(matches!(verifier.verify(&confused).await, Err(Error::TokenAlgorithm(_))));
}

#[tokio::test]
async fn an_unknown_key_fetches_the_rotated_set_but_not_more_than_once_a_second() {
    let old = SigningKey::generate("google-old");
    let new = SigningKey::generate("google-new");
    // Made before the fetches: a key generation takes long enough to outlast the interval.
    let stranger = SigningKey::generate("nobody-has-this");
    let server = JwksServer::start(&[&old], "max-age=3600").await;
    let verifier = server.verifier();
    verifier.verify(&old.token(&claims(|_| {}))).await.unwrap();
    assert_eq!(server.fetches(), 1);

    // Google rotates: the new key is served, the cached set does not have it yet.
    server.serve(&[&new]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&new.token(&claims(|_| {}))).await.unwrap();
    assert_eq!(server.fetches(), 2);

    // Right after a fetch, a key nobody has does not make another one.
    let error = verifier.verify(&stranger.token(&claims(|_| {}))).await.unwrap_err();
    assert!(matches!(&error, Error::TokenKeyUnknown(kid) if kid == "nobody-has-this"), "{error}");
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_stale_set_is_fetched_again_and_kept_when_the_endpoint_fails() {
    let key = SigningKey::generate("google-1");
    let rotated = SigningKey::generate("google-2");
    let server = JwksServer::start(&[&key], "max-age=1").await;
    let verifier = server.verifier();
    let token = key.token(&claims(|_| {}));
    verifier.verify(&token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.unwrap();
    assert_eq!(server.fetches(), 2);

    server.served.lock().unwrap().status = 503;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    verifier.verify(&token).await.expect("the stale keys are kept while the endpoint fails");
    assert_eq!(server.fetches(), 3);

    // A key the stale set lacks may be Google's newest: Pub/Sub is told to retry.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let error = verifier.verify(&rotated.token(&claims(|_| {}))).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Transient, "{error}");
    assert_eq!(server.fetches(), 4);
}

#[tokio::test]
async fn no_key_set_at_all_is_a_transient_error() {
    let key = SigningKey::generate("google-1");
    let server = JwksServer::start(&[&key], "max-age=3600").await;
    server.served.lock().unwrap().status = 500;
    let error = server.verifier().verify(&key.token(&claims(|_| {}))).await.unwrap_err();
    assert!(matches!(error, Error::JwksFetch { .. }) && error.to_string().contains("HTTP 500"), "{error}");
    assert_eq!(error.kind(), ErrorKind::Transient);

    // A server whose certificate chains to no trusted root is not asked at all.
    server.served.lock().unwrap().status = 200;
    let untrusting = Verifier::new(Expected::new(AUDIENCE, ACCOUNT), server.settings(false)).unwrap();
    let error = untrusting.verify(&key.token(&claims(|_| {}))).await.unwrap_err();
    assert!(error.to_string().contains("certificate"), "{error}");
    assert_eq!(server.fetches(), 1);
}
