//! Isolate: label the pod, apply its isolation policy, keep every other policy from
//! letting traffic through; and undo all of it on release.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use riposte_crds::{ActionKind, ObjectReference, Phase, ResolvedTarget, ResponseAction};
use serde_json::json;
use tracing::{info, warn};

use super::{
    Context, ISOLATION_RESYNC, MANAGER, describe_target, fail, is_status, locate_target, now, record_new_comments,
    resolve_target, update_status,
};
use crate::enforcer::Enforcement;
use crate::error::{Error, Result};
use crate::guard;
use crate::isolation::{self, ISOLATED_LABEL};
use crate::status::{self, condition};

/// Attempts at changing a policy that other isolations change at the same time.
const POLICY_CONFLICT_ATTEMPTS: usize = 50;
/// How soon a degraded isolation (a policy that could not be changed still lets traffic
/// through) tries again: the obstacle, an admission policy or a missing right, can go away
/// without any NetworkPolicy changing, so no watch would say so.
const DEGRADED_RETRY: Duration = Duration::from_secs(5);
/// The history entry of a repaired isolation.
const DRIFT_REPAIRED: &str = "DriftRepaired";
/// The history entry that says the isolation was put in place.
const POLICY_APPLIED: &str = "PolicyApplied";

pub async fn apply(action: &ResponseAction, ctx: &Context) -> Result<Action> {
    let current = action.status.clone().unwrap_or_default();
    if current.phase == Some(Phase::Released) {
        return record_new_comments(ctx, action).await;
    }
    if let Some(releaser) = release_request(ctx, action) {
        return release(action, ctx, &releaser).await;
    }
    if matches!(current.phase, Some(Phase::Failed | Phase::Rejected))
        || (action.spec.dry_run && current.phase.is_some_and(Phase::is_terminal))
    {
        return record_new_comments(ctx, action).await;
    }
    // The action as last written: later status writes build on it, not on a stale copy.
    let written;
    let (action, target) = match current.target.clone() {
        Some(target) => (action, target),
        None => match resolve(action, ctx).await? {
            Resolution::Resolved(updated, target) => {
                written = updated;
                (&*written, target)
            }
            Resolution::Done(next) => return Ok(next),
        },
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace_of(action)?);
    let Some(pod) = pods.get_opt(&target.pod).await?.filter(|p| p.uid().as_deref() == Some(target.uid.as_str())) else {
        return pod_gone(action, ctx, &target).await;
    };
    let report = match ensure_isolated(action, ctx, &pod, &target).await? {
        Some(report) => report,
        None => return pod_gone(action, ctx, &target).await,
    };
    let whole = report.defeating.is_empty();
    record_report(action, ctx, &pod, report).await?;
    Ok(Action::requeue(if whole { ISOLATION_RESYNC } else { DEGRADED_RETRY }))
}

enum Resolution {
    /// The action as written with its resolved target, and that target.
    Resolved(Box<ResponseAction>, ResolvedTarget),
    Done(Action),
}

/// First reconcile: find the pod, check the guardrails, and pin its UID in the status
/// before anything is changed.
async fn resolve(action: &ResponseAction, ctx: &Context) -> Result<Resolution> {
    let namespace = namespace_of(action)?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod_name = &action.spec.target.pod;
    let Some(pod) = pods.get_opt(pod_name).await? else {
        let message = format!("pod {pod_name} not found in namespace {namespace}");
        return fail(ctx, action, None, "TargetNotFound", message).await.map(Resolution::Done);
    };
    if let Some(refusal) = guard::refusal(&ctx.settings.guardrails, &pod) {
        return fail(ctx, action, Some(&pod), "Refused", refusal).await.map(Resolution::Done);
    }
    if let Some(other) = pod
        .labels()
        .get(ISOLATED_LABEL)
        .filter(|other| **other != action.name_any() && is_active_isolation(ctx, &namespace, other))
    {
        let message = format!("pod {pod_name} is already isolated by ResponseAction {other}; release it first");
        return fail(ctx, action, Some(&pod), "AlreadyIsolated", message).await.map(Resolution::Done);
    }
    let target = resolve_target(&pod);
    if action.spec.dry_run {
        return dry_run(action, ctx, &pod, &target).await.map(Resolution::Done);
    }
    let now = now();
    let described = describe_target(&target);
    let updated = update_status(ctx, action, |s| {
        status::transition(s, Phase::Running, format!("isolating pod {pod_name}"), &now);
        s.target = Some(target.clone());
        status::record(s, "TargetResolved", described.clone(), &now);
    })
    .await?;
    Ok(Resolution::Resolved(Box::new(updated), target))
}

