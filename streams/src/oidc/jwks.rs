//! The key set, fetched over HTTPS and kept as long as its `Cache-Control` allows.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::token::{Expected, KeySet, PushIdentity, bearer_token, verify};
use crate::Error;

/// Google's key set for the OIDC tokens it signs, Pub/Sub push tokens included.
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";

/// Key sets are a few kilobytes; more is not a key set.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// A key set is kept at most this long whatever its `Cache-Control` says.
const MAX_FRESHNESS: Duration = Duration::from_secs(24 * 3600);

/// Where the keys come from and how often they may be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// An `https://` URL.
    pub url: String,
    /// PEM certificates trusted beside the built-in Mozilla roots (an endpoint with a
    /// private CA); none for Google.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// How long one fetch may take, connection and TLS included.
    pub fetch_timeout: Duration,
    /// A token with an unknown key makes the set be fetched again (the keys were rotated),
    /// but not sooner than this after the previous fetch, so forged key ids cannot make
    /// every request a fetch.
    pub min_refetch_interval: Duration,
    /// How long a key set is kept when its response has no `max-age`.
    pub default_freshness: Duration,
}

impl JwksSettings {
    /// Google's key set: fetched within 10 s, again at most every 30 s for unknown keys,
    /// kept for 1 h without a `max-age`.
    pub fn google() -> JwksSettings {
        JwksSettings {
            url: GOOGLE_JWKS_URL.to_string(),
            extra_roots_pem: None,
            fetch_timeout: Duration::from_secs(10),
            min_refetch_interval: Duration::from_secs(30),
            default_freshness: Duration::from_secs(3600),
        }
    }
}

/// Verifies Pub/Sub push requests: their tokens against the expected claims, with the key
/// set fetched when needed. Share one per endpoint (it is `Sync`): it holds the cache.
pub struct Verifier {
    expected: Expected,
    settings: JwksSettings,
    url: http::Uri,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cache: Mutex<Option<Cached>>,
    /// One fetch at a time; the others wait for its result.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    keys: Arc<KeySet>,
    /// When the set was last fetched (or a fetch last failed, for a stale set kept).
    checked_at: Instant,
    fresh_for: Duration,
    /// Why the last fetch failed, for a stale set kept.
    fetch_failure: Option<String>,
}

