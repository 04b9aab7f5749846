//! Prometheus metrics of the controller.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub r#type: String,
    pub severity: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub policy: String,
    pub decision: String,
}

pub struct Metrics {
    pub reconciliations: Family<KindLabels, Counter>,
    pub failures: Family<ErrorLabels, Counter>,
    pub outcomes: Family<OutcomeLabels, Counter>,
    pub action_seconds: Family<ActionLabels, Histogram>,
    pub alerts: Family<AlertLabels, Gauge>,
    pub policy_decisions: Family<DecisionLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Metrics {
            reconciliations: Family::default(),
            failures: Family::default(),
            outcomes: Family::default(),
            action_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            alerts: Family::default(),
            policy_decisions: Family::default(),
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
        registry.register("riposte_alerts", "Alerts, by type, severity and state", metrics.alerts.clone());
        registry.register(
            "riposte_policy_decisions",
            "What ResponsePolicies decided about the alerts they matched",
            metrics.policy_decisions.clone(),
        );
        metrics
    }
}
