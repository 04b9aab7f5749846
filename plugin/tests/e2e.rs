//! `kubectl riposte` end to end: the real binary against a real kube-apiserver and etcd, with
//! the operator running in this process. Every result is read back from the API objects.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use riposte::local::{Options, StaticUser};
use riposte_crds::{Alert, ApprovalDecision, Phase, ResponseAction};
use riposte_e2e::{Env, default_guardrails};
use serde_json::{Value, json};

/// What one run of the plugin printed, and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "the plugin failed:\n{}{}", self.stdout, self.stderr);
        self
    }

    fn failed(self, code: i32, says: &str) -> Run {
        assert_eq!(self.code, code, "expected exit status {code}:\n{}{}", self.stdout, self.stderr);
        assert!(self.stderr.contains(says), "expected {says:?} in the error:\n{}", self.stderr);
        self
    }

    /// The name in "responseaction <namespace>/<name> created".
    fn created(&self, namespace: &str) -> String {
        let prefix = format!("responseaction {namespace}/");
        self.stdout
            .lines()
            .find_map(|line| line.strip_prefix(&prefix)?.split_once(" created").map(|(name, _)| name.to_owned()))
            .unwrap_or_else(|| panic!("no creation line in:\n{}", self.stdout))
    }
}

async fn plugin(kubeconfig: &Path, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-riposte"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("the plugin runs");
    Run {
        code: out.status.code().expect("the plugin exits by itself"),
        stdout: String::from_utf8(out.stdout).expect("output is text"),
        stderr: String::from_utf8(out.stderr).expect("output is text"),
    }
}

/// A kubeconfig for a static user, next to the admin's (removed with the control plane).
fn kubeconfig_of(env: &Env, user: &str) -> PathBuf {
    let path = env.plane.kubeconfig_path().with_file_name(format!("kubeconfig-{user}"));
    std::fs::write(&path, env.plane.kubeconfig_for(user, &format!("token-{user}"))).unwrap();
    path
}

/// The value of a labelled field of `show`, such as `Phase:  Released`.
fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(label)?.strip_prefix(':').map(str::trim))
}

/// Data rows of a table, without the header, split into cells.
fn rows(table: &str) -> Vec<Vec<String>> {
    table.lines().skip(1).map(|line| line.split_whitespace().map(str::to_owned).collect()).collect()
}

async fn alert(env: &Env, name: &str, alert_type: &str, severity: &str, detected_at: &str, pod: &str) -> Alert {
    env.apply(
        "shop",
        json!({
            "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": name },
            "spec": {
                "type": alert_type, "title": format!("{alert_type} on {pod}"), "severity": severity,
                "detectedAt": detected_at, "entities": { "namespace": "shop", "pod": pod },
            },
        }),
    )
    .await
}

