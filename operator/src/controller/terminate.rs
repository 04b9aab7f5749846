//! Terminate: delete exactly the pod that was targeted.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, LogParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use riposte_crds::{
    ActionKind, EvidenceCapture, EvidenceOptions, EvidenceRecord, Phase, ResolvedTarget, ResponseAction,
};

use super::isolate::finish_dry_run;
use super::{
    Context, describe_target, fail, is_status, locate_target, now, record_new_comments, resolve_target, update_status,
};
use crate::error::{Error, Result};
use crate::evidence::{self, LogWindow};
use crate::guard;
use crate::status::{self, condition};

pub async fn apply(action: &ResponseAction, ctx: &Context) -> Result<Action> {
    let namespace = action.namespace().ok_or_else(|| Error::MissingNamespace(action.name_any()))?;
    let current = action.status.clone().unwrap_or_default();
    if current.phase.is_some_and(Phase::is_terminal) {
        return record_new_comments(ctx, action).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    // The action as last written: later status writes build on it, not on a stale copy.
    let mut action = action.clone();
    let target = match current.target {
        Some(target) => target,
        None => {
            let pod_name = &action.spec.target.pod;
            let Some(pod) = pods.get_opt(pod_name).await? else {
                return fail(
                    ctx,
                    &action,
                    None,
                    "TargetNotFound",
                    format!("pod {pod_name} not found in namespace {namespace}"),
                )
                .await;
            };
            if let Some(refusal) = guard::refusal(&ctx.settings.guardrails, &pod) {
                return fail(ctx, &action, Some(&pod), "Refused", refusal).await;
            }
            let target = resolve_target(&pod);
            if action.spec.dry_run {
                let plan =
                    with_owner(format!("dry run: would delete {}{}", locate_target(&target), grace(&action)), &target);
                return finish_dry_run(&action, ctx, &pod, &target, plan).await;
            }
            // The UID is recorded before the delete: after a crash, the retry deletes this
            // pod or nothing, never a new pod that took its name.
            let now = now();
            let described = describe_target(&target);
            action = update_status(ctx, &action, |s| {
                status::transition(s, Phase::Running, format!("terminating pod {pod_name}"), &now);
                s.target = Some(target.clone());
                status::record(s, "TargetResolved", described.clone(), &now);
            })
            .await?;
            target
        }
    };
    let evidence = action.spec.terminate.as_ref().and_then(|t| t.evidence.clone());
    if let Some(options) = evidence.filter(|_| action.status.as_ref().is_none_or(|s| s.evidence.is_none())) {
        let pod = pods.get_opt(&target.pod).await?.filter(|p| p.uid().as_deref() == Some(target.uid.as_str()));
        if let Some(pod) = pod {
            let record = capture_evidence(ctx, &action, &pod, &options).await?;
            let summary = evidence::summary(&record);
            let now = now();
            let event = if record.complete { "EvidenceCaptured" } else { "EvidenceIncomplete" };
            action = update_status(ctx, &action, |s| {
                s.evidence = Some(record.clone());
                status::record(s, event, summary.clone(), &now);
            })
            .await?;
            if !record.complete && options.capture == EvidenceCapture::Required {
                let message = format!(
                    "evidence was required but is incomplete, so pod {} was not deleted: {summary}",
                    target.pod
                );
                return fail(ctx, &action, Some(&pod), "EvidenceIncomplete", message).await;
            }
        }
    }
    let params = DeleteParams {
        grace_period_seconds: action.spec.terminate.as_ref().and_then(|t| t.grace_period_seconds).map(|s| s as u32),
        preconditions: Some(Preconditions { uid: Some(target.uid.clone()), resource_version: None }),
        ..DeleteParams::default()
    };
    let outcome = match pods.delete(&target.pod, &params).await {
        Ok(_) => format!("deleted {}{}", locate_target(&target), grace(&action)),
        Err(e) if is_status(&e, 404) => format!("pod {} was already gone", target.pod),
        Err(e) if is_status(&e, 409) => {
            format!(
                "pod {} (uid {}) was already gone; a newer pod with the same name was left alone",
                target.pod, target.uid
            )
        }
        Err(e) => return Err(e.into()),
    };
    finish(&action, ctx, &namespace, &target, outcome).await
}

/// Keeps the pod's manifest and its containers' recent logs in an immutable ConfigMap in
/// the operator's namespace. Logs that cannot be fetched (no kubelet answers, the container
/// never started) are recorded as missing with the apiserver's reason.
async fn capture_evidence(
    ctx: &Context,
    action: &ResponseAction,
    pod: &Pod,
    options: &EvidenceOptions,
) -> Result<EvidenceRecord> {
    let action_namespace = action.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &action_namespace);
    let mut logs = Vec::new();
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    for container in evidence::containers(pod) {
        if !scheduled {
            // The apiserver answers an empty log for such a pod; say why there is none instead.
            logs.push((container, Err("the pod was never scheduled to a node, so no container ran".to_owned())));
            continue;
        }
        let log = match recent_log(&pods, &pod.name_any(), &container, options.log_limit_bytes as usize).await {
            Ok(text) => Ok(text),
            Err(kube::Error::Api(e)) => Err(e.message),
            Err(e) => return Err(e.into()),
        };
        logs.push((container, log));
    }
    let (config_map, record) =
        evidence::package(&ctx.settings.namespace, &action_namespace, &action.name_any(), pod, logs, &now());
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    match config_maps.create(&PostParams::default(), &config_map).await {
        Ok(_) => Ok(record),
        // Kept by an earlier attempt that crashed before recording it; evidence is immutable.
        Err(e) if is_status(&e, 409) => Ok(record),
        Err(e) => Err(e.into()),
    }
}

