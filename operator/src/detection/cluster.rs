//! The second source: the workload rules over what the cluster holds, so that audit loss
//! cannot blind them.
//!
//! The audit stream can be lost (kube-apiserver drops a whole webhook batch when one event
//! in it fails to encode, a full buffer drops events, a managed cluster's export lags or
//! stops) and it only says what was written, not what exists: a log that begins after a
//! Deployment was created, or a policy that records workloads without bodies, shows nothing
//! of the privileged pods that the Deployment's controller then makes. So Riposte also
//! watches the pods and workloads themselves and runs the workload rules (privileged
//! containers, sensitive mounts, kube-system containers, miner images) on each object as it
//! changes, raising Alerts with source `riposte-cluster`. When the audit path raised the
//! same thing (same type, same place), the Alert controller folds one into the other.
//!
//! One Alert per (object, type, container, field), named from the object's uid: a restart,
//! another replica or a status update names the same Alert. A pod whose controller's
//! template already has the finding is not raised again (one alert per Deployment, not one
//! per replica); a pod that differs from its template (a mutating webhook, a forged owner)
//! is raised on its own.
//!
//! The watch also tells audit coverage ([`AuditCoverage`]) about each creation it sees, and
//! raises `Riposte.AuditLoss` for the creations no audit event reported.
//!
//! Services are watched too: a Service changed to be reachable from outside is checked at
//! once against the workloads it selects (the exposure rules, K8S_Exposed*), as the
//! configuration scan would check it, under the same name, so that the scan does not raise
//! it again. The Services that existed before the watch began are the scan's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use riposte_detect::coverage::{AuditCoverage, ObjectKey};
use riposte_detect::{Config, Entities, Finding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::alert_for;
use super::pipeline::{AlertWriter, exposable, lock, workloads_around};
use crate::metrics::{DetectionMetrics, ResourceLabels, TypeLabels};

/// `spec.source` of the Alerts raised from the cluster's objects.
pub const CLUSTER_SOURCE: &str = "riposte-cluster";
/// The catalog id of audit loss.
pub const AUDIT_LOSS: &str = "Riposte.AuditLoss";
/// The resources whose creations are compared with the audit stream: those watched.
pub const WATCHED_RESOURCES: [(&str, &str); 8] = [
    ("batch", "cronjobs"),
    ("apps", "deployments"),
    ("apps", "daemonsets"),
    ("apps", "statefulsets"),
    ("", "replicationcontrollers"),
    ("batch", "jobs"),
    ("apps", "replicasets"),
    ("", "pods"),
];
/// How long a pod whose controller the watch has not seen yet waits for it: the owner was
/// written first, but its event travels on another watch, which a loaded apiserver can hold
/// back for seconds (seen in CI with 2 s). Only such pods wait: a pod without a controller,
/// the usual attack, is evaluated at once.
const OWNER_WAIT: Duration = Duration::from_secs(10);
/// How often waiting objects and audit coverage are looked at.
const TICK: Duration = Duration::from_secs(1);
/// Unreported creations named in one audit-loss Alert, at most (all are counted).
const MAX_NAMED_LOSSES: usize = 20;
/// Owner links followed at most (a Job of a CronJob is two; a loop is an API bug).
const MAX_OWNER_DEPTH: usize = 8;

/// What the second source is configured with.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub config: Config,
    /// The operator's namespace: home of the audit-loss Alerts.
    pub namespace: String,
}

/// One object as the watch saw it, reduced to what the rules and the ownership need.
#[derive(Clone, Debug)]
pub struct Observed {
    pub key: ObjectKey,
    pub uid: String,
    /// The uid of the controller that owns it, if any.
    pub owner: Option<String>,
    /// When it was created, by the apiserver's clock.
    pub created: Option<jiff::Timestamp>,
    /// Changes when what the rules read may have changed (the pod spec, without the node
    /// the scheduler binds it to; a workload's generation).
    pub fingerprint: u64,
    /// The object, as JSON, for the rules.
    pub json: String,
}

/// A finding about an object, and what names its Alert.
#[derive(Debug)]
pub struct Raise {
    pub finding: Finding,
    pub occurrence: String,
}

/// What the watch knows of the objects: their owners and what the rules found in each.
#[derive(Debug, Default)]
pub struct Tree {
    nodes: HashMap<String, Node>,
}