fn is_active_isolation(ctx: &Context, namespace: &str, name: &str) -> bool {
    ctx.actions.state().iter().any(|a| {
        a.namespace().as_deref() == Some(namespace)
            && a.name_any() == name
            && a.status.as_ref().and_then(|s| s.phase) != Some(Phase::Released)
    })
}

/// The Release action (Running, naming this isolation) that asks for it to be undone.
fn release_request(ctx: &Context, action: &ResponseAction) -> Option<Arc<ResponseAction>> {
    let name = action.name_any();
    ctx.actions
        .state()
        .into_iter()
        .filter(|r| r.namespace() == action.namespace() && r.spec.action == ActionKind::Release && !r.spec.dry_run)
        .filter(|r| r.status.as_ref().is_some_and(|s| s.phase == Some(Phase::Running) && s.releases.contains(&name)))
        .min_by_key(|r| (r.creation_timestamp(), r.name_any()))
}

/// What an isolation pass found and did.
struct IsolationReport {
    policy: String,
    /// Existing policies kept from selecting the pod.
    excluded: Vec<String>,
    /// Existing policies that still let traffic reach or leave the pod, and why they could not be handled.
    defeating: Vec<String>,
    /// What someone else had undone of an isolation in place, and this pass put back.
    repaired: Vec<String>,
    enforcer: Enforcement,
}

/// Makes the pod isolated: label, policy, exclusions. Idempotent, and writes nothing when
/// the isolation is whole; `None` when the pod turned out to have been replaced.
async fn ensure_isolated(
    action: &ResponseAction,
    ctx: &Context,
    pod: &Pod,
    target: &ResolvedTarget,
) -> Result<Option<IsolationReport>> {
    let namespace = namespace_of(action)?;
    let name = action.name_any();
    let status = action.status.clone().unwrap_or_default();
    // Once the isolation has been put in place, whatever is missing was undone by someone else.
    let in_place = status.history.iter().any(|h| h.event == POLICY_APPLIED);
    let mut repaired = Vec::new();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut pod = pod.clone();
    let label = pod.labels().get(ISOLATED_LABEL).cloned();
    if label.as_ref() != Some(&name) {
        // The UID in the patch is a precondition: a pod recreated under the same name is never labelled.
        let patch = json!({ "metadata": { "uid": target.uid, "labels": { ISOLATED_LABEL: name } } });
        match pods.patch(&target.pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(labelled) => pod = labelled,
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if in_place {
            repaired.push(match label {
                None => format!("the label {ISOLATED_LABEL} had been removed from pod {}", target.pod),
                Some(other) => format!("the label {ISOLATED_LABEL} of pod {} had been changed to {other}", target.pod),
            });
        }
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let desired = isolation::isolation_policy(action);
    let policy_name = desired.name_any();
    match policies.get_opt(&policy_name).await? {
        Some(existing) if isolation::policy_is_current(&existing, &desired) => {}
        Some(existing) => {
            // A replace, not an apply: an apply would keep what another manager added,
            // such as a matchExpression that makes the policy select nothing.
            let mut replacement = desired.clone();
            replacement.metadata.resource_version = existing.resource_version();
            policies
                .replace(
                    &policy_name,
                    &PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() },
                    &replacement,
                )
                .await?;
            if in_place {
                repaired.push(format!("NetworkPolicy {policy_name} had been changed"));
            }
        }
        None => {
            policies.patch(&policy_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&desired)).await?;
            if in_place {
                repaired.push(format!("NetworkPolicy {policy_name} had been deleted"));
            }
        }
    }

    let existing = policies.list(&ListParams::default()).await?.items;
    let mut excluded: Vec<String> =
        existing.iter().filter(|p| isolation::excluded_for(p).contains(&name)).map(ResourceExt::name_any).collect();
    let mut defeating = Vec::new();
    for found in isolation::defeating_policies(&existing, &pod) {
        let Some(policy) = existing.iter().find(|p| p.name_any() == found.name) else {
            continue;
        };
        let reopened = in_place
            && status.excluded_policies.contains(&found.name)
            && isolation::exclusion_patch(policy, &name).is_some();
        match patch_policy(&policies, policy.clone(), |p| isolation::exclusion_patch(p, &name)).await? {
            Ok(()) => {
                if reopened {
                    repaired.push(format!("NetworkPolicy {} selected the pod again", found.name));
                }
                if !excluded.contains(&found.name) {
                    excluded.push(found.name);
                }
            }
            Err(why) => defeating.push(format!(
                "NetworkPolicy {} selects the pod and allows {}; it could not be kept from selecting it: {why}",
                found.name,
                found.openings.describe()
            )),
        }
    }
    excluded.sort();
    let enforcer = ctx.enforcer().await?;
    Ok(Some(IsolationReport { policy: policy_name, excluded, defeating, repaired, enforcer }))
}

