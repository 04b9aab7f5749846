//! What librdkafka reports to the consumer: rebalances, statistics and errors, all served on
//! the thread that polls it (the consumer loop).

use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::batch::Assignment;
use super::metrics::{Metrics, lag_of};

pub(crate) struct Context {
    pub(crate) metrics: Metrics,
    assignment: Arc<Mutex<Assignment>>,
    /// librdkafka's explanation of its latest error (the error codes the consumer sees
    /// alone say little: "SSL", "Authentication").
    last_error: Mutex<Option<String>>,
}

impl Context {
    pub(crate) fn new(metrics: Metrics) -> Context {
        Context { metrics, assignment: Arc::default(), last_error: Mutex::new(None) }
    }

    pub(crate) fn assignment(&self) -> MutexGuard<'_, Assignment> {
        self.assignment.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

fn partitions(list: &TopicPartitionList) -> Vec<(String, i32)> {
    list.elements().iter().map(|element| (element.topic().to_string(), element.partition())).collect()
}

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        if let Some(lag) = lag_of(statistics.topics.values().flat_map(|topic| topic.partitions.values())) {
            self.metrics.lag.set(lag);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.client_errors.inc();
        tracing::warn!(%error, reason, "Kafka client error");
        let mut last_error = self.last_error.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // "All brokers are down" follows each broker's own failure ("Connection refused",
        // a failed handshake), which says why: that one is kept.
        if last_error.is_none() || error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown) {
            *last_error = Some(format!("{error}: {reason}"));
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            tracing::info!(partitions = ?revoked, "Kafka partitions revoked");
            self.assignment().revoke(revoked.iter().map(|(topic, partition)| (topic.as_str(), *partition)));
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(partitions = ?assigned, "Kafka partitions assigned");
                self.assignment().assign(assigned.iter().map(|(topic, partition)| (topic.as_str(), *partition)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => tracing::warn!(%error, "Kafka rebalance failed"),
        }
    }
}
