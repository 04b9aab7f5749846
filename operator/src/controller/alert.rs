//! Alerts: take each new detection in (or fold it into the open Alert it repeats), record
//! every triage change, comment and linked action in the history, attach the catalog's
//! guidance, and let the ResponsePolicies answer it — once.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use riposte_crds::{Alert, AlertPolicyDecision, AlertStatus, HistoryEntry, LinkedAction, ResponseAction, catalog};

use super::{AUTOMATION_CONFIG_MAP, Context, forget_failures, is_status, now, write_status};
use crate::error::{Error, Result};
use crate::metrics::{AlertLabels, DecisionLabels, KindLabels};
use crate::policy::{self, PolicyActionRecord, Situation, Verdict};
use crate::status;
use crate::triage::{self, event};

/// How long actions created here are remembered besides the watch, which shows them within
/// moments; cooldowns and rate limits count both.
const LEDGER_MEMORY: Duration = Duration::from_secs(600);

pub async fn reconcile(alert: Arc<Alert>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.get_or_create(&KindLabels { kind: "Alert".into() }).inc();
    let namespace = alert.namespace().ok_or_else(|| Error::MissingNamespace(alert.name_any()))?;
    let result = sync(&alert, &ctx, &namespace).await;
    if result.is_ok() {
        forget_failures(&ctx, "Alert", &format!("{namespace}/{}", alert.name_any()));
    }
    count_alerts(&ctx);
    result
}

async fn sync(alert: &Alert, ctx: &Context, namespace: &str) -> Result<Action> {
    if alert.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if triage::may_fold(alert, now().0) && !is_referenced(ctx, alert) {
        let alerts = ctx.alerts.state();
        if let Some(primary) =
            triage::primary_for(alert, alerts.iter().map(AsRef::as_ref), ctx.settings.alert_dedup_window)
        {
            return fold(ctx, alert, primary, namespace).await;
        }
    }
    let fresh = match alert.status.as_ref().and_then(|s| s.policy_decisions.as_ref()) {
        Some(_) => None,
        None => Some(evaluate_policies(ctx, alert, namespace).await?),
    };
    let linked = linked_actions(ctx, alert, namespace);
    let guidance = catalog::guidance(&alert.spec.alert_type.0).cloned();
    let now = now();
    let api: Api<Alert> = Api::namespaced(ctx.client.clone(), namespace);
    let updated = write_status(&api, alert.clone(), |current| {
        let mut s = current.status.clone().unwrap_or_default();
        if !triage::is_registered(current) {
            s.occurrences += 1;
            if s.last_seen.as_ref().is_none_or(|t| t.0 < current.spec.detected_at.0) {
                s.last_seen = Some(current.spec.detected_at.clone());
            }
            let source = current.spec.source.as_deref();
            let message = format!(
                "{} detected{}: {}",
                current.spec.alert_type.0,
                source.map(|s| format!(" by {s}")).unwrap_or_default(),
                current.spec.title
            );
            push(&mut s.history, event::DETECTED, message, source, &current.spec.detected_at);
        }
        s.guidance = guidance.clone();
        let recorded = s.triage.clone().unwrap_or_default();
        for (event, message) in triage::triage_changes(current, &recorded) {
            push(&mut s.history, event, message, current.spec.triaged_by.as_deref(), &now);
        }
        s.triage = Some(triage::recorded_triage(current));
        status::record_comments(&current.spec.comments, &mut s.history, &now);
        for line in triage::action_changes(&s.actions, &linked) {
            push(&mut s.history, event::ACTION, line, None, &now);
        }
        s.action_count = linked.len() as i32;
        s.actions = linked.clone();
        if let Some(verdicts) = fresh.as_ref().filter(|_| s.policy_decisions.is_none()) {
            s.policy_decisions = Some(
                verdicts
                    .iter()
                    .map(|(policy, v)| AlertPolicyDecision {
                        policy: policy.clone(),
                        time: now.clone(),
                        decision: v.decision,
                        message: v.message.clone(),
                        actions: v.actions.iter().map(ResourceExt::name_any).collect(),
                    })
                    .collect(),
            );
            for (policy, v) in verdicts {
                let line = format!("ResponsePolicy {policy}: {}: {}", v.decision.as_str(), v.message);
                push(&mut s.history, event::POLICY_DECISION, line, Some(policy), &now);
            }
        }
        s.observed_generation = current.metadata.generation;
        s
    })
    .await?;
    // The actions first: the Events that announce the decisions can wait a round trip.
    // The decisions are recorded: their Events are published once, whatever happens to
    // the actions (whose creation is retried from the record).
    let verdicts = fresh.unwrap_or_default();
    let created = create_policy_actions(ctx, &updated, &verdicts, namespace).await;
    for (policy, verdict) in &verdicts {
        let labels = DecisionLabels { policy: policy.clone(), decision: verdict.decision.as_str().into() };
        ctx.metrics.policy_decisions.get_or_create(&labels).inc();
        let kind = if verdict.actions.is_empty() { EventType::Warning } else { EventType::Normal };
        let note = format!("ResponsePolicy {policy}: {}", verdict.message);
        ctx.publish(&updated, kind, verdict.decision.as_str(), "Respond", note).await;
    }
    created?;
    // A twin raised by another source at the same moment may have been taken in before
    // either saw the other: look again while this one may still fold.
    if triage::may_fold(&updated, now.0) {
        return Ok(Action::requeue(RACE_RECHECK));
    }
    Ok(Action::await_change())
}