/// Changes an existing policy with a merge patch computed from its freshest version (the
/// patch carries its resourceVersion). Isolations of one namespace often share a policy and
/// change it at the same moment, so conflicts are retried after a short random pause that
/// spreads the writers out. The outer error is transient (retry the reconcile); the inner
/// one is the apiserver's reason why this policy cannot be changed at all.
async fn patch_policy(
    api: &Api<NetworkPolicy>,
    mut policy: NetworkPolicy,
    patch_for: impl Fn(&NetworkPolicy) -> Option<serde_json::Value>,
) -> Result<Result<(), String>> {
    let name = policy.name_any();
    for _ in 0..POLICY_CONFLICT_ATTEMPTS {
        let Some(patch) = patch_for(&policy) else {
            return Ok(Ok(()));
        };
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => return Ok(Ok(())),
            Err(e) if is_status(&e, 404) => return Ok(Ok(())),
            Err(e) if is_status(&e, 409) => {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..=25))).await;
                match api.get_opt(&name).await? {
                    Some(fresh) => policy = fresh,
                    None => return Ok(Ok(())),
                }
            }
            Err(kube::Error::Api(e)) if e.code == 403 || e.code == 422 => {
                return Ok(Err(e.message));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Conflict(format!("NetworkPolicy {name}")))
}

