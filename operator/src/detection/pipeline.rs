//! From the webhook's queue to Alerts: the rules over every audit event, the configuration
//! scan of the Services that exist, and the service-account baseline kept in a ConfigMap.
//!
//! One task owns the rule engine (its memory of clients and its baseline change with every
//! event), so events are evaluated in the order the apiserver sent them. Alerts are
//! created by separate tasks, a bounded number at a time, so that a slow write never holds
//! up the evaluation of the next batch.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryFutureExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use riposte_crds::Alert;
use riposte_detect::audit::Event;
use riposte_detect::coverage::AuditCoverage;
use riposte_detect::{Baseline, ClusterView, Config, Engine, LearningPeriod, Workload};
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, mpsc};
use tracing::{error, info, warn};

use super::cluster::CLUSTER_SOURCE;
use super::{
    AUDIT_SOURCE, ExposureKey, SCAN_SOURCE, SOURCE_LABEL, alert_for, detected_at, exposure_key, service_write_namespace,
};
use crate::error::{Error, Result};
use crate::hunting::HuntingSink;
use crate::metrics::{DetectionMetrics, InputLabels, ReasonLabels, TypeLabels};

/// The ConfigMap, in the operator's namespace, that keeps the service-account baseline.
pub const BASELINE_CONFIG_MAP: &str = "riposte-detection-baseline";
/// The key of the baseline (JSON) in that ConfigMap.
pub const BASELINE_KEY: &str = "baseline.json";
/// Alerts being created at once.
const CONCURRENT_ALERT_WRITES: usize = 32;
/// Service exposures being checked at once.
const CONCURRENT_EXPOSURE_CHECKS: usize = 4;
/// Attempts at creating one Alert before giving up on it (and counting the failure).
const ALERT_WRITE_ATTEMPTS: u32 = 4;
/// How long an exposure raised by this process is not raised again by a scan, whatever
/// the state of its Alert: longer than an Alert takes to be written and listed.
const RECENT_EXPOSURE: Duration = Duration::from_secs(120);
/// The input label of the apiserver's audit webhook.
pub const WEBHOOK_INPUT: &str = "webhook";
/// How often the queue reports drops, at most.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What the detection path is configured with.
#[derive(Clone, Debug)]
pub struct DetectionSettings {
    pub config: Config,
    /// How long a new baseline learns before operations outside it are reported.
    pub learning: Duration,
    /// How often the existing Services are scanned for exposures.
    pub scan_interval: Duration,
    /// The operator's namespace: home of cluster-scoped alerts and of the baseline.
    pub namespace: String,
    /// How often a changed baseline is saved (also when stopping).
    pub baseline_save_interval: Duration,
    /// Where every evaluated event is kept for hunting.
    pub hunting: HuntingSink,
}

/// Audit events received together, waiting for the rules.
pub struct Batch {
    pub events: Vec<Event>,
    /// Which input delivered them (`webhook`, `firehose`, ...), as the metrics label it.
    pub input: &'static str,
    /// The size of the body they came in: what they hold in memory, near enough.
    pub bytes: usize,
    pub received: Instant,
}

/// Whether the queue took a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    Accepted,
    /// The queue was full: the batch was dropped, counted and reported.
    Dropped,
}

/// How much the queue may hold, in events and in the bytes of the bodies they came in (a
/// batch can hold one event or hundreds, small or with whole objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLimits {
    pub events: usize,
    pub bytes: usize,
}

#[derive(Clone, Copy, Debug, Default)]
struct Occupancy {
    events: usize,
    bytes: usize,
}

/// The webhook's side of the queue.
#[derive(Clone)]
pub struct Queue {
    sender: mpsc::UnboundedSender<Batch>,
    queued: Arc<Mutex<Occupancy>>,
    limits: QueueLimits,
    metrics: DetectionMetrics,
    drops: Arc<DropReport>,
}

/// The rules' side of the queue.
pub struct Receiver {
    receiver: mpsc::UnboundedReceiver<Batch>,
    queued: Arc<Mutex<Occupancy>>,
    metrics: DetectionMetrics,
}

struct DropReport {
    since_report: AtomicU64,
    last_report: Mutex<Option<Instant>>,
}

