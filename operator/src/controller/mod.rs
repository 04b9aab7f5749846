//! The controllers: ResponseActions carried out on pods, and Alerts kept in step with them.
//!
//! Each reconcile is a pipeline: read what it needs from the API, decide with the pure
//! modules (`isolation`, `guard`, `status`), apply, then write the status. Only the two ends
//! touch the API.

mod alert;
mod approval;
mod isolate;
mod policy;
mod release;
mod terminate;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::core::object::HasStatus;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use riposte_crds::{
    ActionKind, Alert, OwnerSummary, Phase, ResolvedTarget, ResponseAction, ResponseActionStatus, ResponsePolicy,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::{info, warn};

use crate::enforcer;
use crate::error::{Error, Result, backoff};
use crate::guard::Guardrails;
use crate::isolation;
use crate::metrics::{ActionLabels, ErrorLabels, KindLabels, Metrics, OutcomeLabels};
use crate::policy::PolicyActionRecord;
use crate::status::{self, condition};

/// The one field manager of every object and status Riposte writes.
pub const MANAGER: &str = "riposte";
/// Keeps an Isolate action until its isolation is undone.
pub const FINALIZER: &str = "riposte.dev/release-isolation";
/// How often a successful isolation is checked again, in case a watch event was missed:
/// changes to the isolated pod's label and to NetworkPolicies trigger a check at once.
const ISOLATION_RESYNC: Duration = Duration::from_secs(300);
/// How long an enforcer detection is trusted.
const ENFORCER_CACHE: Duration = Duration::from_secs(10);
/// Attempts at a status write that conflicts with concurrent writers before requeueing.
const CONFLICT_ATTEMPTS: usize = 8;

/// How the operator is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub guardrails: Guardrails,
    /// The operator's own namespace: evidence is kept there, and the automation kill
    /// switch (ConfigMap `riposte-automation`) is read from there.
    pub namespace: String,
    /// Who the operator is, as the apiserver authenticates it (see [`identity`]): the
    /// requester of the actions its policies create.
    pub identity: String,
    /// Repeated detections of the same alert type on the same entities within this window
    /// are folded into the open Alert.
    pub alert_dedup_window: Duration,
}

/// The ConfigMap, in the operator's namespace, whose `paused: "true"` stops every policy.
pub const AUTOMATION_CONFIG_MAP: &str = "riposte-automation";

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Every ResponseAction, as the controller's watch sees it.
    actions: Store<ResponseAction>,
    alerts: Store<Alert>,
    policies: Store<ResponsePolicy>,
    /// Actions the policies created that the watch may not show yet; decisions about
    /// cooldowns and rate limits are taken under this lock, one alert at a time.
    automated: Mutex<Vec<PolicyActionRecord>>,
    /// Asks the controller to reconcile another action now (a release and its isolations
    /// wake each other instead of polling).
    wake: UnboundedSender<ObjectRef<ResponseAction>>,
    failures: Mutex<HashMap<String, u32>>,
    enforcer: Mutex<Option<(Instant, enforcer::Enforcement)>>,
}

impl Context {
    fn wake(&self, namespace: &str, name: &str) {
        // The receiver lives as long as the controller; a failed send means we are shutting down.
        let _ = self.wake.unbounded_send(ObjectRef::new(name).within(namespace));
    }

