use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::batch::{Batch, refusal_backoff};
use super::context::Context;
use super::metrics::Metrics;
use super::settings::{Settings, client_properties};
use super::{Delivery, Record, Sink};
use crate::Error;

/// A member of a Kafka consumer group, subscribed to its topics; [`Consumer::run`] delivers
/// their records. Dropping it leaves the group (its partitions go to the others at once).
pub struct Consumer {
    consumer: Arc<StreamConsumer<Context>>,
    brokers: String,
    max_batch_records: usize,
    max_batch_wait: Duration,
    refusal_backoff: Duration,
    max_refusal_backoff: Duration,
}

impl Consumer {
    /// Creates the consumer, waits until a broker answers (at most the connect timeout) and
    /// subscribes to the topics.
    ///
    /// Fails with [`Error::BrokersUnreachable`] (transient: retry later) when no broker
    /// answered in time, [`Error::Authentication`] when the brokers refused the credentials
    /// or their certificate is not trusted, and a configuration error for settings
    /// librdkafka refuses. A topic that does not exist yet is not an error (Event Hubs
    /// creates an AKS diagnostic setting's hub when it first writes): it is logged, and
    /// its records are read once it appears.
    pub async fn start(settings: Settings) -> Result<Consumer, Error> {
        Consumer::start_counting(settings, Metrics::default()).await
    }

    /// As [`Consumer::start`], counting into `metrics` (clones share their counters): a
    /// caller that registers its metrics once, before consumers come and go, keeps one.
    pub async fn start_counting(settings: Settings, metrics: Metrics) -> Result<Consumer, Error> {
        let mut config = ClientConfig::new();
        for (key, value) in client_properties(&settings)? {
            config.set(key, value);
        }
        let consumer: StreamConsumer<Context> =
            config.create_with_context(Context::new(metrics)).map_err(Error::CreateConsumer)?;
        let consumer = Consumer {
            consumer: Arc::new(consumer),
            brokers: settings.brokers.clone(),
            max_batch_records: settings.max_batch_records,
            max_batch_wait: settings.max_batch_wait,
            refusal_backoff: settings.refusal_backoff,
            max_refusal_backoff: settings.max_refusal_backoff,
        };
        consumer.wait_for_brokers(&settings.topics, settings.connect_timeout).await?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer
            .consumer
            .subscribe(&topics)
            .map_err(|source| Error::Subscribe { topics: settings.topics.clone(), source })?;
        Ok(consumer)
    }

    /// The consumer's counters (register them with [`Metrics::register`]).
    pub fn metrics(&self) -> &Metrics {
        &self.consumer.context().metrics
    }

    /// The partitions this consumer holds now, as `(topic, partition)`, sorted.
    pub fn assigned_partitions(&self) -> Vec<(String, i32)> {
        self.consumer.context().assignment().partitions()
    }