/// A queue holding at most `limits`.
pub fn queue(limits: QueueLimits, metrics: DetectionMetrics) -> (Queue, Receiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(Mutex::new(Occupancy::default()));
    let drops = Arc::new(DropReport { since_report: AtomicU64::new(0), last_report: Mutex::new(None) });
    (
        Queue { sender, queued: queued.clone(), limits, metrics: metrics.clone(), drops },
        Receiver { receiver, queued, metrics },
    )
}

impl Queue {
    /// Queues a batch of `bytes` if there is room for it; an empty queue takes any batch,
    /// so that a batch larger than the limits is not dropped forever. A batch that does not
    /// fit is dropped, counted and reported: for senders that do not keep what they sent
    /// (the apiserver's webhook backend).
    pub fn offer(&self, events: Vec<Event>, bytes: usize, received: Instant) -> Offer {
        let count = events.len();
        if self.send(WEBHOOK_INPUT, events, bytes, received) {
            return Offer::Accepted;
        }
        self.metrics.events_dropped.get_or_create(&ReasonLabels { reason: "queue_full".into() }).inc_by(count as u64);
        self.report_drop(count as u64);
        Offer::Dropped
    }

    /// As [`Queue::offer`], for senders that keep what the queue could not take and deliver
    /// it again (Firehose, Pub/Sub, an Event Hubs consumer's uncommitted records): nothing
    /// is dropped, the refusal is counted by input. True when the batch was queued.
    pub fn offer_or_defer(&self, input: &'static str, events: Vec<Event>, bytes: usize, received: Instant) -> bool {
        let count = events.len();
        let queued = self.send(input, events, bytes, received);
        if !queued {
            self.metrics.events_deferred.get_or_create(&InputLabels { input: input.to_owned() }).inc_by(count as u64);
        }
        queued
    }

    /// Reserves room for the batch and sends it to the rules; false when it does not fit.
    fn send(&self, input: &'static str, events: Vec<Event>, bytes: usize, received: Instant) -> bool {
        let count = events.len();
        let reserved = {
            let mut queued = lock(&self.queued);
            let fits = queued.events == 0
                || (queued.events + count <= self.limits.events && queued.bytes + bytes <= self.limits.bytes);
            if fits {
                queued.events += count;
                queued.bytes += bytes;
                self.metrics.queued_events.set(queued.events as i64);
                self.metrics.queued_bytes.set(queued.bytes as i64);
            }
            fits
        };
        if reserved {
            if self.sender.send(Batch { events, input, bytes, received }).is_ok() {
                self.metrics.events_received.inc_by(count as u64);
                return true;
            }
            // The rules' task is gone (the process is stopping): give the room back.
            release(&self.queued, &self.metrics, count, bytes);
        }
        false
    }

    /// Drops are logged, at most every [`DROP_REPORT_INTERVAL`], with how many there were.
    fn report_drop(&self, count: u64) {
        let since = self.drops.since_report.fetch_add(count, Ordering::AcqRel) + count;
        let mut last = lock(&self.drops.last_report);
        if last.is_some_and(|at| at.elapsed() < DROP_REPORT_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        self.drops.since_report.fetch_sub(since, Ordering::AcqRel);
        warn!(
            dropped = since,
            max_events = self.limits.events,
            max_bytes = self.limits.bytes,
            "the detection queue is full: audit events were dropped without evaluation \
             (riposte_audit_events_dropped_total counts them); the rules are not keeping up with the apiserver"
        );
    }
}

impl Receiver {
    async fn recv(&mut self) -> Option<Batch> {
        self.receiver.recv().await
    }