#[tokio::test]
async fn isolate_comment_release_and_show_an_action() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    let admin = env.plane.kubeconfig_path();

    let isolate = plugin(
        admin,
        &[
            "isolate",
            "web-1",
            "-n",
            "shop",
            "--comment",
            "reverse shell",
            "--allow-dns",
            "--allow-ingress-namespace",
            "forensics",
            "--allow-egress-cidr",
            "10.20.0.0/16",
            "--wait",
        ],
    )
    .await
    .ok();
    let name = isolate.created("shop");
    assert!(name.starts_with("isolate-web-1-") && name.len() == "isolate-web-1-".len() + 5, "{name}");
    assert!(isolate.stdout.contains(&format!("responseaction shop/{name} Succeeded")), "{}", isolate.stdout);
    let action = env.actions("shop").get(&name).await.unwrap();
    assert_eq!(action.spec.requested_by, "riposte-admin", "the apiserver's name for the caller");
    assert_eq!(action.spec.comment.as_deref(), Some("reverse shell"));
    assert_eq!(
        serde_json::to_value(&action.spec.isolation).unwrap(),
        json!({
            "allowDns": true,
            "ingress": { "namespaces": ["forensics"], "cidrs": [], "ports": [] },
            "egress": { "namespaces": [], "cidrs": ["10.20.0.0/16"], "ports": [] },
        })
    );
    let pod = env.pods("shop").get("web-1").await.unwrap();
    assert_eq!(pod.labels().get("riposte.dev/isolated"), Some(&name));

    // Three analysts comment at the same moment: each comment lands, none overwrites another.
    let args = ["one", "two", "three"].map(|m| ["comment", "action", name.as_str(), "-n", "shop", "-m", m]);
    let (one, two, three) = tokio::join!(plugin(admin, &args[0]), plugin(admin, &args[1]), plugin(admin, &args[2]));
    for run in [one, two, three] {
        assert!(run.ok().stdout.starts_with(&format!("comment added to responseaction shop/{name}")));
    }
    let action = env.actions("shop").get(&name).await.unwrap();
    let mut comments: Vec<(&str, &str)> =
        action.spec.comments.iter().map(|c| (c.message.as_str(), c.author.as_str())).collect();
    comments.sort();
    assert_eq!(comments, [("one", "riposte-admin"), ("three", "riposte-admin"), ("two", "riposte-admin")]);
    let actions = env.actions("shop");
    env.until("the comments in the action's history", || async {
        let action = actions.get(&name).await.ok()?;
        let history = action.status?.history;
        let recorded = history.iter().filter(|h| h.event == "Comment" && h.by.as_deref() == Some("riposte-admin"));
        (recorded.count() == 3).then_some(())
    })
    .await;

    let release = plugin(
        admin,
        &["release", "web-1", "-n", "shop", "--action", &name, "--comment", "investigation done", "--wait"],
    )
    .await
    .ok();
    let release_name = release.created("shop");
    assert!(release_name.starts_with("release-web-1-"), "{release_name}");
    assert!(release.stdout.contains(&format!("responseaction shop/{release_name} Succeeded")), "{}", release.stdout);
    let released = env.actions("shop").get(&release_name).await.unwrap();
    assert_eq!(released.spec.release.unwrap().action_name.as_deref(), Some(name.as_str()));
    env.wait_for_phase("shop", &name, Phase::Released).await;

    let show = plugin(admin, &["show", "action", &name, "-n", "shop"]).await.ok().stdout;
    assert_eq!(field(&show, "Name"), Some(name.as_str()), "{show}");
    assert_eq!(field(&show, "Requested by"), Some("riposte-admin"), "{show}");
    assert_eq!(
        field(&show, "Isolation"),
        Some(
            "cut off except cluster DNS; ingress from pods in namespaces forensics; egress to addresses in 10.20.0.0/16"
        ),
        "{show}"
    );
    assert_eq!(field(&show, "Phase"), Some("Released"), "{show}");
    assert_eq!(field(&show, "Released by"), Some(release_name.as_str()), "{show}");
    assert!(show.contains("\nConditions:\n  TYPE") && show.contains("\nHistory:\n  TIME"), "{show}");
    let timeline: Vec<Vec<String>> = show.split("\nHistory:\n").nth(1).map(rows).unwrap();
    assert!(timeline.iter().any(|cells| cells[2..] == ["Comment", "riposte-admin", "two"]), "{show}");
    assert!(timeline.iter().any(|cells| cells[2] == "Released"), "{show}");

    let json = plugin(admin, &["show", "action", &name, "-n", "shop", "-o", "json"]).await.ok().stdout;
    let shown: ResponseAction = serde_json::from_str(&json).expect("-o json prints the ResponseAction");
    assert_eq!((shown.name_any(), shown.metadata.managed_fields), (name.clone(), None));
    let yaml = plugin(admin, &["show", "action", &name, "-n", "shop", "-o", "yaml"]).await.ok().stdout;
    let shown: ResponseAction = serde_yaml::from_str(&yaml).expect("-o yaml prints the ResponseAction");
    assert_eq!(shown.status.unwrap().phase, Some(Phase::Released));
}

