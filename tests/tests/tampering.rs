//! Isolation that cannot be quietly undone, against a real kube-apiserver: whatever someone
//! else undoes of an isolation is put back at once (watches, not the periodic resync); with
//! the chart installed the apiserver refuses it outright, to everyone but Riposte; and an
//! isolation in place is never written again while nothing changes.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use riposte::isolation::{self, EXCLUDED_FOR_ANNOTATION, ISOLATED_LABEL};
use riposte::local::{Options, StaticUser};
use riposte_crds::{Phase, ResponseAction};
use riposte_e2e::{Env, default_guardrails};
use serde_json::{Value, json};

/// Far below the five-minute resync: a repair this fast came from a watch.
const REPAIRED_WITHIN: Duration = Duration::from_secs(10);

fn allow_web() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-web" },
        "spec": { "podSelector": { "matchLabels": { "app": "web" } }, "ingress": [{}], "egress": [{}] },
    })
}

/// Two web pods, a policy that allows them everything, and web-1 isolated by `iso`.
async fn isolated_shop(env: &Env) {
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    env.apply::<NetworkPolicy>("shop", allow_web()).await;
    env.run_action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Succeeded).await;
}

/// Waits until `whole` holds again after `undo`, and returns how long the isolation was broken.
async fn repaired<F, Fut>(env: &Env, what: &str, whole: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let broken = Instant::now();
    env.until(what, || async { whole().await.then_some(()) }).await;
    let took = broken.elapsed();
    assert!(took < REPAIRED_WITHIN, "{what} took {took:?}: not a watch but a resync");
    took
}

#[tokio::test]
async fn whatever_someone_undoes_of_an_isolation_is_put_back_at_once() {
    let env = Env::with_operator().await;
    isolated_shop(&env).await;
    let pods = env.pods("shop");
    let policies = env.policies("shop");
    let desired = isolation::isolation_policy(&env.actions("shop").get("iso").await.unwrap());
    let label_is_back =
        || async { pods.get("web-1").await.unwrap().labels().get(ISOLATED_LABEL).map(String::as_str) == Some("iso") };
    let policy_is_back = || async {
        policies
            .get_opt("riposte-isolate-iso")
            .await
            .unwrap()
            .is_some_and(|p| isolation::policy_is_current(&p, &desired))
    };

    let out = env.kubectl(&["label", "pod", "web-1", "-n", "shop", &format!("{ISOLATED_LABEL}-")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    repaired(&env, "the removed label to be put back", label_is_back).await;

    let out =
        env.kubectl(&["label", "pod", "web-1", "-n", "shop", "--overwrite", &format!("{ISOLATED_LABEL}=nothing")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    repaired(&env, "the relabelled pod to be labelled for its isolation again", label_is_back).await;

    policies.delete("riposte-isolate-iso", &DeleteParams::default()).await.unwrap();
    repaired(&env, "the deleted isolation policy to be recreated", policy_is_back).await;

    // An allow-all rule, and an expression that makes the policy select nothing: an apply
    // would keep the second, since another manager wrote it.
    let open = json!({ "spec": {
        "ingress": [{}],
        "podSelector": { "matchExpressions": [{ "key": "nobody", "operator": "Exists" }] },
    } });
    policies.patch("riposte-isolate-iso", &PatchParams::default(), &Patch::Merge(&open)).await.unwrap();
    repaired(&env, "the opened isolation policy to be restored", policy_is_back).await;

    let reopen = json!({ "spec": { "podSelector": { "matchExpressions": null } } });
    policies.patch("allow-web", &PatchParams::default(), &Patch::Merge(&reopen)).await.unwrap();
    repaired(&env, "allow-web to exclude the isolated pod again", || async {
        !isolation::may_reopen_isolated_pods(&policies.get("allow-web").await.unwrap())
    })
    .await;

    // The status is written once the repair is done.
    let status = env
        .until("the five repairs to be on record", || async {
            let status = env.actions("shop").get("iso").await.ok()?.status?;
            (status.history.iter().filter(|h| h.event == "DriftRepaired").count() >= 5).then_some(status)
        })
        .await;
    assert_eq!(status.phase, Some(Phase::Succeeded));
    let repairs: Vec<&str> =
        status.history.iter().filter(|h| h.event == "DriftRepaired").map(|h| h.message.as_str()).collect();
    assert_eq!(
        repairs,
        vec![
            "the label riposte.dev/isolated had been removed from pod web-1; put back",
            "the label riposte.dev/isolated of pod web-1 had been changed to nothing; put back",
            "NetworkPolicy riposte-isolate-iso had been deleted; put back",
            "NetworkPolicy riposte-isolate-iso had been changed; put back",
            "NetworkPolicy allow-web selected the pod again; put back",
        ],
        "every repair is on record, in order"
    );
    let sibling = pods.get("web-2").await.unwrap();
    assert!(sibling.labels().get(ISOLATED_LABEL).is_none(), "the sibling is never touched");
}

#[tokio::test]
async fn release_gives_back_an_exclusion_that_the_author_wrote() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    let authored = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-web-unless-isolated" },
        "spec": {
            "podSelector": { "matchLabels": { "app": "web" },
                             "matchExpressions": [{ "key": ISOLATED_LABEL, "operator": "DoesNotExist" }] },
            "ingress": [{}],
        },
    });
    let before = env.apply::<NetworkPolicy>("shop", authored).await;
    env.run_action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Succeeded).await;
    let during = env.policies("shop").get("allow-web-unless-isolated").await.unwrap();
    assert_eq!(during.resource_version(), before.resource_version(), "it never selected the pod: left alone");
    env.run_action("shop", "rel", json!({ "action": "Release", "target": { "pod": "web-1" } }), Phase::Succeeded).await;
    let after = env.policies("shop").get("allow-web-unless-isolated").await.unwrap();
    assert_eq!(after.spec, before.spec, "the policy comes back exactly as its author wrote it");
    assert!(after.annotations().get(EXCLUDED_FOR_ANNOTATION).is_none());
}