#[derive(Debug)]
struct Node {
    owner: Option<String>,
    fingerprint: u64,
    /// (type, container) of the findings in the object.
    found: BTreeSet<(String, String)>,
}

/// What happened to an observed object.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing the rules read changed since it was last evaluated.
    Unchanged,
    /// Its controller is not known yet: ask again when it is, or after [`OWNER_WAIT`].
    WaitForOwner,
    /// Evaluated; `new` when the uid had not been seen before.
    Evaluated { new: bool },
}

impl Tree {
    /// Evaluates `object` with `evaluate` unless nothing it reads changed; returns the
    /// findings to raise: those new for this object and not in its controllers' templates.
    pub fn observe(
        &mut self,
        object: &Observed,
        owner_wait_over: bool,
        evaluate: impl FnOnce(&str) -> Vec<Finding>,
    ) -> (Outcome, Vec<Raise>) {
        let previous = self.nodes.get(&object.uid);
        if previous.is_some_and(|node| node.fingerprint == object.fingerprint) {
            if let Some(node) = self.nodes.get_mut(&object.uid) {
                node.owner.clone_from(&object.owner);
            }
            return (Outcome::Unchanged, Vec::new());
        }
        if let Some(owner) = &object.owner
            && !self.nodes.contains_key(owner)
            && !owner_wait_over
        {
            return (Outcome::WaitForOwner, Vec::new());
        }
        let new = previous.is_none();
        let raised_before = previous.map(|node| node.found.clone()).unwrap_or_default();
        let findings = evaluate(&object.json);
        let found: BTreeSet<(String, String)> = findings.iter().map(place_of).collect();
        let raises = findings
            .into_iter()
            .filter(|finding| {
                let place = place_of(finding);
                !raised_before.contains(&place) && !self.ancestor_found(object.owner.as_deref(), &place)
            })
            .map(|finding| {
                let field = finding.evidence.iter().find(|(name, _)| name == "field").map_or("", |(_, v)| v.as_str());
                let occurrence = format!("cluster/{}/{field}", object.uid);
                Raise { finding, occurrence }
            })
            .collect();
        self.nodes
            .insert(object.uid.clone(), Node { owner: object.owner.clone(), fingerprint: object.fingerprint, found });
        (Outcome::Evaluated { new }, raises)
    }

    pub fn delete(&mut self, uid: &str) {
        self.nodes.remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.nodes.contains_key(uid)
    }

    fn ancestor_found<'a>(&'a self, mut owner: Option<&'a str>, place: &(String, String)) -> bool {
        for _ in 0..MAX_OWNER_DEPTH {
            let Some(node) = owner.and_then(|uid| self.nodes.get(uid)) else { return false };
            if node.found.contains(place) {
                return true;
            }
            owner = node.owner.as_deref();
        }
        false
    }
}

fn place_of(finding: &Finding) -> (String, String) {
    (finding.alert_type.to_owned(), finding.entities.container.clone().unwrap_or_default())
}

/// The audit-loss finding for creations no audit event reported.
pub fn audit_loss(lost: &[ObjectKey], grace: Duration) -> Finding {
    let mut evidence: Vec<(String, String)> =
        lost.iter().take(MAX_NAMED_LOSSES).map(|key| ("unreported".to_owned(), key.to_string())).collect();
    evidence.push(("count".to_owned(), lost.len().to_string()));
    evidence.push(("grace".to_owned(), format!("{}s", grace.as_secs())));
    let more = if lost.len() > 1 { format!(" and {} more", lost.len() - 1) } else { String::new() };
    Finding {
        alert_type: AUDIT_LOSS,
        entities: Entities::default(),
        evidence,
        summary: format!(
            "Audit events are missing: {}{more} was created and no audit event reported it within {}s \
             (batches dropped by the apiserver, a full audit buffer, or an audit stream that stopped)",
            lost.first().map(ToString::to_string).unwrap_or_default(),
            grace.as_secs()
        ),
    }
}

