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
    pub isolation_repairs: Counter,
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
            isolation_repairs: Counter::default(),
        };
        registry.register(
            "riposte_isolation_repairs",
            "Parts of isolations in place that someone else undid (a label removed, a policy deleted or changed) and Riposte put back",
            metrics.isolation_repairs.clone(),
        );
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// Which managed-cluster input a count is of: `firehose`, `pubsub`, `event_hubs`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InputLabels {
    pub input: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

/// The detection path: the audit webhook, its queue, the rules and the Alerts they raise.
#[derive(Clone)]
pub struct DetectionMetrics {
    pub requests: Family<CodeLabels, Counter>,
    pub events_received: Counter,
    pub events_dropped: Family<ReasonLabels, Counter>,
    /// Events a full queue refused from a sender that delivers them again.
    pub events_deferred: Family<InputLabels, Counter>,
    /// Records of a managed-cluster input that held no readable audit event.
    pub records_rejected: Family<InputLabels, Counter>,
    pub events_evaluated: Counter,
    pub queued_events: Gauge,
    pub queued_bytes: Gauge,
    pub findings: Family<TypeLabels, Counter>,
    pub alerts_created: Counter,
    pub alert_write_failures: Counter,
    pub detection_seconds: Histogram,
    pub cluster_objects_evaluated: Counter,
    pub audit_unreported: Family<ResourceLabels, Counter>,
}

impl DetectionMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = DetectionMetrics {
            requests: Family::default(),
            events_received: Counter::default(),
            events_dropped: Family::default(),
            events_deferred: Family::default(),
            records_rejected: Family::default(),
            events_evaluated: Counter::default(),
            queued_events: Gauge::default(),
            queued_bytes: Gauge::default(),
            findings: Family::default(),
            alerts_created: Counter::default(),
            alert_write_failures: Counter::default(),
            detection_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            cluster_objects_evaluated: Counter::default(),
            audit_unreported: Family::default(),
        };
        registry.register(
            "riposte_audit_requests",
            "Requests to the audit webhook, by HTTP status code",
            metrics.requests.clone(),
        );
        registry.register(
            "riposte_audit_events_received",
            "Audit events accepted into the detection queue",
            metrics.events_received.clone(),
        );
        registry.register(
            "riposte_audit_events_dropped",
            "Audit events received but not evaluated, by reason (queue_full)",
            metrics.events_dropped.clone(),
        );
        registry.register(
            "riposte_audit_events_deferred",
            "Audit events a full detection queue refused from a sender that delivers them again, by input",
            metrics.events_deferred.clone(),
        );
        registry.register(
            "riposte_audit_records_rejected",
            "Records of a managed-cluster input (firehose, pubsub, event_hubs) that held no readable audit event",
            metrics.records_rejected.clone(),
        );
        registry.register(
            "riposte_audit_events_evaluated",
            "Audit events evaluated by the rules",
            metrics.events_evaluated.clone(),
        );
        registry.register(
            "riposte_audit_queued_events",
            "Audit events waiting in the detection queue",
            metrics.queued_events.clone(),
        );
        registry.register(
            "riposte_audit_queued_bytes",
            "Bytes of the audit bodies waiting in the detection queue",
            metrics.queued_bytes.clone(),
        );
        registry.register("riposte_detection_findings", "Rule findings, by alert type", metrics.findings.clone());
        registry.register(
            "riposte_detection_alerts_created",
            "Alerts created by the detection path",
            metrics.alerts_created.clone(),
        );
        registry.register(
            "riposte_detection_alert_write_failures",
            "Alerts the detection path failed to create after its retries",
            metrics.alert_write_failures.clone(),
        );
        registry.register(
            "riposte_detection_seconds",
            "Time from an audit batch's receipt (or a watch event's) to the Alert it raised being created",
            metrics.detection_seconds.clone(),
        );
        registry.register(
            "riposte_cluster_objects_evaluated",
            "Pods and workloads the workload rules evaluated as the cluster holds them (the second source)",
            metrics.cluster_objects_evaluated.clone(),
        );
        registry.register(
            "riposte_audit_unreported_objects",
            "Objects created with no audit event reporting them within the grace period, by resource",
            metrics.audit_unreported.clone(),
        );
        metrics
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SensorLabels {
    pub sensor: String,
}

/// The runtime path: what the sensors hand over, and what becomes of it.
#[derive(Clone)]
pub struct RuntimeMetrics {
    pub events_received: Family<SensorLabels, Counter>,
    pub events_dropped: Family<SensorLabels, Counter>,
    pub events_rejected: Family<SensorLabels, Counter>,
    pub events_evaluated: Family<SensorLabels, Counter>,
    pub events_unattributed: Family<SensorLabels, Counter>,
    /// Events the kernel could not hand to Riposte's sensor (its ring buffer was full).
    pub kernel_drops: Gauge,
}

