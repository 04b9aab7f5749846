//! Automated response, decided purely: which ResponsePolicies answer an Alert, with which
//! ResponseActions, and why a matching policy holds back (suspended, excluded, protected,
//! cooling down, rate-limited). The controller persists the decisions on the Alert before
//! it creates the actions, so a crash or a change of leader never decides twice.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use riposte_crds::{
    ActionKind, Alert, AlertRef, PolicyDecision, PolicyDecisionRecord, PolicyMode, PolicyRef, ResponseAction,
    ResponseActionSpec, ResponsePolicy, ResponsePolicyStatus, Target,
};

use crate::guard::{self, Guardrails};
use crate::isolation::selector_matches;
use crate::status;

/// How many of a policy's latest decisions its status lists.
pub const RECENT_DECISIONS: usize = 20;

/// Labels every automated action carries, so that a policy's recent actions can be found.
pub const POLICY_LABEL: &str = "riposte.dev/policy";
pub const ALERT_LABEL: &str = "riposte.dev/alert";
/// The window of `maxActionsPerHour`.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);

/// An action a policy created: what its cooldown and rate limit count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyActionRecord {
    pub policy: String,
    pub action: String,
    pub namespace: String,
    pub pod: String,
    pub created: Timestamp,
}

impl PolicyActionRecord {
    /// The record of an automated action, from its labels; None for a manual action.
    pub fn of(action: &ResponseAction) -> Option<PolicyActionRecord> {
        Some(PolicyActionRecord {
            policy: action.labels().get(POLICY_LABEL)?.clone(),
            action: action.name_any(),
            namespace: action.namespace()?,
            pod: action.spec.target.pod.clone(),
            created: action.creation_timestamp()?.0,
        })
    }
}

/// Everything besides the policy and the alert that a decision depends on.
pub struct Situation<'a> {
    /// The alert's pod, when it names one that exists.
    pub pod: Option<&'a Pod>,
    pub guardrails: &'a Guardrails,
    /// Automation is paused cluster-wide (the kill switch).
    pub paused: bool,
    /// The actions policies created recently.
    pub recent: &'a [PolicyActionRecord],
    /// Who Riposte is, as the apiserver authenticates it: the requester of automated actions.
    pub identity: &'a str,
    pub now: Timestamp,
}

/// A policy's answer to an alert it matches.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub decision: PolicyDecision,
    pub message: String,
    /// The actions to create; empty unless the decision is to act.
    pub actions: Vec<ResponseAction>,
}