    async fn publish(
        &self,
        object: &impl Resource<DynamicType = ()>,
        kind: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: kind,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            warn!(error = %e, reason, "could not publish an Event");
        }
    }

    /// Publishes the same Event on the action and on its target pod.
    async fn publish_both(
        &self,
        action: &ResponseAction,
        pod: Option<&Pod>,
        kind: EventType,
        reason: &str,
        note: String,
    ) {
        let verb = action.spec.action.to_string();
        self.publish(action, kind, reason, &verb, note.clone()).await;
        if let Some(pod) = pod {
            self.publish(pod, kind, reason, &verb, format!("{note} (ResponseAction {})", action.name_any())).await;
        }
    }

    /// What the cluster shows of NetworkPolicy enforcement; cached briefly.
    async fn enforcer(&self) -> Result<enforcer::Enforcement> {
        let cached = self.enforcer.lock().expect("enforcer cache lock").clone();
        if let Some((_, found)) = cached.filter(|(at, _)| at.elapsed() < ENFORCER_CACHE) {
            return Ok(found);
        }
        let daemonsets = Api::<DaemonSet>::all(self.client.clone()).list(&ListParams::default()).await?.items;
        let found = enforcer::known_enforcer(&daemonsets);
        *self.enforcer.lock().expect("enforcer cache lock") = Some((Instant::now(), found.clone()));
        Ok(found)
    }
}

/// Who this client is, as the apiserver authenticates it (what `kubectl auth whoami` says).
pub async fn identity(client: &Client) -> Result<String> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    Ok(review.status.and_then(|s| s.user_info).and_then(|u| u.username).unwrap_or_default())
}

/// Events a shared watch may hold for a slow subscriber before it waits for it.
const SHARED_WATCH_BUFFER: usize = 1024;

/// One watch of every object of a kind, with its cache, shared by every controller that
/// needs that kind: each controller subscribes to it instead of opening a watch of its own,
/// and all of them read the one cache, which is updated before any subscriber hears of a change.
struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: Writer<K>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    fn new() -> Self {
        let (store, writer) = reflector::store_shared(SHARED_WATCH_BUFFER);
        SharedWatch { store, writer }
    }

    fn subscribe(&self) -> ReflectHandle<K> {
        self.writer.subscribe().expect("a shared store hands out subscriptions")
    }

    /// The watch itself; it must be polled for the subscribers to hear anything.
    async fn run(self, client: Client) {
        let kind = K::kind(&());
        watcher(Api::<K>::all(client), watcher::Config::default())
            .default_backoff()
            .reflect_shared(self.writer)
            .for_each(|event| async {
                if let Err(e) = event {
                    warn!(error = %e, %kind, "watch failed; retrying");
                }
            })
            .await;
    }
}

/// Runs the controllers until a shutdown signal.
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Metrics,
    reporter: Reporter,
    ready: Arc<std::sync::atomic::AtomicBool>,
) {
    let (wake, woken) = unbounded();
    let actions = SharedWatch::<ResponseAction>::new();
    let alerts = SharedWatch::<Alert>::new();
    let policies = SharedWatch::<ResponsePolicy>::new();
    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        recorder: Recorder::new(client.clone(), reporter),
        metrics,
        actions: actions.store.clone(),
        alerts: alerts.store.clone(),
        policies: policies.store.clone(),
        automated: Mutex::default(),
        wake,
        failures: Mutex::default(),
        enforcer: Mutex::default(),
    });

    let policy_store = ctx.actions.clone();
    let pod_store = ctx.actions.clone();
    // Only pods that carry the isolation label, and only their metadata: a label removed
    // arrives as the pod leaving the watch, with the labels it had.
    let isolated_pods = watcher(
        Api::<PartialObjectMeta<Pod>>::all(client.clone()),
        watcher::Config::default().labels(isolation::ISOLATED_LABEL),
    )
    .default_backoff()
    .touched_objects();
    let action_controller = Controller::for_shared_stream(actions.subscribe(), ctx.actions.clone())
        .watches(Api::<NetworkPolicy>::all(client.clone()), watcher::Config::default(), move |policy| {
            isolations_affected_by(&policy_store, &policy)
        })
        .watches_stream(isolated_pods, move |pod| isolations_of_pod(&pod_store, &pod))
        .reconcile_on(woken)
        .shutdown_on_signal()
        .run(reconcile_action, action_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "ResponseAction reconcile failed");
            }
        });

    let alert_controller = Controller::for_shared_stream(alerts.subscribe(), ctx.alerts.clone())
        .watches_shared_stream(actions.subscribe(), |action| {
            action
                .spec
                .alert_ref
                .as_ref()
                .zip(action.namespace())
                .map(|(alert, ns)| ObjectRef::new(&alert.name).within(&ns))
        })
        .shutdown_on_signal()
        .run(alert::reconcile, alert_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Alert reconcile failed");
            }
        });

    let policy_controller = Controller::for_shared_stream(policies.subscribe(), ctx.policies.clone())
        .watches_shared_stream(alerts.subscribe(), |alert| {
            alert
                .status
                .iter()
                .flat_map(|s| s.policy_decisions.iter().flatten())
                .map(|d| ObjectRef::new(&d.policy))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(actions.subscribe(), |action| {
            action.labels().get(crate::policy::POLICY_LABEL).map(|p| ObjectRef::new(p))
        })
        .shutdown_on_signal()
        .run(policy::reconcile, policy_error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "ResponsePolicy reconcile failed");
            }
        });

    let stores = (ctx.actions.clone(), ctx.alerts.clone(), ctx.policies.clone());
    let readiness = async move {
        let synced =
            futures::join!(stores.0.wait_until_ready(), stores.1.wait_until_ready(), stores.2.wait_until_ready());
        if synced.0.is_ok() && synced.1.is_ok() && synced.2.is_ok() {
            ready.store(true, std::sync::atomic::Ordering::Relaxed);
            info!("watching ResponseActions, Alerts and ResponsePolicies");
        }
    };
    let watches = futures::future::join3(actions.run(client.clone()), alerts.run(client.clone()), policies.run(client));
    // The watches never end on their own; the controllers end on a shutdown signal.
    tokio::select! {
        _ = futures::future::join4(action_controller, alert_controller, policy_controller, readiness) => {}
        _ = watches => {}
    }
}

