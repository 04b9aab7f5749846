//! Detections inside containers: normalized process events in (from Riposte's node
//! sensor, Falco or Tetragon), `K8S.NODE_*` Alerts out.
//!
//! - [`PodIndex`] (pure) attributes a container id, as every sensor reads it from the
//!   cgroup, to its pod, container, image and service account, from the pods the API holds.
//! - [`Inlet`] is the bounded queue the sources push into; a full queue drops, counts and
//!   logs, and never blocks a sensor.
//! - [`run`] owns the rule engine (the stateful rules need the events of a container in
//!   order), holds back for a moment the events of a container that its pod does not list
//!   yet (a container's first process runs before the kubelet reports its id), and writes
//!   the Alerts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use riposte_detect::runtime::{
    Action, Container, FalcoAlert, ProcessEvent, RuntimeConfig, RuntimeEngine, SENSOR_RULE, Sensor, SensorAlert,
};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::alert_for;
use super::pipeline::AlertWriter;
use crate::metrics::{DetectionMetrics, RuntimeMetrics, SensorLabels, TypeLabels};

/// How long the events of a container unknown to the pods are held back, waiting for the
/// kubelet to report its id, before they are evaluated with what the cgroup told.
const ATTRIBUTION_WAIT: Duration = Duration::from_secs(3);
/// How often held-back events are tried again.
const ATTRIBUTION_RETRY: Duration = Duration::from_millis(100);
/// The most events held back at once; beyond, the oldest are evaluated unattributed.
const MAX_HELD_BACK: usize = 10_000;
/// The shortest container id prefix that identifies a container (Falco's 12 characters).
const MIN_CONTAINER_ID_PREFIX: usize = 12;
/// How often drops are logged, at most.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What a source hands to the rules.
#[derive(Debug)]
pub enum Input {
    /// What a process did, for Riposte's rules.
    Event(ProcessEvent),
    /// An alert a sensor raised with its own rule, and the event it is about.
    SensorAlert(ProcessEvent, SensorAlert),
}

impl Input {
    fn event(&self) -> &ProcessEvent {
        match self {
            Input::Event(event) | Input::SensorAlert(event, _) => event,
        }
    }
    fn event_mut(&mut self) -> &mut ProcessEvent {
        match self {
            Input::Event(event) | Input::SensorAlert(event, _) => event,
        }
    }
}

/// The sources' side of the queue.
#[derive(Clone)]
pub struct Inlet {
    sender: mpsc::Sender<(Input, Instant)>,
    metrics: RuntimeMetrics,
    last_drop_report: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// A queue of at most `capacity` inputs.
pub fn inlet(capacity: usize, metrics: RuntimeMetrics) -> (Inlet, mpsc::Receiver<(Input, Instant)>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    (Inlet { sender, metrics, last_drop_report: Arc::default() }, receiver)
}

impl Inlet {
    /// Queues an input if there is room; otherwise counts and reports the drop.
    pub fn offer(&self, input: Input) -> bool {
        let sensor = SensorLabels { sensor: input.event().sensor.as_str().to_owned() };
        match self.sender.try_send((input, Instant::now())) {
            Ok(()) => {
                self.metrics.events_received.get_or_create(&sensor).inc();
                true
            }
            // The rules' end is gone: the process is stopping, nothing to report.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.events_dropped.get_or_create(&sensor).inc();
                let mut last = self.last_drop_report.lock().unwrap_or_else(|p| p.into_inner());
                if !last.is_some_and(|at| at.elapsed() < DROP_REPORT_INTERVAL) {
                    *last = Some(Instant::now());
                    warn!(
                        sensor = sensor.sensor,
                        "the runtime detection queue is full: events were dropped without evaluation \
                         (riposte_runtime_events_dropped_total counts them)"
                    );
                }
                false
            }
        }
    }

    /// Whether the rules' end is gone (the process is stopping).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Counts an input that could not be read (malformed), by sensor.
    pub fn reject(&self, sensor: &str) {
        self.metrics.events_rejected.get_or_create(&SensorLabels { sensor: sensor.to_owned() }).inc();
    }
}

/// A Falco alert as the rules' input: the event its output fields describe (when they
/// name no action, the syscall it was about), and the rule with its catalog id, if any.
pub fn falco_input(alert: FalcoAlert) -> Input {
    // An alert that names no process (a plugin's source) is still about its node.
    let event = alert.event().unwrap_or_else(|| ProcessEvent {
        time: alert.time,
        sensor: Sensor::Falco,
        node: alert.hostname.clone(),
        container: None,
        process: Default::default(),
        parent: None,
        ancestors: Vec::new(),
        action: Action::Other { event: alert.source.clone() },
    });
    let sensor_alert = SensorAlert {
        alert_type: alert.catalog_id,
        rule: alert.rule,
        priority: format!("{:?}", alert.priority),
        output: alert.output,
    };
    Input::SensorAlert(event, sensor_alert)
}