/// A kind the second source watches: where its pod template is, and what changes it.
trait Watched: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static {
    const GROUP: &'static str;
    const RESOURCE: &'static str;
    /// Changes when what the rules read may have changed.
    fn fingerprint(&self) -> u64;
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

macro_rules! watched_by_generation {
    ($($kind:ty => $group:literal, $resource:literal;)*) => {$(
        impl Watched for $kind {
            const GROUP: &'static str = $group;
            const RESOURCE: &'static str = $resource;
            fn fingerprint(&self) -> u64 {
                // The apiserver bumps a workload's generation on every change of its spec.
                hash_of(&self.metadata.generation)
            }
        }
    )*};
}

watched_by_generation! {
    CronJob => "batch", "cronjobs";
    Deployment => "apps", "deployments";
    DaemonSet => "apps", "daemonsets";
    StatefulSet => "apps", "statefulsets";
    ReplicationController => "", "replicationcontrollers";
    Job => "batch", "jobs";
    ReplicaSet => "apps", "replicasets";
}

impl Watched for Pod {
    const GROUP: &'static str = "";
    const RESOURCE: &'static str = "pods";
    fn fingerprint(&self) -> u64 {
        // A pod's spec changes when it is bound to a node, which no rule reads, and when
        // an ephemeral container is added, which they do.
        let mut spec = self.spec.clone().unwrap_or_default();
        spec.node_name = None;
        hash_of(&serde_json::to_string(&spec).unwrap_or_default())
    }
}

fn observed<K: Watched>(object: &K) -> Option<Observed> {
    let meta = object.meta();
    let json = serde_json::to_string(object).ok()?;
    Some(Observed {
        key: ObjectKey {
            group: K::GROUP.to_owned(),
            resource: K::RESOURCE.to_owned(),
            namespace: object.namespace().unwrap_or_default(),
            name: object.name_any(),
        },
        uid: meta.uid.clone()?,
        owner: meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| owner.uid.clone()),
        created: meta.creation_timestamp.as_ref().map(|t| t.0),
        fingerprint: object.fingerprint(),
        json,
    })
}

/// What the watches report, on one channel, so that one task owns the tree.
enum Change {
    /// A (re)list of a resource began.
    Listing(&'static str),
    Listed(Observed),
    /// The (re)list of a resource is complete.
    ListDone(&'static str),
    Applied(Observed),
    Deleted(String),
}

async fn watch<K: Watched>(client: Client, changes: mpsc::Sender<Change>) {
    let mut stream = std::pin::pin!(watcher(Api::<K>::all(client), watcher::Config::default()).default_backoff());
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => Change::Listing(K::RESOURCE),
            Ok(watcher::Event::InitApply(object)) => match observed(&object) {
                Some(observed) => Change::Listed(observed),
                None => continue,
            },
            Ok(watcher::Event::InitDone) => Change::ListDone(K::RESOURCE),
            Ok(watcher::Event::Apply(object)) => match observed(&object) {
                Some(observed) => Change::Applied(observed),
                None => continue,
            },
            Ok(watcher::Event::Delete(object)) => match object.uid() {
                Some(uid) => Change::Deleted(uid),
                None => continue,
            },
            Err(e) => {
                warn!(resource = K::RESOURCE, "cluster watch: the watch failed, retrying: {e}");
                continue;
            }
        };
        if changes.send(change).await.is_err() {
            return;
        }
    }
}

/// Watches the pods and workloads and raises what the workload rules find in them, and,
/// given the `coverage` that the audit path also feeds, the creations that the audit stream
/// did not report, until `stop` completes.
pub async fn run(
    client: Client,
    settings: ClusterSettings,
    coverage: Option<Arc<Mutex<AuditCoverage>>>,
    metrics: DetectionMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    let (sender, mut changes) = mpsc::channel(4096);
    let watches = [
        tokio::spawn(watch::<CronJob>(client.clone(), sender.clone())),
        tokio::spawn(watch::<Deployment>(client.clone(), sender.clone())),
        tokio::spawn(watch::<DaemonSet>(client.clone(), sender.clone())),
        tokio::spawn(watch::<StatefulSet>(client.clone(), sender.clone())),
        tokio::spawn(watch::<ReplicationController>(client.clone(), sender.clone())),
        tokio::spawn(watch::<Job>(client.clone(), sender.clone())),
        tokio::spawn(watch::<ReplicaSet>(client.clone(), sender.clone())),
        tokio::spawn(watch::<Pod>(client.clone(), sender)),
        tokio::spawn(watch_exposures(client.clone(), settings.clone(), metrics.clone())),
    ];
    let mut watcher = ClusterWatch {
        writer: AlertWriter::new(client, settings.namespace.clone(), metrics.clone()),
        settings,
        coverage,
        metrics,
        tree: Tree::default(),
        first_listing: BTreeMap::new(),
        synced: false,
        waiting: Vec::new(),
    };
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            change = changes.recv() => match change {
                Some(change) => watcher.change(change).await,
                None => break,
            },
            _ = tick.tick() => watcher.tick().await,
        }
    }
    for watch in watches {
        watch.abort();
    }
}

