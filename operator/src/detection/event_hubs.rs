//! AKS audit logs from Event Hubs: a cluster's diagnostic setting exports `kube-audit` (or
//! `kube-audit-admin`) to an event hub, which Riposte reads over the Kafka protocol as a
//! member of a consumer group (`riposte-streams`). Each record is a `{"records":[…]}` batch
//! of diagnostic records whose `properties.log` is one audit event.
//!
//! Records are committed once their events are in the detection queue, and only then: a
//! full queue refuses the batch, the consumer offers it again later, and nothing is lost to
//! a slow rule engine. Every replica joins the same group, so the hub's partitions are
//! shared between them; a batch read twice (after a rebalance or a restart) names the same
//! Alerts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use riposte_detect::audit::Event;
use riposte_detect::envelope;
use riposte_streams::ErrorKind;
use riposte_streams::kafka::{self, Consumer, Delivery, Record, Security, Sink};
use tracing::{error, info, warn};

use super::pipeline::Queue;
use crate::error::{Error, Result};
use crate::metrics::{DetectionMetrics, InputLabels};

/// The input's name in metrics (`riposte_audit_records_rejected_total{input="event_hubs"}`).
pub const INPUT: &str = "event_hubs";
/// A consumer that could not start, or stopped on a transient error, is started again after
/// this, doubling up to [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// Settings the broker refused (a wrong key, a hub the key may not read) are tried again
/// this rarely: the mounted secret may be corrected meanwhile.
const MISCONFIGURED_RETRY: Duration = Duration::from_secs(300);

/// Where the diagnostic setting exports, and how Riposte authenticates.
#[derive(Clone)]
pub struct EventHubsSettings {
    /// The namespace's host (`<namespace>.servicebus.windows.net`), with a port when it is
    /// not Event Hubs' Kafka port, 9093.
    pub namespace: String,
    /// A connection string of the namespace or of the hub (Listen rights suffice).
    pub connection_string: String,
    /// The event hubs the diagnostic setting writes to (`insights-logs-kube-audit`, …).
    pub hubs: Vec<String>,
    /// The Kafka consumer group (an Event Hubs consumer group of the hubs).
    pub consumer_group: String,
    /// A CA the brokers' certificates chain to, when not one of the public roots.
    pub ca_file: Option<PathBuf>,
}

impl EventHubsSettings {
    /// The consumer's settings, as Azure documents them for Kafka clients. Fails when the
    /// connection string does not name the namespace or, scoped to one hub, names another.
    pub fn kafka(&self) -> Result<kafka::Settings> {
        let invalid = |e: riposte_streams::Error| Error::Detection(format!("the Event Hubs settings are invalid: {e}"));
        let (host, port) = match self.namespace.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => (host, Some(port)),
            _ => (self.namespace.as_str(), None),
        };
        let [first, rest @ ..] = self.hubs.as_slice() else {
            return Err(Error::Detection("no event hub to read (--event-hubs-hub)".into()));
        };
        let mut settings = kafka::Settings::event_hubs(host, &self.connection_string, first).map_err(invalid)?;
        for hub in rest {
            // Each hub is checked against the connection string's scope.
            kafka::Settings::event_hubs(host, &self.connection_string, hub).map_err(invalid)?;
            settings.topics.push(hub.clone());
        }
        if let Some(port) = port {
            settings.brokers = format!("{host}:{port}");
        }
        settings.group_id = self.consumer_group.clone();
        if let Security::SaslSsl { ca_file, .. } = &mut settings.security {
            ca_file.clone_from(&self.ca_file);
        }
        Ok(settings)
    }
}

/// The events of a batch of records and the bytes they came in; what could not be read is
/// named in `problems`, and the rest is still taken.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<Event>,
    pub bytes: usize,
    pub problems: Vec<String>,
}

/// Reads every record's envelope (AKS diagnostic records, or any other format
/// [`envelope::unwrap`] knows, for a hub fed by something else).
pub fn decode(batch: &[Record]) -> Decoded {
    let mut decoded = Decoded::default();
    for record in batch {
        let at = format!("{}/{}@{}", record.topic, record.partition, record.offset);
        decoded.bytes += record.value.len();
        if record.value.is_empty() {
            continue;
        }
        match envelope::unwrap(&record.value) {
            Ok(unwrapped) => {
                decoded.events.extend(unwrapped.events);
                decoded.problems.extend(unwrapped.malformed.into_iter().map(|m| format!("{at} {m}")));
            }
            Err(e) => decoded.problems.push(format!("{at}: {e}")),
        }
    }
    decoded
}

/// Hands the consumer's batches to the detection queue.
struct QueueSink {
    queue: Queue,
    metrics: DetectionMetrics,
}

impl Sink for QueueSink {
    async fn accept(&mut self, batch: &[Record]) -> Delivery {
        let received = Instant::now();
        let decoded = decode(batch);
        // Nothing to evaluate (other categories, unreadable records): taken at once.
        let taken =
            decoded.events.is_empty() || self.queue.offer_or_defer(INPUT, decoded.events, decoded.bytes, received);
        if !taken {
            return Delivery::Refused("the detection queue is full".into());
        }
        // Counted once, when taken: a refused batch is decoded again when offered again.
        if !decoded.problems.is_empty() {
            self.metrics
                .records_rejected
                .get_or_create(&InputLabels { input: INPUT.into() })
                .inc_by(decoded.problems.len() as u64);
            warn!(
                rejected = decoded.problems.len(),
                "Event Hubs records held no readable audit event: {}",
                decoded.problems.join("; ")
            );
        }
        Delivery::Accepted
    }
}

