//! Riposte's detection core: Kubernetes audit events in, `K8S_*` findings out.
//!
//! Everything here is pure: no Kubernetes client, no clock, no I/O beyond reading the bytes
//! it is handed. The operator feeds it the events of its audit webhook (or of an audit log
//! file), the current pods and workloads through [`ClusterView`], and the time through the
//! events' own timestamps; it turns the [`Finding`]s into `Alert` objects.
//!
//! - [`audit`]: the `audit.k8s.io/v1` types and a parser for EventList bodies, single
//!   events and JSON lines.
//! - [`rules`]: one rule per `audit` and `config` entry of the alert catalog.
//! - [`Config`]: the lists and thresholds the rules use, with defaults.
//! - [`Baseline`]: what each service account normally does, learned, bounded, persistable.
//! - [`Engine`]: evaluates every applicable rule over an event in one pass.

#![forbid(unsafe_code)]

pub mod audit;
mod baseline;
mod config;
mod engine;
mod image;
mod objects;
mod patch;
pub mod rules;

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

    #[error("invalid timestamp {0:?}: expected RFC 3339, such as 2025-06-01T12:00:00.000000Z")]
    InvalidTimestamp(String),

    #[error("not a Pod or workload object: {0}")]
    MalformedWorkload(#[source] serde_json::Error),

    #[error("{0} is not a Pod or a workload kind with a pod template")]
    NotAWorkload(String),

    #[error("not a Service object: {0}")]
    MalformedService(#[source] serde_json::Error),
}