#[tokio::test]
async fn terminate_with_evidence_and_clear_errors() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.namespace("riposte-system").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    env.pod("shop", "web-2", &[("app", "web")]).await;
    let admin = env.plane.kubeconfig_path();

    // Best effort: the logs cannot be fetched (no kubelet), which is recorded, and the pod goes.
    let run = plugin(
        admin,
        &["terminate", "web-1", "-n", "shop", "--grace-period", "0", "--evidence", "best-effort", "--wait"],
    )
    .await
    .ok();
    let name = run.created("shop");
    assert!(name.starts_with("terminate-web-1-"), "{name}");
    assert!(env.pods("shop").get_opt("web-1").await.unwrap().is_none(), "the pod is deleted");
    let terminate = env.actions("shop").get(&name).await.unwrap().spec.terminate.unwrap();
    assert_eq!(
        serde_json::to_value(&terminate).unwrap(),
        json!({ "gracePeriodSeconds": 0, "evidence": { "capture": "BestEffort", "logLimitBytes": 65536 } })
    );
    let show = plugin(admin, &["show", "action", &name, "-n", "shop"]).await.ok().stdout;
    assert!(field(&show, "Terminate").is_some_and(|t| t.starts_with("grace period 0s; evidence BestEffort")), "{show}");
    assert!(show.contains("\nEvidence: ConfigMap riposte-system/"), "{show}");
    assert!(show.contains("  pod.yaml "), "{show}");

    // Required evidence that cannot be had: the action fails, --wait says why and exits 1.
    let run = plugin(
        admin,
        &["terminate", "web-2", "-n", "shop", "--evidence", "required", "--log-limit-bytes", "4096", "--wait"],
    )
    .await
    .failed(1, "ended Failed: evidence was required but is incomplete");
    assert!(run.stdout.contains("responseaction shop/terminate-web-2-"), "{}", run.stdout);
    assert!(env.pods("shop").get_opt("web-2").await.unwrap().is_some(), "the pod is kept");

    // Clear errors that say what to do.
    plugin(admin, &["isolate", "nope", "-n", "shop"])
        .await
        .failed(1, "error: pod nope not found in namespace shop; list them with `kubectl get pods -n shop`");
    assert!(env.actions("shop").list(&Default::default()).await.unwrap().items.len() == 2, "no action for nothing");
    plugin(admin, &["show", "action", "nope", "-n", "shop"])
        .await
        .failed(1, "responseaction nope not found in namespace shop; list them with `kubectl riposte actions -n shop`");
    plugin(admin, &["release", "web-2", "-n", "shop", "--action", &name])
        .await
        .failed(1, &format!("responseaction shop/{name} is a Terminate action; a release undoes an Isolate action"));
    plugin(admin, &["isolate", "web-2", "-n", "shop", "--alert", "no-such-alert"])
        .await
        .failed(1, "alert no-such-alert not found in namespace shop");
    plugin(admin, &["actions", "-n", "shop", "--since", "30"]).await.failed(2, "30 has no unit");
    plugin(admin, &["terminate", "web-2", "--log-limit-bytes", "4096"]).await.failed(2, "--evidence");
    let missing = env.plane.kubeconfig_path().with_file_name("no-such-kubeconfig");
    plugin(&missing, &["actions"]).await.failed(1, "no cluster configured");
    let run = plugin(admin, &["--kubeconfig", missing.to_str().unwrap(), "actions"]).await;
    run.failed(1, "cannot load the kubeconfig");
}

