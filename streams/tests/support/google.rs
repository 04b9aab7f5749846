//! Google's side of a Pub/Sub push, for tests: RSA signing keys generated here (aws-lc-rs
//! signs, not the code under test), push tokens with the claims Pub/Sub puts in them, and an
//! HTTPS server of the key set on 127.0.0.1 with its own CA. Shared by the streams crate's
//! OIDC suite and the operator's Pub/Sub suite (`tests/tests/pubsub.rs`), which each use a
//! part of it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use riposte_streams::oidc::{Expected, JwksSettings, Verifier};
use serde_json::{Value, json};

pub const ACCOUNT: &str = "audit-push@riposte-test.iam.gserviceaccount.com";
pub const AUDIENCE: &str = "https://riposte.example.com/pubsub/audit";

pub struct SigningKey {
    pub kid: String,
    pair: KeyPair,
}

impl SigningKey {
    pub fn generate(kid: &str) -> SigningKey {
        SigningKey { kid: kid.to_string(), pair: KeyPair::generate(KeySize::Rsa2048).expect("an RSA key") }
    }

    pub fn jwk(&self) -> Value {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.pair.public_key());
        json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
               "n": URL_SAFE_NO_PAD.encode(&public.n), "e": URL_SAFE_NO_PAD.encode(&public.e)})
    }

    /// An RS256 JWT of `claims` with `header` (its `kid` this key's unless given).
    pub fn sign(&self, mut header: Value, claims: &Value) -> String {
        header.as_object_mut().unwrap().entry("kid").or_insert_with(|| self.kid.clone().into());
        let message =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message.as_bytes(), &mut signature).expect("signing");
        format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    pub fn token(&self, claims: &Value) -> String {
        self.sign(json!({"alg": "RS256", "typ": "JWT"}), claims)
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims as Pub/Sub push puts them, issued now for an hour, changed by `change`.
pub fn claims(change: impl FnOnce(&mut Value)) -> Value {
    let mut claims = json!({
        "aud": AUDIENCE, "azp": "113774264463038321964", "email": ACCOUNT, "email_verified": true,
        "exp": now() + 3600, "iat": now(), "iss": "https://accounts.google.com", "sub": "113774264463038321964"
    });
    change(&mut claims);
    claims
}

/// What the key set server answers, and how often it was asked.
pub struct Served {
    pub status: u16,
    pub body: String,
    pub cache_control: &'static str,
    pub fetches: usize,
}

/// An HTTPS server of a key set on 127.0.0.1, with its own CA.
pub struct JwksServer {
    pub url: String,
    pub ca_pem: String,
    pub served: Arc<Mutex<Served>>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey], cache_control: &'static str) -> JwksServer {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/oauth2/v3/certs", listener.local_addr().unwrap());
        let served = Arc::new(Mutex::new(Served { status: 200, body: String::new(), cache_control, fetches: 0 }));
        let server = JwksServer { url, ca_pem: ca.pem(), served: served.clone() };
        server.serve(keys);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, served) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = service_fn(move |_request| {
                        let mut served = served.lock().unwrap();
                        served.fetches += 1;
                        let response = hyper::Response::builder()
                            .status(served.status)
                            .header("content-type", "application/json")
                            .header("cache-control", served.cache_control)
                            .body(Full::new(Bytes::from(served.body.clone())));
                        async move { response }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        server
    }

    /// Serves these keys from now on.
    pub fn serve(&self, keys: &[&SigningKey]) {
        let keys: Vec<Value> = keys.iter().map(|key| key.jwk()).collect();
        self.served.lock().unwrap().body = json!({ "keys": keys }).to_string();
    }

    pub fn fetches(&self) -> usize {
        self.served.lock().unwrap().fetches
    }

    pub fn settings(&self, trust_its_ca: bool) -> JwksSettings {
        JwksSettings {
            url: self.url.clone(),
            extra_roots_pem: trust_its_ca.then(|| self.ca_pem.clone().into_bytes()),
            fetch_timeout: Duration::from_secs(5),
            min_refetch_interval: Duration::from_secs(1),
            default_freshness: Duration::from_secs(3600),
        }
    }

    pub fn verifier(&self) -> Verifier {
        Verifier::new(Expected::new(AUDIENCE, ACCOUNT), self.settings(true)).unwrap()
    }
}
