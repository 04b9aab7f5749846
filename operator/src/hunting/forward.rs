//! The node sensor's process events sent to the operator's hunting store, for clusters
//! without a hunting bucket: batched (a thousand events, or a second's worth) and posted to
//! the hunting API's `POST /v1/events` with the sensor's own ServiceAccount token, re-read
//! at each request so that a rotated token is used.
//!
//! The queue is bounded: while the operator cannot be reached, the batch in hand is retried
//! with backoff and newer events wait, then are dropped and counted. A batch the operator
//! refuses for what it is (400, 403, 413) is dropped and counted, since sending it again
//! would not change the answer.

use std::path::PathBuf;
use std::time::Duration;

use riposte_detect::runtime::ProcessEvent;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::metrics::ForwardMetrics;

/// Events waiting to be sent, at most.
const QUEUE: usize = 100_000;
/// Events per request, at most.
const BATCH: usize = 1_000;
/// How long the first event of a batch waits for others.
const BATCH_WAIT: Duration = Duration::from_secs(1);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ForwardSettings {
    /// The hunting API, `https://host:port`.
    pub url: String,
    /// PEM CA certificates to trust for its certificate (the audit webhook's CA).
    pub ca_file: PathBuf,
    /// The bearer token to present (the projected ServiceAccount token).
    pub token_file: PathBuf,
}

/// Where a sink hands its events; sending happens in [`Forwarder::start`]'s task.
#[derive(Clone)]
pub struct Forwarder {
    queue: mpsc::Sender<ProcessEvent>,
    metrics: ForwardMetrics,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").field("waiting", &(QUEUE - self.queue.capacity())).finish()
    }
}

impl Forwarder {
    /// The forwarder, and the task that sends its events until every clone of it is dropped
    /// (then it sends what is queued and ends).
    pub fn start(
        settings: ForwardSettings,
        metrics: ForwardMetrics,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>)> {
        let invalid = |what: String| Error::Hunting(format!("the hunting API's {what}"));
        let pem = std::fs::read(&settings.ca_file)
            .map_err(|e| invalid(format!("CA file {}: {e}", settings.ca_file.display())))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| invalid(format!("CA file {}: {e}", settings.ca_file.display())))?;
        let mut builder = reqwest::Client::builder().timeout(REQUEST_TIMEOUT).tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder.build().map_err(|e| invalid(format!("client: {e}")))?;
        let url = format!("{}{}", settings.url.trim_end_matches('/'), super::server::EVENTS_PATH);
        let (queue, receiver) = mpsc::channel(QUEUE);
        info!(%url, "the node's process events are sent to the operator's hunting store");
        let task = tokio::spawn(send(client, url, settings.token_file, receiver, metrics.clone()));
        Ok((Forwarder { queue, metrics }, task))
    }

    pub fn offer(&self, event: &ProcessEvent) {
        if self.queue.try_send(event.clone()).is_err() {
            self.metrics.dropped.inc();
        }
    }
}

async fn send(
    client: reqwest::Client,
    url: String,
    token_file: PathBuf,
    mut receiver: mpsc::Receiver<ProcessEvent>,
    metrics: ForwardMetrics,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = receiver.recv().await {
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH {
            tokio::select! {
                event = receiver.recv() => match event {
                    Some(event) => batch.push(event),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let body = match serde_json::to_vec(&batch) {
            Ok(body) => body,
            Err(error) => {
                warn!(%error, "a batch of process events cannot be encoded; dropped");
                metrics.rejected.inc_by(batch.len() as u64);
                batch.clear();
                continue;
            }
        };
        let mut retry = FIRST_RETRY;
        loop {
            match post(&client, &url, &token_file, body.clone()).await {
                Outcome::Accepted => {
                    metrics.sent.inc_by(batch.len() as u64);
                }
                Outcome::Refused(reason) => {
                    warn!(events = batch.len(), "the operator refused the node's process events: {reason}");
                    metrics.rejected.inc_by(batch.len() as u64);
                }
                Outcome::Failed(reason) => {
                    metrics.failed_requests.inc();
                    warn!(retry_in = ?retry, "sending the node's process events failed: {reason}");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                    continue;
                }
            }
            break;
        }
        batch.clear();
    }
}

enum Outcome {
    Accepted,
    /// Not worth sending again.
    Refused(String),
    /// Worth sending again.
    Failed(String),
}

async fn post(client: &reqwest::Client, url: &str, token_file: &std::path::Path, body: Vec<u8>) -> Outcome {
    let token = match std::fs::read_to_string(token_file) {
        Ok(token) => token.trim().to_owned(),
        Err(e) => return Outcome::Failed(format!("reading the token {}: {e}", token_file.display())),
    };
    let sent = client
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => return Outcome::Failed(riposte_hunt::error_chain(&e)),
    };
    let status = response.status();
    if status.is_success() {
        return Outcome::Accepted;
    }
    let text = response.text().await.unwrap_or_default();
    let reason = format!("{status}: {}", text.trim());
    // 401: the token may have just been rotated; the next try reads it again.
    match status.as_u16() {
        400 | 403 | 413 => Outcome::Refused(reason),
        _ => Outcome::Failed(reason),
    }
}
