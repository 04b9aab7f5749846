//! The hunting API, over HTTPS: `POST /v1/hunt` runs a SQL or KQL hunt within a window,
//! `POST /v1/go-hunt` the timeline of an Alert's entities, and `POST /v1/events` takes the
//! process events of the node sensors into the store.
//!
//! Hunting reveals every event of the cluster, so it has a permission of its own: the caller
//! presents their Kubernetes bearer token, the apiserver says who that is (TokenReview) and
//! whether they may `create` `hunts.riposte.dev` (SubjectAccessReview). The chart's
//! `riposte-responder` role grants it; `riposte-viewer` does not. Sending events is another
//! permission, `create` on the subresource `hunts/events`, which only the sensor's
//! ServiceAccount has: a hunter cannot write what others will hunt.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use riposte_crds::Alert;
use riposte_detect::audit::Timestamp;
use riposte_detect::runtime::ProcessEvent;
use riposte_hunt::go_hunt::{Entities, go_hunt};
use riposte_hunt::query::{Hunt, HuntResult, Language, Limits, TrinoTables, run_local, run_trino};
use riposte_hunt::store::{Store, now_micros};
use riposte_hunt::trino::TrinoClient;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use super::HuntingSink;
use crate::error::{Error, Result};

/// The API group and resource a hunter must be allowed to `create`.
pub const HUNT_GROUP: &str = "riposte.dev";
pub const HUNT_RESOURCE: &str = "hunts";
pub const HUNT_PATH: &str = "/v1/hunt";
pub const GO_HUNT_PATH: &str = "/v1/go-hunt";
pub const EVENTS_PATH: &str = "/v1/events";
/// The subresource a sensor must be allowed to `create` to send events.
pub const EVENTS_SUBRESOURCE: &str = "events";
/// The largest batch of events a sensor sends (a thousand events are about 1 MiB).
pub const MAX_EVENTS_BYTES: usize = 16 << 20;
/// The stack of a hunt's threads.
const HUNT_THREAD_STACK: usize = 32 << 20;
/// The largest request body: a hunt's text.
const MAX_REQUEST_BYTES: usize = 1 << 20;

/// What hunts run on.
#[derive(Clone)]
pub enum Backend {
    /// The operator's own store, with DataFusion.
    Local(Store),
    /// A Trino cluster reading the same layout from object storage.
    Trino(Arc<TrinoClient>, TrinoTables),
}

#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub addr: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub limits: Limits,
}

/// The hunting API's listener, bound, not yet serving.
pub struct HuntingServer {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    limits: Limits,
}

#[derive(Clone)]
struct Shared {
    client: Client,
    backend: Backend,
    limits: Limits,
    /// Hunts run here, off the runtime that answers the webhooks and reconciles.
    hunts: tokio::runtime::Handle,
    /// The operator's own user, whose bookkeeping requests a go hunt leaves out.
    identity: String,
    /// Where the sensors' events go.
    sink: HuntingSink,
}

impl HuntingServer {
    pub async fn bind(settings: &ServerSettings) -> Result<HuntingServer> {
        let config = crate::tls::server_config(&settings.tls_cert, &settings.tls_key, None)
            .map_err(|e| Error::Hunting(format!("the hunting API's TLS: {e}")))?;
        let listener = TcpListener::bind(settings.addr)
            .await
            .map_err(|e| Error::Hunting(format!("cannot listen on {}: {e}", settings.addr)))?;
        Ok(HuntingServer { listener, acceptor: TlsAcceptor::from(Arc::new(config)), limits: settings.limits })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.listener.local_addr().map_err(|e| Error::Hunting(format!("the listener has no address: {e}")))
    }

    /// Serves until the process ends; the sensors' events go to `sink`.
    pub async fn serve(self, client: Client, backend: Backend, sink: HuntingSink) -> Result<()> {
        let addr = self.local_addr()?;
        // A runtime of its own: a hunt keeps its cores busy for seconds.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
            .thread_name("riposte-hunt")
            // Planning a deeply nested query (compiled KQL) recurses deeply.
            .thread_stack_size(HUNT_THREAD_STACK)
            .enable_all()
            .build()
            .map_err(|e| Error::Hunting(format!("cannot start the hunts' runtime: {e}")))?;
        let identity = crate::controller::identity(&client).await?;
        let shared = Shared { client, backend, limits: self.limits, hunts: runtime.handle().clone(), identity, sink };
        info!(%addr, hunt = HUNT_PATH, go_hunt = GO_HUNT_PATH, "serving the hunting API over HTTPS");
        let app = Router::new()
            .route(HUNT_PATH, post(hunt))
            .route(GO_HUNT_PATH, post(go_hunt_of_alert))
            .route(EVENTS_PATH, post(events).layer(axum::extract::DefaultBodyLimit::max(MAX_EVENTS_BYTES)))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .layer(middleware::from_fn_with_state(shared.clone(), authorize))
            .with_state(shared);
        crate::tls::serve(self.listener, self.acceptor, app, "hunting API").await;
        // Dropping a runtime blocks; it is done off the async threads.
        tokio::task::spawn_blocking(move || drop(runtime)).await.ok();
        Ok(())
    }
}