    /// Frees the room of a batch once its events are evaluated.
    fn done(&self, events: usize, bytes: usize) {
        release(&self.queued, &self.metrics, events, bytes);
    }
}

fn release(queued: &Mutex<Occupancy>, metrics: &DetectionMetrics, events: usize, bytes: usize) {
    let mut queued = lock(queued);
    queued.events -= events;
    queued.bytes -= bytes;
    metrics.queued_events.set(queued.events as i64);
    metrics.queued_bytes.set(queued.bytes as i64);
}

/// Evaluates the queue's batches and raises Alerts until `stop` completes (or the queue
/// closes). Scans the existing Services at start and every `scan_interval`, and saves the
/// baseline when it changed, and once more when stopping. Returns the receiver, so that
/// evaluation can resume where it stopped.
pub async fn run(
    client: Client,
    settings: DetectionSettings,
    mut receiver: Receiver,
    coverage: Option<Arc<Mutex<AuditCoverage>>>,
    metrics: DetectionMetrics,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Receiver> {
    let store = BaselineStore { api: Api::namespaced(client.clone(), &settings.namespace) };
    let learning = settings.learning;
    let baseline = store.load(learning).await?;
    info!(
        accounts = baseline.accounts(),
        operations = baseline.operations(),
        learning_until = %baseline.learning().end,
        "service-account baseline loaded"
    );
    let mut detector = Detector {
        client: client.clone(),
        engine: Engine::new(settings.config.clone(), baseline),
        recent_exposures: Arc::default(),
        exposure_permits: Arc::new(Semaphore::new(CONCURRENT_EXPOSURE_CHECKS)),
        writer: AlertWriter::new(client, settings.namespace.clone(), metrics.clone()),
        settings,
        coverage,
        metrics,
    };
    let mut saved = serde_json::to_string(detector.engine.baseline()).unwrap_or_default();
    let mut save = tokio::time::interval(detector.settings.baseline_save_interval);
    let mut scan = tokio::time::interval(detector.settings.scan_interval);
    save.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            batch = receiver.recv() => {
                let Some(batch) = batch else { break };
                let (events, bytes) = (batch.events.len(), batch.bytes);
                detector.evaluate(batch).await;
                receiver.done(events, bytes);
            }
            _ = save.tick() => saved = detector.save_baseline(&store, saved).await,
            _ = scan.tick() => detector.scan().await,
        }
    }
    detector.save_baseline(&store, saved).await;
    Ok(receiver)
}

struct Detector {
    client: Client,
    engine: Engine,
    /// Exposures raised lately, by [`exposure_key`]: their Alerts may still be in flight
    /// when the next scan lists the open ones.
    recent_exposures: Arc<Mutex<BTreeMap<ExposureKey, Instant>>>,
    /// Exposure checks running at once (each lists the workloads of a namespace).
    exposure_permits: Arc<Semaphore>,
    writer: AlertWriter,
    settings: DetectionSettings,
    /// Told of every audit event, to match the creations a watch of the cluster sees.
    coverage: Option<Arc<Mutex<AuditCoverage>>>,
    metrics: DetectionMetrics,
}

impl Detector {
    async fn evaluate(&mut self, batch: Batch) {
        if let Some(coverage) = &self.coverage {
            let mut coverage = lock(coverage);
            for event in &batch.events {
                coverage.audited(event, batch.received);
            }
        }
        let mut alerts = BTreeMap::new();
        let no_workloads = Workloads::default();
        for event in &batch.events {
            // Every rule but the exposures runs here, on the event path; a Service write's
            // exposure needs the workloads of its namespace, listed off the path.
            for finding in self.engine.evaluate(event, &no_workloads) {
                self.metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
                let alert =
                    alert_for(&finding, &event.audit_id, detected_at(event), AUDIT_SOURCE, &self.settings.namespace);
                // A retried batch repeats an audit ID: one Alert per name.
                alerts.insert(alert.name_any(), alert);
            }
            if service_write_namespace(event).is_some()
                && riposte_detect::service_write_may_expose(event, self.engine.config())
            {
                self.check_exposure(event.clone(), batch.received);
            }
        }
        self.metrics.events_evaluated.inc_by(batch.events.len() as u64);
        self.settings.hunting.audit(&batch.events, batch.input);
        for alert in alerts.into_values() {
            self.writer.create(alert, batch.received).await;
        }
    }