/// Consumes the hubs into `queue` until the process ends. A consumer that cannot start or
/// stops is started again: soon after transient trouble (brokers unreachable), rarely after
/// a refusal of the settings (logged as an error each time).
pub async fn run(settings: kafka::Settings, queue: Queue, metrics: DetectionMetrics, counters: kafka::Metrics) {
    let mut sink = QueueSink { queue, metrics };
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        let outcome = match Consumer::start_counting(settings.clone(), counters.clone()).await {
            Ok(consumer) => {
                info!(brokers = %settings.brokers, hubs = ?settings.topics, group = %settings.group_id, "reading the AKS audit log from Event Hubs");
                delay = FIRST_RESTART_DELAY;
                consumer.run(&mut sink, std::future::pending()).await
            }
            Err(e) => Err(e),
        };
        let wait = match outcome {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::Configuration => {
                error!(
                    "the Event Hubs consumer cannot run with its settings ({e}); trying again in {MISCONFIGURED_RETRY:?}"
                );
                MISCONFIGURED_RETRY
            }
            Err(e) => {
                warn!("the Event Hubs consumer stopped ({e}); starting it again in {delay:?}");
                let wait = delay;
                delay = (delay * 2).min(MAX_RESTART_DELAY);
                wait
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const CONNECTION: &str =
        "Endpoint=sb://aks-audit.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=k";

    fn settings(namespace: &str, hubs: &[&str]) -> EventHubsSettings {
        EventHubsSettings {
            namespace: namespace.into(),
            connection_string: CONNECTION.into(),
            hubs: hubs.iter().map(|h| (*h).to_owned()).collect(),
            consumer_group: "riposte".into(),
            ca_file: None,
        }
    }

    fn record(offset: i64, value: &str) -> Record {
        Record {
            topic: "insights-logs-kube-audit".into(),
            partition: 0,
            offset,
            key: None,
            value: Bytes::from(value.to_owned()),
            timestamp: None,
        }
    }

    #[test]
    fn the_namespace_hubs_and_group_make_the_consumers_settings() {
        let kafka = settings(
            "aks-audit.servicebus.windows.net",
            &["insights-logs-kube-audit", "insights-logs-kube-audit-admin"],
        )
        .kafka()
        .unwrap();
        assert_eq!(kafka.brokers, "aks-audit.servicebus.windows.net:9093");
        assert_eq!(kafka.topics, ["insights-logs-kube-audit", "insights-logs-kube-audit-admin"]);
        assert_eq!(kafka.group_id, "riposte");
        assert!(matches!(kafka.security, Security::SaslSsl { ref username, .. } if username == "$ConnectionString"));
        let with_port =
            settings("aks-audit.servicebus.windows.net:19093", &["insights-logs-kube-audit"]).kafka().unwrap();
        assert_eq!(with_port.brokers, "aks-audit.servicebus.windows.net:19093");
    }

    #[test]
    fn a_connection_string_of_another_namespace_or_no_hub_is_refused() {
        let error = settings("other.servicebus.windows.net", &["insights-logs-kube-audit"]).kafka().unwrap_err();
        assert!(error.to_string().contains("aks-audit.servicebus.windows.net"), "{error}");
        let error = settings("aks-audit.servicebus.windows.net", &[]).kafka().unwrap_err();
        assert!(error.to_string().contains("--event-hubs-hub"), "{error}");
        let mut scoped = settings("aks-audit.servicebus.windows.net", &["insights-logs-kube-audit", "other"]);
        scoped.connection_string = format!("{CONNECTION};EntityPath=insights-logs-kube-audit");
        let error = scoped.kafka().unwrap_err();
        assert!(error.to_string().contains("other"), "a second hub outside the string's scope: {error}");
    }

    #[test]
    fn records_are_decoded_and_what_is_unreadable_is_named_without_losing_the_rest() {
        let event = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods","verb":"create","user":{"username":"mallory"}}"#;
        let batch = serde_json::json!({ "records": [
            { "category": "kube-audit", "properties": { "log": event } },
            { "category": "kube-audit", "properties": { "log": "{not json" } },
            { "category": "kube-apiserver", "properties": { "log": "I1201 started" } },
        ]})
        .to_string();
        let decoded = decode(&[record(7, &batch), record(8, "garbage"), record(9, "")]);
        assert_eq!(decoded.events.len(), 1);
        assert_eq!(decoded.events[0].audit_id, "a1");
        assert_eq!(decoded.problems.len(), 2, "{:?}", decoded.problems);
        assert!(decoded.problems[0].starts_with("insights-logs-kube-audit/0@7 "), "{:?}", decoded.problems);
        assert!(decoded.problems[1].starts_with("insights-logs-kube-audit/0@8: "), "{:?}", decoded.problems);
        assert_eq!(decoded.bytes, batch.len() + "garbage".len());
    }
}