/// Checks every Service that a change made reachable from outside against the workloads of
/// its namespace, as it changes. The first listing is left to the configuration scan, which
/// runs at start.
async fn watch_exposures(client: Client, settings: ClusterSettings, metrics: DetectionMetrics) {
    let writer = AlertWriter::new(client.clone(), settings.namespace.clone(), metrics.clone());
    let mut checked: HashMap<String, u64> = HashMap::new();
    let services = watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff();
    let mut services = std::pin::pin!(services);
    while let Some(event) = services.next().await {
        let service = match event {
            Ok(watcher::Event::Apply(service)) => service,
            Ok(watcher::Event::Delete(service)) => {
                checked.remove(&service.uid().unwrap_or_default());
                continue;
            }
            Ok(_) => continue,
            Err(e) => {
                warn!(resource = "services", "cluster watch: the watch failed, retrying: {e}");
                continue;
            }
        };
        let received = Instant::now();
        let (Some(uid), Some(spec)) = (service.uid(), service.spec.as_ref()) else { continue };
        // Only a change of the spec can change what the Service exposes (not its status:
        // a load balancer's address arriving).
        let fingerprint = hash_of(&serde_json::to_string(spec).unwrap_or_default());
        if checked.insert(uid.clone(), fingerprint) == Some(fingerprint) {
            continue;
        }
        let namespace = service.namespace().unwrap_or_default();
        let (parsed, occurrence) = match exposable(&service, &settings.config) {
            Ok(Some(exposable)) => exposable,
            Ok(None) => continue,
            Err(e) => {
                warn!(%namespace, service = service.name_any(), "cluster watch: {e}");
                continue;
            }
        };
        let cluster = workloads_around(&client, &namespace, &settings.config.exposure.kubeflow_namespace).await;
        let now = Time(jiff::Timestamp::now());
        for finding in riposte_detect::service_exposures(&parsed, &cluster, &settings.config) {
            metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
            let alert = alert_for(&finding, &occurrence, now.clone(), CLUSTER_SOURCE, &settings.namespace);
            writer.create(alert, received).await;
        }
    }
}

struct ClusterWatch {
    writer: AlertWriter,
    settings: ClusterSettings,
    coverage: Option<Arc<Mutex<AuditCoverage>>>,
    metrics: DetectionMetrics,
    tree: Tree,
    /// The first listing of each resource, held until every resource is listed, so that
    /// owners are known before the objects they own are evaluated.
    first_listing: BTreeMap<&'static str, Option<Vec<Observed>>>,
    synced: bool,
    /// Objects waiting for their controller's event, since when.
    waiting: Vec<(Instant, Observed)>,
}

impl ClusterWatch {
    async fn change(&mut self, change: Change) {
        let now = Instant::now();
        match change {
            Change::Listing(resource) if !self.synced => {
                self.first_listing.insert(resource, Some(Vec::new()));
            }
            Change::Listed(object) if !self.synced => {
                if let Some(Some(listed)) = self.first_listing.get_mut(object.key.resource.as_str()) {
                    listed.push(object);
                }
            }
            Change::ListDone(resource) if !self.synced => {
                if let Some(Some(listed)) = self.first_listing.get_mut(resource) {
                    let listed = std::mem::take(listed);
                    self.first_listing.insert(resource, None);
                    // Keep them until every resource is listed.
                    self.waiting.extend(listed.into_iter().map(|object| (now, object)));
                }
                if WATCHED_RESOURCES.iter().all(|(_, r)| self.first_listing.get(r).is_some_and(Option::is_none)) {
                    self.synced = true;
                    self.evaluate_first_listing(now).await;
                }
            }
            Change::Listing(_) | Change::ListDone(_) => {}
            Change::Listed(object) | Change::Applied(object) => self.observe(object, false, now).await,
            Change::Deleted(uid) => self.tree.delete(&uid),
        }
    }

