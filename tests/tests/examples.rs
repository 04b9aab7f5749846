//! Every file in `examples/` applied with kubectl converges; every file in
//! `examples/invalid/` is rejected by the apiserver with the message its first line expects.

use riposte_crds::{Alert, Phase};
use riposte_e2e::{Env, repo_path};

fn example(name: &str) -> String {
    repo_path("examples").join(name).display().to_string()
}

fn apply(env: &Env, file: &str) {
    let out = env.kubectl(&["apply", "-f", &example(file)]);
    assert!(out.status.success(), "kubectl apply -f examples/{file}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn the_walkthrough_isolate_comment_release_terminate_converges() {
    let env = Env::with_operator().await;
    apply(&env, "namespace.yaml");
    apply(&env, "alert.yaml");
    apply(&env, "isolate.yaml");
    env.wait_for_phase("shop", "isolate-web", Phase::Succeeded).await;
    apply(&env, "comment.yaml");
    env.until("the comment in the history", || async {
        let a = env.actions("shop").get("isolate-web").await.ok()?;
        a.status?.history.iter().any(|h| h.event == "Comment").then_some(())
    })
    .await;
    apply(&env, "isolate-dry-run.yaml");
    apply(&env, "release.yaml");
    env.wait_for_phase("shop", "isolate-web", Phase::Released).await;
    apply(&env, "terminate.yaml");
    for action in ["release-web", "terminate-web", "isolate-api-dry-run"] {
        env.wait_for_phase("shop", action, Phase::Succeeded).await;
    }
    let alerts: kube::Api<Alert> = kube::Api::namespaced(env.client.clone(), "shop");
    env.until("the alert to list its actions", || async {
        let status = alerts.get("reverse-shell-web").await.ok()?.status?;
        (status.action_count >= 3).then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_scenario_converges_from_one_apply() {
    let env = Env::with_operator().await;
    apply(&env, "scenario.yaml");
    env.wait_for_phase("shop", "isolate-web", Phase::Succeeded).await;
    env.wait_for_phase("shop", "terminate-api", Phase::Succeeded).await;
}

#[tokio::test]
async fn every_invalid_example_is_rejected_with_its_expected_message() {
    let env = Env::start().await;
    env.namespace("shop").await;
    let mut files: Vec<_> = std::fs::read_dir(repo_path("examples/invalid"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 13, "examples/invalid/ holds the rejected objects");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} starts with `# expect: <message>`", file.display()));
        let out = env.kubectl(&["apply", "-f", &file.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(stderr.contains(expected), "{}: expected {expected:?} in:\n{stderr}", file.display());
    }
}

#[tokio::test]
async fn the_policy_examples_isolate_the_pod_of_the_alert_on_their_own() {
    let env = Env::with_operator().await;
    apply(&env, "namespace.yaml");
    apply(&env, "policy-isolate-shells.yaml");
    env.until("the operator to see the policies", || async {
        let list =
            kube::Api::<riposte_crds::ResponsePolicy>::all(env.client.clone()).list(&Default::default()).await.ok()?;
        (list.items.len() == 2 && list.items.iter().all(|p| p.status.is_some())).then_some(())
    })
    .await;
    apply(&env, "alert-to-isolation.yaml");
    let action = env
        .until("the policy's isolation to succeed", || async {
            let list = env.actions("shop").list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|a| {
                a.spec.policy_ref.as_ref().is_some_and(|p| p.name == "isolate-shells")
                    && a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)
            })
        })
        .await;
    assert_eq!(action.spec.target.pod, "web-7d9f-abcde");
    assert_eq!(action.spec.alert_ref.unwrap().name, "reverse-shell-web-auto");
}