#[tokio::test]
async fn the_action_center_lists_and_filters_actions() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.namespace("bank").await;
    for pod in ["web-1", "web-2"] {
        env.pod("shop", pod, &[("app", "web")]).await;
    }
    env.pod("bank", "api-0", &[("app", "api")]).await;
    alert(&env, "shell-web-1", "K8S.NODE_ReverseShell", "High", "2025-11-22T09:41:07Z", "web-1").await;
    let admin = env.plane.kubeconfig_path();

    let first = plugin(admin, &["isolate", "web-1", "-n", "shop", "--alert", "shell-web-1", "--wait"]).await.ok();
    let first = first.created("shop");
    let dry = plugin(admin, &["isolate", "web-2", "-n", "shop", "--dry-run", "--wait"]).await.ok();
    assert!(dry.stdout.contains("created (dry run: nothing will be changed)"), "{}", dry.stdout);
    let dry = dry.created("shop");
    let bank = plugin(admin, &["-n", "bank", "isolate", "api-0", "--wait"]).await.ok().created("bank");
    // Creation times are kept to the second: the next action is seconds newer than the others.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let last = plugin(admin, &["terminate", "web-2", "-n", "shop", "--comment", "cryptominer"]).await.ok();
    let last = last.created("shop");

    let table = plugin(admin, &["actions", "-n", "shop"]).await.ok().stdout;
    let header: Vec<&str> =
        table.lines().next().unwrap().split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(header, ["NAME", "ACTION", "TARGET", "PHASE", "REQUESTED BY", "AGE", "ALERT", "MESSAGE"]);
    let names: Vec<String> = rows(&table).into_iter().map(|cells| cells[0].clone()).collect();
    assert_eq!(names, [first.clone(), dry.clone(), last.clone()], "oldest first, newest last:\n{table}");
    let line = table.lines().find(|l| l.starts_with(&first)).unwrap();
    assert!(line.contains("Isolate ") && line.contains("Succeeded") && line.contains("riposte-admin"), "{line}");
    assert!(line.contains("shell-web-1"), "{line}");
    assert!(table.lines().any(|l| l.starts_with(&dry) && l.contains("Isolate (dry run)")), "{table}");
    // Columns line up: every value of a column starts where its header does.
    let phase_at = table.find("PHASE").unwrap();
    assert!(table.lines().skip(1).all(|l| l[phase_at..].starts_with(char::is_alphabetic)), "{table}");

    let all = plugin(admin, &["actions", "-A"]).await.ok().stdout;
    assert!(all.starts_with("NAMESPACE   NAME"), "{all}");
    assert!(all.lines().any(|l| l.starts_with("bank") && l.contains(&bank)), "{all}");
    assert_eq!(rows(&all).len(), 4);

    let names_of = |table: String| rows(&table).into_iter().map(|cells| cells[0].clone()).collect::<Vec<_>>();
    let target = plugin(admin, &["actions", "-n", "shop", "--target", "web-2"]).await.ok().stdout;
    assert_eq!(names_of(target), [dry.clone(), last.clone()]);
    let alerted = plugin(admin, &["actions", "-n", "shop", "--alert", "shell-web-1"]).await.ok().stdout;
    assert_eq!(names_of(alerted), [first.as_str()]);
    let recent = plugin(admin, &["actions", "-n", "shop", "--since", "2s"]).await.ok().stdout;
    assert_eq!(names_of(recent), [last.as_str()]);
    let succeeded = plugin(admin, &["actions", "-A", "--phase", "succeeded"]).await.ok().stdout;
    let succeeded: Vec<String> = rows(&succeeded).into_iter().map(|cells| cells[1].clone()).collect();
    assert!(succeeded.contains(&first) && succeeded.contains(&bank) && succeeded.contains(&dry), "{succeeded:?}");
    let none = plugin(admin, &["actions", "-n", "shop", "--policy", "no-such-policy"]).await.ok();
    assert_eq!((none.stdout.as_str(), none.stderr.as_str()), ("", "No response actions found in namespace shop.\n"));

    let json = plugin(admin, &["actions", "-n", "shop", "--target", "web-1", "-o", "json"]).await.ok().stdout;
    let list: Value = serde_json::from_str(&json).expect("-o json prints a list");
    assert_eq!(list["kind"], "List");
    let items: Vec<ResponseAction> = serde_json::from_value(list["items"].clone()).unwrap();
    assert_eq!(items.iter().map(|a| a.name_any()).collect::<Vec<_>>(), [first.as_str()]);
    let yaml = plugin(admin, &["actions", "-A", "-o", "yaml"]).await.ok().stdout;
    let list: Value = serde_yaml::from_str(&yaml).expect("-o yaml prints a list");
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_alert_queue_triage_and_show() {
    let env = Env::with_operator().await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    alert(&env, "priv-old", "K8S_PrivilegedContainer", "Medium", "2025-11-20T08:00:00Z", "web-1").await;
    alert(&env, "shell-old", "K8S.NODE_ReverseShell", "High", "2025-11-21T08:00:00Z", "web-1").await;
    alert(&env, "shell-new", "K8S.NODE_ReverseShell", "High", "2025-11-22T08:00:00Z", "web-1").await;
    alert(&env, "priv-new", "K8S_PrivilegedContainer", "Medium", "2025-11-22T09:00:00Z", "web-1").await;
    let admin = env.plane.kubeconfig_path();
    plugin(admin, &["isolate", "web-1", "-n", "shop", "--alert", "shell-new", "--wait"]).await.ok();

    let names_of = |table: &str| rows(table).into_iter().map(|cells| cells[0].clone()).collect::<Vec<_>>();
    let queue = plugin(admin, &["alerts", "-n", "shop"]).await.ok().stdout;
    let header: Vec<&str> = queue.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "SEVERITY", "STATE", "ENTITY", "SEEN", "ASSIGNEE", "AGE", "ACTIONS"]);
    assert_eq!(
        names_of(&queue),
        ["shell-new", "shell-old", "priv-new", "priv-old"],
        "most severe, then newest:\n{queue}"
    );
    let high = plugin(admin, &["alerts", "-n", "shop", "--min-severity", "high"]).await.ok().stdout;
    assert_eq!(names_of(&high), ["shell-new", "shell-old"]);
    let by_type = plugin(admin, &["alerts", "-A", "--type", "k8s_privilegedcontainer"]).await.ok().stdout;
    assert!(by_type.starts_with("NAMESPACE   NAME"), "{by_type}");
    assert_eq!(rows(&by_type).into_iter().map(|c| c[1].clone()).collect::<Vec<_>>(), ["priv-new", "priv-old"]);
    plugin(admin, &["alerts", "--type", "ReverseShel"]).await.failed(1, "did you mean K8S.NODE_ReverseShell?");
    // The operator links the isolation to its alert.
    let alerts = Api::<Alert>::namespaced(env.client.clone(), "shop");
    env.until("the isolation linked to its alert", || async {
        let alert = alerts.get("shell-new").await.ok()?;
        alert.status?.actions.first()?.phase.filter(|p| *p == Phase::Succeeded)
    })
    .await;
    let queue = plugin(admin, &["alerts", "-n", "shop"]).await.ok().stdout;
    assert_eq!(rows(&queue)[0].last().map(String::as_str), Some("1"), "one action on shell-new:\n{queue}");

    let run = plugin(admin, &["triage", "shell-new", "-n", "shop", "--state", "InProgress", "--assign-me"]).await.ok();
    assert_eq!(run.stdout, "alert shop/shell-new: InProgress, assigned to riposte-admin\n");
    let triaged = alerts.get("shell-new").await.unwrap();
    assert_eq!(triaged.spec.assignee.as_deref(), Some("riposte-admin"));
    assert_eq!(triaged.spec.triaged_by.as_deref(), Some("riposte-admin"));
    // A Resolved alert needs a classification: the apiserver's reason is passed on.
    plugin(admin, &["triage", "shell-new", "-n", "shop", "--state", "Resolved"])
        .await
        .failed(1, "a Resolved alert needs a classification");
    let run = plugin(
        admin,
        &["triage", "shell-new", "-n", "shop", "--state", "Resolved", "--classify", "TruePositive", "--unassign"],
    )
    .await
    .ok();
    assert_eq!(run.stdout, "alert shop/shell-new: Resolved, unassigned, TruePositive\n");
    plugin(admin, &["comment", "alert", "shell-new", "-n", "shop", "-m", "contained and patched"]).await.ok();
    plugin(admin, &["triage", "nope", "-n", "shop", "--assign-me"])
        .await
        .failed(1, "alert nope not found in namespace shop");

    let open = plugin(admin, &["alerts", "-n", "shop", "--open"]).await.ok().stdout;
    assert_eq!(names_of(&open), ["shell-old", "priv-new", "priv-old"]);
    let resolved = plugin(admin, &["alerts", "-n", "shop", "--state", "resolved", "-o", "json"]).await.ok().stdout;
    let list: Value = serde_json::from_str(&resolved).unwrap();
    let items: Vec<Alert> = serde_json::from_value(list["items"].clone()).unwrap();
    assert_eq!(items.iter().map(|a| a.name_any()).collect::<Vec<_>>(), ["shell-new"]);

    let show = plugin(admin, &["show", "alert", "shell-new", "-n", "shop"]).await.ok().stdout;
    for (label, value) in [
        ("Type", "K8S.NODE_ReverseShell"),
        ("Severity", "High"),
        ("Entities", "namespace=shop pod=web-1"),
        ("State", "Resolved"),
        ("Assignee", "<none>"),
        ("Classification", "TruePositive"),
        ("Triaged by", "riposte-admin"),
        ("Occurrences", "1"),
    ] {
        assert_eq!(field(&show, label), Some(value), "{label} in:\n{show}");
    }
    for expected in ["\nGuidance:\n  What it means:\n", "  How to check:\n", "  How to fix:\n", "\nActions:\n  NAME"] {
        assert!(show.contains(expected), "missing {expected:?} in:\n{show}");
    }
    assert!(show.lines().any(|l| l.trim_start().starts_with("isolate-web-1-") && l.contains("Succeeded")), "{show}");
    let alerts_ref = &alerts;
    env.until("the comment in the alert's history", || async move {
        let alert = alerts_ref.get("shell-new").await.ok()?;
        alert
            .status?
            .history
            .iter()
            .any(|h| h.event == "Comment" && h.by.as_deref() == Some("riposte-admin"))
            .then_some(())
    })
    .await;
    let show = plugin(admin, &["show", "alert", "shell-new", "-n", "shop"]).await.ok().stdout;
    let timeline = show.split("\nHistory:\n").nth(1).unwrap_or_else(|| panic!("no history in:\n{show}"));
    assert!(timeline.lines().any(|l| l.contains("Comment") && l.contains("contained and patched")), "{show}");
}