/// What the runtime path is configured with.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    pub config: RuntimeConfig,
    /// The operator's namespace: home of the alerts of the node's own processes.
    pub namespace: String,
    /// The node whose pods attribute the events (the sensor's); `None`: every node (the
    /// operator, receiving Falco from all of them).
    pub node: Option<String>,
    /// Where every evaluated event is kept for hunting.
    pub hunting: crate::hunting::HuntingSink,
}

/// The containers of the pods, by container id and pod UID.
#[derive(Debug, Default)]
pub struct PodIndex {
    containers: BTreeMap<String, Container>,
    /// Pod UID → the containers of that pod (their ids, or their names before the kubelet
    /// reports ids).
    pods: HashMap<String, Vec<Container>>,
}

impl PodIndex {
    /// Adds or replaces what `pod` says of its containers.
    pub fn apply(&mut self, pod: &Pod) {
        self.delete(pod);
        let Some(uid) = pod.metadata.uid.clone() else { return };
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let specs = spec.into_iter().flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()));
        let mut containers = Vec::new();
        for container in specs {
            let id = status
                .into_iter()
                .flat_map(|s| s.container_statuses.iter().flatten().chain(s.init_container_statuses.iter().flatten()))
                .find(|s| s.name == container.name)
                .and_then(|s| s.container_id.as_deref())
                .map(|id| id.split_once("://").map_or(id, |(_, id)| id).to_owned())
                .unwrap_or_default();
            let privileged = container.security_context.as_ref().and_then(|c| c.privileged).unwrap_or(false);
            let entry = Container {
                id,
                name: Some(container.name.clone()),
                image: container.image.clone(),
                pod: pod.metadata.name.clone(),
                namespace: pod.metadata.namespace.clone(),
                pod_uid: Some(uid.clone()),
                service_account: spec.and_then(|s| s.service_account_name.clone()),
                privileged: Some(privileged),
            };
            if !entry.id.is_empty() {
                self.containers.insert(entry.id.clone(), entry.clone());
            }
            containers.push(entry);
        }
        self.pods.insert(uid, containers);
    }

    pub fn delete(&mut self, pod: &Pod) {
        let Some(uid) = &pod.metadata.uid else { return };
        if let Some(containers) = self.pods.remove(uid) {
            for container in containers {
                self.containers.remove(&container.id);
            }
        }
    }

    /// Fills in what the pods say of `container` (found by its id, or a prefix of it of at
    /// least 12 characters); `false` when no pod lists it. A pod UID that the cgroup gave
    /// still names the pod, and its container when it has one.
    pub fn attribute(&self, container: &mut Container) -> bool {
        let id = container.id.as_str();
        let known = self.containers.get(id).or_else(|| {
            (id.len() >= MIN_CONTAINER_ID_PREFIX)
                .then(|| self.containers.range(id.to_owned()..).next().filter(|(k, _)| k.starts_with(id)))
                .flatten()
                .map(|(_, c)| c)
        });
        if let Some(known) = known {
            let id = std::mem::take(&mut container.id);
            *container = Container { id, ..known.clone() };
            return true;
        }
        let pod = container.pod_uid.as_ref().and_then(|uid| self.pods.get(uid));
        if let Some(containers) = pod {
            let id = std::mem::take(&mut container.id);
            let first = &containers[0];
            *container = Container {
                id,
                name: (containers.len() == 1).then(|| first.name.clone()).flatten(),
                image: (containers.len() == 1).then(|| first.image.clone()).flatten(),
                privileged: (containers.len() == 1).then_some(first.privileged).flatten(),
                ..first.clone()
            };
        }
        false
    }
}