/// The active isolations of a NetworkPolicy's namespace: a policy created or edited there
/// may select an isolated pod and must be handled at once. A policy that cannot re-open an
/// isolated pod wakes nobody: Riposte's own, one that allows nothing, and one that already
/// excludes isolated pods (else every exclusion of a shared policy would wake every
/// isolation of the namespace).
///
/// Riposte's own policy wakes its isolation, which puts it back if someone deleted or changed it.
fn isolations_affected_by(store: &Store<ResponseAction>, policy: &NetworkPolicy) -> Vec<ObjectRef<ResponseAction>> {
    let namespace = policy.namespace();
    if isolation::is_managed_by_riposte(policy) {
        return policy
            .labels()
            .get(isolation::ACTION_LABEL)
            .zip(namespace)
            .map(|(action, ns)| ObjectRef::new(action).within(&ns))
            .into_iter()
            .collect();
    }
    if !isolation::may_reopen_isolated_pods(policy) {
        return Vec::new();
    }
    store
        .state()
        .iter()
        .filter(|a| a.namespace() == namespace && a.spec.action == ActionKind::Isolate && !a.spec.dry_run)
        .filter(|a| matches!(a.status.as_ref().and_then(|s| s.phase), Some(Phase::Running | Phase::Succeeded)))
        .map(|a| ObjectRef::from(a.as_ref()))
        .collect()
}

/// The isolations of a pod whose isolation label changed or went: the one its label names,
/// and those that resolved this very pod (someone may have relabelled it for another).
fn isolations_of_pod(store: &Store<ResponseAction>, pod: &PartialObjectMeta<Pod>) -> Vec<ObjectRef<ResponseAction>> {
    let Some(namespace) = pod.namespace() else {
        return Vec::new();
    };
    let uid = pod.uid();
    let mut isolations: Vec<ObjectRef<ResponseAction>> = store
        .state()
        .iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace.as_str()) && a.spec.action == ActionKind::Isolate)
        .filter(|a| uid.is_some() && a.status.as_ref().and_then(|s| s.target.as_ref()).map(|t| &t.uid) == uid.as_ref())
        .map(|a| ObjectRef::from(a.as_ref()))
        .collect();
    if let Some(labelled) = pod.labels().get(isolation::ISOLATED_LABEL) {
        isolations.push(ObjectRef::new(labelled).within(&namespace));
    }
    isolations
}

