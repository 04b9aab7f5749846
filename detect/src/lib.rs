//! Riposte's detection core: Kubernetes audit events in, `K8S_*` findings out; runtime
//! process events in, `K8S.NODE_*` findings out.
//!
//! Everything here is pure: no Kubernetes client, no clock, no I/O beyond reading the bytes
//! it is handed, except [`runtime::Follower`], which reads the file Tetragon exports to. The operator feeds it the events of its audit webhook (or of an audit log
//! file), the current pods and workloads through [`ClusterView`], and the time through the
//! events' own timestamps; it turns the [`Finding`]s into `Alert` objects.
//!
//! - [`audit`]: the `audit.k8s.io/v1` types and a parser for EventList bodies, single
//!   events and JSON lines.
//! - [`envelope`]: the same events as managed clusters deliver them (AKS diagnostic
//!   records, CloudWatch Logs payloads and Firehose deliveries for EKS, GKE's LogEntries and
//!   Pub/Sub pushes), recognised and unwrapped.
//! - [`rules`]: one rule per `audit` and `config` entry of the alert catalog.
//! - [`Config`]: the lists and thresholds the rules use, with defaults.
//! - [`Baseline`]: what each service account normally does, learned, bounded, persistable.
//! - [`Engine`]: evaluates every applicable rule over an event in one pass.
//! - [`observed_workload`]: the workload rules over an object as the cluster holds it, and
//!   [`coverage`]: whether the audit stream reported the creations the cluster shows.
//! - [`runtime`]: the normalized process event of every sensor, the Falco and Tetragon
//!   adapters, one rule per `runtime` entry of the catalog and their engine.

#![forbid(unsafe_code)]

pub mod audit;
mod baseline;
mod bounded;
mod config;
pub mod coverage;
mod engine;
pub mod envelope;
mod image;
mod objects;
mod patch;
pub mod rules;
pub mod runtime;

pub use baseline::{Baseline, LearningPeriod, MAX_ACCOUNTS, MAX_OPERATIONS, MAX_OPERATIONS_PER_ACCOUNT, Observation};
pub use config::{Config, ExposedApp, Exposure, ExposureConfig, PenTestConfig};
pub use engine::Engine;
pub use objects::{ClusterView, Service, Workload};
pub use rules::{Entities, Finding};

/// Whether a Service write made the Service reachable from outside the cluster, so that its
/// exposure is worth checking against the workloads it selects.
pub fn service_write_may_expose(event: &audit::Event, config: &Config) -> bool {
    rules::exposure::service_write_may_expose(event, config)
}

/// Whether a Service is reachable from outside the cluster (the configured Service types,
/// not an internal load balancer), so that the configuration scan checks what it selects.
pub fn service_may_expose(service: &Service, config: &Config) -> bool {
    rules::exposure::may_expose(service, config)
}

/// The exposure findings (K8S_Exposed*) of a Service write against `cluster`: what
/// [`Engine::evaluate`] finds for that write given the same view, for a caller that fetches
/// the view after evaluating the event, off its event path.
pub fn service_write_exposures(event: &audit::Event, cluster: &dyn ClusterView, config: &Config) -> Vec<Finding> {
    rules::exposure::service_write(event, cluster, config)
}

/// The exposure findings (K8S_Exposed*) of a Service as the cluster holds it, against
/// `cluster`: what the configuration scan finds, for a caller that watches Services.
pub fn service_exposures(service: &Service, cluster: &dyn ClusterView, config: &Config) -> Vec<Finding> {
    rules::exposure::evaluate_service(service, cluster, config)
}

/// The workload rules (K8S_PrivilegedContainer, K8S_SensitiveMount, K8S_KubeSystemContainer,
/// K8S_MaliciousContainerImage) over an object as the cluster holds it: a pod or a workload
/// as JSON, with its `kind`, from a watch rather than an audit event. Other kinds have none.
pub fn observed_workload(object: &str, config: &Config) -> Vec<Finding> {
    rules::workload::observed(object, config)
}

/// What failed while reading audit input or cluster objects.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the body is not an audit.k8s.io/v1 EventList, Event or JSON lines of events: {0}")]
    MalformedBody(#[source] serde_json::Error),

    #[error("line {line}: not an audit.k8s.io/v1 event: {source}")]
    MalformedLine {
        line: usize,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot read audit input at line {line}: {source}")]
    ReadInput {
        line: usize,
        #[source]
        source: std::io::Error,
    },

    #[error("the body is a {0}, not an audit.k8s.io/v1 EventList or Event")]
    UnexpectedKind(String),

    #[error(
        "{seen}; expected an audit event, an EventList, AKS diagnostic records, a CloudWatch Logs payload, \
         a Firehose delivery, a GKE LogEntry or a Pub/Sub push"
    )]
    UnknownEnvelope { seen: String },

    #[error("not a valid {format}: {source}")]
    MalformedEnvelope {
        format: envelope::Format,
        #[source]
        source: serde_json::Error,
    },

    #[error("not an audit.k8s.io/v1 event: {0}")]
    MalformedEvent(#[source] serde_json::Error),

    #[error("{what} is not an audit event: {source}")]
    NotAnAuditEvent {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("{what}: {problem}")]
    InvalidRecord { what: String, problem: String },

    #[error("{what} is not base64: {source}")]
    Base64 {
        what: String,
        #[source]
        source: base64::DecodeError,
    },

    #[error("{what} starts as gzip but cannot be decompressed: {source}")]
    Gzip {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("envelopes nested more than {0} deep")]
    NestedTooDeep(usize),

    /// One line of an audit log in any envelope failed; the others are still read.
    #[error("line {line}: {source}")]
    EnvelopeLine {
        line: usize,
        #[source]
        source: Box<Error>,
    },

    #[error("invalid timestamp {0:?}: expected RFC 3339, such as 2025-06-01T12:00:00.000000Z")]
    InvalidTimestamp(String),

    #[error("not a Pod or workload object: {0}")]
    MalformedWorkload(#[source] serde_json::Error),

    #[error("{0} is not a Pod or a workload kind with a pod template")]
    NotAWorkload(String),

    #[error("not a Service object: {0}")]
    MalformedService(#[source] serde_json::Error),

    #[error("not a Falco alert (a JSON object with rule, priority, time and output_fields): {0}")]
    MalformedFalcoAlert(#[source] serde_json::Error),

    #[error("Falco alert field {field}: expected {expected}, saw {seen}")]
    InvalidFalcoField { field: String, expected: &'static str, seen: String },

    #[error("not a Tetragon export event (one JSON object with node_name, time and one event): {0}")]
    MalformedTetragonEvent(#[source] serde_json::Error),

    #[error("Tetragon event field {field}: {problem}")]
    InvalidTetragonField { field: String, problem: String },

    /// One line of sensor JSON lines failed; the others are still read.
    #[error("line {line}: {source}")]
    SensorLine {
        line: usize,
        #[source]
        source: Box<Error>,
    },

    #[error("line {line} of {path} is longer than {limit} bytes; skipped up to its newline")]
    LineTooLong { path: std::path::PathBuf, line: u64, limit: usize },

    #[error("cannot follow {path}: {source}")]
    FollowFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