async fn record_report(action: &ResponseAction, ctx: &Context, pod: &Pod, report: IsolationReport) -> Result<()> {
    let now = now();
    let generation = action.metadata.generation;
    let namespace = namespace_of(action)?;
    let was = action.status.as_ref().and_then(|s| s.phase);
    let held = report.defeating.is_empty();
    let message = if held {
        format!("pod {} is isolated by NetworkPolicy {}", pod.name_any(), report.policy)
    } else {
        format!(
            "isolation of pod {} is not guaranteed: {}; retrying every {}s and whenever a NetworkPolicy of the namespace changes",
            pod.name_any(),
            report.defeating.join("; "),
            DEGRADED_RETRY.as_secs()
        )
    };
    update_status(ctx, action, |s| {
        s.created_objects = vec![ObjectReference {
            api_version: "networking.k8s.io/v1".into(),
            kind: "NetworkPolicy".into(),
            namespace: namespace.clone(),
            name: report.policy.clone(),
        }];
        s.excluded_policies = report.excluded.clone();
        status::record(s, "PodLabelled", format!("labelled pod {} {ISOLATED_LABEL}={}", pod.name_any(), action.name_any()), &now);
        status::record(s, POLICY_APPLIED, format!("NetworkPolicy {} denies all traffic not allowed by the isolation options", report.policy), &now);
        for excluded in &report.excluded {
            status::record(s, "PolicyExcluded", format!("NetworkPolicy {excluded} selected the pod and allowed traffic; it no longer selects it"), &now);
        }
        for repair in &report.repaired {
            status::record_occurrence(s, DRIFT_REPAIRED, format!("{repair}; put back"), &now);
        }
        match &report.enforcer {
            Enforcement::Running(found) => status::set_condition(&mut s.conditions, condition::ENFORCEMENT, "True", "EnforcerFound", &format!("NetworkPolicies are enforced by {found}"), generation, &now),
            Enforcement::NotRunning(found) => status::set_condition(&mut s.conditions, condition::ENFORCEMENT, "Unknown", "EnforcerNotReady", &format!("the NetworkPolicy enforcer {found} has no ready pod; until it runs, isolation has no effect"), generation, &now),
            Enforcement::Unknown => status::set_condition(&mut s.conditions, condition::ENFORCEMENT, "Unknown", "NoKnownEnforcer", "no well-known NetworkPolicy enforcer (Calico, Cilium, Antrea, ...) was found; without one, isolation has no effect", generation, &now),
        }
        if held {
            status::set_condition(&mut s.conditions, condition::ISOLATED, "True", "PolicyApplied", &message, generation, &now);
            status::set_condition(&mut s.conditions, condition::DEGRADED, "False", "Whole", "every policy that could let traffic through is handled", generation, &now);
            status::set_condition(&mut s.conditions, condition::COMPLETED, "True", "Isolated", &message, generation, &now);
            status::transition(s, Phase::Succeeded, message.clone(), &now);
        } else {
            status::set_condition(&mut s.conditions, condition::ISOLATED, "False", "DefeatedByPolicy", &message, generation, &now);
            status::set_condition(&mut s.conditions, condition::DEGRADED, "True", "DefeatedByPolicy", &message, generation, &now);
            status::set_condition(&mut s.conditions, condition::COMPLETED, "False", "DefeatedByPolicy", &message, generation, &now);
            status::record(s, "IsolationDefeated", message.clone(), &now);
            status::transition(s, Phase::Running, message.clone(), &now);
        }
    })
    .await?;
    let now_phase = if held { Phase::Succeeded } else { Phase::Running };
    if was != Some(now_phase) {
        info!(action = %action.name_any(), %namespace, phase = now_phase.as_str(), "{message}");
        let (kind, reason) =
            if held { (EventType::Normal, "Isolated") } else { (EventType::Warning, "IsolationDefeated") };
        ctx.publish_both(action, Some(pod), kind, reason, message).await;
    }
    if !report.repaired.is_empty() {
        let repairs = report.repaired.join("; ");
        warn!(action = %action.name_any(), %namespace, "isolation tampered with: {repairs}");
        ctx.metrics.isolation_repairs.inc_by(report.repaired.len() as u64);
        ctx.publish_both(action, Some(pod), EventType::Warning, "IsolationRepaired", format!("{repairs}; put back"))
            .await;
    }
    Ok(())
}

async fn dry_run(action: &ResponseAction, ctx: &Context, pod: &Pod, target: &ResolvedTarget) -> Result<Action> {
    let namespace = namespace_of(action)?;
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = policies.list(&ListParams::default()).await?.items;
    let mut labelled = pod.clone();
    labelled.labels_mut().insert(ISOLATED_LABEL.into(), action.name_any());
    let defeating = isolation::defeating_policies(&existing, &labelled);
    let policy = isolation::isolation_policy(action);
    let mut plan = format!(
        "dry run: would label {} {ISOLATED_LABEL}={} and create NetworkPolicy {}",
        locate_target(target),
        action.name_any(),
        policy.name_any()
    );
    if !defeating.is_empty() {
        let names: Vec<_> =
            defeating.iter().map(|d| format!("{} (allows {})", d.name, d.openings.describe())).collect();
        plan.push_str(&format!("; would keep these policies from selecting the pod: {}", names.join(", ")));
    }
    finish_dry_run(action, ctx, pod, target, plan).await
}

/// Ends a dry run as Succeeded with the plan as its message and history.
pub(super) async fn finish_dry_run(
    action: &ResponseAction,
    ctx: &Context,
    pod: &Pod,
    target: &ResolvedTarget,
    plan: String,
) -> Result<Action> {
    let now = now();
    let generation = action.metadata.generation;
    update_status(ctx, action, |s| {
        s.target = Some(target.clone());
        status::record(s, "DryRun", plan.clone(), &now);
        status::set_condition(&mut s.conditions, condition::COMPLETED, "True", "DryRun", &plan, generation, &now);
        status::transition(s, Phase::Succeeded, plan.clone(), &now);
    })
    .await?;
    ctx.publish_both(action, Some(pod), EventType::Normal, "DryRun", plan).await;
    Ok(Action::await_change())
}