    /// Checks what a Service made reachable from outside exposes, in the background: lists
    /// the workloads of its namespace, then runs the exposure rules.
    fn check_exposure(&self, event: Event, received: Instant) {
        let client = self.client.clone();
        // Service writes that may expose something are rare: a copy of the lists each time.
        let config = self.engine.config().clone();
        let recent = Arc::clone(&self.recent_exposures);
        let permits = Arc::clone(&self.exposure_permits);
        let writer = self.writer.clone();
        let metrics = self.metrics.clone();
        let home = self.settings.namespace.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let namespace = service_write_namespace(&event).unwrap_or_default();
            let cluster = workloads_around(&client, namespace, &config.exposure.kubeflow_namespace).await;
            for finding in riposte_detect::service_write_exposures(&event, &cluster, &config) {
                metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
                let alert = alert_for(&finding, &event.audit_id, detected_at(&event), AUDIT_SOURCE, &home);
                lock(&recent).insert(exposure_key(&alert), Instant::now());
                writer.create(alert, received).await;
            }
        });
    }

    /// The configuration scan: every Service reachable from outside the cluster, checked
    /// against the workloads it selects. An exposure that already has an open Alert is not
    /// raised again; the name of a scan's Alert derives from the Service's version, so
    /// rescans of an unchanged Service (from any replica) name the same Alert.
    async fn scan(&mut self) {
        let started = Instant::now();
        let services = match Api::<Service>::all(self.client.clone()).list(&ListParams::default()).await {
            Ok(services) => services.items,
            Err(e) => {
                warn!("configuration scan: cannot list Services, trying again at the next scan: {e}");
                return;
            }
        };
        // Only a Service reachable from outside can expose anything: the workloads of the
        // other namespaces are not listed.
        let mut by_namespace: BTreeMap<String, Vec<(riposte_detect::Service, String)>> = BTreeMap::new();
        for service in services {
            let namespace = service.namespace().unwrap_or_default();
            match exposable(&service, self.engine.config()) {
                Ok(Some(exposable)) => by_namespace.entry(namespace).or_default().push(exposable),
                Ok(None) => {}
                Err(e) => warn!(%namespace, service = service.name_any(), "configuration scan: {e}"),
            }
        }
        lock(&self.recent_exposures).retain(|_, at| at.elapsed() < RECENT_EXPOSURE);
        let mut raised = 0;
        for (namespace, services) in by_namespace {
            let kubeflow = &self.engine.config().exposure.kubeflow_namespace;
            let cluster = workloads_around(&self.client, &namespace, kubeflow).await;
            let open = match open_alerts(&self.client, &namespace).await {
                Ok(open) => open,
                Err(e) => {
                    warn!(%namespace, "configuration scan: cannot list the open Alerts, skipping the namespace: {e}");
                    continue;
                }
            };
            for (parsed, version) in services {
                for finding in self.engine.scan_service(&parsed, &cluster) {
                    let alert =
                        alert_for(&finding, &version, Time(Timestamp::now()), SCAN_SOURCE, &self.settings.namespace);
                    let key = exposure_key(&alert);
                    let raised_already = {
                        let mut recent = lock(&self.recent_exposures);
                        let raised = recent.contains_key(&key) || open.iter().any(|o| exposure_key(o) == key);
                        if !raised {
                            recent.insert(key, Instant::now());
                        }
                        raised
                    };
                    if raised_already {
                        continue;
                    }
                    self.metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
                    raised += 1;
                    self.writer.create(alert, started).await;
                }
            }
        }
        info!(raised, elapsed_ms = started.elapsed().as_millis() as u64, "configuration scan done");
    }

    /// Saves the baseline when it changed since `saved`; returns what is now saved.
    async fn save_baseline(&self, store: &BaselineStore, saved: String) -> String {
        let current = match serde_json::to_string(self.engine.baseline()) {
            Ok(current) => current,
            Err(e) => {
                error!("cannot serialise the baseline: {e}");
                return saved;
            }
        };
        if current == saved {
            return saved;
        }
        match store.save(self.engine.baseline()).await {
            Ok(()) => current,
            Err(e) => {
                warn!("cannot save the service-account baseline, trying again later: {e}");
                saved
            }
        }
    }
}

