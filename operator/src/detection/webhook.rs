//! The audit webhook: the HTTPS endpoint that kube-apiserver's webhook audit backend
//! (`--audit-webhook-config-file`) posts `audit.k8s.io/v1` EventList batches to. It also
//! takes single Events and JSON lines, from log shippers.
//!
//! It must never hold the apiserver up: a batch is parsed, handed to the detection queue
//! and answered at once; when the queue is full the batch is dropped, counted and logged,
//! and still answered (an error would make the apiserver retry into the same full queue).
//! Clients authenticate with a certificate signed by the configured CA (the apiserver's
//! client certificate) or a bearer token; anyone else gets 401 before the body is read.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use riposte_detect::envelope;
use riposte_detect::runtime::falco;
use riposte_streams::ErrorKind;
use riposte_streams::oidc;

use super::pipeline::{Offer, Queue};
use super::runtime::{self, Inlet};
use crate::error::{Error, Result};
use crate::metrics::{CodeLabels, DetectionMetrics, InputLabels};
use crate::tls::Peer;

/// The path the apiserver's webhook kubeconfig points at.
pub const PATH: &str = "/audit";
/// Where Falco's `http_output` posts (one alert per request; Falco sends no credentials,
/// so it authenticates with a client certificate, `http_output.mtls`).
pub const FALCO_PATH: &str = "/falco";
/// Where Falcosidekick's webhook output posts (it sends custom headers: the bearer token).
pub const FALCOSIDEKICK_PATH: &str = "/falcosidekick";
/// Where an Amazon Data Firehose stream delivers (its HTTP endpoint destination): EKS audit
/// logs that a CloudWatch Logs subscription sends to the stream. Firehose authenticates with
/// the access key it is configured with, in `X-Amz-Firehose-Access-Key`.
pub const FIREHOSE_PATH: &str = "/firehose";
const FIREHOSE_ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// Where a Pub/Sub push subscription delivers: GKE audit log entries that a log sink routes
/// to a topic. Each request carries an OIDC token Google signed for the subscription's
/// service account.
pub const PUBSUB_PATH: &str = "/pubsub";
/// The most of an unauthenticated request's body read before answering 401.
const UNAUTHENTICATED_BODY_DRAINED: usize = 64 * 1024;

/// How the webhook is served and whom it accepts.
#[derive(Clone, Debug)]
pub struct WebhookSettings {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// Clients presenting a certificate signed by this CA are accepted.
    pub client_ca: Option<PathBuf>,
    pub credentials: Credentials,
    pub max_body_bytes: usize,
}

/// Whom the webhook accepts beside clients certified by the client CA.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// Clients sending `Authorization: Bearer <token>` with this token are accepted.
    pub token: Option<String>,
    /// Serve [`FIREHOSE_PATH`] to a Firehose stream configured with this access key.
    pub firehose_access_key: Option<String>,
    /// Serve [`PUBSUB_PATH`] to a Pub/Sub push subscription.
    pub pubsub: Option<PubSubPush>,
}

/// What a Pub/Sub push request's token must say (Google's "Authenticate push
/// subscriptions"), and where Google's signing keys are.
#[derive(Clone, Debug)]
pub struct PubSubPush {
    /// The token's `aud`: the subscription's audience (by default its push endpoint's URL).
    pub audience: String,
    /// The token's `email`: the service account the subscription pushes as.
    pub service_account: String,
    pub jwks: oidc::JwksSettings,
}

impl WebhookSettings {
    /// Reads the token file: its content, whitespace trimmed.
    pub fn read_token(path: &Path) -> Result<String> {
        let token = std::fs::read_to_string(path)
            .map_err(|e| Error::Webhook(format!("cannot read the token file {}: {e}", path.display())))?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(Error::Webhook(format!("the token file {} is empty", path.display())));
        }
        Ok(token)
    }
}

/// The webhook's listener, bound and with its TLS configuration loaded, not yet serving.
pub struct Webhook {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    token: Option<Arc<str>>,
    firehose_access_key: Option<Arc<str>>,
    pubsub: Option<Arc<oidc::Verifier>>,
    max_body_bytes: usize,
}