/// A hunt as the API takes it: times as RFC 3339.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HuntRequest {
    query: String,
    #[serde(default)]
    language: Language,
    from: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GoHuntRequest {
    namespace: String,
    alert: String,
}

/// Who the caller is, once authenticated.
#[derive(Clone, Debug)]
struct Caller(String);

/// 401 without a token the apiserver accepts, 403 without the permission to hunt.
async fn authorize(State(shared): State<Shared>, mut request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(token) = token else {
        return refusal(StatusCode::UNAUTHORIZED, "present your Kubernetes bearer token (Authorization: Bearer ...)");
    };
    let user = match review_token(&shared.client, token).await {
        Ok(Some(user)) => user,
        Ok(None) => return refusal(StatusCode::UNAUTHORIZED, "the apiserver does not accept this token"),
        Err(error) => {
            warn!(%error, "a hunter's token could not be reviewed");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, &format!("the token could not be reviewed: {error}"));
        }
    };
    let name = user.username.clone().unwrap_or_default();
    let sends_events = request.uri().path() == EVENTS_PATH;
    let subresource = sends_events.then_some(EVENTS_SUBRESOURCE);
    match may_create(&shared.client, user, subresource).await {
        Ok(true) => {}
        Ok(false) if sends_events => {
            return refusal(
                StatusCode::FORBIDDEN,
                &format!(
                    "{name} may not send events: that needs the permission to create \
                     {HUNT_RESOURCE}/{EVENTS_SUBRESOURCE} in {HUNT_GROUP} (the node sensor's role has it)"
                ),
            );
        }
        Ok(false) => {
            return refusal(
                StatusCode::FORBIDDEN,
                &format!(
                    "{name} may not hunt: hunting needs the permission to create {HUNT_RESOURCE}.{HUNT_GROUP} \
                     (the riposte-responder role has it)"
                ),
            );
        }
        Err(error) => {
            warn!(%error, "a hunter's permission could not be checked");
            return refusal(StatusCode::SERVICE_UNAVAILABLE, &format!("the permission could not be checked: {error}"));
        }
    }
    request.extensions_mut().insert(Caller(name));
    next.run(request).await
}

async fn review_token(client: &Client, token: String) -> Result<Option<UserInfo>, kube::Error> {
    let review =
        TokenReview { spec: TokenReviewSpec { token: Some(token), audiences: None }, ..TokenReview::default() };
    let reviewed = Api::<TokenReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    Ok(reviewed.status.filter(|s| s.authenticated == Some(true)).and_then(|s| s.user))
}

/// Whether `user` may create hunts (or their `subresource`).
async fn may_create(client: &Client, user: UserInfo, subresource: Option<&str>) -> Result<bool, kube::Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username,
            groups: user.groups,
            uid: user.uid,
            extra: user.extra,
            resource_attributes: Some(ResourceAttributes {
                group: Some(HUNT_GROUP.into()),
                resource: Some(HUNT_RESOURCE.into()),
                subresource: subresource.map(str::to_owned),
                verb: Some("create".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let reviewed = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    Ok(reviewed.status.is_some_and(|s| s.allowed))
}

async fn hunt(State(shared): State<Shared>, caller: axum::Extension<Caller>, body: axum::body::Bytes) -> Response {
    let request: HuntRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &format!("the request is not a hunt: {e}")),
    };
    let now = now_micros();
    let (from, to) = match (parse_time(&request.from), request.to.as_deref().map(parse_time).transpose()) {
        (Ok(from), Ok(to)) => (from, to.unwrap_or(now)),
        (Err(e), _) | (_, Err(e)) => return refusal(StatusCode::BAD_REQUEST, &e),
    };
    let hunt = Hunt { text: request.query, language: request.language, from, to };
    run(&shared, hunt, &caller.0.0).await
}

