//! Isolation and release against a real kube-apiserver: the policies Riposte creates and
//! changes, read back from the API.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use riposte::isolation::{EXCLUDED_FOR_ANNOTATION, ISOLATED_LABEL};
use riposte_crds::Phase;
use riposte_e2e::{Env, selecting};
use serde_json::json;

fn policy(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": name }, "spec": spec })
}

async fn policy_specs(
    env: &Env,
    ns: &str,
) -> Vec<(String, Option<k8s_openapi::api::networking::v1::NetworkPolicySpec>, String)> {
    let mut all: Vec<_> = env
        .policies(ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| {
            (p.name_any(), p.spec.clone(), p.annotations().get(EXCLUDED_FOR_ANNOTATION).cloned().unwrap_or_default())
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

#[tokio::test]
async fn isolation_cuts_off_only_the_target_and_release_restores_every_policy() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    let web1 = env.pod("shop", "web-1", &[("app", "web")]).await;
    let web2 = env.pod("shop", "web-2", &[("app", "web")]).await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("allow-web", json!({ "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] })),
    )
    .await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("egress-anywhere", json!({ "podSelector": {}, "policyTypes": ["Egress"], "egress": [{}] })),
    )
    .await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("deny-all", json!({ "podSelector": {}, "policyTypes": ["Ingress", "Egress"] })),
    )
    .await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("allow-db", json!({ "podSelector": { "matchLabels": { "app": "db" } }, "ingress": [{}] })),
    )
    .await;
    let before = policy_specs(&env, "shop").await;
    let untouched_rv =
        |name: &str, list: &[NetworkPolicy]| list.iter().find(|p| p.name_any() == name).unwrap().resource_version();
    let original = env.policies("shop").list(&ListParams::default()).await.unwrap().items;

    env.action(
        "shop",
        "iso-web-1",
        json!({
            "action": "Isolate", "target": { "pod": "web-1" }, "comment": "reverse shell",
            "isolation": { "allowDns": true, "ingress": { "namespaces": ["forensics"], "ports": [{ "port": 22 }] } },
        }),
    )
    .await;
    let isolated = env.wait_for_phase("shop", "iso-web-1", Phase::Succeeded).await;
    let status = isolated.status.unwrap();
    assert_eq!(status.target.as_ref().unwrap().uid, web1.uid().unwrap(), "pinned to the pod's UID");
    assert_eq!(status.excluded_policies, vec!["allow-web".to_string(), "egress-anywhere".to_string()]);
    assert_eq!(status.created_objects[0].name, "riposte-isolate-iso-web-1");
    let isolated_condition = status.conditions.iter().find(|c| c.type_ == "Isolated").unwrap();
    assert_eq!(isolated_condition.status, "True");
    let enforcement = status.conditions.iter().find(|c| c.type_ == "NetworkPolicyEnforcement").unwrap();
    assert_eq!((enforcement.status.as_str(), enforcement.reason.as_str()), ("Unknown", "NoKnownEnforcer"));

    // Read the real objects: only the isolation policy selects web-1; web-2 keeps its policies.
    let now = env.policies("shop").list(&ListParams::default()).await.unwrap().items;
    let web1 = env.pods("shop").get("web-1").await.unwrap();
    let web2_now = env.pods("shop").get("web-2").await.unwrap();
    assert_eq!(web1.labels().get(ISOLATED_LABEL).map(String::as_str), Some("iso-web-1"));
    assert_eq!(web2_now.labels(), web2.labels(), "the sibling is not labelled");
    assert_eq!(selecting(&now, &web1), vec!["deny-all".to_string(), "riposte-isolate-iso-web-1".to_string()]);
    assert_eq!(
        selecting(&now, &web2_now),
        vec!["allow-web".to_string(), "deny-all".to_string(), "egress-anywhere".to_string()]
    );
    for name in ["deny-all", "allow-db"] {
        assert_eq!(untouched_rv(name, &now), untouched_rv(name, &original), "{name} needs no change and gets none");
    }
    let ours = now.iter().find(|p| p.name_any() == "riposte-isolate-iso-web-1").unwrap().spec.clone().unwrap();
    assert_eq!(ours.policy_types, Some(vec!["Ingress".to_string(), "Egress".to_string()]));
    let ingress = ours.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].ports.as_ref().unwrap()[0].protocol.as_deref(), Some("TCP"));
    let egress = ours.egress.unwrap();
    assert_eq!(egress.len(), 1, "only DNS may leave");

    // Release restores every policy exactly and records the release in both histories.
    env.action(
        "shop",
        "release-web-1",
        json!({ "action": "Release", "target": { "pod": "web-1" }, "comment": "clean" }),
    )
    .await;
    let release = env.wait_for_phase("shop", "release-web-1", Phase::Succeeded).await;
    let released = env.wait_for_phase("shop", "iso-web-1", Phase::Released).await;
    assert_eq!(policy_specs(&env, "shop").await, before, "policies are back as they were, annotations included");
    let web1 = env.pods("shop").get("web-1").await.unwrap();
    assert!(!web1.labels().contains_key(ISOLATED_LABEL));
    let released_status = released.status.unwrap();
    assert_eq!(released_status.released_by.as_deref(), Some("release-web-1"));
    assert!(
        released_status.history.iter().any(|h| h.event == "Released" && h.message.contains("release-web-1: clean"))
    );
    let release_status = release.status.unwrap();
    assert_eq!(release_status.releases, vec!["iso-web-1".to_string()]);
    assert!(
        release_status.history.iter().any(|h| h.event == "Released" && h.message == "released isolation iso-web-1")
    );
}