/// The policy's verdict on the alert, or None when the policy does not match it.
pub fn decide(policy: &ResponsePolicy, alert: &Alert, situation: &Situation) -> Option<Verdict> {
    let spec = &policy.spec;
    let alert_namespace = alert.namespace().unwrap_or_default();
    if !matches_alert(policy, alert) {
        return None;
    }
    let verdict = |decision, message: String| Some(Verdict { decision, message, actions: Vec::new() });
    let Some(pod_name) = alert.spec.entities.pod.as_deref() else {
        return verdict(PolicyDecision::NoTarget, "the alert names no pod to act on".into());
    };
    if alert.spec.entities.namespace.as_deref().is_some_and(|ns| ns != alert_namespace) {
        return verdict(
            PolicyDecision::NoTarget,
            format!(
                "the alert's pod is in another namespace than the alert ({alert_namespace}); actions live beside their pod"
            ),
        );
    }
    let Some(pod) = situation.pod else {
        return verdict(PolicyDecision::NoTarget, format!("pod {pod_name} not found in namespace {alert_namespace}"));
    };
    if let Some(selector) = &spec.r#match.pod_selector
        && !selector_matches(selector, pod.labels())
    {
        return None;
    }
    if let Some(refusal) = guard::refusal(situation.guardrails, pod) {
        return verdict(PolicyDecision::Excluded, refusal);
    }
    if let Some(exclude) = &spec.exclude {
        if exclude.namespaces.contains(&alert_namespace) {
            return verdict(PolicyDecision::Excluded, format!("namespace {alert_namespace} is excluded by the policy"));
        }
        if exclude.pod_selector.as_ref().is_some_and(|s| selector_matches(s, pod.labels())) {
            return verdict(
                PolicyDecision::Excluded,
                format!("pod {pod_name} is excluded by the policy's pod selector"),
            );
        }
    }
    if situation.paused {
        return verdict(PolicyDecision::Suspended, "automation is paused cluster-wide".into());
    }
    if spec.suspend {
        return verdict(PolicyDecision::Suspended, "the policy is suspended".into());
    }
    let name = policy.name_any();
    let mine = || situation.recent.iter().filter(|r| r.policy == name);
    let cooldown = Duration::from_secs(spec.cooldown_seconds.max(0) as u64);
    if let Some(last) = mine()
        .filter(|r| r.namespace == alert_namespace && r.pod == pod_name)
        .filter(|r| age(situation.now, r.created) < cooldown)
        .max_by_key(|r| r.created)
    {
        return verdict(
            PolicyDecision::CoolingDown,
            format!(
                "the policy acted on pod {pod_name} at {} (ResponseAction {}); its cooldown is {}s",
                last.created, last.action, spec.cooldown_seconds
            ),
        );
    }
    let in_window = mine().filter(|r| age(situation.now, r.created) < RATE_WINDOW).count();
    if in_window + spec.actions.len() > spec.max_actions_per_hour.max(0) as usize {
        return verdict(
            PolicyDecision::RateLimited,
            format!(
                "the policy created {in_window} actions in the last hour; its limit is {} per hour",
                spec.max_actions_per_hour
            ),
        );
    }
    let actions = policy_actions(policy, alert, pod_name, situation.identity);
    let names: Vec<String> = actions.iter().map(ResourceExt::name_any).collect();
    let (decision, doing) = match spec.mode {
        PolicyMode::Automatic => (PolicyDecision::Acted, "created"),
        PolicyMode::ApprovalRequired => (PolicyDecision::AwaitingApproval, "created, awaiting approval,"),
        PolicyMode::DryRun => (PolicyDecision::DryRun, "created as dry runs"),
    };
    Some(Verdict {
        decision,
        message: format!("{doing} ResponseAction {} on pod {pod_name}", names.join(", ")),
        actions,
    })
}