#[tokio::test]
async fn automation_pause_resume_and_status() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    let admin = env.plane.kubeconfig_path();
    let status = plugin(admin, &["automation", "status"]).await.ok().stdout;
    assert!(status.starts_with("Automation: running (no ConfigMap riposte-system/riposte-automation;"), "{status}");
    assert!(status.contains("No ResponsePolicies"), "{status}");

    let run = plugin(admin, &["automation", "pause"]).await.ok();
    assert!(run.stdout.starts_with("automation paused"), "{}", run.stdout);
    let switches = Api::<ConfigMap>::namespaced(env.client.clone(), "riposte-system");
    let switch = switches.get("riposte-automation").await.unwrap();
    assert_eq!(switch.data.as_ref().unwrap()["paused"], "true");
    assert_eq!(switch.annotations()["riposte.dev/changed-by"], "riposte-admin");

    let policy: riposte_crds::ResponsePolicy = serde_json::from_value(json!({
        "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy",
        "metadata": { "name": "isolate-shells" },
        "spec": { "mode": "ApprovalRequired", "match": { "alertTypes": ["K8S.NODE_ReverseShell"] }, "actions": [{ "action": "Isolate" }] },
    }))
    .unwrap();
    Api::all(env.client.clone()).create(&PostParams::default(), &policy).await.unwrap();
    let status = plugin(admin, &["automation", "status"]).await.ok().stdout;
    assert!(
        status.starts_with("Automation: PAUSED by riposte-system/riposte-automation, last changed by riposte-admin"),
        "{status}"
    );
    let policies = status.split("\n\n").nth(1).unwrap();
    assert_eq!(rows(policies), [["isolate-shells", "ApprovalRequired", "false", "0", "0", "<none>"]]);

    plugin(admin, &["automation", "resume"]).await.ok();
    let switch = switches.get("riposte-automation").await.unwrap();
    assert_eq!(switch.data.unwrap()["paused"], "false");
    let json = plugin(admin, &["automation", "status", "-o", "json"]).await.ok().stdout;
    let status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["paused"], false);
    assert_eq!(status["policies"][0]["metadata"]["name"], "isolate-shells");
    assert_eq!(status["configMap"]["data"]["paused"], "false");

    // No operator runs here: --wait gives up after its timeout, says where the action is, exits 1.
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[("app", "web")]).await;
    plugin(admin, &["isolate", "web-1", "-n", "shop", "--wait", "--timeout", "2s"])
        .await
        .failed(1, "is still Pending after 2s; raise --timeout");
    plugin(admin, &["--context", "prod", "actions"]).await.failed(1, "context prod is not in the kubeconfig");

    plugin(admin, &["automation", "pause", "--operator-namespace", "elsewhere"])
        .await
        .failed(1, "namespace elsewhere does not exist: is Riposte installed there?");
}