impl Verifier {
    /// A verifier expecting `expected` of tokens, with keys from `jwks`; nothing is fetched
    /// until the first token.
    pub fn new(expected: Expected, jwks: JwksSettings) -> Result<Verifier, Error> {
        let invalid_url = |reason: &str| Error::JwksUrl { url: jwks.url.clone(), reason: reason.to_string() };
        let url: http::Uri =
            jwks.url.parse().map_err(|error: http::uri::InvalidUri| invalid_url(&error.to_string()))?;
        if url.scheme_str() != Some("https") || url.host().is_none() {
            return Err(invalid_url("not an https:// URL with a host"));
        }
        let mut roots = crate::roots::mozilla_root_store();
        if let Some(pem) = &jwks.extra_roots_pem {
            let certificates = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| Error::JwksRoots(error.to_string()))?;
            if certificates.is_empty() {
                return Err(Error::JwksRoots("no certificate in the PEM given".to_string()));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|error| Error::JwksRoots(error.to_string()))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| Error::JwksRoots(error.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        Ok(Verifier {
            expected,
            settings: jwks,
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cache: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Verifies the `Authorization` header of a push request (see [`Verifier::verify`]).
    pub async fn verify_authorization(&self, authorization: Option<&str>) -> Result<PushIdentity, Error> {
        self.verify(bearer_token(authorization)?).await
    }

    /// Verifies a push request's token. The key set is fetched when none is cached or the
    /// cached one is stale, and again when the token names an unknown key (at most every
    /// `min_refetch_interval`). A stale set is kept when fetching fails. [`Error::JwksFetch`]
    /// (transient: answer 503, and Pub/Sub retries) says there is no set at all, or that the
    /// token's key is not in a set that could not be fetched again.
    pub async fn verify(&self, token: &str) -> Result<PushIdentity, Error> {
        let cached = match self.cached() {
            Some(cached) if is_fresh(&cached, Instant::now()) => cached,
            stale => self.refresh(stale).await?,
        };
        let (cached, verified) = match verify(token, &cached.keys, &self.expected, SystemTime::now()) {
            Err(Error::TokenKeyUnknown(kid))
                if may_refetch(&cached, Instant::now(), self.settings.min_refetch_interval) =>
            {
                tracing::info!(kid, "a push token names an unknown key; fetching the key set again");
                let refreshed = self.refresh(Some(cached)).await?;
                let verified = verify(token, &refreshed.keys, &self.expected, SystemTime::now());
                (refreshed, verified)
            }
            verified => (cached, verified),
        };
        match (verified, &cached.fetch_failure) {
            // The key may be a new one of Google's: without its set, Pub/Sub must retry.
            (Err(Error::TokenKeyUnknown(_)), Some(reason)) => {
                Err(Error::JwksFetch { url: self.settings.url.clone(), reason: reason.clone() })
            }
            (verified, _) => verified,
        }
    }

    fn cached(&self) -> Option<Cached> {
        self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Fetches the set unless another task did since `seen` was read. When the fetch fails,
    /// `seen` is kept, with the failure, and not fetched again for `min_refetch_interval`.
    async fn refresh(&self, seen: Option<Cached>) -> Result<Cached, Error> {
        let _fetching = self.fetching.lock().await;
        if let Some(current) = self.cached()
            && seen.as_ref().is_none_or(|seen| current.checked_at > seen.checked_at)
        {
            return Ok(current);
        }
        let cached = match self.fetch().await {
            Ok((keys, fresh_for)) => {
                tracing::debug!(keys = ?keys.key_ids(), ?fresh_for, "fetched the JWKS");
                Cached { keys: Arc::new(keys), checked_at: Instant::now(), fresh_for, fetch_failure: None }
            }
            Err(error) => {
                let Some(stale) = seen else { return Err(error) };
                tracing::warn!(%error, "fetching the JWKS failed; keeping the keys fetched before");
                Cached {
                    keys: stale.keys,
                    checked_at: Instant::now(),
                    fresh_for: self.settings.min_refetch_interval,
                    fetch_failure: Some(error.to_string()),
                }
            }
        };
        *self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(cached.clone());
        Ok(cached)
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), Error> {
        let failed = |reason: String| Error::JwksFetch { url: self.settings.url.clone(), reason };
        let request = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .expect("a GET of a valid URL is a valid request");
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| failed(error_chain(&error)))?;
            if response.status() != http::StatusCode::OK {
                return Err(failed(format!("HTTP {}", response.status())));
            }
            let header =
                |name: http::header::HeaderName| response.headers().get(name).and_then(|value| value.to_str().ok());
            let fresh_for = freshness(
                header(http::header::CACHE_CONTROL),
                header(http::header::AGE),
                self.settings.default_freshness,
            );
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|error| failed(format!("reading the body: {error}")))?
                .to_bytes();
            Ok((KeySet::from_json(&body)?, fresh_for))
        };
        tokio::time::timeout(self.settings.fetch_timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(failed(format!("no answer within {:?}", self.settings.fetch_timeout))))
    }
}

/// An error and its causes, which hyper's client errors keep the useful part in.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

fn is_fresh(cached: &Cached, now: Instant) -> bool {
    now < cached.checked_at + cached.fresh_for
}

fn may_refetch(cached: &Cached, now: Instant, min_interval: Duration) -> bool {
    now >= cached.checked_at + min_interval
}

/// How long a response may be kept: its `max-age` less its `Age`, `default` without a
/// `max-age`, nothing with `no-store` or `no-cache`, at most a day.
fn freshness(cache_control: Option<&str>, age: Option<&str>, default: Duration) -> Duration {
    let mut max_age = None;
    for directive in cache_control.unwrap_or_default().split(',').map(str::trim) {
        let (name, value) = directive.split_once('=').unwrap_or((directive, ""));
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "no-cache" => return Duration::ZERO,
            "max-age" => max_age = value.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs),
            _ => {}
        }
    }
    let age = age.and_then(|age| age.trim().parse::<u64>().ok()).map(Duration::from_secs).unwrap_or_default();
    max_age.map_or(default, |max_age| max_age.saturating_sub(age)).min(MAX_FRESHNESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_follows_cache_control_and_age() {
        let hour = Duration::from_secs(3600);
        let google = "public, max-age=19330, must-revalidate, no-transform";
        assert_eq!(freshness(Some(google), None, hour), Duration::from_secs(19330));
        assert_eq!(freshness(Some(google), Some("330"), hour), Duration::from_secs(19000));
        assert_eq!(freshness(Some("MAX-AGE=60"), Some("90"), hour), Duration::ZERO);
        assert_eq!(freshness(Some("public"), None, hour), hour);
        assert_eq!(freshness(None, None, hour), hour);
        assert_eq!(freshness(Some("max-age=600, no-cache"), None, hour), Duration::ZERO);
        assert_eq!(freshness(Some("max-age=99999999"), None, hour), MAX_FRESHNESS);
        assert_eq!(freshness(Some("max-age=soon"), None, hour), hour);
    }

    #[test]
    fn a_set_is_fetched_again_when_stale_or_for_an_unknown_key_after_the_interval() {
        let start = Instant::now();
        let cached = Cached {
            keys: Arc::default(),
            checked_at: start,
            fresh_for: Duration::from_secs(600),
            fetch_failure: None,
        };
        assert!(is_fresh(&cached, start + Duration::from_secs(599)));
        assert!(!is_fresh(&cached, start + Duration::from_secs(600)));
        let interval = Duration::from_secs(30);
        assert!(!may_refetch(&cached, start + Duration::from_secs(29), interval));
        assert!(may_refetch(&cached, start + Duration::from_secs(30), interval));
    }

    #[test]
    fn only_https_urls_and_pem_roots_are_taken() {
        let expected = Expected::new("https://riposte.example.com/push", "push@example.iam.gserviceaccount.com");
        let with = |url: &str, roots: Option<&[u8]>| {
            Verifier::new(
                expected.clone(),
                JwksSettings {
                    url: url.to_string(),
                    extra_roots_pem: roots.map(<[u8]>::to_vec),
                    ..JwksSettings::google()
                },
            )
        };
        assert!(with(GOOGLE_JWKS_URL, None).is_ok());
        assert!(matches!(with("http://www.googleapis.com/oauth2/v3/certs", None), Err(Error::JwksUrl { .. })));
        assert!(matches!(with("/oauth2/v3/certs", None), Err(Error::JwksUrl { .. })));
        assert!(matches!(with(GOOGLE_JWKS_URL, Some(b"not a certificate")), Err(Error::JwksRoots(_))));
    }
}
