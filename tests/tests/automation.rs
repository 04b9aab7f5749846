//! Alerts and automated response against a real kube-apiserver: the alert lifecycle and its
//! history, deduplication, guidance, ResponsePolicies in each mode with their guardrails and
//! kill switch, approvals, and evidence kept before a pod is terminated.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use riposte_crds::{Alert, AlertState, Phase, PolicyDecision, ResponsePolicy};
use riposte_e2e::{ADMIN, Env, http_get};
use serde_json::{Value, json};

async fn alert(env: &Env, namespace: &str, name: &str, alert_type: &str, pod: &str) -> Alert {
    env.apply(
        namespace,
        json!({
            "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": name },
            "spec": {
                "type": alert_type, "title": format!("{alert_type} on {pod}"), "severity": "High",
                "tactics": ["Execution"], "detectedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
                "source": "falco", "entities": { "namespace": namespace, "pod": pod },
            },
        }),
    )
    .await
}

async fn policy(env: &Env, name: &str, spec: Value) {
    let object = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy", "metadata": { "name": name }, "spec": spec });
    Api::<ResponsePolicy>::all(env.client.clone())
        .patch(name, &PatchParams::apply("riposte-tests"), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("policy {name}: {e}"));
}

/// Waits until the alert's policies have decided, and returns it.
async fn decided(env: &Env, namespace: &str, name: &str) -> Alert {
    let alerts: Api<Alert> = Api::namespaced(env.client.clone(), namespace);
    env.until(&format!("policy decisions on alert {name}"), || async {
        let alert = alerts.get_opt(name).await.ok()??;
        alert.status.as_ref()?.policy_decisions.as_ref()?;
        Some(alert)
    })
    .await
}

fn decision(alert: &Alert, policy: &str) -> (PolicyDecision, String, Vec<String>) {
    let d = alert.status.as_ref().unwrap().policy_decisions.as_ref().unwrap().iter().find(|d| d.policy == policy);
    let d = d.unwrap_or_else(|| panic!("no decision of {policy}: {:?}", alert.status));
    (d.decision, d.message.clone(), d.actions.clone())
}