/// How often a young Alert looks again for a twin it should fold into.
const RACE_RECHECK: std::time::Duration = std::time::Duration::from_secs(3);

/// Appends a history entry. Triage and action lines are diffs against what the same status
/// write records, so they are never duplicated and need no de-duplication (which would
/// swallow a second identical move, such as reopening an alert twice).
fn push(history: &mut Vec<HistoryEntry>, event: &str, message: String, by: Option<&str>, time: &Time) {
    history.push(HistoryEntry { time: time.clone(), event: event.to_owned(), message, by: by.map(str::to_owned) });
}

/// An alert some action already responds to is kept, even if it repeats another.
fn is_referenced(ctx: &Context, alert: &Alert) -> bool {
    let name = alert.name_any();
    ctx.actions
        .state()
        .iter()
        .any(|a| a.namespace() == alert.namespace() && a.spec.alert_ref.as_ref().is_some_and(|r| r.name == name))
}

/// Folds a repeated detection into the open alert it repeats: one more occurrence, a later
/// last-seen time, a history line; then the repeat is deleted. Counted once even if the
/// delete fails and this runs again.
async fn fold(ctx: &Context, duplicate: &Alert, primary: &Alert, namespace: &str) -> Result<Action> {
    let api: Api<Alert> = Api::namespaced(ctx.client.clone(), namespace);
    let detected = duplicate.spec.detected_at.clone();
    let entry = format!("detected again at {} (Alert {} folded in)", detected.0, duplicate.name_any());
    let source = duplicate.spec.source.clone();
    let updated = write_status(&api, primary.clone(), |current| {
        let mut s: AlertStatus = current.status.clone().unwrap_or_default();
        if !s.history.iter().any(|h| h.event == event::DETECTED_AGAIN && h.message == entry) {
            s.occurrences += 1;
            if s.last_seen.as_ref().is_none_or(|t| t.0 < detected.0) {
                s.last_seen = Some(detected.clone());
            }
            push(&mut s.history, event::DETECTED_AGAIN, entry.clone(), source.as_deref(), &detected);
        }
        s
    })
    .await?;
    let params = DeleteParams {
        preconditions: Some(Preconditions { uid: duplicate.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match api.delete(&duplicate.name_any(), &params).await {
        Ok(_) => {}
        Err(e) if is_status(&e, 404) || is_status(&e, 409) => {}
        Err(e) => return Err(e.into()),
    }
    ctx.publish(&updated, EventType::Normal, event::DETECTED_AGAIN, "Deduplicate", entry).await;
    Ok(Action::await_change())
}

/// Every policy's verdict on the alert, taken under one lock so that concurrent alerts
/// see each other's actions in cooldowns and rate limits.
async fn evaluate_policies(ctx: &Context, alert: &Alert, namespace: &str) -> Result<Vec<(String, Verdict)>> {
    let mut policies = ctx.policies.state();
    if policies.is_empty() {
        return Ok(Vec::new());
    }
    policies.sort_by_key(|p| p.name_any());
    let pod = match alert.spec.entities.pod.as_deref() {
        Some(pod) => Api::<Pod>::namespaced(ctx.client.clone(), namespace).get_opt(pod).await?,
        None => None,
    };
    let paused = automation_paused(ctx).await?;
    let now = Timestamp::now();
    let mut ledger = ctx.automated.lock().expect("automation ledger lock");
    ledger.retain(|r| now.duration_since(r.created).unsigned_abs() < LEDGER_MEMORY);
    let mut recent: Vec<PolicyActionRecord> =
        ctx.actions.state().iter().filter_map(|a| PolicyActionRecord::of(a)).collect();
    for record in ledger.iter() {
        if !recent.iter().any(|r| r.action == record.action && r.namespace == record.namespace) {
            recent.push(record.clone());
        }
    }
    let situation = Situation {
        pod: pod.as_ref(),
        guardrails: &ctx.settings.guardrails,
        paused,
        recent: &recent,
        identity: &ctx.settings.identity,
        now,
    };
    let mut verdicts = Vec::new();
    for policy in &policies {
        if let Some(verdict) = policy::decide(policy, alert, &situation) {
            ledger.extend(verdict.actions.iter().filter_map(|a| {
                Some(PolicyActionRecord {
                    policy: policy.name_any(),
                    action: a.name_any(),
                    namespace: a.namespace()?,
                    pod: a.spec.target.pod.clone(),
                    created: now,
                })
            }));
            verdicts.push((policy.name_any(), verdict));
        }
    }
    Ok(verdicts)
}

/// The kill switch: `paused: "true"` in the ConfigMap riposte-automation of the operator's
/// namespace. Read at every decision, so that pausing takes effect at once.
async fn automation_paused(ctx: &Context) -> Result<bool> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let switch = config_maps.get_opt(AUTOMATION_CONFIG_MAP).await?;
    Ok(switch.and_then(|c| c.data).and_then(|d| d.get("paused").cloned()).is_some_and(|v| v.trim() == "true"))
}

/// Creates the actions the persisted decisions call for, unless the history says they were
/// created already. The decisions are written before the actions exist, so a crash or a
/// new leader finishes the job instead of deciding again. Names are fixed per alert, so a
/// second attempt finds the first one's actions.
async fn create_policy_actions(
    ctx: &Context,
    alert: &Alert,
    fresh: &[(String, Verdict)],
    namespace: &str,
) -> Result<()> {
    let status = alert.status.clone().unwrap_or_default();
    let done = |policy: &str| {
        status.history.iter().any(|h| h.event == event::ACTIONS_CREATED && h.by.as_deref() == Some(policy))
    };
    let pending: Vec<&AlertPolicyDecision> =
        status.policy_decisions.iter().flatten().filter(|d| !d.actions.is_empty() && !done(&d.policy)).collect();
    if pending.is_empty() {
        return Ok(());
    }
    let api: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), namespace);
    let mut outcomes = Vec::new();
    for decision in pending {
        let actions = match fresh.iter().find(|(p, _)| *p == decision.policy) {
            Some((_, verdict)) => verdict.actions.clone(),
            None => match ctx.policies.state().iter().find(|p| p.name_any() == decision.policy) {
                Some(policy) => policy::policy_actions(
                    policy,
                    alert,
                    alert.spec.entities.pod.as_deref().unwrap_or_default(),
                    &ctx.settings.identity,
                ),
                None => {
                    outcomes.push((
                        decision.policy.clone(),
                        "the policy was deleted before its actions were created".to_owned(),
                    ));
                    continue;
                }
            },
        };
        let mut created = Vec::new();
        for action in actions {
            match api.create(&PostParams::default(), &action).await {
                Ok(_) => created.push(format!("created ResponseAction {}", action.name_any())),
                Err(e) if is_status(&e, 409) => created.push(format!("ResponseAction {} exists", action.name_any())),
                // Refused for good (admission, validation, RBAC): say so instead of retrying forever.
                Err(kube::Error::Api(e)) if (400..500).contains(&e.code) && e.code != 429 => {
                    created.push(format!("could not create ResponseAction {}: {}", action.name_any(), e.message));
                }
                Err(e) => return Err(e.into()),
            }
        }
        outcomes.push((decision.policy.clone(), created.join("; ")));
    }
    let now = now();
    let api: Api<Alert> = Api::namespaced(ctx.client.clone(), namespace);
    write_status(&api, alert.clone(), |current| {
        let mut s = current.status.clone().unwrap_or_default();
        for (policy, outcome) in &outcomes {
            status::append(&mut s.history, event::ACTIONS_CREATED, outcome.clone(), Some(policy), &now);
        }
        s
    })
    .await?;
    Ok(())
}