/// (generation, resourceVersion) of each object an isolation writes.
async fn versions(env: &Env) -> Vec<(String, Option<i64>, Option<String>)> {
    let policies = env.policies("shop");
    let own = policies.get("riposte-isolate-iso").await.unwrap();
    let excluded = policies.get("allow-web").await.unwrap();
    let pod = env.pods("shop").get("web-1").await.unwrap();
    vec![
        ("riposte-isolate-iso".into(), own.metadata.generation, own.resource_version()),
        ("allow-web".into(), excluded.metadata.generation, excluded.resource_version()),
        ("pod web-1".into(), pod.metadata.generation, pod.resource_version()),
    ]
}

async fn comment(env: &Env, text: &str) {
    let actions = env.actions("shop");
    let mut comments = actions.get("iso").await.unwrap().spec.comments;
    comments.push(serde_json::from_value(json!({ "author": riposte_e2e::ADMIN, "message": text })).unwrap());
    let patch = json!({ "spec": { "comments": comments } });
    actions.patch("iso", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    env.until(&format!("comment {text:?} to be recorded"), || async {
        let status = actions.get("iso").await.ok()?.status?;
        status.history.iter().any(|h| h.event == "Comment" && h.message == text).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_unchanged_isolation_is_never_written_again() {
    let mut env = Env::with_operator().await;
    isolated_shop(&env).await;
    let before = versions(&env).await;

    comment(&env, "looking at its connections").await;
    comment(&env, "captured its memory").await;
    // A policy created beside it that could re-open isolated pods wakes the isolation.
    let other = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-db" },
        "spec": { "podSelector": { "matchLabels": { "app": "db" } }, "ingress": [{}] },
    });
    env.apply::<NetworkPolicy>("shop", other).await;
    // A restart reconciles every action from scratch, as the periodic resync does.
    env.stop_operator();
    env.run_operator(env.client.clone(), default_guardrails());
    comment(&env, "restarted the operator").await;

    assert_eq!(versions(&env).await, before, "comments, wake-ups and restarts rewrite nothing");
}

const EDITOR: &str = "erin";

fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, says: &str) {
    match result {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains(says), "expected {says:?} in: {}", e.message);
        }
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn with_the_chart_the_apiserver_refuses_everyone_but_riposte_undoing_an_isolation() {
    let users = vec![StaticUser { name: EDITOR.into(), token: format!("token-{EDITOR}"), groups: vec![] }];
    let mut env = Env::start_with(Options { users, ..Options::default() }).await;
    env.namespace("riposte-system").await;
    env.install_chart();
    env.wait_for_admission_policy().await;
    env.namespace("shop").await;
    // What the aggregated `edit` ClusterRole grants on pods and policies (no controller-manager
    // aggregates it here).
    let role = env.kubectl(&[
        "create",
        "role",
        "editor",
        "-n",
        "shop",
        "--verb=get,list,watch,create,update,patch,delete",
        "--resource=pods,networkpolicies.networking.k8s.io",
    ]);
    assert!(role.status.success(), "{}", String::from_utf8_lossy(&role.stderr));
    let out = env.kubectl(&["create", "rolebinding", "erin-edit", "-n", "shop", "--role", "editor", "--user", EDITOR]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let erin: Client = env.plane.client_for(EDITOR, &format!("token-{EDITOR}")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(erin.clone(), "shop");
    let policies: Api<NetworkPolicy> = Api::namespaced(erin.clone(), "shop");

    let labelled_pod = |name: &str| -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { ISOLATED_LABEL: "iso" } },
            "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
        }))
        .unwrap()
    };
    let dry_run = PostParams { dry_run: true, ..PostParams::default() };
    env.until("the isolation guard to be enforced", || async {
        let refused = pods.create(&dry_run, &labelled_pod("probe")).await;
        matches!(refused, Err(kube::Error::Api(e)) if e.message.contains("riposte.dev/isolated")).then_some(())
    })
    .await;

    let operator = env.chart_operator_client().await;
    env.run_operator(operator, default_guardrails());
    for pod in ["web-1", "web-2"] {
        let web: Pod = serde_json::from_value(json!({
            "metadata": { "name": pod, "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "app", "image": "nginx:1.27" }] },
        }))
        .unwrap();
        pods.create(&PostParams::default(), &web).await.expect("an editor creates pods");
    }
    let mine: NetworkPolicy = serde_json::from_value(allow_web()).unwrap();
    policies.create(&PostParams::default(), &mine).await.expect("an editor creates policies");
    env.run_action("shop", "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } }), Phase::Succeeded).await;

    let says_label = "the label riposte.dev/isolated is set and removed only by Riposte";
    let unlabel = json!({ "metadata": { "labels": { ISOLATED_LABEL: null } } });
    refused(pods.patch("web-1", &PatchParams::default(), &Patch::Merge(&unlabel)).await, says_label);
    let relabel = json!({ "metadata": { "labels": { ISOLATED_LABEL: "other" } } });
    refused(pods.patch("web-1", &PatchParams::default(), &Patch::Merge(&relabel)).await, says_label);
    let label = json!({ "metadata": { "labels": { ISOLATED_LABEL: "iso" } } });
    refused(pods.patch("web-2", &PatchParams::default(), &Patch::Merge(&label)).await, says_label);
    refused(pods.create(&PostParams::default(), &labelled_pod("web-3")).await, says_label);
    let admin_pods = env.pods("shop");
    refused(admin_pods.patch("web-1", &PatchParams::default(), &Patch::Merge(&unlabel)).await, says_label);
    let other_label = json!({ "metadata": { "labels": { "team": "shop" } } });
    pods.patch("web-1", &PatchParams::default(), &Patch::Merge(&other_label)).await.expect("other labels are free");

    let says_policy = "isolates a pod for ResponseAction iso and is changed only by Riposte";
    refused(policies.delete("riposte-isolate-iso", &DeleteParams::default()).await, says_policy);
    let open = json!({ "spec": { "ingress": [{}] } });
    refused(policies.patch("riposte-isolate-iso", &PatchParams::default(), &Patch::Merge(&open)).await, says_policy);
    refused(env.policies("shop").delete("riposte-isolate-iso", &DeleteParams::default()).await, says_policy);

    let says_exclusion = "is kept from selecting pods isolated by iso";
    let reopen = json!({ "spec": { "podSelector": { "matchExpressions": null } } });
    refused(policies.patch("allow-web", &PatchParams::default(), &Patch::Merge(&reopen)).await, says_exclusion);
    let forget = json!({ "metadata": { "annotations": { EXCLUDED_FOR_ANNOTATION: null } } });
    refused(policies.patch("allow-web", &PatchParams::default(), &Patch::Merge(&forget)).await, says_exclusion);
    let narrowed = json!({ "spec": { "ingress": [{ "ports": [{ "port": 8080, "protocol": "TCP" }] }] } });
    policies
        .patch("allow-web", &PatchParams::default(), &Patch::Merge(&narrowed))
        .await
        .expect("the rest of an excluded policy stays the editor's to change");

    // Riposte itself undoes the isolation on release.
    env.run_action("shop", "rel", json!({ "action": "Release", "target": { "pod": "web-1" } }), Phase::Succeeded).await;
    let released = pods.get("web-1").await.unwrap();
    assert!(released.labels().get(ISOLATED_LABEL).is_none());
    assert!(policies.get_opt("riposte-isolate-iso").await.unwrap().is_none());
    let restored = policies.get("allow-web").await.unwrap();
    assert!(isolation::may_reopen_isolated_pods(&restored), "the exclusion is gone with the isolation");
    let rules = restored.spec.unwrap().ingress.unwrap();
    assert_eq!(
        rules[0].ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
    );
    let actions: Api<ResponseAction> = env.actions("shop");
    assert_eq!(actions.get("iso").await.unwrap().status.unwrap().phase, Some(Phase::Released));
    env.stop_operator();
}