#[tokio::test]
async fn an_alert_is_answered_by_its_policy_and_the_whole_story_lands_in_the_action_center() {
    let env = Env::with_operator().await;
    env.namespace("riposte-system").await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "db-0", &[("app", "db")]).await;
    policy(
        &env,
        "isolate-shells",
        json!({
            "mode": "Automatic",
            "match": { "alertTypes": ["K8S.NODE_ReverseShell"], "minSeverity": "Medium", "namespaces": ["shop"],
                       "podSelector": { "matchLabels": { "app": "web" } } },
            "actions": [{ "action": "Isolate", "isolation": { "allowDns": true } }],
        }),
    )
    .await;
    env.until("the operator to see the policy", || async {
        Api::<ResponsePolicy>::all(env.client.clone()).get("isolate-shells").await.ok()?.status
    })
    .await;

    alert(&env, "shop", "shell-web", "K8S.NODE_ReverseShell", "web-1").await;
    let shell = decided(&env, "shop", "shell-web").await;
    let (d, message, actions) = decision(&shell, "isolate-shells");
    assert_eq!(d, PolicyDecision::Acted, "{message}");
    let name = &actions[0];
    let action = env.wait_for_phase("shop", name, Phase::Succeeded).await;
    assert_eq!(action.spec.requested_by, ADMIN, "the operator's own identity requests automated actions");
    assert_eq!(action.spec.policy_ref.as_ref().unwrap().name, "isolate-shells");
    assert_eq!(action.spec.alert_ref.as_ref().unwrap().name, "shell-web");
    assert!(action.spec.isolation.as_ref().unwrap().allow_dns, "the policy's allow-lists are carried over");
    let pod = env.pods("shop").get("web-1").await.unwrap();
    assert_eq!(pod.metadata.labels.unwrap().get("riposte.dev/isolated"), Some(name));

    // The alert shows its linked action with its phase, guidance, and a history of it all.
    let alerts: Api<Alert> = Api::namespaced(env.client.clone(), "shop");
    let shell = env
        .until("the alert to show its action Succeeded", || async {
            let a = alerts.get("shell-web").await.ok()?;
            (a.status.as_ref()?.actions.first()?.phase == Some(Phase::Succeeded)).then_some(a)
        })
        .await;
    let status = shell.status.unwrap();
    assert_eq!(status.occurrences, 1);
    assert_eq!(status.actions[0].policy.as_deref(), Some("isolate-shells"));
    let guidance = status.guidance.expect("guidance from the catalog");
    assert!(!guidance.meaning.is_empty() && !guidance.check.is_empty() && !guidance.fix.is_empty());
    let events: Vec<&str> = status.history.iter().map(|h| h.event.as_str()).collect();
    for expected in ["Detected", "PolicyDecision", "ActionsCreated", "Action"] {
        assert!(events.contains(&expected), "{expected} in {events:?}");
    }
    let detected = &status.history[0];
    assert_eq!((detected.event.as_str(), detected.by.as_deref()), ("Detected", Some("falco")));

    // A repeat of the same detection folds into the open alert: no second alert, no second action.
    alert(&env, "shop", "shell-web-again", "K8S.NODE_ReverseShell", "web-1").await;
    env.until("the repeat to be folded in", || async {
        let gone = alerts.get_opt("shell-web-again").await.ok()?.is_none();
        let primary = alerts.get("shell-web").await.ok()?;
        (gone && primary.status?.occurrences == 2).then_some(())
    })
    .await;
    let primary = alerts.get("shell-web").await.unwrap().status.unwrap();
    assert!(primary.history.iter().any(|h| h.event == "DetectedAgain" && h.message.contains("shell-web-again")));
    assert_eq!(env.actions("shop").list(&ListParams::default()).await.unwrap().items.len(), 1);

    // A pod the selector leaves out, and another alert type, are not matched at all.
    alert(&env, "shop", "shell-db", "K8S.NODE_ReverseShell", "db-0").await;
    let db = decided(&env, "shop", "shell-db").await;
    assert!(db.status.unwrap().policy_decisions.unwrap().is_empty());

    // The policy reports what it did.
    let reported = env
        .until("the policy status", || async {
            let p = Api::<ResponsePolicy>::all(env.client.clone()).get("isolate-shells").await.ok()?;
            let s = p.status?;
            (s.actions_created == 1 && s.matched_alerts == 1).then_some(s)
        })
        .await;
    assert_eq!(reported.recent_decisions[0].alert, "shop/shell-web");
    assert!(reported.last_action_time.is_some());
    assert!(reported.conditions.iter().any(|c| c.type_ == "Active" && c.status == "True"));

    // Triage: every move is in the history, with who made it; closing needs a verdict.
    let triage = |state: &str, extra: Value| {
        let mut spec = json!({ "state": state, "triagedBy": "bob" });
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "spec": spec })
    };
    alerts
        .patch("shell-web", &PatchParams::default(), &Patch::Merge(&triage("InProgress", json!({ "assignee": "bob" }))))
        .await
        .unwrap();
    // The history records each state the controller saw; an analyst works slower than two
    // patches in a row, so wait until this one is seen.
    env.until("InProgress to be recorded", || async {
        let recorded = alerts.get("shell-web").await.ok()?.status?.triage?;
        (recorded.state == riposte_crds::AlertState::InProgress).then_some(())
    })
    .await;
    let err = alerts
        .patch("shell-web", &PatchParams::default(), &Patch::Merge(&triage("Resolved", json!({}))))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("needs a classification"), "{err}");
    alerts
        .patch(
            "shell-web",
            &PatchParams::default(),
            &Patch::Merge(&triage("Resolved", json!({ "classification": "TruePositive" }))),
        )
        .await
        .unwrap();
    let err =
        alerts.patch("shell-web", &PatchParams::default(), &Patch::Merge(&triage("New", json!({})))).await.unwrap_err();
    assert!(err.to_string().contains("cannot go back to New"), "{err}");
    let err = alerts
        .patch("shell-web", &PatchParams::default(), &Patch::Merge(&json!({ "spec": { "severity": "Low" } })))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("detection is immutable"), "{err}");
    let comment = json!({ "spec": { "comments": [{ "message": "confirmed: attacker shell", "author": "bob" }] } });
    alerts.patch("shell-web", &PatchParams::default(), &Patch::Merge(&comment)).await.unwrap();
    let history = env
        .until("the triage in the history", || async {
            let s = alerts.get("shell-web").await.ok()?.status?;
            s.history.iter().any(|h| h.event == "Comment").then_some(s.history)
        })
        .await;
    let lines: Vec<(String, String, Option<String>)> = history
        .iter()
        .filter(|h| ["StateChanged", "Assigned", "Classified", "Comment"].contains(&h.event.as_str()))
        .map(|h| (h.event.clone(), h.message.clone(), h.by.clone()))
        .collect();
    let bob = Some("bob".to_string());
    assert_eq!(
        lines,
        vec![
            ("StateChanged".into(), "New → InProgress".into(), bob.clone()),
            ("Assigned".into(), "assigned to bob".into(), bob.clone()),
            ("StateChanged".into(), "InProgress → Resolved".into(), bob.clone()),
            ("Classified".into(), "classified TruePositive".into(), bob.clone()),
            ("Comment".into(), "confirmed: attacker shell".into(), bob),
        ]
    );

    // A closed alert absorbs nothing: the same detection now opens a new alert.
    alert(&env, "shop", "shell-web-later", "K8S.NODE_ReverseShell", "web-1").await;
    let later = decided(&env, "shop", "shell-web-later").await;
    assert_eq!(later.spec.state, AlertState::New);
    let (d, message, _) = decision(&later, "isolate-shells");
    assert_eq!(d, PolicyDecision::CoolingDown, "the policy acted on web-1 moments ago: {message}");

    // Metrics for alerts and policy decisions.
    let addr = env.metrics_addr.unwrap();
    let metrics = env
        .until("alert metrics", || async {
            let (code, body) = http_get(addr, "/metrics").await;
            (code == 200 && body.contains("riposte_alerts{")).then_some(body)
        })
        .await;
    assert!(
        metrics.contains(r#"riposte_policy_decisions_total{policy="isolate-shells",decision="Acted"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"type="K8S.NODE_ReverseShell",severity="High",state="Resolved"} 1"#), "{metrics}");
}

#[tokio::test]
async fn policies_hold_back_where_they_must_and_wait_for_approval_when_asked() {
    let env = Env::with_operator().await;
    env.namespace("riposte-system").await;
    env.namespace("shop").await;
    for pod in ["web-1", "web-2", "web-3", "web-4"] {
        env.pod("shop", pod, &[("app", "web")]).await;
    }
    policy(
        &env,
        "ask-first",
        json!({
            "mode": "ApprovalRequired",
            "match": { "alertTypes": ["K8S.NODE_ReverseShell"] },
            "actions": [{ "action": "Isolate" }],
            "maxActionsPerHour": 2,
        }),
    )
    .await;
    policy(
        &env,
        "rehearse-kill",
        json!({ "mode": "DryRun", "match": { "alertTypes": ["K8S.NODE_DigitalCurrencyMining"] },
                "actions": [{ "action": "Terminate", "terminate": { "gracePeriodSeconds": 0 } }] }),
    )
    .await;
    env.until("the operator to see both policies", || async {
        let list = Api::<ResponsePolicy>::all(env.client.clone()).list(&ListParams::default()).await.ok()?;
        list.items.iter().all(|p| p.status.is_some()).then_some(())
    })
    .await;

    // Approval: the action waits, does nothing, and proceeds once approved.
    alert(&env, "shop", "shell-1", "K8S.NODE_ReverseShell", "web-1").await;
    let (d, _, actions) = decision(&decided(&env, "shop", "shell-1").await, "ask-first");
    assert_eq!(d, PolicyDecision::AwaitingApproval);
    let waiting = env.wait_for_phase("shop", &actions[0], Phase::AwaitingApproval).await;
    assert!(waiting.spec.approval_required);
    let pod = env.pods("shop").get("web-1").await.unwrap();
    assert!(!pod.metadata.labels.unwrap_or_default().contains_key("riposte.dev/isolated"), "nothing done yet");
    let approve =
        json!({ "spec": { "approval": { "decision": "Approved", "by": "dave", "comment": "confirmed shell" } } });
    env.actions("shop").patch(&actions[0], &PatchParams::default(), &Patch::Merge(&approve)).await.unwrap();
    let done = env.wait_for_phase("shop", &actions[0], Phase::Succeeded).await.status.unwrap();
    let approved = done.history.iter().find(|h| h.event == "Approved").expect("approval in the history");
    assert_eq!(
        (approved.by.as_deref(), approved.message.as_str()),
        (Some("dave"), "approved by dave: confirmed shell")
    );
    let change = json!({ "spec": { "approval": { "decision": "Rejected", "by": "dave" } } });
    let err =
        env.actions("shop").patch(&actions[0], &PatchParams::default(), &Patch::Merge(&change)).await.unwrap_err();
    assert!(err.to_string().contains("cannot be changed or withdrawn"), "{err}");

    // Rejection ends the action with nothing done.
    alert(&env, "shop", "shell-2", "K8S.NODE_ReverseShell", "web-2").await;
    let (_, _, actions) = decision(&decided(&env, "shop", "shell-2").await, "ask-first");
    env.wait_for_phase("shop", &actions[0], Phase::AwaitingApproval).await;
    let reject = json!({ "spec": { "approval": { "decision": "Rejected", "by": "dave", "comment": "pentest" } } });
    env.actions("shop").patch(&actions[0], &PatchParams::default(), &Patch::Merge(&reject)).await.unwrap();
    let rejected = env.wait_for_phase("shop", &actions[0], Phase::Rejected).await.status.unwrap();
    assert_eq!(rejected.message.as_deref(), Some("rejected by dave: pentest; nothing was done"));
    assert!(env.policies("shop").get_opt(&format!("riposte-isolate-{}", actions[0])).await.unwrap().is_none());

    // The hourly limit (2) is reached: the third alert is left to analysts.
    alert(&env, "shop", "shell-3", "K8S.NODE_ReverseShell", "web-3").await;
    let (d, message, actions) = decision(&decided(&env, "shop", "shell-3").await, "ask-first");
    assert_eq!((d, actions.len()), (PolicyDecision::RateLimited, 0), "{message}");

    // Dry run: the plan is recorded, the pod stays.
    alert(&env, "shop", "miner-4", "K8S.NODE_DigitalCurrencyMining", "web-4").await;
    let (d, _, actions) = decision(&decided(&env, "shop", "miner-4").await, "rehearse-kill");
    assert_eq!(d, PolicyDecision::DryRun);
    let plan = env.wait_for_phase("shop", &actions[0], Phase::Succeeded).await.status.unwrap();
    assert!(plan.message.unwrap().starts_with("dry run: would delete pod web-4"));
    assert!(env.pods("shop").get_opt("web-4").await.unwrap().is_some());

    // The kill switch stops every policy at once.
    let switch = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "riposte-automation" }, "data": { "paused": "true" } });
    env.apply::<ConfigMap>("riposte-system", switch).await;
    alert(&env, "shop", "miner-paused", "K8S.NODE_DigitalCurrencyMining", "web-3").await;
    let (d, message, _) = decision(&decided(&env, "shop", "miner-paused").await, "rehearse-kill");
    assert_eq!((d, message.as_str()), (PolicyDecision::Suspended, "automation is paused cluster-wide"));

    // Protected namespaces are never acted on, whatever the policy says.
    let switch = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "riposte-automation" }, "data": { "paused": "false" } });
    env.apply::<ConfigMap>("riposte-system", switch).await;
    env.pod("kube-system", "coredns-1", &[("k8s-app", "kube-dns")]).await;
    alert(&env, "kube-system", "miner-dns", "K8S.NODE_DigitalCurrencyMining", "coredns-1").await;
    let (d, message, _) = decision(&decided(&env, "kube-system", "miner-dns").await, "rehearse-kill");
    assert_eq!(d, PolicyDecision::Excluded);
    assert!(message.contains("namespace kube-system is protected"), "{message}");
}

