//! The Helm chart: it lints, renders, is accepted by a real apiserver, and its RBAC is
//! enough for the operator and no more.

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::ListParams;
use riposte_crds::Phase;
use riposte_e2e::{Env, helm, repo_path};
use serde_json::json;

fn chart() -> String {
    repo_path("charts/riposte").display().to_string()
}

#[test]
fn the_chart_lints_cleanly() {
    let out = std::process::Command::new(helm()).args(["lint", "--strict", &chart()]).output().unwrap();
    assert!(
        out.status.success(),
        "helm lint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_operator_works_with_the_charts_rbac_and_cannot_read_secrets() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    env.install_chart();
    for kind in ["deployment", "serviceaccount", "clusterrole", "clusterrolebinding", "service"] {
        let out = env.kubectl(&["get", kind, "riposte", "-n", "riposte-system"]);
        let out = if out.status.success() {
            out
        } else {
            env.kubectl(&["get", kind, "riposte-metrics", "-n", "riposte-system"])
        };
        assert!(out.status.success(), "{kind} was created: {}", String::from_utf8_lossy(&out.stderr));
    }

    let operator = env.chart_operator_client().await;

    // Least privilege: no Secrets, no listing of pods.
    let secrets = Api::<Secret>::all(operator.clone()).list(&ListParams::default()).await;
    assert!(matches!(secrets, Err(kube::Error::Api(ref e)) if e.code == 403), "{secrets:?}");
    let pods = Api::<Pod>::all(operator.clone()).list(&ListParams::default()).await;
    assert!(matches!(pods, Err(kube::Error::Api(ref e)) if e.code == 403), "{pods:?}");

    // As the chart runs it: with leader election on its Lease, through the chart's Role.
    let replica = env.spawn_replica_on(operator, "riposte-0", "riposte-leader");
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    env.apply::<k8s_openapi::api::networking::v1::NetworkPolicy>(
        "shop",
        json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-web" },
                "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}] } }),
    )
    .await;
    env.apply::<riposte_crds::Alert>(
        "shop",
        json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": "a" },
                "spec": { "type": "K8S_PrivilegedContainer", "title": "Privileged container detected", "severity": "Informational",
                          "detectedAt": "2026-11-22T10:00:00Z" } }),
    )
    .await;
    env.action(
        "shop",
        "iso",
        json!({ "action": "Isolate", "target": { "pod": "web-1" }, "alertRef": { "name": "a" } }),
    )
    .await;
    env.wait_for_phase("shop", "iso", Phase::Succeeded).await;
    env.action("shop", "rel", json!({ "action": "Release", "target": { "pod": "web-1" } })).await;
    env.wait_for_phase("shop", "rel", Phase::Succeeded).await;
    env.wait_for_phase("shop", "iso", Phase::Released).await;
    env.action("shop", "kill", json!({ "action": "Terminate", "target": { "pod": "web-2" } })).await;
    env.wait_for_phase("shop", "kill", Phase::Succeeded).await;
    let alerts: Api<riposte_crds::Alert> = Api::namespaced(env.client.clone(), "shop");
    env.until("the alert status written with the chart's RBAC", || async {
        (alerts.get("a").await.ok()?.status?.action_count == 1).then_some(())
    })
    .await;
    let events = env.kubectl(&["get", "events", "-n", "shop", "-o", "name"]);
    assert!(!String::from_utf8_lossy(&events.stdout).trim().is_empty(), "Events were published with the chart's RBAC");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(env.client.clone(), "riposte-system");
    let lease = leases.get("riposte-leader").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("riposte-0"));
    assert!(!replica.is_finished(), "the replica still leads: {replica:?}");
    let deployment = env.kubectl(&[
        "get",
        "deployment",
        "riposte",
        "-n",
        "riposte-system",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].args}",
    ]);
    assert!(String::from_utf8_lossy(&deployment.stdout).contains("--lease-name=riposte-leader"));
}