/// A policy's status, derived from the decisions recorded on the Alerts and from the
/// actions that carry its label.
pub fn policy_status<'a>(
    policy: &ResponsePolicy,
    alerts: impl Iterator<Item = &'a Alert>,
    actions: impl Iterator<Item = &'a ResponseAction>,
    now: &Time,
) -> ResponsePolicyStatus {
    let name = policy.name_any();
    let mut decisions: Vec<PolicyDecisionRecord> = alerts
        .flat_map(|alert| {
            let at = format!("{}/{}", alert.namespace().unwrap_or_default(), alert.name_any());
            alert
                .status
                .iter()
                .flat_map(|s| s.policy_decisions.iter().flatten())
                .filter(|d| d.policy == name)
                .map(move |d| PolicyDecisionRecord {
                    time: d.time.clone(),
                    alert: at.clone(),
                    decision: d.decision,
                    message: d.message.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    decisions.sort_by(|a, b| (a.time.0, &a.alert).cmp(&(b.time.0, &b.alert)));
    let matched = decisions.len() as i64;
    let created: Vec<&ResponseAction> =
        actions.filter(|a| a.labels().get(POLICY_LABEL).is_some_and(|p| *p == name)).collect();
    let previous = policy.status.clone().unwrap_or_default();
    let mut conditions = previous.conditions;
    let (state, reason, message) = if policy.spec.suspend {
        ("False", "Suspended", "the policy is suspended (spec.suspend)".to_owned())
    } else {
        ("True", "Active", format!("responds in mode {}", policy.spec.mode.as_str()))
    };
    status::set_condition(&mut conditions, "Active", state, reason, &message, policy.metadata.generation, now);
    ResponsePolicyStatus {
        observed_generation: policy.metadata.generation,
        matched_alerts: matched,
        actions_created: created.len() as i64,
        last_action_time: created.iter().filter_map(|a| a.creation_timestamp()).max_by_key(|t| t.0),
        recent_decisions: decisions.split_off(decisions.len().saturating_sub(RECENT_DECISIONS)),
        conditions,
    }
}

/// Whether the alert itself (type, severity, tactics, namespace) is one the policy answers.
fn matches_alert(policy: &ResponsePolicy, alert: &Alert) -> bool {
    let criteria = &policy.spec.r#match;
    let spec = &alert.spec;
    (criteria.alert_types.is_empty() || criteria.alert_types.contains(&spec.alert_type))
        && criteria.min_severity.is_none_or(|min| spec.severity >= min)
        && (criteria.tactics.is_empty() || spec.tactics.iter().any(|t| criteria.tactics.contains(t)))
        && (criteria.namespaces.is_empty() || alert.namespace().is_some_and(|ns| criteria.namespaces.contains(&ns)))
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    now.duration_since(then).unsigned_abs()
}

/// The ResponseActions a policy creates for an alert: in the alert's namespace, named from
/// the policy, the kind and the alert's UID so that creating them again is a no-op.
pub fn policy_actions(policy: &ResponsePolicy, alert: &Alert, pod: &str, identity: &str) -> Vec<ResponseAction> {
    let policy_name = policy.name_any();
    let alert_name = alert.name_any();
    policy
        .spec
        .actions
        .iter()
        .map(|planned| {
            let labels = BTreeMap::from([
                (POLICY_LABEL.to_owned(), policy_name.clone()),
                (ALERT_LABEL.to_owned(), label_value(&alert_name)),
            ]);
            ResponseAction {
                metadata: ObjectMeta {
                    name: Some(action_name(&policy_name, planned.action, &alert.uid().unwrap_or(alert_name.clone()))),
                    namespace: alert.namespace(),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: ResponseActionSpec {
                    action: planned.action,
                    target: Target { pod: pod.to_owned() },
                    requested_by: identity.to_owned(),
                    comment: Some(truncate(
                        format!(
                            "automated response to {:?} alert {alert_name} ({}) by ResponsePolicy {policy_name}",
                            alert.spec.severity, alert.spec.alert_type.0
                        ),
                        1024,
                    )),
                    alert_ref: Some(AlertRef { name: alert_name.clone() }),
                    policy_ref: Some(PolicyRef { name: policy_name.clone() }),
                    approval_required: policy.spec.mode == PolicyMode::ApprovalRequired,
                    approval: None,
                    dry_run: policy.spec.mode == PolicyMode::DryRun,
                    isolation: planned.isolation.clone(),
                    terminate: planned.terminate.clone(),
                    release: None,
                    comments: Vec::new(),
                },
                status: None,
            }
        })
        .collect()
}

/// `<policy>-<kind>-<hash of the alert UID>`: at most 40 + 1 + 9 + 1 + 8 = 59 characters,
/// within the 63 that an action name may have.
pub fn action_name(policy: &str, kind: ActionKind, alert_uid: &str) -> String {
    format!("{policy}-{}-{:08x}", kind.to_string().to_lowercase(), fnv1a(alert_uid) as u32)
}

/// A stable hash (the standard library's is randomly seeded per process).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Alert names can be 253 characters; label values only 63.
fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    format!("{}-{:08x}", name[..54].trim_end_matches(['-', '.']), fnv1a(name) as u32)
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
    use riposte_crds::{
        AlertMatch, AlertSpec, AlertType, PolicyAction, PolicyExclusions, ResponsePolicySpec, Severity, Tactic,
    };
    use serde_json::json;

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn alert(alert_type: &str, severity: Severity, pod: Option<&str>) -> Alert {
        let mut spec = AlertSpec::detected(alert_type, "t".into(), severity, Time(now()));
        spec.tactics = vec![Tactic::Execution];
        spec.entities.pod = pod.map(str::to_owned);
        let mut alert = Alert::new("a1", spec);
        alert.metadata.namespace = Some("shop".into());
        alert.metadata.uid = Some("uid-1".into());
        alert
    }

    fn policy(mode: PolicyMode) -> ResponsePolicy {
        ResponsePolicy::new(
            "isolate-shells",
            ResponsePolicySpec {
                mode,
                suspend: false,
                r#match: AlertMatch {
                    alert_types: vec![AlertType("K8S.NODE_ReverseShell".into())],
                    min_severity: Some(Severity::Medium),
                    ..AlertMatch::default()
                },
                exclude: None,
                actions: vec![PolicyAction { action: ActionKind::Isolate, isolation: None, terminate: None }],
                max_actions_per_hour: 2,
                cooldown_seconds: 600,
            },
        )
    }

    fn pod(labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "web-1", "namespace": "shop", "labels": labels } }))
            .unwrap()
    }

    fn guardrails() -> Guardrails {
        Guardrails { protected_namespaces: ["kube-system".to_string()].into(), own_pod: None }
    }

    fn situation<'a>(pod: Option<&'a Pod>, recent: &'a [PolicyActionRecord], g: &'a Guardrails) -> Situation<'a> {
        Situation {
            pod,
            guardrails: g,
            paused: false,
            recent,
            identity: "system:serviceaccount:riposte:riposte",
            now: now(),
        }
    }

    fn record(policy: &str, pod: &str, secs_ago: i64) -> PolicyActionRecord {
        PolicyActionRecord {
            policy: policy.into(),
            action: format!("{policy}-x-{secs_ago}"),
            namespace: "shop".into(),
            pod: pod.into(),
            created: Timestamp::from_second(1_800_000_000 - secs_ago).unwrap(),
        }
    }

    #[test]
    fn a_matching_alert_gets_an_action_that_names_the_alert_the_policy_and_riposte() {
        let (p, g) = (pod(json!({"app": "web"})), guardrails());
        let verdict = decide(
            &policy(PolicyMode::Automatic),
            &alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1")),
            &situation(Some(&p), &[], &g),
        )
        .unwrap();
        assert_eq!(verdict.decision, PolicyDecision::Acted);
        let action = &verdict.actions[0];
        assert_eq!(action.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(action.spec.target.pod, "web-1");
        assert_eq!(action.spec.alert_ref.as_ref().unwrap().name, "a1");
        assert_eq!(action.spec.policy_ref.as_ref().unwrap().name, "isolate-shells");
        assert_eq!(action.spec.requested_by, "system:serviceaccount:riposte:riposte");
        assert_eq!(action.labels().get(POLICY_LABEL).map(String::as_str), Some("isolate-shells"));
        assert!(!action.spec.approval_required && !action.spec.dry_run);
        assert!(verdict.message.contains(&action.name_any()));
    }

    #[test]
    fn type_severity_tactics_namespaces_and_labels_must_all_match() {
        let (p, g) = (pod(json!({"app": "web"})), guardrails());
        let s = situation(Some(&p), &[], &g);
        let mut pol = policy(PolicyMode::Automatic);
        assert!(decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::Low, Some("web-1")), &s).is_none());
        assert!(decide(&pol, &alert("K8S_PrivilegedContainer", Severity::High, Some("web-1")), &s).is_none());
        pol.spec.r#match.tactics = vec![Tactic::Exfiltration];
        assert!(decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1")), &s).is_none());
        pol.spec.r#match.tactics = vec![Tactic::Exfiltration, Tactic::Execution];
        assert!(decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1")), &s).is_some());
        pol.spec.r#match.namespaces = vec!["payments".into()];
        assert!(decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1")), &s).is_none());
        pol.spec.r#match.namespaces = vec!["shop".into()];
        pol.spec.r#match.pod_selector = Some(LabelSelector {
            match_labels: Some([("app".to_string(), "db".to_string())].into()),
            ..LabelSelector::default()
        });
        assert!(decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1")), &s).is_none());
    }

    #[test]
    fn holding_back_is_recorded_with_its_reason() {
        let g = guardrails();
        let p = pod(json!({"app": "web", "tier": "canary"}));
        let a = alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1"));
        let mut pol = policy(PolicyMode::Automatic);

        let no_pod = decide(&pol, &alert("K8S.NODE_ReverseShell", Severity::High, None), &situation(None, &[], &g));
        assert_eq!(no_pod.unwrap().decision, PolicyDecision::NoTarget);
        assert_eq!(decide(&pol, &a, &situation(None, &[], &g)).unwrap().decision, PolicyDecision::NoTarget);

        let mut protected = p.clone();
        protected.metadata.namespace = Some("kube-system".into());
        let mut in_kube_system = a.clone();
        in_kube_system.metadata.namespace = Some("kube-system".into());
        let v = decide(&pol, &in_kube_system, &situation(Some(&protected), &[], &g)).unwrap();
        assert_eq!(v.decision, PolicyDecision::Excluded);
        assert!(v.message.contains("protected") && v.actions.is_empty());

        pol.spec.exclude = Some(PolicyExclusions {
            namespaces: vec![],
            pod_selector: Some(LabelSelector {
                match_labels: Some([("tier".to_string(), "canary".to_string())].into()),
                ..LabelSelector::default()
            }),
        });
        assert_eq!(decide(&pol, &a, &situation(Some(&p), &[], &g)).unwrap().decision, PolicyDecision::Excluded);
        pol.spec.exclude = None;

        let mut paused = situation(Some(&p), &[], &g);
        paused.paused = true;
        assert_eq!(decide(&pol, &a, &paused).unwrap().decision, PolicyDecision::Suspended);
        pol.spec.suspend = true;
        assert_eq!(decide(&pol, &a, &situation(Some(&p), &[], &g)).unwrap().decision, PolicyDecision::Suspended);
        pol.spec.suspend = false;

        let recent = [record("isolate-shells", "web-1", 300)];
        let v = decide(&pol, &a, &situation(Some(&p), &recent, &g)).unwrap();
        assert_eq!(v.decision, PolicyDecision::CoolingDown, "{}", v.message);
        let recent = [record("isolate-shells", "web-1", 700), record("other-policy", "web-1", 10)];
        assert_eq!(decide(&pol, &a, &situation(Some(&p), &recent, &g)).unwrap().decision, PolicyDecision::Acted);

        let recent = [record("isolate-shells", "web-2", 100), record("isolate-shells", "web-3", 3500)];
        let v = decide(&pol, &a, &situation(Some(&p), &recent, &g)).unwrap();
        assert_eq!(v.decision, PolicyDecision::RateLimited, "{}", v.message);
        let recent = [record("isolate-shells", "web-2", 100), record("isolate-shells", "web-3", 3700)];
        assert_eq!(decide(&pol, &a, &situation(Some(&p), &recent, &g)).unwrap().decision, PolicyDecision::Acted);
    }

    #[test]
    fn modes_become_approval_or_dry_run_actions() {
        let (p, g) = (pod(json!({})), guardrails());
        let a = alert("K8S.NODE_ReverseShell", Severity::High, Some("web-1"));
        let v = decide(&policy(PolicyMode::ApprovalRequired), &a, &situation(Some(&p), &[], &g)).unwrap();
        assert_eq!(v.decision, PolicyDecision::AwaitingApproval);
        assert!(v.actions[0].spec.approval_required && !v.actions[0].spec.dry_run);
        let v = decide(&policy(PolicyMode::DryRun), &a, &situation(Some(&p), &[], &g)).unwrap();
        assert_eq!(v.decision, PolicyDecision::DryRun);
        assert!(v.actions[0].spec.dry_run && !v.actions[0].spec.approval_required);
    }

    #[test]
    fn action_names_are_stable_and_short_enough_to_label_a_pod() {
        let long_policy = "p".repeat(40);
        let name = action_name(&long_policy, ActionKind::Terminate, "0f6c3a9e-1111-2222-3333-444455556666");
        assert!(name.len() <= 63, "{name}");
        assert_eq!(name, action_name(&long_policy, ActionKind::Terminate, "0f6c3a9e-1111-2222-3333-444455556666"));
        assert_ne!(name, action_name(&long_policy, ActionKind::Terminate, "another-uid"));
        assert_eq!(label_value(&"a".repeat(200)).len(), 63);
    }
}