impl RuntimeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = RuntimeMetrics {
            events_received: Family::default(),
            events_dropped: Family::default(),
            events_rejected: Family::default(),
            events_evaluated: Family::default(),
            events_unattributed: Family::default(),
            kernel_drops: Gauge::default(),
        };
        registry.register(
            "riposte_runtime_events_received",
            "Runtime events accepted into the detection queue, by sensor",
            metrics.events_received.clone(),
        );
        registry.register(
            "riposte_runtime_events_dropped",
            "Runtime events dropped because the detection queue was full, by sensor",
            metrics.events_dropped.clone(),
        );
        registry.register(
            "riposte_runtime_events_rejected",
            "Runtime inputs that could not be read (malformed lines or bodies), by sensor",
            metrics.events_rejected.clone(),
        );
        registry.register(
            "riposte_runtime_events_evaluated",
            "Runtime events evaluated by the rules, by sensor",
            metrics.events_evaluated.clone(),
        );
        registry.register(
            "riposte_runtime_events_unattributed",
            "Runtime events of a container that no pod listed in time, evaluated without the pod, by sensor",
            metrics.events_unattributed.clone(),
        );
        registry.register(
            "riposte_sensor_kernel_drops",
            "Events the kernel dropped because the sensor's ring buffer was full (since the sensor started)",
            metrics.kernel_drops.clone(),
        );
        metrics
    }
}

/// A node sensor's sending of its process events to the operator's hunting store.
#[derive(Clone, Default)]
pub struct ForwardMetrics {
    pub sent: Counter,
    pub dropped: Counter,
    pub rejected: Counter,
    pub failed_requests: Counter,
}

impl ForwardMetrics {
    pub fn register(registry: &mut Registry) -> ForwardMetrics {
        let metrics = ForwardMetrics::default();
        registry.register(
            "riposte_hunting_forwarded_events",
            "Process events the operator's hunting store accepted from this sensor",
            metrics.sent.clone(),
        );
        registry.register(
            "riposte_hunting_forward_dropped_events",
            "Process events dropped because the queue to the operator was full",
            metrics.dropped.clone(),
        );
        registry.register(
            "riposte_hunting_forward_rejected_events",
            "Process events the operator refused (no permission, malformed): not sent again",
            metrics.rejected.clone(),
        );
        registry.register(
            "riposte_hunting_forward_failed_requests",
            "Requests to the operator that failed and were retried",
            metrics.failed_requests.clone(),
        );
        metrics
    }
}

/// The hunting store's sizes, read from the store at each scrape.
pub struct HuntingMetrics {
    store: riposte_hunt::store::Store,
}

impl std::fmt::Debug for HuntingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuntingMetrics").field("root", &self.store.settings().root).finish()
    }
}

impl HuntingMetrics {
    pub fn register(registry: &mut Registry, store: riposte_hunt::store::Store) {
        registry.register_collector(Box::new(HuntingMetrics { store }));
    }
}

impl prometheus_client::collector::Collector for HuntingMetrics {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let usage = self.store.usage();
        let gauges = [
            (
                "riposte_hunting_files",
                "Committed Parquet files the hunting store reads (every writer's)",
                usage.files as i64,
            ),
            (
                "riposte_hunting_bytes",
                "Size of the committed Parquet files the hunting store reads",
                usage.bytes as i64,
            ),
            ("riposte_hunting_memory_rows", "Rows held in memory, not yet committed", usage.memory_rows as i64),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            (
                "riposte_hunting_refused_rows",
                "Rows refused because the store's memory bound was reached (the disk could not keep up)",
                usage.refused_rows,
            ),
            (
                "riposte_hunting_bucket_failed_syncs",
                "Copies of the store's files to its bucket that failed (retried at the next flush)",
                usage.failed_bucket_syncs,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use riposte_hunt::record::audit_record;
    use riposte_hunt::store::{Store, StoreSettings};

    use super::*;

    fn scrape(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        text
    }

    #[tokio::test]
    async fn the_hunting_stores_sizes_are_read_at_each_scrape() {
        let root = std::env::temp_dir().join(format!("riposte-hunting-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut settings = StoreSettings::new(&root, "metrics");
        settings.max_memory_rows = 2;
        let store = Store::open(settings).unwrap();
        let mut registry = Registry::default();
        HuntingMetrics::register(&mut registry, store.clone());
        let event: riposte_detect::audit::Event = serde_json::from_value(serde_json::json!({
            "auditID": "a-1", "stage": "ResponseComplete", "stageTimestamp": "2026-12-01T10:00:00Z",
            "verb": "get", "requestURI": "/api/v1/namespaces", "user": {"username": "mallory"}
        }))
        .unwrap();
        store.append((0..3).map(|_| audit_record(&event, "webhook", "prod")));
        let before = scrape(&registry);
        for line in ["riposte_hunting_files 0", "riposte_hunting_memory_rows 2", "riposte_hunting_refused_rows_total 1"]
        {
            assert!(before.lines().any(|l| l == line), "{line} missing from\n{before}");
        }
        store.flush().await.unwrap();
        let after = scrape(&registry);
        for line in
            ["riposte_hunting_files 1", "riposte_hunting_memory_rows 0", "riposte_hunting_bucket_failed_syncs_total 0"]
        {
            assert!(after.lines().any(|l| l == line), "{line} missing from\n{after}");
        }
        let bytes = after.lines().find_map(|l| l.strip_prefix("riposte_hunting_bytes ")).unwrap();
        assert!(bytes.parse::<u64>().unwrap() > 0, "{after}");
        drop(store);
        let _ = std::fs::remove_dir_all(&root);
    }
}