    /// Hands the records to `sink` in batches until `shutdown` completes, committing each
    /// batch's offsets once the sink accepted it; a refused batch is offered again after a
    /// backoff, as long as its partitions stay with this consumer.
    ///
    /// On shutdown a batch being delivered is finished (and committed if accepted) first.
    /// Transient trouble (brokers down, a commit that failed, a topic not there yet) is
    /// logged, counted and outlived; the loop ends early only with an error the settings
    /// must fix ([`Error::Authentication`], [`Error::Authorization`]) or a fatal one
    /// ([`Error::Fatal`]: start a new consumer). One run at a time per consumer: a second
    /// would split its records.
    pub async fn run(&self, sink: &mut impl Sink, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut batch = Batch::default();
        let mut refusals = 0;
        loop {
            if batch.is_empty() {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(()),
                    collected = self.collect(&mut batch) => collected?,
                }
            }
            let revoked = batch.retain_owned(&self.consumer.context().assignment());
            if revoked > 0 {
                self.metrics().records_revoked.inc_by(revoked as u64);
                tracing::info!(records = revoked, "Kafka records left to their partitions' new owner");
                refusals = 0;
            }
            if batch.is_empty() {
                continue;
            }
            match sink.accept(batch.records()).await {
                Delivery::Accepted => {
                    self.metrics().records_accepted.inc_by(batch.len() as u64);
                    self.commit(&batch).await;
                    batch.clear();
                    refusals = 0;
                }
                Delivery::Refused(reason) => {
                    self.metrics().batches_refused.inc();
                    refusals += 1;
                    let pause = refusal_backoff(self.refusal_backoff, self.max_refusal_backoff, refusals);
                    tracing::warn!(
                        records = batch.len(),
                        reason,
                        ?pause,
                        "the sink refused a batch of Kafka records; offering it again"
                    );
                    tokio::select! {
                        biased;
                        () = &mut shutdown => return Ok(()),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// Adds records to the empty `batch`: waits for one, then takes what comes within the
    /// batch wait, up to the batch size.
    async fn collect(&self, batch: &mut Batch) -> Result<(), Error> {
        while batch.is_empty() {
            let received = self.consumer.recv().await;
            self.take(received, batch)?;
        }
        let deadline = tokio::time::Instant::now() + self.max_batch_wait;
        while batch.len() < self.max_batch_records {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(received) => self.take(received, batch)?,
                Err(_elapsed) => break,
            }
        }
        Ok(())
    }

    fn take(&self, received: Result<BorrowedMessage<'_>, KafkaError>, batch: &mut Batch) -> Result<(), Error> {
        match received {
            Ok(message) => {
                self.metrics().records_consumed.inc();
                let epoch = self.consumer.context().assignment().epoch();
                batch.push(record_of(&message), epoch);
                Ok(())
            }
            // Already counted and logged with librdkafka's explanation by the context.
            Err(error) => match self.unrecoverable(&error) {
                Some(unrecoverable) => Err(unrecoverable),
                None => Ok(()),
            },
        }
    }

    /// Commits an accepted batch's offsets, and waits for the group coordinator's answer. A
    /// failure is logged and counted: those records will be delivered again.
    async fn commit(&self, batch: &Batch) {
        let mut offsets = TopicPartitionList::new();
        for ((topic, partition), next) in batch.offsets_to_commit() {
            offsets
                .add_partition_offset(topic, partition, Offset::Offset(next))
                .expect("a non-negative offset is always accepted");
        }
        let consumer = self.consumer.clone();
        // A synchronous commit blocks its thread until the coordinator answers.
        let committed = tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .expect("committing does not panic");
        match committed {
            Ok(()) => {
                self.metrics().records_committed.inc_by(batch.len() as u64);
            }
            Err(error) => {
                self.metrics().commit_failures.inc();
                tracing::warn!(%error, records = batch.len(), "committing accepted Kafka records failed; they will be delivered again");
            }
        }
    }

    /// Asks brokers for the first topic's metadata until one answers or `timeout` passes,
    /// serving librdkafka's events meanwhile (which say why none answers).
    async fn wait_for_brokers(&self, topics: &[String], timeout: Duration) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            let remaining = timeout.saturating_sub(started.elapsed());
            let consumer = self.consumer.clone();
            let topic = topics[0].clone();
            let attempt = remaining.min(Duration::from_secs(1));
            let answer = tokio::task::spawn_blocking(move || {
                consumer.fetch_metadata(Some(&topic), attempt).map(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .find_map(|topic| topic.error().map(|error| (topic.name().to_string(), error)))
                })
            })
            .await
            .expect("fetching metadata does not panic");
            match answer {
                Ok(None) => return Ok(()),
                Ok(Some((topic, error))) => {
                    tracing::warn!(topic, error = ?RDKafkaErrorCode::from(error), "the Kafka topic is not readable yet; waiting for it");
                    return Ok(());
                }
                Err(error) => tracing::debug!(%error, "no Kafka broker answered yet"),
            }
            // Not subscribed yet, so only errors (and no record) come out of the queue.
            while let Ok(Err(error)) = tokio::time::timeout(Duration::from_millis(10), self.consumer.recv()).await {
                if let Some(unrecoverable) = self.unrecoverable(&error) {
                    return Err(unrecoverable);
                }
            }
            if started.elapsed() >= timeout {
                return Err(Error::BrokersUnreachable {
                    brokers: self.brokers.clone(),
                    waited: started.elapsed(),
                    last_error: self.consumer.context().last_error().unwrap_or_else(|| "no answer".to_string()),
                });
            }
        }
    }

    /// The error to stop on, if `error` is one no retry can fix.
    fn unrecoverable(&self, error: &KafkaError) -> Option<Error> {
        let reason = || self.consumer.context().last_error().unwrap_or_else(|| error.to_string());
        match classify(error) {
            Trouble::Transient => None,
            Trouble::Authentication => Some(Error::Authentication { brokers: self.brokers.clone(), reason: reason() }),
            Trouble::Authorization => Some(Error::Authorization(reason())),
            Trouble::Fatal => Some(Error::Fatal(reason())),
        }
    }
}

/// What a consumer error means for the loop.
#[derive(Debug, PartialEq, Eq)]
enum Trouble {
    Transient,
    Authentication,
    Authorization,
    Fatal,
}

fn classify(error: &KafkaError) -> Trouble {
    if matches!(error, KafkaError::MessageConsumptionFatal(_)) {
        return Trouble::Fatal;
    }
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed | RDKafkaErrorCode::SSL) => {
            Trouble::Authentication
        }
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => Trouble::Authorization,
        _ => Trouble::Transient,
    }
}

fn record_of(message: &BorrowedMessage<'_>) -> Record {
    Record {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
        timestamp: message
            .timestamp()
            .to_millis()
            .and_then(|millis| u64::try_from(millis).ok())
            .map(|millis| SystemTime::UNIX_EPOCH + Duration::from_millis(millis)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_permissions_stop_the_loop_and_the_network_does_not() {
        let cases = [
            (KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown), Trouble::Transient),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure), Trouble::Transient),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition), Trouble::Transient),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::Authentication), Trouble::Authentication),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::SaslAuthenticationFailed), Trouble::Authentication),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::SSL), Trouble::Authentication),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::TopicAuthorizationFailed), Trouble::Authorization),
            (KafkaError::MessageConsumption(RDKafkaErrorCode::GroupAuthorizationFailed), Trouble::Authorization),
            (KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::Fatal), Trouble::Fatal),
        ];
        for (error, expected) in cases {
            assert_eq!(classify(&error), expected, "{error}");
        }
    }
}