#[derive(Clone)]
struct Shared {
    queue: Queue,
    runtime: Inlet,
    token: Option<Arc<str>>,
    firehose_access_key: Option<Arc<str>>,
    pubsub: Option<Arc<oidc::Verifier>>,
    metrics: DetectionMetrics,
}

impl Webhook {
    /// Loads the certificates and binds the address. Fails with a message naming the file
    /// or the setting at fault.
    pub async fn bind(settings: &WebhookSettings) -> Result<Webhook> {
        let credentials = &settings.credentials;
        if settings.client_ca.is_none() && credentials.token.is_none() {
            return Err(Error::Webhook(
                "the audit webhook needs a way to authenticate the apiserver: a client CA (--audit-webhook-client-ca) \
                 or a bearer token (--audit-webhook-token-file)"
                    .into(),
            ));
        }
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(settings)?));
        let pubsub = match &credentials.pubsub {
            Some(push) => {
                let expected = oidc::Expected::new(&push.audience, &push.service_account);
                let verifier = oidc::Verifier::new(expected, push.jwks.clone())
                    .map_err(|e| Error::Webhook(format!("the Pub/Sub push verification cannot be set up: {e}")))?;
                Some(Arc::new(verifier))
            }
            None => None,
        };
        let listener = TcpListener::bind(settings.addr)
            .await
            .map_err(|e| Error::Webhook(format!("cannot listen on {}: {e}", settings.addr)))?;
        Ok(Webhook {
            listener,
            acceptor,
            token: credentials.token.as_deref().map(Arc::from),
            firehose_access_key: credentials.firehose_access_key.as_deref().map(Arc::from),
            pubsub,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::Webhook(format!("the listener has no address: {e}")))
    }

    /// Serves until the process ends: audit batches into `queue`, Falco's alerts into
    /// `runtime`.
    pub async fn serve(self, queue: Queue, runtime: Inlet, metrics: DetectionMetrics) -> Result<()> {
        let addr = self.local_addr()?;
        info!(
            %addr,
            audit = PATH,
            falco = FALCO_PATH,
            falcosidekick = FALCOSIDEKICK_PATH,
            firehose = self.firehose_access_key.is_some(),
            pubsub = self.pubsub.is_some(),
            "serving the webhooks over HTTPS"
        );
        let shared = Shared {
            queue,
            runtime,
            token: self.token,
            firehose_access_key: self.firehose_access_key,
            pubsub: self.pubsub,
            metrics,
        };
        let app = router(shared, self.max_body_bytes);
        crate::tls::serve(self.listener, self.acceptor, app, "audit webhook").await;
        Ok(())
    }
}

fn router(shared: Shared, max_body_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(receive))
        .route(FALCO_PATH, post(receive_falco))
        .route(FALCOSIDEKICK_PATH, post(receive_falco))
        .route(FIREHOSE_PATH, post(receive_firehose))
        .route(PUBSUB_PATH, post(receive_pubsub))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate))
        .layer(middleware::map_response_with_state(shared.clone(), count_response))
        .with_state(shared)
}

fn tls_config(settings: &WebhookSettings) -> Result<rustls::ServerConfig> {
    crate::tls::server_config(&settings.tls_cert, &settings.tls_key, settings.client_ca.as_deref())
        .map_err(Error::Webhook)
}