#[tokio::test]
async fn a_policy_created_after_isolation_is_kept_from_selecting_the_pod() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.run_action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Succeeded).await;

    env.apply::<NetworkPolicy>("shop", policy("late-allow", json!({ "podSelector": {}, "ingress": [{}] }))).await;
    let pod = env.pods("shop").get("web-1").await.unwrap();
    env.until("the late policy to stop selecting the isolated pod", || async {
        let all = env.policies("shop").list(&ListParams::default()).await.ok()?.items;
        (selecting(&all, &pod) == vec!["riposte-isolate-iso".to_string()]).then_some(())
    })
    .await;
    let action = env
        .until("the status to list the late policy", || async {
            let a = env.actions("shop").get("iso").await.ok()?;
            a.status.as_ref().is_some_and(|s| s.excluded_policies == vec!["late-allow".to_string()]).then_some(a)
        })
        .await;
    assert_eq!(action.status.unwrap().phase, Some(Phase::Succeeded));
}

#[tokio::test]
async fn an_isolation_that_a_locked_policy_defeats_says_so_and_completes_once_the_lock_goes() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.apply::<NetworkPolicy>(
        "shop",
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": { "name": "gitops-allow", "labels": { "locked": "true" } },
            "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] },
        }),
    )
    .await;
    // A ValidatingAdmissionPolicy that forbids every change to locked policies, as a
    // GitOps or policy engine might.
    let vap = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: lock-policies}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: ["networking.k8s.io"]
      apiVersions: ["v1"]
      operations: ["UPDATE"]
      resources: ["networkpolicies"]
  validations:
  - expression: "!has(oldObject.metadata.labels) || !('locked' in oldObject.metadata.labels)"
    message: "this NetworkPolicy is locked"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: lock-policies}
spec:
  policyName: lock-policies
  validationActions: [Deny]