#[tokio::test]
async fn evidence_is_kept_before_a_pod_is_terminated_and_its_absence_is_said_plainly() {
    let env = Env::with_operator().await;
    env.namespace("riposte-system").await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    // Bound to a node whose kubelet does not answer: the apiserver cannot fetch its logs.
    env.apply::<k8s_openapi::api::core::v1::Pod>(
        "shop",
        json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web-2" },
                "spec": { "nodeName": "node-a", "containers": [{ "name": "app", "image": "nginx:1.27" }] } }),
    )
    .await;

    // Best effort: the manifest is kept, the logs cannot be (no kubelet here), the pod goes.
    let status = env
        .run_action(
            "shop",
            "kill-1",
            json!({ "action": "Terminate", "target": { "pod": "web-1" },
                    "terminate": { "evidence": { "capture": "BestEffort", "logLimitBytes": 4096 } } }),
            Phase::Succeeded,
        )
        .await;
    let evidence = status.evidence.expect("evidence recorded");
    assert!(!evidence.complete);
    assert_eq!(evidence.config_map.namespace, "riposte-system");
    let log = evidence.items.iter().find(|i| i.key == "logs-app.txt").unwrap();
    let note = log.note.as_deref().unwrap();
    assert_eq!(
        note,
        "the logs of container app could not be fetched: the pod was never scheduled to a node, so no container ran"
    );
    let kept: ConfigMap =
        Api::namespaced(env.client.clone(), "riposte-system").get(&evidence.config_map.name).await.unwrap();
    assert_eq!(kept.immutable, Some(true));
    assert!(kept.data.unwrap()["pod.yaml"].contains("name: web-1"));
    let events: Vec<&str> = status.history.iter().map(|h| h.event.as_str()).collect();
    assert_eq!(events, vec!["TargetResolved", "EvidenceIncomplete", "PodDeleted"]);
    assert!(env.pods("shop").get_opt("web-1").await.unwrap().is_none());

    // Required: without the logs, the pod is not deleted and the action says why.
    let status = env
        .run_action(
            "shop",
            "kill-2",
            json!({ "action": "Terminate", "target": { "pod": "web-2" }, "terminate": { "evidence": { "capture": "Required" } } }),
            Phase::Failed,
        )
        .await;
    let message = status.message.unwrap();
    assert!(message.starts_with("evidence was required but is incomplete, so pod web-2 was not deleted"), "{message}");
    assert!(message.contains("the logs of container app could not be fetched: "), "the apiserver's reason: {message}");
    assert!(env.pods("shop").get_opt("web-2").await.unwrap().is_some());
}