/// The isolated pod no longer exists: nothing is isolated any more, so clean up.
async fn pod_gone(action: &ResponseAction, ctx: &Context, target: &ResolvedTarget) -> Result<Action> {
    undo(action, ctx).await?;
    let now = now();
    let generation = action.metadata.generation;
    let message = format!("pod {} (uid {}) no longer exists; its isolation was removed", target.pod, target.uid);
    update_status(ctx, action, |s| {
        status::record(s, "PodGone", message.clone(), &now);
        status::set_condition(&mut s.conditions, condition::ISOLATED, "False", "PodGone", &message, generation, &now);
        status::transition(s, Phase::Released, message.clone(), &now);
    })
    .await?;
    ctx.publish_both(action, None, EventType::Normal, "PodGone", message).await;
    Ok(Action::await_change())
}

/// Undoes this isolation at the request of a Release action, then wakes that action.
async fn release(action: &ResponseAction, ctx: &Context, releaser: &ResponseAction) -> Result<Action> {
    let pod = undo(action, ctx).await?;
    let now = now();
    let generation = action.metadata.generation;
    let releaser_name = releaser.name_any();
    let mut message = format!("released by ResponseAction {releaser_name}");
    if let Some(why) = &releaser.spec.comment {
        message.push_str(&format!(": {why}"));
    }
    update_status(ctx, action, |s| {
        s.released_by = Some(releaser_name.clone());
        status::record(s, "Released", message.clone(), &now);
        status::set_condition(&mut s.conditions, condition::ISOLATED, "False", "Released", &message, generation, &now);
        status::transition(s, Phase::Released, message.clone(), &now);
    })
    .await?;
    ctx.publish_both(action, pod.as_ref(), EventType::Normal, "Released", message).await;
    ctx.wake(&namespace_of(action)?, &releaser_name);
    Ok(Action::await_change())
}

/// The action is being deleted: whatever it isolated is released first.
pub async fn cleanup(action: Arc<ResponseAction>, ctx: &Context) -> Result<Action> {
    let pod = undo(&action, ctx).await?;
    if action.status.as_ref().and_then(|s| s.phase) != Some(Phase::Released) {
        let note = format!("isolation removed because ResponseAction {} was deleted", action.name_any());
        ctx.publish_both(&action, pod.as_ref(), EventType::Normal, "Released", note).await;
    }
    Ok(Action::await_change())
}

/// Removes everything an isolation created or changed: its policy, the exclusions on other
/// policies, the pod's label. Idempotent, and safe when any of them is already gone.
/// Returns the pod when it still exists.
async fn undo(action: &ResponseAction, ctx: &Context) -> Result<Option<Pod>> {
    let namespace = namespace_of(action)?;
    let name = action.name_any();
    let policies: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    match policies.delete(&isolation::policy_name(&name), &DeleteParams::default()).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) => {}
        Err(e) => return Err(e.into()),
    }
    // Found by their annotation, not the status: a crash may have come between an
    // exclusion and the status write that records it.
    for policy in policies.list(&ListParams::default()).await?.items {
        if isolation::excluded_for(&policy).contains(&name) {
            let policy_name = policy.name_any();
            if let Err(why) = patch_policy(&policies, policy, |p| isolation::restore_patch(p, &name)).await? {
                return Err(Error::Restore(format!("NetworkPolicy {policy_name}: {why}")));
            }
        }
    }
    let Some(target) = action.status.as_ref().and_then(|s| s.target.clone()) else {
        return Ok(None);
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(pod) = pods.get_opt(&target.pod).await?.filter(|p| p.uid().as_deref() == Some(target.uid.as_str())) else {
        return Ok(None);
    };
    if pod.labels().get(ISOLATED_LABEL) != Some(&name) {
        return Ok(Some(pod));
    }
    let patch = json!({ "metadata": { "uid": target.uid, "labels": { ISOLATED_LABEL: null } } });
    match pods.patch(&target.pod, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(pod) => Ok(Some(pod)),
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn namespace_of(action: &ResponseAction) -> Result<String> {
    action.namespace().ok_or_else(|| Error::MissingNamespace(action.name_any()))
}
