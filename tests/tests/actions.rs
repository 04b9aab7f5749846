//! Terminate, guardrails, history, comments, alerts and events against a real kube-apiserver.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use riposte_crds::{Alert, Phase};
use riposte_e2e::{Env, default_guardrails, http_get};
use serde_json::json;

#[tokio::test]
async fn terminate_deletes_the_targeted_pod_and_names_its_owner() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "web-7d9f-abcde",
            "labels": { "app": "web" },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f", "uid": "3f0c7a6e-1111-4222-8333-944455556666", "controller": true }],
        },
        "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
    }))
    .unwrap();
    let pod = env.pods("shop").create(&PostParams::default(), &pod).await.unwrap();
    env.pod("shop", "bystander", &[("app", "web")]).await;
    let done = env.run_action("shop", "kill", json!({ "action": "Terminate", "target": { "pod": "web-7d9f-abcde" }, "terminate": { "gracePeriodSeconds": 0 } }), Phase::Succeeded).await;
    assert!(env.pods("shop").get_opt("web-7d9f-abcde").await.unwrap().is_none());
    assert!(env.pods("shop").get_opt("bystander").await.unwrap().is_some());
    let target = done.target.unwrap();
    assert_eq!(target.uid, pod.uid().unwrap());
    let owner = target.owner.unwrap();
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("ReplicaSet", "web-7d9f"));
    assert!(done.message.unwrap().ends_with("its ReplicaSet web-7d9f will create a replacement"));
    assert!(done.completion_time.is_some() && done.start_time.is_some());
}

#[tokio::test]
async fn a_pod_recreated_under_the_same_name_is_never_terminated() {
    // The operator resolved the pod, recorded its UID, and crashed before deleting it;
    // meanwhile the pod was replaced by a new one with the same name.
    let mut env = Env::start().await;
    env.namespace("shop").await;
    let old = env.pod("shop", "web-1", &[("app", "web")]).await;
    let action = env.action("shop", "kill", json!({ "action": "Terminate", "target": { "pod": "web-1" } })).await;
    let status = json!({
        "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": "kill" },
        "status": { "phase": "Running", "target": { "pod": "web-1", "uid": old.uid().unwrap() } },
    });
    env.actions("shop")
        .patch_status(&action.name_any(), &PatchParams::apply("riposte").force(), &Patch::Apply(&status))
        .await
        .unwrap();
    env.pods("shop").delete("web-1", &Default::default()).await.unwrap();
    let new = env.pod("shop", "web-1", &[("app", "web")]).await;
    assert_ne!(new.uid(), old.uid());

    env.run_operator(env.client.clone(), default_guardrails());
    let done = env.wait_for_phase("shop", "kill", Phase::Succeeded).await.status.unwrap();
    assert!(done.message.unwrap().contains("a newer pod with the same name was left alone"));
    assert_eq!(env.pods("shop").get("web-1").await.unwrap().uid(), new.uid(), "the new pod is untouched");
}

#[tokio::test]
async fn missing_targets_and_protected_pods_fail_with_a_clear_reason() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.namespace("riposte-system").await;
    env.pod("riposte-system", "riposte-0", &[("app", "riposte")]).await;
    env.pod("kube-system", "coredns-1", &[("k8s-app", "kube-dns")]).await;

    let ghost = env
        .run_action("shop", "ghost", json!({ "action": "Isolate", "target": { "pod": "nope" } }), Phase::Failed)
        .await;
    assert_eq!(ghost.message.as_deref(), Some("pod nope not found in namespace shop"));
    assert_eq!(ghost.conditions.iter().find(|c| c.type_ == "Completed").unwrap().reason, "TargetNotFound");

    let dns = env
        .run_action(
            "kube-system",
            "dns",
            json!({ "action": "Terminate", "target": { "pod": "coredns-1" } }),
            Phase::Failed,
        )
        .await;
    assert!(dns.message.unwrap().starts_with("refused: namespace kube-system is protected"));
    assert!(env.pods("kube-system").get_opt("coredns-1").await.unwrap().is_some());

    let own = env
        .run_action(
            "riposte-system",
            "self",
            json!({ "action": "Isolate", "target": { "pod": "riposte-0" } }),
            Phase::Failed,
        )
        .await;
    assert!(own.message.unwrap().starts_with("refused:"));
    let pod = env.pods("riposte-system").get("riposte-0").await.unwrap();
    assert!(!pod.labels().contains_key(riposte::isolation::ISOLATED_LABEL));
}