/// A Service reachable from outside the cluster, as the rules read it, with the occurrence
/// that names the Alerts found in this version of it (the same for the scan, the cluster
/// watch and every replica); `None` for a Service reachable only inside.
pub(super) fn exposable(
    service: &Service,
    config: &Config,
) -> Result<Option<(riposte_detect::Service, String)>, String> {
    let json = serde_json::to_string(service).map_err(|e| e.to_string())?;
    let parsed = riposte_detect::Service::from_json(&json).map_err(|e| e.to_string())?;
    if !riposte_detect::service_may_expose(&parsed, config) {
        return Ok(None);
    }
    let occurrence = format!(
        "scan/{}/{}",
        service.metadata.uid.as_deref().unwrap_or_default(),
        service.resource_version().unwrap_or_default()
    );
    Ok(Some((parsed, occurrence)))
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pods and workloads of `namespace` and of Kubeflow's namespace (which one exposure
/// rule asks about). A namespace that cannot be listed is left out, and logged: its
/// exposures are found by the next scan.
pub(super) async fn workloads_around(client: &Client, namespace: &str, kubeflow: &str) -> Workloads {
    let mut workloads = Workloads::default();
    for ns in [namespace, kubeflow] {
        if workloads.0.contains_key(ns) {
            continue;
        }
        match list_workloads(client, ns).await {
            Ok(found) => {
                workloads.0.insert(ns.to_owned(), found);
            }
            Err(e) => warn!(
                namespace = ns,
                "cannot list the workloads a Service may expose; its exposure is checked at the next scan: {e}"
            ),
        }
    }
    workloads
}

async fn open_alerts(client: &Client, namespace: &str) -> Result<Vec<Alert>> {
    let selector = format!("{SOURCE_LABEL} in ({AUDIT_SOURCE},{SCAN_SOURCE},{CLUSTER_SOURCE})");
    let alerts =
        Api::<Alert>::namespaced(client.clone(), namespace).list(&ListParams::default().labels(&selector)).await?;
    Ok(alerts.items.into_iter().filter(|a| a.spec.state.is_open()).collect())
}

/// The pods and workloads of some namespaces.
#[derive(Default)]
pub(super) struct Workloads(BTreeMap<String, Vec<Workload>>);

impl ClusterView for Workloads {
    fn workloads(&self, namespace: &str) -> Vec<&Workload> {
        self.0.get(namespace).map(|w| w.iter().collect()).unwrap_or_default()
    }
}

async fn list_workloads(client: &Client, namespace: &str) -> Result<Vec<Workload>> {
    let (pods, deployments, daemon_sets, stateful_sets, replica_sets, controllers, jobs, cron_jobs) = tokio::try_join!(
        list_as_workloads::<Pod>(client, namespace),
        list_as_workloads::<Deployment>(client, namespace),
        list_as_workloads::<DaemonSet>(client, namespace),
        list_as_workloads::<StatefulSet>(client, namespace),
        list_as_workloads::<ReplicaSet>(client, namespace),
        list_as_workloads::<ReplicationController>(client, namespace),
        list_as_workloads::<Job>(client, namespace),
        list_as_workloads::<CronJob>(client, namespace),
    )?;
    Ok([pods, deployments, daemon_sets, stateful_sets, replica_sets, controllers, jobs, cron_jobs].concat())
}

async fn list_as_workloads<K>(client: &Client, namespace: &str) -> Result<Vec<Workload>>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    <K as Resource>::DynamicType: Default,
{
    let list = Api::<K>::namespaced(client.clone(), namespace).list(&ListParams::default()).await?;
    Ok(list
        .items
        .iter()
        .filter_map(|object| {
            // The typed objects serialise with their kind, which Workload reads.
            let mut value = serde_json::to_value(object).ok()?;
            value["kind"] = serde_json::Value::String(<K as k8s_openapi::Resource>::KIND.to_owned());
            serde_json::from_value(value).ok()
        })
        .collect())
}

/// Creates Alerts in the background, a bounded number at a time.
#[derive(Clone)]
pub(crate) struct AlertWriter {
    client: Client,
    namespace: String,
    permits: Arc<Semaphore>,
    metrics: DetectionMetrics,
}

impl AlertWriter {
    pub(crate) fn new(client: Client, namespace: String, metrics: DetectionMetrics) -> Self {
        AlertWriter { client, namespace, permits: Arc::new(Semaphore::new(CONCURRENT_ALERT_WRITES)), metrics }
    }

    /// Starts creating `alert`; waits only for a free slot.
    pub(crate) async fn create(&self, alert: Alert, received: Instant) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let writer = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match writer.create_with_retries(alert).await {
                Ok(()) => {
                    writer.metrics.alerts_created.inc();
                    writer.metrics.detection_seconds.observe(received.elapsed().as_secs_f64());
                }
                Err(e) => {
                    writer.metrics.alert_write_failures.inc();
                    error!("a detection was lost: {e}");
                }
            }
        });
    }

    async fn create_with_retries(&self, mut alert: Alert) -> Result<()> {
        let name = alert.name_any();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let namespace = alert.namespace().unwrap_or_else(|| self.namespace.clone());
            let api = Api::<Alert>::namespaced(self.client.clone(), &namespace);
            match api.create(&PostParams::default(), &alert).map_err(Error::Kube).await {
                Ok(_) => return Ok(()),
                // The same sighting, already raised (a retried batch, or another replica).
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 409 && e.reason == "AlreadyExists" => return Ok(()),
                // The namespace is gone or going (the detection may be its deletion):
                // keep the alert in the operator's namespace.
                Err(Error::Kube(kube::Error::Api(e)))
                    if namespace != self.namespace
                        && (e.code == 404 || (e.code == 403 && e.message.contains("being terminated"))) =>
                {
                    alert.metadata.namespace = Some(self.namespace.clone());
                }
                Err(Error::Kube(kube::Error::Api(e))) if e.code == 400 || e.code == 422 => {
                    return Err(Error::Detection(format!("Alert {namespace}/{name} was refused: {}", e.message)));
                }
                Err(e) if attempt >= ALERT_WRITE_ATTEMPTS => {
                    return Err(Error::Detection(format!(
                        "cannot create Alert {namespace}/{name} after {attempt} attempts: {e}"
                    )));
                }
                Err(_) => tokio::time::sleep(crate::error::backoff(attempt) / 4).await,
            }
        }
    }
}