/// Real users with the chart's roles and admission policy: a viewer is refused with the
/// role to ask for, a responder's action waits for another responder's approval, the
/// requester cannot approve their own, and a decision is given once.
#[tokio::test]
async fn approvals_with_real_users_and_the_charts_policy() {
    let users = ["alice", "carol", "dave"]
        .iter()
        .map(|name| StaticUser { name: (*name).into(), token: format!("token-{name}"), groups: vec![] })
        .collect();
    let mut env = Env::start_with(Options { users, ..Options::default() }).await;
    env.namespace("riposte-system").await;
    env.install_chart();
    env.wait_for_admission_policy().await;
    for (user, role) in [("alice", "riposte-viewer"), ("carol", "riposte-responder"), ("dave", "riposte-responder")] {
        let binding = format!("{user}-{role}");
        let out = env.kubectl(&["create", "clusterrolebinding", &binding, "--clusterrole", role, "--user", user]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // As the chart runs it: its isolation guard lets only the chart's ServiceAccount label pods.
    let operator = env.chart_operator_client().await;
    env.run_operator(operator, default_guardrails());
    env.namespace("shop").await;
    for pod in ["web-1", "web-2", "web-3"] {
        env.pod("shop", pod, &[("app", "web")]).await;
    }
    let (alice, carol, dave) =
        (kubeconfig_of(&env, "alice"), kubeconfig_of(&env, "carol"), kubeconfig_of(&env, "dave"));

    plugin(&alice, &["isolate", "web-1", "-n", "shop"]).await.failed(
        1,
        "forbidden: responseactions.riposte.dev is forbidden: User \"alice\" cannot create resource \"responseactions\"",
    );
    plugin(&alice, &["isolate", "web-1", "-n", "shop"])
        .await
        .failed(1, "acting on pods and approving actions needs the riposte-responder role");
    plugin(&alice, &["actions", "-n", "shop"]).await.ok();

    let run = plugin(&carol, &["isolate", "web-1", "-n", "shop", "--require-approval", "--wait"]).await.ok();
    let held = run.created("shop");
    assert!(run.stdout.contains(&format!("responseaction shop/{held} AwaitingApproval")), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("kubectl riposte approve {held} -n shop")), "{}", run.stdout);
    let action = env.actions("shop").get(&held).await.unwrap();
    assert_eq!((action.spec.requested_by.as_str(), action.spec.approval_required), ("carol", true));
    assert!(env.pods("shop").get("web-1").await.unwrap().labels().get("riposte.dev/isolated").is_none());

    plugin(&carol, &["approve", &held, "-n", "shop"])
        .await
        .failed(1, "an action cannot be approved or rejected by the identity that requested it");
    plugin(&alice, &["approve", &held, "-n", "shop"]).await.failed(1, "forbidden");
    let run = plugin(&dave, &["approve", &held, "-n", "shop", "-m", "confirmed with the app team"]).await.ok();
    assert_eq!(run.stdout, format!("responseaction shop/{held} approved by dave; it runs now\n"));
    let approval = env.wait_for_phase("shop", &held, Phase::Succeeded).await.spec.approval.unwrap();
    assert_eq!((approval.decision, approval.by.as_str()), (ApprovalDecision::Approved, "dave"));
    assert_eq!(approval.comment.as_deref(), Some("confirmed with the app team"));
    plugin(&dave, &["approve", &held, "-n", "shop", "--reject"])
        .await
        .failed(1, &format!("responseaction shop/{held} was already approved by dave"));
    let show = plugin(&alice, &["show", "action", &held, "-n", "shop"]).await.ok().stdout;
    assert_eq!(field(&show, "Approval"), Some("approved by dave: confirmed with the app team"), "{show}");

    let terminate = plugin(&carol, &["terminate", "web-2", "-n", "shop", "--require-approval"]).await.ok();
    let terminate = terminate.created("shop");
    plugin(&dave, &["approve", &terminate, "-n", "shop", "--reject", "-m", "not this one"]).await.ok();
    let rejected = env.wait_for_phase("shop", &terminate, Phase::Rejected).await;
    assert_eq!(rejected.spec.approval.unwrap().decision, ApprovalDecision::Rejected);
    assert!(env.pods("shop").get_opt("web-2").await.unwrap().is_some(), "a rejected termination deletes nothing");

    let plain = plugin(&carol, &["isolate", "web-3", "-n", "shop"]).await.ok().created("shop");
    plugin(&dave, &["approve", &plain, "-n", "shop"])
        .await
        .failed(1, &format!("responseaction shop/{plain} does not require approval"));
    // Comments pass the policy's check of their author.
    plugin(&dave, &["comment", "action", &plain, "-n", "shop", "-m", "seen"]).await.ok();
    let comments = env.actions("shop").get(&plain).await.unwrap().spec.comments;
    assert_eq!((comments[0].author.as_str(), comments[0].message.as_str()), ("dave", "seen"));
}