#[tokio::test]
async fn terminating_an_isolated_pod_cleans_its_isolation_up() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.apply::<k8s_openapi::api::networking::v1::NetworkPolicy>(
        "shop",
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-all" }, "spec": { "podSelector": {}, "ingress": [{}] } }),
    )
    .await;
    env.action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "iso", Phase::Succeeded).await;
    env.action("shop", "kill", json!({ "action": "Terminate", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "kill", Phase::Succeeded).await;
    let iso = env.wait_for_phase("shop", "iso", Phase::Released).await.status.unwrap();
    assert!(iso.message.unwrap().contains("no longer exists; its isolation was removed"));
    assert!(env.policies("shop").get_opt("riposte-isolate-iso").await.unwrap().is_none());
    let restored = env.policies("shop").get("allow-all").await.unwrap();
    assert!(restored.annotations().is_empty());
    assert_eq!(serde_json::to_value(restored.spec.unwrap().pod_selector).unwrap(), json!({}));
}

#[tokio::test]
async fn comments_are_append_only_and_every_one_lands_in_the_history() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[]).await;
    env.action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" }, "comment": "why" })).await;
    // Comments race the controller's own status writes; none may be lost.
    let mut comments = Vec::new();
    for i in 0..15 {
        comments.push(json!({ "message": format!("note {i}"), "author": "riposte-admin" }));
        let patch = json!({ "spec": { "comments": comments } });
        env.actions("shop").patch("iso", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    }
    let action = env
        .until("all 15 comments in the history", || async {
            let a = env.actions("shop").get("iso").await.ok()?;
            let n = a.status.as_ref()?.history.iter().filter(|h| h.event == "Comment").count();
            (n == 15 && a.status.as_ref()?.phase == Some(Phase::Succeeded)).then_some(a)
        })
        .await;
    let history = action.status.unwrap().history;
    let notes: Vec<_> = history.iter().filter(|h| h.event == "Comment").map(|h| h.message.clone()).collect();
    assert_eq!(notes, (0..15).map(|i| format!("note {i}")).collect::<Vec<_>>());
    let steps: Vec<_> = history.iter().filter(|h| h.event != "Comment").map(|h| h.event.clone()).collect();
    assert_eq!(steps, vec!["TargetResolved", "PodLabelled", "PolicyApplied"], "each step once");

    let edit = json!({ "spec": { "comments": [{ "message": "rewritten", "author": "riposte-admin" }] } });
    let err = env.actions("shop").patch("iso", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap_err();
    assert!(err.to_string().contains("comments are append-only"), "{err}");
    let remove_all = json!([{ "op": "remove", "path": "/spec/comments" }]);
    let err = env
        .actions("shop")
        .patch("iso", &PatchParams::default(), &Patch::Json::<()>(serde_json::from_value(remove_all).unwrap()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("comments are append-only"), "removing every comment is refused too: {err}");
    let retarget = json!({ "spec": { "target": { "pod": "other" } } });
    let err = env.actions("shop").patch("iso", &PatchParams::default(), &Patch::Merge(&retarget)).await.unwrap_err();
    assert!(err.to_string().contains("spec.target is immutable"), "{err}");
    let add_option = json!({ "spec": { "alertRef": { "name": "late" } } });
    let err = env.actions("shop").patch("iso", &PatchParams::default(), &Patch::Merge(&add_option)).await.unwrap_err();
    assert!(err.to_string().contains("spec is immutable once created"), "{err}");
}

#[tokio::test]
async fn a_restarted_operator_does_no_work_twice() {
    let mut env = Env::with_operator().await;
    env.namespace("shop").await;
    for i in 0..5 {
        env.pod("shop", &format!("web-{i}"), &[("app", "web")]).await;
    }
    for i in 0..5 {
        env.action(
            "shop",
            &format!("iso-{i}"),
            json!({ "action": "Isolate", "target": { "pod": format!("web-{i}") } }),
        )
        .await;
    }
    // Crash mid-way, then start again.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    env.stop_operator();
    env.run_operator(env.client.clone(), default_guardrails());
    for i in 0..5 {
        let status = env.wait_for_phase("shop", &format!("iso-{i}"), Phase::Succeeded).await.status.unwrap();
        let mut events: Vec<_> = status.history.iter().map(|h| h.event.as_str()).collect();
        events.dedup();
        assert_eq!(events.len(), status.history.len(), "no step recorded twice: {:?}", status.history);
        assert_eq!(status.created_objects.len(), 1);
    }
    let policies = env.policies("shop").list(&ListParams::default()).await.unwrap().items;
    assert_eq!(policies.len(), 5, "one policy per isolation, no orphans");
}

#[tokio::test]
async fn an_alert_lists_its_actions_with_their_phases_and_events_are_published() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[]).await;
    env.pod("shop", "web-2", &[]).await;
    env.apply::<Alert>(
        "shop",
        json!({
            "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": "shell" },
            "spec": {
                "type": "K8S.NODE_ReverseShell", "title": "Reverse shell detected", "severity": "Medium",
                "tactics": ["Execution"], "detectedAt": "2026-11-22T10:00:00Z",
                "entities": { "namespace": "shop", "pod": "web-1" },
            },
        }),
    )
    .await;
    env.action(
        "shop",
        "iso",
        json!({ "action": "Isolate", "target": { "pod": "web-1" }, "alertRef": { "name": "shell" } }),
    )
    .await;
    env.action(
        "shop",
        "kill",
        json!({ "action": "Terminate", "target": { "pod": "web-2" }, "alertRef": { "name": "shell" } }),
    )
    .await;
    env.wait_for_phase("shop", "iso", Phase::Succeeded).await;
    env.wait_for_phase("shop", "kill", Phase::Succeeded).await;
    let alerts: Api<Alert> = Api::namespaced(env.client.clone(), "shop");
    let status = env
        .until("the alert to list both actions as Succeeded", || async {
            let status = alerts.get("shell").await.ok()?.status?;
            (status.action_count == 2 && status.actions.iter().all(|a| a.phase == Some(Phase::Succeeded)))
                .then_some(status)
        })
        .await;
    let names: Vec<_> = status.actions.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, vec!["iso", "kill"]);

    let events: Api<Event> = Api::namespaced(env.client.clone(), "shop");
    let found = env
        .until("Events on the action and on the pod", || async {
            let list = events.list(&ListParams::default()).await.ok()?.items;
            let on = |kind: &str, name: &str, reason: &str| {
                list.iter().any(|e| {
                    e.regarding
                        .as_ref()
                        .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
                        && e.reason.as_deref() == Some(reason)
                })
            };
            (on("ResponseAction", "iso", "Isolated")
                && on("Pod", "web-1", "Isolated")
                && on("ResponseAction", "kill", "Terminated"))
            .then_some(list)
        })
        .await;
    assert!(found.iter().all(|e| e.reporting_controller.as_deref() == Some("riposte")));

    let kubectl = env.kubectl(&["get", "riposte", "-A"]);
    let table = String::from_utf8_lossy(&kubectl.stdout);
    assert!(kubectl.status.success(), "{}", String::from_utf8_lossy(&kubectl.stderr));
    for expected in [
        "ACTION",
        "TARGET",
        "PHASE",
        "COMMENT",
        "ALERT",
        "iso",
        "Isolate",
        "web-1",
        "Succeeded",
        "shell",
        "K8S.NODE_ReverseShell",
    ] {
        assert!(table.contains(expected), "`kubectl get riposte -A` shows {expected}:\n{table}");
    }
}

#[tokio::test]
async fn metrics_and_health_endpoints_report_the_operator() {
    let env = Env::with_operator().await;
    let addr = env.metrics_addr.unwrap();
    env.until("/readyz to report synced caches", || async { (http_get(addr, "/readyz").await.0 == 200).then_some(()) })
        .await;
    assert_eq!(http_get(addr, "/healthz").await, (200, "ok".to_string()));
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[]).await;
    env.action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    env.action("shop", "ghost", json!({ "action": "Terminate", "target": { "pod": "nope" } })).await;
    env.wait_for_phase("shop", "iso", Phase::Succeeded).await;
    env.wait_for_phase("shop", "ghost", Phase::Failed).await;
    let (code, body) = http_get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for expected in [
        r#"riposte_action_outcomes_total{action="Isolate",phase="Succeeded"} 1"#,
        r#"riposte_action_outcomes_total{action="Terminate",phase="Failed"} 1"#,
        r#"riposte_action_duration_seconds_count{action="Isolate"} 1"#,
        r#"riposte_reconciliations_total{kind="ResponseAction"}"#,
    ] {
        assert!(body.contains(expected), "/metrics has {expected}:\n{body}");
    }
}
