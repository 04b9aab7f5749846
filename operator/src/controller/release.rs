//! Release: undo isolations. The Release action names the isolations it undoes in its
//! status; each isolation then undoes itself (it alone writes its objects) and wakes the
//! release, which completes once all of them are released.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, Resource, ResourceExt};
use riposte_crds::{ActionKind, Phase, ResponseAction};

use super::isolate::finish_dry_run;
use super::{Context, fail, now, record_new_comments, resolve_target, update_status};
use crate::error::{Error, Result};
use crate::status::{self, condition};

/// A safety net in case a wake-up is lost (for instance across an operator restart).
const RECHECK: Duration = Duration::from_secs(10);

pub async fn apply(action: &ResponseAction, ctx: &Context) -> Result<Action> {
    let namespace = action.namespace().ok_or_else(|| Error::MissingNamespace(action.name_any()))?;
    let current = action.status.clone().unwrap_or_default();
    match current.phase {
        Some(phase) if phase.is_terminal() => record_new_comments(ctx, action).await,
        Some(Phase::Running) => progress(action, ctx, &namespace, &current.releases).await,
        _ => start(action, ctx, &namespace).await,
    }
}

/// Fixes which isolations this release undoes, once, in the status.
async fn start(action: &ResponseAction, ctx: &Context, namespace: &str) -> Result<Action> {
    let targets = match targets(action, ctx, namespace).await? {
        Ok(targets) => targets,
        Err(reason) => return fail(ctx, action, None, "NothingToRelease", reason).await,
    };
    if action.spec.dry_run {
        let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
        let plan = format!("dry run: would release isolation {}", targets.join(", "));
        return match pods.get_opt(&action.spec.target.pod).await? {
            Some(pod) => finish_dry_run(action, ctx, &pod, &resolve_target(&pod), plan).await,
            None => {
                fail(
                    ctx,
                    action,
                    None,
                    "TargetNotFound",
                    format!("pod {} not found in namespace {namespace}", action.spec.target.pod),
                )
                .await
            }
        };
    }
    let now = now();
    let message = format!("releasing isolation {} of pod {}", targets.join(", "), action.spec.target.pod);
    update_status(ctx, action, |s| {
        s.releases = targets.clone();
        status::record(s, "ReleaseRequested", message.clone(), &now);
        status::transition(s, Phase::Running, message.clone(), &now);
    })
    .await?;
    // Our own status change brings us back in `progress`, by which time every reconcile
    // sees this release as Running in the shared cache.
    Ok(Action::await_change())
}

/// The isolations to undo: the one named, or every active one of the target pod.
async fn targets(action: &ResponseAction, ctx: &Context, namespace: &str) -> Result<Result<Vec<String>, String>> {
    let pod = &action.spec.target.pod;
    if let Some(name) = action.spec.release.as_ref().and_then(|r| r.action_name.as_ref()) {
        let api: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), namespace);
        let Some(isolation) = api.get_opt(name).await? else {
            return Ok(Err(format!("ResponseAction {name} not found in namespace {namespace}")));
        };
        let phase = isolation.status.as_ref().and_then(|s| s.phase);
        let released_by = isolation.status.as_ref().and_then(|s| s.released_by.clone());
        return Ok(if isolation.spec.action != ActionKind::Isolate {
            Err(format!("ResponseAction {name} is a {} action, not an isolation", isolation.spec.action))
        } else if isolation.spec.target.pod != *pod {
            Err(format!("ResponseAction {name} isolates pod {}, not pod {pod}", isolation.spec.target.pod))
        } else if isolation.spec.dry_run {
            Err(format!("ResponseAction {name} was a dry run; it isolated nothing"))
        } else if phase == Some(Phase::Released) {
            Err(format!(
                "ResponseAction {name} was already released{}",
                released_by.map(|r| format!(" by {r}")).unwrap_or_default()
            ))
        } else {
            Ok(vec![name.clone()])
        });
    }
    let mut active: Vec<String> = ctx
        .actions
        .state()
        .iter()
        .filter(|a| {
            a.namespace().as_deref() == Some(namespace) && a.spec.action == ActionKind::Isolate && !a.spec.dry_run
        })
        .filter(|a| a.spec.target.pod == *pod && a.meta().deletion_timestamp.is_none())
        .filter(|a| {
            let status = a.status.clone().unwrap_or_default();
            // A Failed isolation that got as far as resolving its pod may have left a policy in place.
            status.phase != Some(Phase::Released) && !(status.phase == Some(Phase::Failed) && status.target.is_none())
        })
        .map(|a| a.name_any())
        .collect();
    active.sort();
    Ok(if active.is_empty() { Err(format!("pod {pod} has no active isolation")) } else { Ok(active) })
}

async fn progress(action: &ResponseAction, ctx: &Context, namespace: &str, targets: &[String]) -> Result<Action> {
    let api: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), namespace);
    let me = action.name_any();
    let mut outcomes = Vec::new();
    for name in targets {
        let isolation = api.get_opt(name).await?;
        let status = isolation.as_ref().and_then(|i| i.status.clone()).unwrap_or_default();
        match (isolation.is_some(), status.phase, status.released_by) {
            (false, _, _) => outcomes.push(format!("isolation {name} no longer exists")),
            (true, Some(Phase::Released), Some(by)) if by == me => outcomes.push(format!("released isolation {name}")),
            (true, Some(Phase::Released), by) => outcomes.push(format!(
                "isolation {name} was already released{}",
                by.map(|b| format!(" by {b}")).unwrap_or_default()
            )),
            _ => {
                ctx.wake(namespace, name);
                return Ok(Action::requeue(RECHECK));
            }
        }
    }
    let now = now();
    let generation = action.metadata.generation;
    let message = outcomes.join("; ");
    update_status(ctx, action, |s| {
        for outcome in &outcomes {
            status::record(s, "Released", outcome.clone(), &now);
        }
        status::set_condition(&mut s.conditions, condition::COMPLETED, "True", "Released", &message, generation, &now);
        status::transition(s, Phase::Succeeded, message.clone(), &now);
    })
    .await?;
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pod = pods.get_opt(&action.spec.target.pod).await?;
    ctx.publish_both(action, pod.as_ref(), EventType::Normal, "Released", message).await;
    Ok(Action::await_change())
}
