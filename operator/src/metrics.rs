//! Prometheus metrics of the controller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub action: String,
    pub phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

pub struct Metrics {
    pub reconciliations: Family<KindLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub action_seconds: Family<ActionLabels, Histogram>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciliations: Family::default(),
            failures: Family::default(),
            outcomes: Family::default(),
            action_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
        };
        registry.register(
            "riposte_reconciliations",
            "Reconciliations started, by resource kind",
            metrics.reconciliations.clone(),
        );
        registry.register(
            "riposte_reconcile_failures",
            "Reconciliations that failed and will be retried",
            metrics.failures.clone(),
        );
        registry.register(
            "riposte_action_outcomes",
            "ResponseActions that reached a final phase",
            metrics.outcomes.clone(),
        );
        registry.register(
            "riposte_action_duration_seconds",
            "Time from a ResponseAction's creation to its final phase",
            metrics.action_seconds.clone(),
        );
        metrics
    }
}