/// The newest lines of a container's log, at most `limit` bytes (see [`evidence::LogWindow`]).
async fn recent_log(pods: &Api<Pod>, pod: &str, container: &str, limit: usize) -> kube::Result<String> {
    /// Doubling from 16 lines reaches any limit long before this.
    const FETCHES: usize = 24;
    let mut tail_lines = evidence::first_log_window(limit);
    let mut fewer_than_limit = None;
    for _ in 0..FETCHES {
        let params = LogParams {
            container: Some(container.to_owned()),
            tail_lines: Some(tail_lines),
            limit_bytes: Some(evidence::log_fetch_cap(limit) as i64),
            timestamps: true,
            ..LogParams::default()
        };
        let text = pods.logs(pod, &params).await?;
        match evidence::judge_log_window(&text, tail_lines, limit) {
            LogWindow::Enough => return Ok(evidence::keep_latest(&text, limit)),
            LogWindow::Whole => return Ok(text),
            LogWindow::TooFew => {
                fewer_than_limit = Some(text);
                tail_lines *= 2;
            }
            LogWindow::Capped => match fewer_than_limit.take() {
                // The last window that fit: the newest lines, if fewer bytes than allowed.
                Some(kept) => return Ok(kept),
                None if tail_lines > 1 => tail_lines /= 2,
                None => return Ok(evidence::keep_latest(&text, limit)),
            },
        }
    }
    Ok(fewer_than_limit.unwrap_or_default())
}

async fn finish(
    action: &ResponseAction,
    ctx: &Context,
    namespace: &str,
    target: &ResolvedTarget,
    outcome: String,
) -> Result<Action> {
    let now = now();
    let generation = action.metadata.generation;
    let message = with_owner(outcome, target);
    update_status(ctx, action, |s| {
        status::record(s, "PodDeleted", message.clone(), &now);
        status::set_condition(
            &mut s.conditions,
            condition::COMPLETED,
            "True",
            "PodDeleted",
            &message,
            generation,
            &now,
        );
        status::transition(s, Phase::Succeeded, message.clone(), &now);
    })
    .await?;
    ctx.publish_both(action, None, EventType::Normal, "Terminated", message).await;
    // Isolations of the deleted pod can clean up now rather than at their next resync.
    for isolation in ctx.actions.state().iter().filter(|a| {
        a.namespace().as_deref() == Some(namespace)
            && a.spec.action == ActionKind::Isolate
            && a.status.as_ref().and_then(|s| s.target.as_ref()).is_some_and(|t| t.uid == target.uid)
    }) {
        ctx.wake(namespace, &isolation.name_any());
    }
    Ok(Action::await_change())
}

/// Tells the analyst when the pod will come back.
fn with_owner(outcome: String, target: &ResolvedTarget) -> String {
    match &target.owner {
        Some(owner) => format!("{outcome}; its {} {} will create a replacement", owner.kind, owner.name),
        None => format!("{outcome}; no workload controls it, so it will not come back"),
    }
}

fn grace(action: &ResponseAction) -> String {
    match action.spec.terminate.as_ref().and_then(|t| t.grace_period_seconds) {
        Some(seconds) => format!(" with a grace period of {seconds}s"),
        None => " with the pod's own grace period".to_owned(),
    }
}