async fn reconcile_action(action: Arc<ResponseAction>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.get_or_create(&KindLabels { kind: "ResponseAction".into() }).inc();
    let namespace = action.namespace().ok_or_else(|| Error::MissingNamespace(action.name_any()))?;
    let api: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = format!("{namespace}/{}", action.name_any());
    let result = match action.spec.action {
        ActionKind::Isolate if !action.spec.dry_run => finalizer(&api, FINALIZER, action, |event| async {
            match event {
                FinalizerEvent::Apply(action) => match approval::gate(&action, &ctx).await? {
                    Some(waiting) => Ok(waiting),
                    None => isolate::apply(&action, &ctx).await,
                },
                FinalizerEvent::Cleanup(action) => isolate::cleanup(action, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e))),
        _ => match approval::gate(&action, &ctx).await {
            Ok(Some(waiting)) => Ok(waiting),
            Ok(None) => match action.spec.action {
                ActionKind::Isolate => isolate::apply(&action, &ctx).await,
                ActionKind::Terminate => terminate::apply(&action, &ctx).await,
                ActionKind::Release => release::apply(&action, &ctx).await,
            },
            Err(e) => Err(e),
        },
    };
    if result.is_ok() {
        forget_failures(&ctx, "ResponseAction", &key);
    }
    result
}

fn action_error_policy(action: Arc<ResponseAction>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(
        &ctx,
        "ResponseAction",
        &format!("{}/{}", action.namespace().unwrap_or_default(), action.name_any()),
        error,
    )
}

fn alert_error_policy(alert: Arc<Alert>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(&ctx, "Alert", &format!("{}/{}", alert.namespace().unwrap_or_default(), alert.name_any()), error)
}

fn policy_error_policy(policy: Arc<ResponsePolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    retry_later(&ctx, "ResponsePolicy", &policy.name_any(), error)
}

/// Transient failures are retried with a per-object exponential backoff.
fn retry_later(ctx: &Context, kind: &str, key: &str, error: &Error) -> Action {
    ctx.metrics.failures.get_or_create(&ErrorLabels { kind: kind.into(), error: error.metric_label().into() }).inc();
    let mut failures = ctx.failures.lock().expect("failure counter lock");
    let count = failures.entry(failure_key(kind, key)).or_default();
    let delay = backoff(*count);
    *count = count.saturating_add(1);
    warn!(%key, kind, error = %error, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// Once an object reconciles successfully, its next failure is retried quickly again.
fn forget_failures(ctx: &Context, kind: &str, key: &str) {
    ctx.failures.lock().expect("failure counter lock").remove(&failure_key(kind, key));
}

fn failure_key(kind: &str, key: &str) -> String {
    format!("{kind}:{key}")
}

/// Writes an action's status: `change` applied to the freshest status (see [`write_status`]).
/// Comments not yet in the history are recorded on the way.
async fn update_status(
    ctx: &Context,
    action: &ResponseAction,
    change: impl Fn(&mut ResponseActionStatus),
) -> Result<ResponseAction> {
    let namespace = action.namespace().ok_or_else(|| Error::MissingNamespace(action.name_any()))?;
    let api: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), &namespace);
    let before = action.clone();
    let updated = write_status(&api, action.clone(), |current| {
        let mut status = current.status.clone().unwrap_or_default();
        change(&mut status);
        status::record_comments(&current.spec.comments, &mut status.history, &now());
        status.observed_generation = current.metadata.generation;
        status
    })
    .await?;
    observe_outcome(ctx, &before, &updated);
    Ok(updated)
}

/// Writes a status computed by `next` from the freshest object, with server-side apply
/// under our one field manager, carrying the resourceVersion it was computed from. A
/// concurrent writer makes the apply fail with a conflict instead of being overwritten; the
/// status is then recomputed on the new object, so no history entry is ever lost.
async fn write_status<K>(api: &Api<K>, mut current: K, next: impl Fn(&K) -> K::Status) -> Result<K>
where
    K: Resource<DynamicType = ()> + HasStatus + Clone + DeserializeOwned + std::fmt::Debug,
    K::Status: Serialize + PartialEq + Default + Clone,
{
    let name = current.name_any();
    for _ in 0..CONFLICT_ATTEMPTS {
        let status = next(&current);
        if status == current.status().cloned().unwrap_or_default() {
            return Ok(current);
        }
        let patch = json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "metadata": { "name": name, "resourceVersion": current.resource_version() },
            "status": status,
        });
        match api.patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await {
            Ok(updated) => return Ok(updated),
            Err(kube::Error::Api(e)) if e.code == 409 => current = api.get(&name).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!("the status of {} {name}", K::kind(&()))))
}