    /// Everything that existed when the watch began, owners first.
    async fn evaluate_first_listing(&mut self, now: Instant) {
        let mut listed = std::mem::take(&mut self.waiting);
        listed.sort_by_key(|(_, o)| WATCHED_RESOURCES.iter().position(|(_, r)| *r == o.key.resource));
        let count = listed.len();
        for (_, object) in listed {
            // Everything listed is known now: an owner still unknown is not coming.
            let (_, raises) = self.tree.observe(&object, true, |json| evaluate(json, &self.settings.config));
            self.metrics.cluster_objects_evaluated.inc();
            self.raise(&object, raises, now).await;
        }
        info!(objects = count, "cluster watch: the existing pods and workloads are evaluated");
    }

    async fn observe(&mut self, object: Observed, owner_wait_over: bool, received: Instant) {
        if !self.synced {
            // Evaluated with the first listing, owners first.
            self.waiting.push((received, object));
            return;
        }
        let config = &self.settings.config;
        let (outcome, raises) = self.tree.observe(&object, owner_wait_over, |json| evaluate(json, config));
        match outcome {
            Outcome::Unchanged => {}
            Outcome::WaitForOwner => self.waiting.push((received, object)),
            Outcome::Evaluated { new } => {
                self.metrics.cluster_objects_evaluated.inc();
                if let Some(coverage) = &self.coverage {
                    let mut coverage = lock(coverage);
                    if new && created_within(&object, coverage.grace() * 2) {
                        coverage.observed_creation(object.key.clone(), received);
                    }
                }
                self.raise(&object, raises, received).await;
                // Objects waiting for this one as their owner need not wait any longer.
                let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
                    .into_iter()
                    .partition(|(_, o)| o.owner == Some(object.uid.clone()));
                self.waiting = still;
                for (since, waiting) in ready {
                    Box::pin(self.observe(waiting, false, since)).await;
                }
            }
        }
    }