/// Keeps `index` up to date with the pods (of `node`, when given) until the process ends.
pub async fn watch_pods(client: Client, node: Option<String>, index: Arc<RwLock<PodIndex>>) {
    let mut config = watcher::Config::default();
    if let Some(node) = &node {
        config = config.fields(&format!("spec.nodeName={node}"));
    }
    let mut stream = std::pin::pin!(watcher(Api::<Pod>::all(client), config));
    let mut listing = PodIndex::default();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(pod)) => write(&index).apply(&pod),
            Ok(watcher::Event::Delete(pod)) => write(&index).delete(&pod),
            Ok(watcher::Event::Init) => listing = PodIndex::default(),
            Ok(watcher::Event::InitApply(pod)) => listing.apply(&pod),
            Ok(watcher::Event::InitDone) => *write(&index) = std::mem::take(&mut listing),
            Err(e) => {
                warn!("runtime detection: the pod watch failed, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn write(index: &RwLock<PodIndex>) -> std::sync::RwLockWriteGuard<'_, PodIndex> {
    index.write().unwrap_or_else(|p| p.into_inner())
}

/// The Kubernetes API's addresses as pods reach it: the `default/kubernetes` Service's
/// cluster IPs and its endpoints (K8S.NODE_KubernetesAPI).
pub async fn api_addresses(client: &Client) -> Vec<String> {
    let mut addresses = Vec::new();
    if let Ok(service) = Api::<Service>::namespaced(client.clone(), "default").get("kubernetes").await {
        addresses.extend(service.spec.and_then(|s| s.cluster_ips).unwrap_or_default());
    }
    if let Ok(endpoints) = Api::<Endpoints>::namespaced(client.clone(), "default").get("kubernetes").await {
        for subset in endpoints.subsets.unwrap_or_default() {
            addresses.extend(subset.addresses.unwrap_or_default().into_iter().map(|a| a.ip));
        }
    }
    addresses
}

/// Evaluates the inlet's inputs and raises Alerts until `stop` completes.
pub async fn run(
    client: Client,
    settings: RuntimeSettings,
    index: Arc<RwLock<PodIndex>>,
    mut receiver: mpsc::Receiver<(Input, Instant)>,
    metrics: DetectionMetrics,
    runtime_metrics: RuntimeMetrics,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut config = settings.config.clone();
    for address in api_addresses(&client).await {
        if !config.kubernetes_api_addresses.contains(&address) {
            config.kubernetes_api_addresses.push(address);
        }
    }
    info!(api = ?config.kubernetes_api_addresses, node = ?settings.node, "runtime detection started");
    let mut detector = Detector {
        engine: RuntimeEngine::new(config),
        writer: AlertWriter::new(client, settings.namespace.clone(), metrics.clone()),
        index,
        held_back: VecDeque::new(),
        settings,
        metrics,
        runtime_metrics,
    };
    let mut retry = tokio::time::interval(ATTRIBUTION_RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            input = receiver.recv() => {
                let Some((input, received)) = input else { break };
                detector.receive(input, received).await;
            }
            _ = retry.tick() => detector.release_held_back(false).await,
        }
    }
    detector.release_held_back(true).await;
}

struct Detector {
    engine: RuntimeEngine,
    writer: AlertWriter,
    index: Arc<RwLock<PodIndex>>,
    /// Events of containers not listed yet, with when they arrived.
    held_back: VecDeque<(Input, Instant)>,
    settings: RuntimeSettings,
    metrics: DetectionMetrics,
    runtime_metrics: RuntimeMetrics,
}

impl Detector {
    async fn receive(&mut self, mut input: Input, received: Instant) {
        if self.attribute(&mut input) {
            self.evaluate(input, received).await;
            return;
        }
        if self.held_back.len() >= MAX_HELD_BACK
            && let Some((oldest, at)) = self.held_back.pop_front()
        {
            self.unattributed(oldest, at).await;
        }
        self.held_back.push_back((input, received));
    }

    /// Fills in the node and the pod; `true` when the event needs nothing more.
    fn attribute(&self, input: &mut Input) -> bool {
        let event = input.event_mut();
        if event.node.is_none() {
            event.node.clone_from(&self.settings.node);
        }
        let Some(container) = &mut event.container else { return true };
        if container.pod.is_some() && container.name.is_some() {
            return true;
        }
        self.index.read().unwrap_or_else(|p| p.into_inner()).attribute(container)
    }

    /// Evaluates the held-back events whose pod is now known, and, with `all` or once they
    /// waited [`ATTRIBUTION_WAIT`], the others as they are.
    async fn release_held_back(&mut self, all: bool) {
        let mut waiting = VecDeque::with_capacity(self.held_back.len());
        while let Some((mut input, received)) = self.held_back.pop_front() {
            if self.attribute(&mut input) {
                self.evaluate(input, received).await;
            } else if all || received.elapsed() >= ATTRIBUTION_WAIT {
                self.unattributed(input, received).await;
            } else {
                waiting.push_back((input, received));
            }
        }
        self.held_back = waiting;
    }

    async fn unattributed(&mut self, input: Input, received: Instant) {
        self.runtime_metrics
            .events_unattributed
            .get_or_create(&SensorLabels { sensor: input.event().sensor.as_str().to_owned() })
            .inc();
        self.evaluate(input, received).await;
    }

