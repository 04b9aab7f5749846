//! Who did what, proven by the apiserver: real users with the chart's roles, its admission
//! policy checking every requester, comment author, approver and triager against the
//! identity the apiserver authenticated, and the operator itself running with the chart's
//! ServiceAccount answering an alert through a policy.

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use riposte::local::{Options, StaticUser};
use riposte_crds::{Alert, Phase, ResponseAction, ResponsePolicy};
use riposte_e2e::Env;
use serde_json::{Value, json};

const USERS: [(&str, &str); 4] = [
    ("alice", "riposte-viewer"),
    ("bob", "riposte-alert-manager"),
    ("carol", "riposte-responder"),
    ("dave", "riposte-responder"),
];

fn action(name: &str, requested_by: &str, pod: &str, extra: Value) -> ResponseAction {
    let mut spec = json!({ "action": "Isolate", "target": { "pod": pod }, "requestedBy": requested_by });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).unwrap()
}

fn refused(result: Result<impl std::fmt::Debug, kube::Error>, code: u16, says: &str) {
    match result {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, code, "{e:?}");
            assert!(e.message.contains(says), "expected {says:?} in: {}", e.message);
        }
        other => panic!("expected a {code} saying {says:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn only_responders_act_and_every_name_on_record_is_the_authenticated_one() {
    let users = USERS
        .iter()
        .map(|(name, _)| StaticUser { name: (*name).into(), token: format!("token-{name}"), groups: vec![] })
        .collect();
    let env = Env::start_with(Options { users, ..Options::default() }).await;
    env.namespace("riposte-system").await;
    env.install_chart();
    env.wait_for_admission_policy().await;
    for (user, role) in USERS {
        let out = env.kubectl(&[
            "create",
            "clusterrolebinding",
            &format!("{user}-{role}"),
            "--clusterrole",
            role,
            "--user",
            user,
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let client = |user: &str| {
        let plane = &env.plane;
        let user = user.to_owned();
        async move { plane.client_for(&user, &format!("token-{user}")).await.unwrap() }
    };
    let (alice, bob, carol, dave): (Client, Client, Client, Client) =
        (client("alice").await, client("bob").await, client("carol").await, client("dave").await);
    let actions = |c: &Client| Api::<ResponseAction>::namespaced(c.clone(), "shop");
    let alerts = |c: &Client| Api::<Alert>::namespaced(c.clone(), "shop");

    let operator = env.chart_operator_client().await;
    let replica = env.spawn_replica_on(operator, "riposte-0", "riposte-leader");
    env.namespace("shop").await;
    for pod in ["web-1", "web-2", "web-3"] {
        env.pod("shop", pod, &[("app", "web")]).await;
    }
    let pp = PostParams::default();

    // A viewer reads but cannot act; an alert manager triages but cannot act either.
    actions(&alice).list(&Default::default()).await.expect("viewers read the action center");
    refused(actions(&alice).create(&pp, &action("a1", "alice", "web-1", json!({}))).await, 403, "forbidden");
    refused(actions(&bob).create(&pp, &action("b1", "bob", "web-1", json!({}))).await, 403, "forbidden");

    // A responder acts under their own name only.
    refused(
        actions(&carol).create(&pp, &action("c0", "dave", "web-1", json!({}))).await,
        403,
        "spec.requestedBy must be the identity the apiserver authenticated you as: carol",
    );
    actions(&carol).create(&pp, &action("c1", "carol", "web-1", json!({}))).await.unwrap();
    env.wait_for_phase("shop", "c1", Phase::Succeeded).await;
    refused(
        actions(&carol)
            .create(&pp, &action("c2", "carol", "web-2", json!({ "policyRef": { "name": "isolate-shells" } })))
            .await,
        403,
        "spec.policyRef is set only by Riposte itself",
    );

    // Comments are signed by their author, and only by them.
    let comment =
        |author: &str| json!({ "spec": { "comments": [{ "message": "seen in the proxy logs", "author": author }] } });
    refused(
        actions(&carol).patch("c1", &PatchParams::default(), &Patch::Merge(&comment("dave"))).await,
        403,
        "author: carol",
    );
    actions(&carol).patch("c1", &PatchParams::default(), &Patch::Merge(&comment("carol"))).await.unwrap();
    refused(actions(&bob).patch("c1", &PatchParams::default(), &Patch::Merge(&comment("bob"))).await, 403, "forbidden");
    let history = env
        .until("the comment in the history", || async {
            let s = actions(&carol).get("c1").await.ok()?.status?;
            s.history.into_iter().find(|h| h.event == "Comment")
        })
        .await;
    assert_eq!(history.by.as_deref(), Some("carol"));

    // Four eyes: an action that needs approval is approved by another responder, as themselves.
    actions(&carol).create(&pp, &action("c3", "carol", "web-2", json!({ "approvalRequired": true }))).await.unwrap();
    env.wait_for_phase("shop", "c3", Phase::AwaitingApproval).await;
    let approve = |by: &str| json!({ "spec": { "approval": { "decision": "Approved", "by": by } } });
    refused(
        actions(&carol).patch("c3", &PatchParams::default(), &Patch::Merge(&approve("carol"))).await,
        403,
        "cannot be approved or rejected by the identity that requested it",
    );
    refused(
        actions(&dave).patch("c3", &PatchParams::default(), &Patch::Merge(&approve("carol"))).await,
        403,
        "your own identity: dave",
    );
    refused(actions(&bob).patch("c3", &PatchParams::default(), &Patch::Merge(&approve("bob"))).await, 403, "forbidden");
    actions(&dave).patch("c3", &PatchParams::default(), &Patch::Merge(&approve("dave"))).await.unwrap();
    let done = env.wait_for_phase("shop", "c3", Phase::Succeeded).await.status.unwrap();
    assert!(done.history.iter().any(|h| h.event == "Approved" && h.by.as_deref() == Some("dave")));

    // Triage names the analyst who made it.
    env.apply::<Alert>(
        "shop",
        json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": "shell-3" },
                "spec": { "type": "K8S.NODE_ReverseShell", "title": "Reverse shell", "severity": "High", "tactics": ["Execution"],
                          "detectedAt": k8s_openapi::jiff::Timestamp::now().to_string(), "entities": { "namespace": "shop", "pod": "web-3" } } }),
    )
    .await;
    let triage = |by: &str| json!({ "spec": { "state": "InProgress", "assignee": "bob", "triagedBy": by } });
    refused(
        alerts(&bob).patch("shell-3", &PatchParams::default(), &Patch::Merge(&triage("carol"))).await,
        403,
        "triagedBy: bob",
    );
    refused(
        alerts(&alice).patch("shell-3", &PatchParams::default(), &Patch::Merge(&triage("alice"))).await,
        403,
        "forbidden",
    );
    alerts(&bob).patch("shell-3", &PatchParams::default(), &Patch::Merge(&triage("bob"))).await.unwrap();

    // The operator, as the chart's ServiceAccount, answers an alert through a policy: it may
    // create actions, name the policy, and its identity is on record as the requester.
    let policy = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy", "metadata": { "name": "isolate-shells" },
                         "spec": { "mode": "Automatic", "match": { "alertTypes": ["K8S.NODE_ReverseShell"] }, "actions": [{ "action": "Isolate" }] } });
    Api::<ResponsePolicy>::all(env.client.clone())
        .patch("isolate-shells", &PatchParams::apply("riposte-tests"), &Patch::Apply(&policy))
        .await
        .unwrap();
    env.until("the operator to see the policy", || async {
        Api::<ResponsePolicy>::all(env.client.clone()).get("isolate-shells").await.ok()?.status
    })
    .await;
    env.apply::<Alert>(
        "shop",
        json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": "shell-3b" },
                "spec": { "type": "K8S.NODE_ReverseShell", "title": "Reverse shell", "severity": "High", "tactics": ["Execution"],
                          "detectedAt": k8s_openapi::jiff::Timestamp::now().to_string(), "entities": { "namespace": "shop", "pod": "web-2" } } }),
    )
    .await;
    let created = env
        .until("the policy's action", || async {
            let list = actions(&carol).list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|a| a.spec.policy_ref.is_some())
        })
        .await;
    assert_eq!(created.spec.requested_by, "system:serviceaccount:riposte-system:riposte");
    let name = created.metadata.name.unwrap();
    // web-2 is already isolated by c3: the policy's action says so rather than claiming it.
    let status = env.wait_for_phase("shop", &name, Phase::Failed).await.status.unwrap();
    assert!(status.message.unwrap().contains("already isolated by ResponseAction c3"));
    assert!(!replica.is_finished(), "the operator keeps running: {replica:?}");
}