fn observe_outcome(ctx: &Context, before: &ResponseAction, after: &ResponseAction) {
    let phase = |a: &ResponseAction| a.status.as_ref().and_then(|s| s.phase);
    let Some(new) = phase(after).filter(|p| p.is_terminal() && phase(before) != Some(*p)) else {
        return;
    };
    let action = after.spec.action.to_string();
    ctx.metrics.outcomes.get_or_create(&OutcomeLabels { action: action.clone(), phase: new.as_str().into() }).inc();
    // A release ends an isolation long after it took effect: not an action latency.
    if let Some(created) = after.creation_timestamp().filter(|_| new != Phase::Released) {
        let seconds = now().0.duration_since(created.0).as_secs_f64();
        ctx.metrics.action_seconds.get_or_create(&ActionLabels { action }).observe(seconds.max(0.0));
    }
}

/// Records only comments added since the last reconcile; used once an action is final.
async fn record_new_comments(ctx: &Context, action: &ResponseAction) -> Result<Action> {
    update_status(ctx, action, |_| {}).await?;
    Ok(Action::await_change())
}

/// Ends an action as Failed with a reason that tells the analyst what to change.
async fn fail(
    ctx: &Context,
    action: &ResponseAction,
    pod: Option<&Pod>,
    reason: &str,
    message: String,
) -> Result<Action> {
    let now = now();
    let generation = action.metadata.generation;
    update_status(ctx, action, |s| {
        status::transition(s, Phase::Failed, message.clone(), &now);
        status::set_condition(&mut s.conditions, condition::COMPLETED, "False", reason, &message, generation, &now);
        status::record(s, reason, message.clone(), &now);
    })
    .await?;
    ctx.publish_both(action, pod, EventType::Warning, reason, message).await;
    Ok(Action::await_change())
}

/// The target as resolved now: its UID pins every later step to this very pod.
fn resolve_target(pod: &Pod) -> ResolvedTarget {
    ResolvedTarget {
        pod: pod.name_any(),
        uid: pod.uid().unwrap_or_default(),
        node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        owner: pod
            .owner_references()
            .iter()
            .find(|o| o.controller == Some(true))
            .map(|o| OwnerSummary { kind: o.kind.clone(), name: o.name.clone() }),
    }
}

/// "pod NAME (uid UID) on node NODE", to stand inside a sentence.
fn locate_target(target: &ResolvedTarget) -> String {
    let mut text = format!("pod {} (uid {})", target.pod, target.uid);
    if let Some(node) = &target.node {
        text.push_str(&format!(" on node {node}"));
    }
    text
}

/// The target with its controller, for the history.
fn describe_target(target: &ResolvedTarget) -> String {
    let mut text = locate_target(target);
    match &target.owner {
        Some(owner) => text.push_str(&format!(", controlled by {} {}", owner.kind, owner.name)),
        None => text.push_str(", not controlled by a workload"),
    }
    text
}

/// The current time, as Kubernetes objects carry it.
fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}