/// The service-account baseline, in a ConfigMap of the operator's namespace. Every
/// replica merges what it learned into what is stored.
struct BaselineStore {
    api: Api<ConfigMap>,
}

impl BaselineStore {
    /// The stored baseline, or a new one learning from now for `learning`. A stored
    /// baseline that cannot be read is copied aside (nothing is lost) and replaced.
    async fn load(&self, learning: Duration) -> Result<Baseline> {
        let fresh = || {
            let start = riposte_detect::audit::Timestamp::from_unix_micros(Timestamp::now().as_microsecond());
            Baseline::new(LearningPeriod { start, end: start.add_seconds(learning.as_secs() as i64) })
        };
        let Some(stored) = self.api.get_opt(BASELINE_CONFIG_MAP).await? else {
            return Ok(fresh());
        };
        let data = stored.data.as_ref().and_then(|d| d.get(BASELINE_KEY)).cloned().unwrap_or_default();
        match serde_json::from_str::<Baseline>(&data) {
            Ok(baseline) => Ok(baseline),
            Err(e) => {
                let aside = format!("{BASELINE_CONFIG_MAP}-unreadable-{}", Timestamp::now().as_second());
                let copy = ConfigMap {
                    metadata: ObjectMeta { name: Some(aside.clone()), ..ObjectMeta::default() },
                    data: stored.data.clone(),
                    ..ConfigMap::default()
                };
                self.api.create(&PostParams::default(), &copy).await?;
                error!(
                    copy = aside,
                    "the stored service-account baseline cannot be read ({e}); it was copied aside and learning starts again"
                );
                Ok(fresh())
            }
        }
    }

