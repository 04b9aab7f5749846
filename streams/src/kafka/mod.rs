//! A Kafka consumer group that hands records to a sink and commits only what it accepted.
//!
//! ```no_run
//! use riposte_streams::kafka::{Consumer, Delivery, Record, Settings, Sink};
//!
//! struct Queue(tokio::sync::mpsc::Sender<bytes::Bytes>);
//!
//! impl Sink for Queue {
//!     async fn accept(&mut self, batch: &[Record]) -> Delivery {
//!         for record in batch {
//!             if self.0.try_send(record.value.clone()).is_err() {
//!                 return Delivery::Refused("the detection queue is full".into());
//!             }
//!         }
//!         Delivery::Accepted
//!     }
//! }
//!
//! # async fn run(sender: tokio::sync::mpsc::Sender<bytes::Bytes>) -> Result<(), riposte_streams::Error> {
//! let settings = Settings::event_hubs(
//!     "riposte-audit.servicebus.windows.net",
//!     &std::env::var("EVENT_HUBS_CONNECTION_STRING").unwrap(),
//!     "insights-logs-kube-audit",
//! )?;
//! let consumer = Consumer::start(settings).await?;
//! consumer.run(&mut Queue(sender), std::future::pending()).await
//! # }
//! ```
//!
//! Delivery is at least once: a batch's offsets are committed after the sink accepted it
//! and only then; a refused batch is offered again (after a backoff) until it is accepted,
//! and records whose partition moved to another consumer meanwhile are left to that
//! consumer, which resumes after the last committed record. A sink may therefore see a
//! record twice (after a refusal, a rebalance or a restart), never miss one.

mod batch;
mod consumer;
mod context;
mod metrics;
mod settings;

use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;

pub use consumer::Consumer;
pub use metrics::{Metrics, MetricsSnapshot};
pub use settings::{EVENT_HUBS_KAFKA_PORT, EVENT_HUBS_USERNAME, Security, Settings, StartFrom};

/// One Kafka record, as the sink receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The topic (for Event Hubs, the event hub).
    pub topic: String,
    /// The partition within the topic.
    pub partition: i32,
    /// The record's position in its partition.
    pub offset: i64,
    /// The record's key, when it has one.
    pub key: Option<Bytes>,
    /// The record's value; empty when it has none. For an AKS diagnostic setting, a JSON
    /// `{"records":[…]}` batch of audit events.
    pub value: Bytes,
    /// When the record was produced (or appended, per the topic's timestamp type), when the
    /// broker says.
    pub timestamp: Option<SystemTime>,
}

/// The sink's answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The sink has the records: their offsets are committed.
    Accepted,
    /// The sink cannot take them now (the reason is logged): the same batch is offered
    /// again after a backoff, and nothing is committed meanwhile.
    Refused(String),
}

/// Where the consumer hands its records.
pub trait Sink: Send {
    /// Takes a batch of records, in order within each partition; the answer decides whether
    /// their offsets are committed. Clone what must outlive the call (`Bytes` clones share
    /// the buffer).
    fn accept(&mut self, batch: &[Record]) -> impl Future<Output = Delivery> + Send;
}
