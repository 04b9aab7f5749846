use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::statistics::Partition;

/// The consumer's counters. Clones share them, so the operator can keep one to register and
/// read while the consumer runs.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub(crate) records_consumed: Counter,
    pub(crate) records_accepted: Counter,
    pub(crate) records_committed: Counter,
    pub(crate) records_revoked: Counter,
    pub(crate) batches_refused: Counter,
    pub(crate) commit_failures: Counter,
    pub(crate) client_errors: Counter,
    pub(crate) lag: Gauge,
}

/// The counters' values at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Records read from the brokers (a record offered again after a refusal counts once;
    /// one read again after a rebalance or restart counts again).
    pub records_consumed: u64,
    /// Records in batches the sink accepted.
    pub records_accepted: u64,
    /// Records whose offsets were committed after their acceptance.
    pub records_committed: u64,
    /// Records dropped from a batch because their partition moved to another consumer
    /// before delivery; that consumer reads them.
    pub records_revoked: u64,
    /// Refusals by the sink (each refusal of a batch counts).
    pub batches_refused: u64,
    /// Commits that failed after the sink accepted (those records will be delivered again).
    pub commit_failures: u64,
    /// Errors librdkafka reported (brokers down, authentication, …).
    pub client_errors: u64,
    /// Records in the held partitions after the last committed offset, from librdkafka's
    /// latest statistics; -1 until a partition has both a committed offset and a high
    /// watermark.
    pub lag: i64,
}

impl Metrics {
    /// Adds the counters to `registry` as `riposte_kafka_*`.
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            ("riposte_kafka_records_consumed", "Kafka records read from the brokers", &self.records_consumed),
            ("riposte_kafka_records_accepted", "Kafka records in batches the sink accepted", &self.records_accepted),
            (
                "riposte_kafka_records_committed",
                "Kafka records whose offsets were committed after their acceptance",
                &self.records_committed,
            ),
            (
                "riposte_kafka_records_revoked",
                "Kafka records left to another consumer because their partition moved before delivery",
                &self.records_revoked,
            ),
            (
                "riposte_kafka_batches_refused",
                "Batches of Kafka records the sink refused (offered again after a backoff)",
                &self.batches_refused,
            ),
            (
                "riposte_kafka_commit_failures",
                "Offset commits that failed after acceptance (those records are delivered again)",
                &self.commit_failures,
            ),
            ("riposte_kafka_client_errors", "Errors reported by librdkafka", &self.client_errors),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "riposte_kafka_consumer_lag_records",
            "Records after the last committed offset in the partitions this consumer holds (-1: not known yet)",
            self.lag.clone(),
        );
    }

    /// The counters' values now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            records_consumed: self.records_consumed.get(),
            records_accepted: self.records_accepted.get(),
            records_committed: self.records_committed.get(),
            records_revoked: self.records_revoked.get(),
            batches_refused: self.batches_refused.get(),
            commit_failures: self.commit_failures.get(),
            client_errors: self.client_errors.get(),
            lag: self.lag.get(),
        }
    }
}

/// The lag of the partitions this consumer holds, from librdkafka's statistics: their high
/// watermark minus their committed offset, summed; `None` when no held partition has both
/// yet.
pub(crate) fn lag_of<'a>(partitions: impl IntoIterator<Item = &'a Partition>) -> Option<i64> {
    partitions
        .into_iter()
        // Partition -1 is librdkafka's internal queue for records of no partition yet.
        .filter(|partition| partition.partition >= 0 && partition.desired && partition.consumer_lag >= 0)
        .map(|partition| partition.consumer_lag)
        .reduce(|total, lag| total + lag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_sums_the_held_partitions_that_know_theirs() {
        let partition =
            |partition, desired, consumer_lag| Partition { partition, desired, consumer_lag, ..Partition::default() };
        let partitions = [
            partition(0, true, 12),
            partition(1, true, 3),
            partition(2, false, 100),
            partition(3, true, -1),
            partition(-1, true, 7),
        ];
        assert_eq!(lag_of(&partitions), Some(15));
        assert_eq!(lag_of(&partitions[2..]), None);
    }

    #[test]
    fn registered_counters_are_the_snapshots_numbers() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.records_committed.inc_by(3);
        metrics.lag.set(-1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("riposte_kafka_records_committed_total 3"), "{text}");
        assert!(text.contains("riposte_kafka_consumer_lag_records -1"), "{text}");
        assert_eq!(metrics.snapshot().records_committed, 3);
    }
}