/// A node sensor's batch of process events, kept in the store as the operator's own are.
async fn events(State(shared): State<Shared>, caller: axum::Extension<Caller>, body: axum::body::Bytes) -> Response {
    if shared.sink.store().is_none() {
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "this operator keeps no hunting store (--hunting-dir)");
    }
    let events: Vec<ProcessEvent> = match serde_json::from_slice(&body) {
        Ok(events) => events,
        Err(e) => {
            return refusal(StatusCode::BAD_REQUEST, &format!("the request is not a list of process events: {e}"));
        }
    };
    let refused = events.len() - shared.sink.processes(&events);
    if refused > 0 {
        // The store's memory is full (its disk cannot keep up): the sensor sends them again.
        warn!(caller = %caller.0.0, refused, "a sensor's events were refused: the hunting store is full");
        return refusal(StatusCode::SERVICE_UNAVAILABLE, "the hunting store is full; send the events again later");
    }
    (StatusCode::OK, Json(serde_json::json!({ "accepted": events.len() }))).into_response()
}

async fn go_hunt_of_alert(
    State(shared): State<Shared>,
    caller: axum::Extension<Caller>,
    body: axum::body::Bytes,
) -> Response {
    let request: GoHuntRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return refusal(StatusCode::BAD_REQUEST, &format!("the request names no alert: {e}")),
    };
    let alert = match Api::<Alert>::namespaced(shared.client.clone(), &request.namespace).get_opt(&request.alert).await
    {
        Ok(Some(alert)) => alert,
        Ok(None) => {
            return refusal(StatusCode::NOT_FOUND, &format!("no Alert {}/{}", request.namespace, request.alert));
        }
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &format!("the Alert could not be read: {e}")),
    };
    let entities = &alert.spec.entities;
    let source_ip = alert
        .spec
        .evidence
        .iter()
        .find(|e| e.name == "sourceIPs")
        .and_then(|e| e.value.split(',').next().map(|ip| ip.trim().to_owned()))
        // Every local client shares a loopback address: it says nothing of who acted.
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()));
    let entities = Entities {
        namespace: entities.namespace.clone(),
        pod: entities.pod.clone(),
        container: entities.container.clone(),
        image: entities.image.clone(),
        user: entities.user.clone(),
        source_ip,
        ignored_users: vec![shared.identity.clone()],
    };
    let Some(hunt) = go_hunt(&entities, alert.spec.detected_at.0.as_microsecond()) else {
        return refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the alert names no pod, image, user or source address to hunt for",
        );
    };
    run(&shared, hunt, &caller.0.0).await
}

async fn run(shared: &Shared, hunt: Hunt, caller: &str) -> Response {
    let (backend, limits) = (shared.backend.clone(), shared.limits);
    let now = now_micros();
    let task = shared.hunts.spawn(async move {
        match &backend {
            Backend::Local(store) => run_local(store, &hunt, &limits, now).await,
            Backend::Trino(client, tables) => run_trino(client, tables, &hunt, &limits, now).await,
        }
    });
    let result: Result<HuntResult, riposte_hunt::Error> = match task.await {
        Ok(result) => result,
        Err(e) => return refusal(StatusCode::INTERNAL_SERVER_ERROR, &format!("the hunt stopped: {e}")),
    };
    match result {
        Ok(result) => {
            info!(%caller, engine = result.engine, rows = result.rows.len(), elapsed_ms = result.elapsed_ms, "hunt");
            (StatusCode::OK, Json(result)).into_response()
        }
        Err(error) => {
            use riposte_hunt::Error as E;
            let status = match &error {
                E::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                E::Io { .. } | E::WriterStopped | E::StoreLocked(_) | E::Parquet(_) | E::Arrow(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                E::Trino(riposte_hunt::trino::TrinoError::Query { .. }) => StatusCode::BAD_REQUEST,
                E::Trino(_) => StatusCode::BAD_GATEWAY,
                _ => StatusCode::BAD_REQUEST,
            };
            info!(%caller, %error, "hunt refused or failed");
            refusal(status, &error.to_string())
        }
    }
}

fn parse_time(text: &str) -> Result<i64, String> {
    text.parse::<Timestamp>()
        .map(Timestamp::unix_micros)
        .map_err(|_| format!("{text:?} is not a time: write it as RFC 3339, like 2026-12-01T10:00:00Z"))
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