    /// Merges `baseline` into the stored one and writes the result, checking the version
    /// read so that two replicas never overwrite each other's learning.
    async fn save(&self, baseline: &Baseline) -> Result<()> {
        for _ in 0..3 {
            let stored = self.api.get_opt(BASELINE_CONFIG_MAP).await?;
            let mut merged = baseline.clone();
            if let Some(theirs) = stored
                .as_ref()
                .and_then(|s| s.data.as_ref()?.get(BASELINE_KEY))
                .and_then(|data| serde_json::from_str::<Baseline>(data).ok())
            {
                merged.merge(&theirs);
            }
            let data = serde_json::to_string(&merged).map_err(|e| Error::Detection(e.to_string()))?;
            let written = match stored {
                Some(mut stored) => {
                    stored.data = Some([(BASELINE_KEY.to_owned(), data)].into());
                    self.api.replace(BASELINE_CONFIG_MAP, &PostParams::default(), &stored).await.map(drop)
                }
                None => {
                    let created = ConfigMap {
                        metadata: ObjectMeta { name: Some(BASELINE_CONFIG_MAP.to_owned()), ..ObjectMeta::default() },
                        data: Some([(BASELINE_KEY.to_owned(), data)].into()),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &created).await.map(drop)
                }
            };
            match written {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict(format!("ConfigMap {BASELINE_CONFIG_MAP}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn events(count: usize) -> Vec<Event> {
        let event = r#"{"level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"}}"#;
        (0..count).map(|_| riposte_detect::audit::parse_event(event.as_bytes()).unwrap()).collect()
    }

    const LIMITS: QueueLimits = QueueLimits { events: 10, bytes: 1000 };

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_makes_room_again() {
        let metrics = DetectionMetrics::register(&mut Registry::default());
        let (queue, mut receiver) = queue(LIMITS, metrics.clone());
        assert_eq!(queue.offer(events(6), 100, Instant::now()), Offer::Accepted);
        assert_eq!(queue.offer(events(4), 100, Instant::now()), Offer::Accepted);
        assert_eq!(queue.offer(events(1), 10, Instant::now()), Offer::Dropped);
        assert_eq!(metrics.events_dropped.get_or_create(&ReasonLabels { reason: "queue_full".into() }).get(), 1);
        assert_eq!(metrics.events_received.get(), 10);
        assert_eq!((metrics.queued_events.get(), metrics.queued_bytes.get()), (10, 200));
        let first = receiver.recv().await.unwrap();
        receiver.done(first.events.len(), first.bytes);
        assert_eq!((metrics.queued_events.get(), metrics.queued_bytes.get()), (4, 100));
        assert_eq!(queue.offer(events(5), 100, Instant::now()), Offer::Accepted);
    }

    #[tokio::test]
    async fn large_bodies_fill_the_queue_before_many_events_do() {
        let metrics = DetectionMetrics::register(&mut Registry::default());
        let (queue, _receiver) = queue(LIMITS, metrics.clone());
        assert_eq!(queue.offer(events(1), 600, Instant::now()), Offer::Accepted);
        assert_eq!(queue.offer(events(1), 600, Instant::now()), Offer::Dropped, "1200 bytes exceed 1000");
        assert_eq!(queue.offer(events(1), 400, Instant::now()), Offer::Accepted);
        assert_eq!((metrics.queued_events.get(), metrics.queued_bytes.get()), (2, 1000));
    }

    #[tokio::test]
    async fn an_oversized_batch_gets_through_an_empty_queue() {
        let metrics = DetectionMetrics::register(&mut Registry::default());
        let (queue, _receiver) = queue(LIMITS, metrics);
        assert_eq!(queue.offer(events(50), 5000, Instant::now()), Offer::Accepted);
        assert_eq!(queue.offer(events(1), 10, Instant::now()), Offer::Dropped);
    }

    #[tokio::test]
    async fn a_sender_that_delivers_again_is_deferred_not_dropped() {
        let metrics = DetectionMetrics::register(&mut Registry::default());
        let (queue, _receiver) = queue(LIMITS, metrics.clone());
        assert!(queue.offer_or_defer("event_hubs", events(10), 100, Instant::now()), "queued");
        assert!(!queue.offer_or_defer("event_hubs", events(3), 10, Instant::now()), "deferred");
        assert_eq!(metrics.events_deferred.get_or_create(&InputLabels { input: "event_hubs".into() }).get(), 3);
        assert_eq!(metrics.events_dropped.get_or_create(&ReasonLabels { reason: "queue_full".into() }).get(), 0);
        assert_eq!(metrics.events_received.get(), 10);
    }
}