"#;
    let out = env.kubectl_stdin(&["apply", "-f", "-"], vap);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.until("the admission policy to be in force", || async {
        let patch = json!({ "metadata": { "annotations": { "probe": env.plane.server() } } });
        let denied =
            env.policies("shop").patch("gitops-allow", &PatchParams::default(), &Patch::Merge(&patch)).await.is_err();
        denied.then_some(())
    })
    .await;

    env.action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    let degraded = env
        .until("the isolation to say it is degraded", || async {
            let status = env.actions("shop").get("iso").await.ok()?.status?;
            let degraded = status.conditions.iter().find(|c| c.type_ == "Degraded")?.status == "True";
            degraded.then_some(status)
        })
        .await;
    assert_eq!(degraded.phase, Some(Phase::Running), "a defeated isolation is not over: it is retried");
    let message = degraded.message.unwrap();
    assert!(message.contains("NetworkPolicy gitops-allow selects the pod and allows ingress"), "{message}");
    assert!(message.contains("locked"), "the apiserver's reason is kept: {message}");
    assert!(message.contains("retrying"), "{message}");
    let isolated = degraded.conditions.iter().find(|c| c.type_ == "Isolated").unwrap();
    assert_eq!((isolated.status.as_str(), isolated.reason.as_str()), ("False", "DefeatedByPolicy"));
    // The deny policy stays in place meanwhile (better than nothing).
    assert!(env.policies("shop").get_opt("riposte-isolate-iso").await.unwrap().is_some());

    // The obstacle goes away without any NetworkPolicy changing: the retry finds out.
    let out = env.kubectl(&["delete", "validatingadmissionpolicybinding", "lock-policies"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let held = env.wait_for_phase("shop", "iso", Phase::Succeeded).await.status.unwrap();
    let degraded = held.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("False", "Whole"));
    assert_eq!(held.excluded_policies, vec!["gitops-allow".to_string()]);
    let phases: Vec<_> = held.history.iter().map(|h| h.event.as_str()).collect();
    assert!(phases.contains(&"IsolationDefeated") && phases.contains(&"PolicyExcluded"), "{phases:?}");

    env.action("shop", "rel", json!({ "action": "Release", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "rel", Phase::Succeeded).await;
    assert!(env.policies("shop").get_opt("riposte-isolate-iso").await.unwrap().is_none());
    let restored = env.policies("shop").get("gitops-allow").await.unwrap();
    assert!(restored.annotations().get(EXCLUDED_FOR_ANNOTATION).is_none());
}

#[tokio::test]
async fn deleting_an_isolation_releases_the_pod_and_restores_shared_exclusions_last() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("allow-web", json!({ "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] })),
    )
    .await;
    env.action("shop", "iso-1", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    env.action("shop", "iso-2", json!({ "action": "Isolate", "target": { "pod": "web-2" } })).await;
    env.wait_for_phase("shop", "iso-1", Phase::Succeeded).await;
    env.wait_for_phase("shop", "iso-2", Phase::Succeeded).await;
    let shared = env.policies("shop").get("allow-web").await.unwrap();
    assert_eq!(shared.annotations().get(EXCLUDED_FOR_ANNOTATION).map(String::as_str), Some("iso-1,iso-2"));

    env.actions("shop").delete("iso-1", &DeleteParams::default()).await.unwrap();
    env.until("iso-1 to be gone after its finalizer ran", || async {
        env.actions("shop").get_opt("iso-1").await.ok()?.is_none().then_some(())
    })
    .await;
    let web1 = env.pods("shop").get("web-1").await.unwrap();
    assert!(!web1.labels().contains_key(ISOLATED_LABEL));
    assert!(env.policies("shop").get_opt("riposte-isolate-iso-1").await.unwrap().is_none());
    let shared = env.policies("shop").get("allow-web").await.unwrap();
    assert_eq!(
        shared.annotations().get(EXCLUDED_FOR_ANNOTATION).map(String::as_str),
        Some("iso-2"),
        "still needed by iso-2"
    );
    let all = env.policies("shop").list(&ListParams::default()).await.unwrap().items;
    assert_eq!(selecting(&all, &web1), vec!["allow-web".to_string()], "web-1 is back under its own policy");

    env.action(
        "shop",
        "rel-2",
        json!({ "action": "Release", "target": { "pod": "web-2" }, "release": { "actionName": "iso-2" } }),
    )
    .await;
    env.wait_for_phase("shop", "rel-2", Phase::Succeeded).await;
    let restored = env.policies("shop").get("allow-web").await.unwrap();
    assert!(!restored.annotations().contains_key(EXCLUDED_FOR_ANNOTATION));
    assert_eq!(
        serde_json::to_value(restored.spec.unwrap().pod_selector).unwrap(),
        json!({ "matchLabels": { "app": "web" } })
    );
}

#[tokio::test]
async fn isolating_an_already_isolated_pod_or_releasing_nothing_fails_with_a_reason() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    env.action("shop", "iso-a", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "iso-a", Phase::Succeeded).await;
    let b = env
        .run_action("shop", "iso-b", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Failed)
        .await;
    assert_eq!(b.message.as_deref(), Some("pod web-1 is already isolated by ResponseAction iso-a; release it first"));

    let none = env
        .run_action("shop", "rel-none", json!({ "action": "Release", "target": { "pod": "web-2" } }), Phase::Failed)
        .await;
    assert_eq!(none.message.as_deref(), Some("pod web-2 has no active isolation"));

    env.action(
        "shop",
        "rel-wrong",
        json!({ "action": "Release", "target": { "pod": "web-2" }, "release": { "actionName": "iso-a" } }),
    )
    .await;
    let wrong = env.wait_for_phase("shop", "rel-wrong", Phase::Failed).await.status.unwrap();
    assert_eq!(wrong.message.as_deref(), Some("ResponseAction iso-a isolates pod web-1, not pod web-2"));

    env.action(
        "shop",
        "rel-a",
        json!({ "action": "Release", "target": { "pod": "web-1" }, "release": { "actionName": "iso-a" } }),
    )
    .await;
    env.wait_for_phase("shop", "rel-a", Phase::Succeeded).await;
    env.action(
        "shop",
        "rel-a-again",
        json!({ "action": "Release", "target": { "pod": "web-1" }, "release": { "actionName": "iso-a" } }),
    )
    .await;
    let again = env.wait_for_phase("shop", "rel-a-again", Phase::Failed).await.status.unwrap();
    assert_eq!(again.message.as_deref(), Some("ResponseAction iso-a was already released by rel-a"));
}

#[tokio::test]
async fn a_dry_run_records_the_plan_and_changes_nothing() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    let pod = env.pod("shop", "web-1", &[("app", "web")]).await;
    env.apply::<NetworkPolicy>(
        "shop",
        policy("allow-web", json!({ "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] })),
    )
    .await;
    let policy_before = env.policies("shop").get("allow-web").await.unwrap();
    env.action("shop", "iso-dry", json!({ "action": "Isolate", "target": { "pod": "web-1" }, "dryRun": true })).await;
    let done = env.wait_for_phase("shop", "iso-dry", Phase::Succeeded).await;
    let message = done.status.unwrap().message.unwrap();
    assert!(message.starts_with("dry run: would label pod web-1"), "{message}");
    assert!(message.contains("allow-web (allows ingress)"), "{message}");
    assert!(done.metadata.finalizers.is_none(), "a dry run holds no finalizer");
    let pod_after = env.pods("shop").get("web-1").await.unwrap();
    assert_eq!(pod_after.resource_version(), pod.resource_version());
    assert_eq!(
        env.policies("shop").get("allow-web").await.unwrap().resource_version(),
        policy_before.resource_version()
    );
    assert!(env.policies("shop").get_opt("riposte-isolate-iso-dry").await.unwrap().is_none());
}

#[tokio::test]
async fn a_known_networkpolicy_enforcer_is_reported_in_the_conditions() {
    let env = Env::with_operator().await;
    env.namespace("calico-system").await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[]).await;
    let daemonset = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "calico-node" },
        "spec": {
            "selector": { "matchLabels": { "k8s-app": "calico-node" } },
            "template": { "metadata": { "labels": { "k8s-app": "calico-node" } },
                          "spec": { "containers": [{ "name": "calico-node", "image": "calico/node:v3.29" }] } },
        },
    });
    env.apply::<k8s_openapi::api::apps::v1::DaemonSet>("calico-system", daemonset).await;
    // There is no node here, so say what the DaemonSet controller says of a running agent
    // (the real-node suite runs a real enforcer, and stops it).
    let running = json!({ "status": { "currentNumberScheduled": 1, "desiredNumberScheduled": 1, "numberMisscheduled": 0, "numberReady": 1 } });
    Api::<k8s_openapi::api::apps::v1::DaemonSet>::namespaced(env.client.clone(), "calico-system")
        .patch_status("calico-node", &PatchParams::default(), &Patch::Merge(&running))
        .await
        .unwrap();
    let status = env
        .run_action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Succeeded)
        .await;
    let enforcement = status.conditions.iter().find(|c| c.type_ == "NetworkPolicyEnforcement").unwrap();
    assert_eq!((enforcement.status.as_str(), enforcement.reason.as_str()), ("True", "EnforcerFound"));
    assert_eq!(enforcement.message, "NetworkPolicies are enforced by calico-system/calico-node");
}