/// The ResponseActions that reference the alert, oldest first.
fn linked_actions(ctx: &Context, alert: &Alert, namespace: &str) -> Vec<LinkedAction> {
    let name = alert.name_any();
    let mut linked: Vec<Arc<ResponseAction>> = ctx
        .actions
        .state()
        .into_iter()
        .filter(|a| a.namespace().as_deref() == Some(namespace))
        .filter(|a| a.spec.alert_ref.as_ref().is_some_and(|r| r.name == name))
        .collect();
    linked.sort_by_key(|a| (a.creation_timestamp(), a.name_any()));
    linked
        .iter()
        .map(|a| LinkedAction {
            name: a.name_any(),
            action: a.spec.action,
            phase: a.status.as_ref().and_then(|s| s.phase),
            requested_by: Some(a.spec.requested_by.clone()),
            policy: a.spec.policy_ref.as_ref().map(|p| p.name.clone()),
        })
        .collect()
}

/// The alerts gauge, by type, severity and state, from the watch's view of every Alert.
fn count_alerts(ctx: &Context) {
    let mut counts = std::collections::HashMap::<AlertLabels, i64>::new();
    for alert in ctx.alerts.state() {
        let labels = AlertLabels {
            r#type: alert.spec.alert_type.0.clone(),
            severity: format!("{:?}", alert.spec.severity),
            state: alert.spec.state.as_str().into(),
        };
        *counts.entry(labels).or_default() += 1;
    }
    ctx.metrics.alerts.clear();
    for (labels, count) in counts {
        ctx.metrics.alerts.get_or_create(&labels).set(count);
    }
}