    async fn evaluate(&mut self, input: Input, received: Instant) {
        let findings = match &input {
            Input::Event(event) => self.engine.evaluate(event),
            Input::SensorAlert(event, alert) => {
                let mut findings = self.engine.evaluate(event);
                findings.extend(self.engine.sensor_alert(event, alert));
                findings
            }
        };
        let event = input.event();
        self.settings.hunting.process(event);
        self.runtime_metrics
            .events_evaluated
            .get_or_create(&SensorLabels { sensor: event.sensor.as_str().to_owned() })
            .inc();
        for finding in findings {
            self.metrics.findings.get_or_create(&TypeLabels { r#type: finding.alert_type.to_owned() }).inc();
            let detected = k8s_openapi::jiff::Timestamp::from_microsecond(event.time.unix_micros())
                .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
            let mut alert = alert_for(
                &finding,
                &event.execution_key(),
                Time(detected),
                event.sensor.as_str(),
                &self.settings.namespace,
            );
            if finding.alert_type == SENSOR_RULE
                && let Input::SensorAlert(_, sensor_alert) = &input
            {
                alert.spec.severity = severity_of_priority(&sensor_alert.priority);
            }
            tracing::debug!(alert = alert.name_any(), r#type = finding.alert_type, "runtime detection");
            self.writer.create(alert, received).await;
        }
    }
}

/// A sensor's priority (Falco's and syslog's names) as an Alert severity.
pub fn severity_of_priority(priority: &str) -> riposte_crds::Severity {
    use riposte_crds::Severity;
    match priority.to_ascii_lowercase().as_str() {
        "emergency" | "alert" | "critical" | "error" => Severity::High,
        "warning" => Severity::Medium,
        "notice" => Severity::Low,
        _ => Severity::Informational,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, statuses: &[(&str, &str)]) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": uid},
            "spec": {
                "serviceAccountName": "web",
                "containers": [
                    {"name": "app", "image": "shop/web:1", "securityContext": {"privileged": true}},
                    {"name": "sidecar", "image": "proxy:2"},
                ],
            },
            "status": {"containerStatuses": statuses.iter().map(|(name, id)| serde_json::json!({
                "name": name, "containerID": id, "image": "", "imageID": "", "ready": true, "restartCount": 0,
            })).collect::<Vec<_>>()},
        }))
        .unwrap()
    }

    const APP: &str = "4f3c2b1a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";

    #[test]
    fn containers_are_found_by_id_or_by_prefix() {
        let mut index = PodIndex::default();
        index.apply(&pod("u1", &[("app", &format!("containerd://{APP}"))]));
        let mut container = Container { id: APP.into(), ..Container::default() };
        assert!(index.attribute(&mut container));
        assert_eq!(container.pod.as_deref(), Some("web-1"));
        assert_eq!(container.name.as_deref(), Some("app"));
        assert_eq!(container.image.as_deref(), Some("shop/web:1"));
        assert_eq!(container.service_account.as_deref(), Some("web"));
        assert_eq!(container.privileged, Some(true));
        assert_eq!(container.id, APP, "the id stays as the sensor gave it");
        let mut falco = Container { id: APP[..12].into(), ..Container::default() };
        assert!(index.attribute(&mut falco), "Falco's 12 characters");
        assert_eq!(falco.name.as_deref(), Some("app"));
        let mut short = Container { id: APP[..6].into(), ..Container::default() };
        assert!(!index.attribute(&mut short), "too short to tell containers apart");
    }

    #[test]
    fn a_pod_uid_names_the_pod_before_the_kubelet_reports_ids() {
        let mut index = PodIndex::default();
        index.apply(&pod("u1", &[]));
        let mut container = Container { id: APP.into(), pod_uid: Some("u1".into()), ..Container::default() };
        assert!(!index.attribute(&mut container), "the container itself is not known yet");
        assert_eq!(container.pod.as_deref(), Some("web-1"));
        assert_eq!(container.namespace.as_deref(), Some("shop"));
        assert_eq!(container.name, None, "two containers: which one is not known");
    }

    #[test]
    fn deleted_and_replaced_pods_forget_their_containers() {
        let mut index = PodIndex::default();
        let first = pod("u1", &[("app", &format!("containerd://{APP}"))]);
        index.apply(&first);
        index.apply(&pod("u1", &[("app", "containerd://ffff0000ffff0000")]));
        let mut old = Container { id: APP.into(), ..Container::default() };
        assert!(!index.attribute(&mut old), "a restarted container's old id is forgotten");
        index.delete(&first);
        let mut new = Container { id: "ffff0000ffff0000".into(), ..Container::default() };
        assert!(!index.attribute(&mut new));
    }

    #[test]
    fn priorities_become_severities() {
        use riposte_crds::Severity;
        assert_eq!(severity_of_priority("Critical"), Severity::High);
        assert_eq!(severity_of_priority("Warning"), Severity::Medium);
        assert_eq!(severity_of_priority("Notice"), Severity::Low);
        assert_eq!(severity_of_priority("Debug"), Severity::Informational);
    }

    #[test]
    fn the_sensor_rule_type_is_in_the_catalog() {
        assert!(riposte_crds::catalog::lookup(SENSOR_RULE).is_some());
    }
}