/// Lets through a verified client certificate or the bearer token; on the Firehose path
/// only Firehose's access key, and on the Pub/Sub path only a push token Google signed for
/// the subscription. Anything else is 401, and its body is never parsed.
async fn authenticate(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let (pubsub_path, firehose_path) = (path == PUBSUB_PATH, path == FIREHOSE_PATH);
    let allowed = if pubsub_path {
        match &shared.pubsub {
            Some(verifier) => {
                let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                match verifier.verify_authorization(authorization).await {
                    Ok(identity) => {
                        debug!(email = %identity.email, "a Pub/Sub push request authenticated");
                        true
                    }
                    Err(e) if e.kind() == ErrorKind::Transient => {
                        // Google's keys could not be fetched: Pub/Sub retries a 503.
                        warn!("a Pub/Sub push request could not be verified: {e}");
                        let _ = axum::body::to_bytes(request.into_body(), UNAUTHENTICATED_BODY_DRAINED).await;
                        return (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response();
                    }
                    Err(e) => {
                        warn!("a Pub/Sub push request was refused: {e}");
                        false
                    }
                }
            }
            None => false,
        }
    } else if firehose_path {
        let presented = request.headers().get(FIREHOSE_ACCESS_KEY).and_then(|v| v.to_str().ok());
        matches!((&shared.firehose_access_key, presented),
            (Some(expected), Some(presented)) if constant_time_eq(expected.as_bytes(), presented.as_bytes()))
    } else {
        let certified = request.extensions().get::<Peer>().is_some_and(|peer| peer.certified);
        let token_matches = match (&shared.token, bearer(request.headers())) {
            (Some(expected), Some(presented)) => constant_time_eq(expected.as_bytes(), presented.as_bytes()),
            _ => false,
        };
        certified || token_matches
    };
    if allowed {
        return next.run(request).await;
    }
    // A client still sending when the connection closes on it may lose the answer (the
    // unread bytes reset the connection): read a small body away first, never a large one.
    let _ = axum::body::to_bytes(request.into_body(), UNAUTHENTICATED_BODY_DRAINED).await;
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "present a client certificate signed by the configured CA, or the bearer token\n",
    )
        .into_response()
}