    async fn raise(&self, object: &Observed, raises: Vec<Raise>, received: Instant) {
        for Raise { mut finding, occurrence } in raises {
            self.metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
            // The node a pod is bound to changes after its creation: not part of the name.
            let node = finding.entities.node.take();
            finding.evidence.push(("observed".to_owned(), format!("{} (uid {})", object.key, object.uid)));
            let mut alert = alert_for(
                &finding,
                &occurrence,
                Time(jiff::Timestamp::now()),
                CLUSTER_SOURCE,
                &self.settings.namespace,
            );
            alert.spec.entities.node = node;
            self.writer.create(alert, received).await;
        }
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if self.synced {
            let (due, still): (Vec<_>, Vec<_>) =
                std::mem::take(&mut self.waiting).into_iter().partition(|(since, _)| now - *since >= OWNER_WAIT);
            self.waiting = still;
            for (since, object) in due {
                self.observe(object, true, since).await;
            }
        }
        let Some(coverage) = &self.coverage else { return };
        let (lost, grace) = {
            let mut coverage = lock(coverage);
            (coverage.unreported(now), coverage.grace())
        };
        if lost.is_empty() {
            return;
        }
        for key in &lost {
            self.metrics.audit_unreported.get_or_create(&ResourceLabels { resource: key.resource.clone() }).inc();
        }
        warn!(count = lost.len(), first = %lost[0], "audit loss: objects were created with no audit event");
        let finding = audit_loss(&lost, grace);
        self.metrics.findings.get_or_create(&TypeLabels { r#type: AUDIT_LOSS.to_owned() }).inc();
        let occurrence = format!("audit-loss/{}", lost[0]);
        let alert =
            alert_for(&finding, &occurrence, Time(jiff::Timestamp::now()), CLUSTER_SOURCE, &self.settings.namespace);
        self.writer.create(alert, now).await;
    }
}

fn evaluate(json: &str, config: &Config) -> Vec<Finding> {
    riposte_detect::observed_workload(json, config)
}

/// Whether the object was created within `window` of now: a creation the audit stream
/// reported recently, not an old object the watch only now lists again.
fn created_within(object: &Observed, window: Duration) -> bool {
    object.created.is_some_and(|created| {
        let age = jiff::Timestamp::now().duration_since(created);
        age.unsigned_abs() <= window
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(uid: &str, owner: Option<&str>, fingerprint: u64) -> Observed {
        Observed {
            key: ObjectKey {
                group: String::new(),
                resource: "pods".into(),
                namespace: "shop".into(),
                name: uid.into(),
            },
            uid: uid.into(),
            owner: owner.map(Into::into),
            created: None,
            fingerprint,
            json: String::new(),
        }
    }

    fn privileged(container: &str) -> Finding {
        Finding {
            alert_type: "K8S_PrivilegedContainer",
            entities: Entities { container: Some(container.into()), ..Entities::default() },
            evidence: vec![("field".into(), "spec.containers[0].securityContext.privileged".into())],
            summary: String::new(),
        }
    }

    #[test]
    fn a_pod_is_raised_once_and_not_again_until_what_the_rules_read_changes() {
        let mut tree = Tree::default();
        let (outcome, raises) = tree.observe(&object("p", None, 1), false, |_| vec![privileged("c")]);
        assert_eq!(outcome, Outcome::Evaluated { new: true });
        assert_eq!(raises.len(), 1);
        assert_eq!(raises[0].occurrence, "cluster/p/spec.containers[0].securityContext.privileged");
        let (outcome, raises) = tree.observe(&object("p", None, 1), false, |_| panic!("not evaluated again"));
        assert_eq!((outcome, raises.len()), (Outcome::Unchanged, 0));
        // An ephemeral container added: evaluated again, the known finding not raised twice.
        let (outcome, raises) = tree.observe(&object("p", None, 2), false, |_| vec![privileged("c"), privileged("d")]);
        assert_eq!(outcome, Outcome::Evaluated { new: false });
        assert_eq!(raises.iter().map(|r| r.finding.entities.container.clone()).collect::<Vec<_>>(), [Some("d".into())]);
    }

    #[test]
    fn what_a_controllers_template_has_is_raised_once_for_the_controller() {
        let mut tree = Tree::default();
        let (_, raises) = tree.observe(&object("deployment", None, 1), false, |_| vec![privileged("c")]);
        assert_eq!(raises.len(), 1);
        let (_, raises) = tree.observe(&object("replicaset", Some("deployment"), 1), false, |_| vec![privileged("c")]);
        assert!(raises.is_empty());
        for pod in ["pod-1", "pod-2"] {
            let (_, raises) = tree.observe(&object(pod, Some("replicaset"), 1), false, |_| vec![privileged("c")]);
            assert!(raises.is_empty(), "{pod} repeats its template");
        }
        // A pod that differs from its template is raised on its own.
        let (_, raises) = tree.observe(&object("pod-3", Some("replicaset"), 1), false, |_| vec![privileged("sidecar")]);
        assert_eq!(raises.len(), 1);
    }

    #[test]
    fn an_object_whose_owner_is_unknown_waits_for_it_once() {
        let mut tree = Tree::default();
        let (outcome, _) = tree.observe(&object("pod", Some("replicaset"), 1), false, |_| vec![privileged("c")]);
        assert_eq!(outcome, Outcome::WaitForOwner);
        assert!(!tree.contains("pod"));
        let (outcome, raises) = tree.observe(&object("pod", Some("replicaset"), 1), true, |_| vec![privileged("c")]);
        assert_eq!((outcome, raises.len()), (Outcome::Evaluated { new: true }, 1));
    }

    #[test]
    fn audit_loss_names_the_first_objects_and_counts_all() {
        let lost: Vec<ObjectKey> = (0..25)
            .map(|i| ObjectKey {
                group: String::new(),
                resource: "pods".into(),
                namespace: "shop".into(),
                name: format!("p{i:02}"),
            })
            .collect();
        let finding = audit_loss(&lost, Duration::from_secs(30));
        assert_eq!(finding.evidence.iter().filter(|(n, _)| n == "unreported").count(), MAX_NAMED_LOSSES);
        assert!(finding.evidence.contains(&("count".into(), "25".into())));
        assert!(
            finding.summary.starts_with("Audit events are missing: pods shop/p00 and 24 more"),
            "{}",
            finding.summary
        );
    }
}
