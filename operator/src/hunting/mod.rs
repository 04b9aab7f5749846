//! Hunting: every audit and process event the operator evaluates is kept in the hunting
//! store (`riposte-hunt`), with a row for each change of Riposte's Alerts and
//! ResponseActions, and searched through an HTTPS API that authenticates the caller's
//! Kubernetes token and asks the apiserver whether they may hunt (docs/hunting.md). The
//! node sensors' events reach the store through the same API, or each node's spool copied
//! to the hunting bucket.

pub mod forward;
pub mod server;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use riposte_crds::{Alert, ResponseAction};
use riposte_detect::audit;
use riposte_detect::runtime::ProcessEvent;
use riposte_hunt::record::{ActionRow, AlertRow, action_record, alert_record, audit_record, process_record};
use riposte_hunt::store::{Store, now_micros};
use tracing::warn;

/// Where evaluated events go for hunting: a store, or (a node sensor's) the operator's
/// store through its API; a sink with neither keeps nothing.
#[derive(Clone, Default)]
pub struct HuntingSink {
    store: Option<Store>,
    forwarder: Option<forward::Forwarder>,
    cluster: Arc<str>,
}

impl std::fmt::Debug for HuntingSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuntingSink")
            .field("root", &self.store.as_ref().map(|s| s.settings().root.clone()))
            .field("forwarder", &self.forwarder)
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl HuntingSink {
    pub fn new(store: Store, cluster: &str) -> HuntingSink {
        HuntingSink { store: Some(store), forwarder: None, cluster: cluster.into() }
    }

    /// Process events are sent to the operator's store; a sensor has no other kind.
    pub fn forwarding(forwarder: forward::Forwarder) -> HuntingSink {
        HuntingSink { store: None, forwarder: Some(forwarder), cluster: Arc::from("") }
    }

    pub fn store(&self) -> Option<&Store> {
        self.store.as_ref()
    }

    /// Keeps audit events delivered by `input` (the metrics' input label).
    pub fn audit(&self, events: &[audit::Event], input: &str) {
        if let Some(store) = &self.store {
            store.append(events.iter().map(|e| audit_record(e, input, &self.cluster)));
        }
    }

    pub fn process(&self, event: &ProcessEvent) {
        self.processes(std::slice::from_ref(event));
    }

    /// Keeps process events; returns how many the store took (it refuses rows past its
    /// memory bound), none without a store.
    pub fn processes(&self, events: &[ProcessEvent]) -> usize {
        if let Some(forwarder) = &self.forwarder {
            events.iter().for_each(|event| forwarder.offer(event));
        }
        self.store.as_ref().map_or(0, |store| store.append(events.iter().map(|e| process_record(e, &self.cluster))))
    }

    fn alert(&self, row: &AlertRow) {
        if let Some(store) = &self.store {
            store.append([alert_record(row, &self.cluster)]);
        }
    }

    fn action(&self, row: &ActionRow) {
        if let Some(store) = &self.store {
            store.append([action_record(row, &self.cluster)]);
        }
    }
}

/// Writes a row for every Alert and ResponseAction seen to change, until the process ends.
/// A restarted operator writes each object once more (it cannot know what it wrote before).
pub async fn record_objects(client: Client, sink: HuntingSink) {
    let alerts = watch_changes(Api::<Alert>::all(client.clone()), sink.clone(), |sink, alert: &Alert| {
        sink.alert(&alert_row(alert));
    });
    let actions = watch_changes(Api::<ResponseAction>::all(client), sink, |sink, action: &ResponseAction| {
        sink.action(&action_row(action));
    });
    tokio::join!(alerts, actions);
}

async fn watch_changes<K>(api: Api<K>, sink: HuntingSink, write: impl Fn(&HuntingSink, &K))
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    // What was last written per object: its resource version (a relist repeats them).
    let mut written: BTreeMap<String, String> = BTreeMap::new();
    let mut events = std::pin::pin!(watcher::watcher(api, watcher::Config::default()));
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(object) | Event::InitApply(object)) => {
                let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                let version = object.resource_version().unwrap_or_default();
                if written.get(&key) != Some(&version) {
                    write(&sink, &object);
                    written.insert(key, version);
                }
            }
            Ok(Event::Delete(object)) => {
                written.remove(&format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any()));
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(error) => warn!(%error, "watching Riposte's objects for the hunting tables; retrying"),
        }
    }
}

fn alert_row(alert: &Alert) -> AlertRow {
    let spec = &alert.spec;
    let status = alert.status.as_ref();
    let ip_address = spec
        .evidence
        .iter()
        .find(|e| matches!(e.name.as_str(), "sourceIP" | "sourceIPs" | "remoteAddress"))
        .map(|e| e.value.split(',').next().unwrap_or_default().trim().to_owned());
    AlertRow {
        time: now_micros(),
        name: alert.name_any(),
        namespace: alert.namespace().unwrap_or_default(),
        alert_type: spec.alert_type.0.clone(),
        title: spec.title.clone(),
        severity: format!("{:?}", spec.severity),
        tactics: spec.tactics.iter().map(|t| format!("{t:?}")).collect(),
        detected_at: Some(spec.detected_at.0.as_microsecond()),
        source: spec.source.clone(),
        state: spec.state.as_str().to_owned(),
        occurrences: status.map_or(1, |s| s.occurrences),
        pod_namespace: spec.entities.namespace.clone(),
        pod: spec.entities.pod.clone(),
        container: spec.entities.container.clone(),
        image: spec.entities.image.clone(),
        node: spec.entities.node.clone(),
        user: spec.entities.user.clone(),
        ip_address,
        raw: serde_json::json!({ "spec": spec, "status": status }).to_string(),
    }
}

fn action_row(action: &ResponseAction) -> ActionRow {
    let spec = &action.spec;
    let status = action.status.as_ref();
    ActionRow {
        time: now_micros(),
        name: action.name_any(),
        namespace: action.namespace().unwrap_or_default(),
        action: format!("{:?}", spec.action),
        pod: Some(spec.target.pod.clone()),
        phase: status.and_then(|s| s.phase).map(|p| format!("{p:?}")),
        requested_by: Some(spec.requested_by.clone()).filter(|r| !r.is_empty()),
        alert: spec.alert_ref.as_ref().map(|a| a.name.clone()),
        policy: spec.policy_ref.as_ref().map(|p| p.name.clone()),
        raw: serde_json::json!({ "spec": spec, "status": status }).to_string(),
    }
}