/// A Pub/Sub push request: one message, whose data is a GKE audit LogEntry (a log sink's
/// export). Pub/Sub redelivers anything not answered 2xx: a full queue is 503 (delivered
/// again later); a LogEntry of another service is acknowledged and skipped; a body that is
/// not a push request is 400 (it would come again: a dead-letter topic on the subscription
/// ends that, docs/managed-clusters.md).
async fn receive_pubsub(State(shared): State<Shared>, body: Bytes) -> Response {
    let received = Instant::now();
    let unwrapped = match envelope::unwrap_as(envelope::Format::PubSubPush, &body) {
        Ok(unwrapped) => unwrapped,
        Err(e) => {
            shared.metrics.records_rejected.get_or_create(&InputLabels { input: "pubsub".into() }).inc();
            warn!("a Pub/Sub push request was refused: {e}");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    if !unwrapped.malformed.is_empty() {
        let problems: Vec<String> = unwrapped.malformed.iter().map(ToString::to_string).collect();
        shared
            .metrics
            .records_rejected
            .get_or_create(&InputLabels { input: "pubsub".into() })
            .inc_by(problems.len() as u64);
        warn!(rejected = problems.len(), "a Pub/Sub message held no readable audit event: {}", problems.join("; "));
    }
    let (accepted, skipped, rejected) = (unwrapped.events.len(), unwrapped.skipped.len(), unwrapped.malformed.len());
    if !shared.queue.offer_or_defer("pubsub", unwrapped.events, body.len(), received) {
        return (StatusCode::SERVICE_UNAVAILABLE, "Riposte's detection queue is full; deliver again later\n")
            .into_response();
    }
    let answer = serde_json::json!({ "accepted": accepted, "skipped": skipped, "rejected": rejected });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

async fn count_response(State(shared): State<Shared>, response: Response) -> Response {
    shared.metrics.requests.get_or_create(&CodeLabels { code: response.status().as_u16().to_string() }).inc();
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without revealing, through timing, how much of the token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(State(shared): State<Shared>, body: Bytes) -> Response {
    let received = Instant::now();
    let events = match riposte_detect::audit::parse_body(&body) {
        Ok(events) => events,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let count = events.len();
    match shared.queue.offer(events, body.len(), received) {
        Offer::Accepted => (StatusCode::OK, axum::Json(serde_json::json!({ "accepted": count }))).into_response(),
        Offer::Dropped => {
            (StatusCode::OK, axum::Json(serde_json::json!({ "accepted": 0, "dropped": count }))).into_response()
        }
    }
}

/// A Firehose delivery: every record unwrapped (CloudWatch Logs payloads, gzipped, of the
/// EKS audit log stream), their events queued together. The answer is Firehose's: the
/// request id and a timestamp, and an error message when the delivery was not taken, so
/// that Firehose retries it (a full queue is 503 here, unlike the apiserver's batches:
/// Firehose keeps the data and sends it again). Records that are not audit events are
/// logged and counted, and the others are taken.
async fn receive_firehose(State(shared): State<Shared>, body: Bytes) -> Response {
    let received = Instant::now();
    let now = k8s_openapi::jiff::Timestamp::now().as_millisecond();
    let answer = |status: StatusCode, request_id: &str, error: Option<&str>| {
        let body = envelope::firehose::response_body(request_id, now, error);
        (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let delivery = match envelope::firehose::parse_request(&body) {
        Ok(delivery) => delivery,
        Err(e) => {
            warn!("a Firehose delivery was refused: {e}");
            return answer(StatusCode::BAD_REQUEST, "", Some(&e.to_string()));
        }
    };
    let (mut events, mut problems) = (Vec::new(), Vec::new());
    for (index, record) in delivery.records.into_iter().enumerate() {
        match record.and_then(|data| envelope::unwrap(&data)) {
            Ok(unwrapped) => {
                events.extend(unwrapped.events);
                problems.extend(
                    unwrapped.malformed.into_iter().map(|m| format!("records[{index}] {}: {}", m.record, m.error)),
                );
            }
            Err(e) => problems.push(format!("records[{index}]: {e}")),
        }
    }
    if !problems.is_empty() {
        shared
            .metrics
            .records_rejected
            .get_or_create(&InputLabels { input: "firehose".into() })
            .inc_by(problems.len() as u64);
        warn!(request_id = %delivery.request_id, rejected = problems.len(), "Firehose records were not audit events: {}", problems.join("; "));
    }
    if shared.queue.offer_or_defer("firehose", events, body.len(), received) {
        answer(StatusCode::OK, &delivery.request_id, None)
    } else {
        answer(
            StatusCode::SERVICE_UNAVAILABLE,
            &delivery.request_id,
            Some("Riposte's detection queue is full; deliver again later"),
        )
    }
}

/// One Falco alert per body (`http_output`, Falcosidekick), or JSON lines of them (a file
/// shipper). Each alert is queued, mapped or not; a malformed one is counted and named in
/// the answer, and the others of the body are still taken. A body with nothing readable is
/// 400.
async fn receive_falco(State(shared): State<Shared>, body: Bytes) -> Response {
    let results: Vec<_> = match falco::parse_alert(&body) {
        Ok(alert) => vec![Ok(alert)],
        Err(_) => falco::parse_lines(&body).collect(),
    };
    let (mut accepted, mut dropped, mut errors) = (0, 0, Vec::new());
    for result in results {
        match result {
            Ok(alert) => {
                if shared.runtime.offer(runtime::falco_input(alert)) {
                    accepted += 1;
                } else {
                    dropped += 1;
                }
            }
            Err(e) => {
                shared.runtime.reject("falco");
                errors.push(e.to_string());
            }
        }
    }
    if accepted + dropped == 0 {
        let reason = if errors.is_empty() { "the body holds no Falco alert".to_owned() } else { errors.join("\n") };
        warn!("a Falco alert was rejected: {reason}");
        return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response();
    }
    if !errors.is_empty() {
        warn!(rejected = errors.len(), "Falco alerts were rejected: {}", errors.join("; "));
    }
    let answer =
        serde_json::json!({ "accepted": accepted, "dropped": dropped, "rejected": errors.len(), "errors": errors });
    (StatusCode::OK, axum::Json(answer)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer s3cret ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("s3cret"));
        headers.insert(header::AUTHORIZATION, "Basic czNjcmV0".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
