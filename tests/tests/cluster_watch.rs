//! The second source, with the truth: a real kube-apiserver auditing into Riposte's webhook,
//! Riposte's watch of the pods and workloads beside it, and the Alert controller folding
//! what both saw.
//!
//! - The blinding attempt of the issue: a second user's server-side applies with a YAML
//!   body every 200 ms while a privileged pod is created. The pod is raised from the watch
//!   within seconds whatever the audit stream does.
//! - Real audit loss: the webhook refuses the batches that carry the pod (over its body
//!   limit, 413), so the apiserver drops them. The watch raises the pod, and the creation
//!   that no audit event reported is raised as Riposte.AuditLoss.
//! - Every workload kind, and the pods that kube-controller-manager makes from them: exactly
//!   one Alert each once both sources are folded.
//! - A Service made reachable from outside with no audit event at all: the exposure is
//!   raised from the watch of the Services, and the configuration scan does not raise it again.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use riposte::detection::AUDIT_SOURCE;
use riposte::detection::cluster::{AUDIT_LOSS, CLUSTER_SOURCE};
use riposte::local::{Options, StaticUser};
use riposte_crds::Alert;
use riposte_e2e::{Env, default_guardrails, detection_settings, eventually};

const PRIVILEGED: &str = "K8S_PrivilegedContainer";

async fn alerts(client: &Client) -> Vec<Alert> {
    Api::<Alert>::all(client.clone()).list(&ListParams::default()).await.expect("alerts list").items
}

fn ok(out: std::process::Output) -> String {
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Sends a server-side apply with a YAML body every 200 ms until aborted, to a ConfigMap
/// whose writes the chart's policy records with their bodies.
fn apply_yaml_again_and_again(client: Client) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        for i in 0u64.. {
            let body = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: noise\n  namespace: kube-system\ndata:\n  round: \"{i}\"\n"
            );
            let request =
                http::Request::patch("/api/v1/namespaces/kube-system/configmaps/noise?fieldManager=noise&force=true")
                    .header("Content-Type", "application/apply-patch+yaml")
                    .body(body.into_bytes())
                    .expect("a request");
            client.request_text(request).await.expect("the apiserver takes the apply");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Creates the privileged pod `evil` in `shop` and waits for the watch's Alert about it.
async fn privileged_pod_raised_by_the_watch(env: &Env) -> (Alert, Duration) {
    let created = Instant::now();
    ok(env.kubectl(&["run", "evil", "-n", "shop", "--image=busybox", "--privileged"]));
    let alert = eventually("the watch's Alert about the privileged pod", || async {
        alerts(&env.client).await.into_iter().find(|a| {
            a.spec.alert_type.0 == PRIVILEGED
                && a.spec.entities.pod.as_deref() == Some("evil")
                && (a.spec.source.as_deref() == Some(CLUSTER_SOURCE)
                    || a.status
                        .as_ref()
                        .is_some_and(|s| s.history.iter().any(|h| h.by.as_deref() == Some(CLUSTER_SOURCE))))
        })
    })
    .await;
    (alert, created.elapsed())
}

#[tokio::test]
async fn a_privileged_pod_created_during_the_blinding_attempt_is_raised_within_seconds() {
    let noisy = StaticUser { name: "noisy".into(), token: "noisy-token".into(), groups: vec!["system:masters".into()] };
    let options = Options { users: vec![noisy.clone()], ..Options::default() };
    let mut env = Env::with_audit_webhook_and(options, 32 << 20).await;
    env.run_operator(env.client.clone(), default_guardrails());
    let settings = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    env.start_detection_with_cluster_watch(env.client.clone(), settings, Duration::from_secs(30));
    env.namespace("shop").await;
    let noise = apply_yaml_again_and_again(env.plane.client_for(&noisy.name, &noisy.token).await.expect("a client"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, raised_in) = privileged_pod_raised_by_the_watch(&env).await;
    noise.abort();
    assert!(raised_in < Duration::from_secs(5), "raised {raised_in:?} after the pod's creation");
    println!("during the blinding attempt the watch raised the pod in {raised_in:?}");
}

#[tokio::test]
async fn a_pod_whose_audit_events_were_lost_is_raised_by_the_watch_and_the_loss_is_reported() {
    // A pod's create, recorded with its bodies, is larger than this: its batches are refused.
    let mut env = Env::with_audit_webhook_and(Options::default(), 2048).await;
    let grace = Duration::from_secs(5);
    let settings = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    env.start_detection_with_cluster_watch(env.client.clone(), settings, grace);
    env.namespace("shop").await;
    // Audit events do arrive (small batches pass): the comparison is on.
    let metrics = env.audit.as_ref().expect("audited").metrics.clone();
    eventually("some audit events", || async { (metrics.events_received.get() > 0).then_some(()) }).await;

    let (alert, raised_in) = privileged_pod_raised_by_the_watch(&env).await;
    assert_eq!(alert.spec.source.as_deref(), Some(CLUSTER_SOURCE));
    assert!(raised_in < Duration::from_secs(5), "raised {raised_in:?} after the pod's creation");
    let loss = eventually("the audit-loss Alert", || async {
        alerts(&env.client).await.into_iter().find(|a| a.spec.alert_type.0 == AUDIT_LOSS)
    })
    .await;
    let unreported: Vec<&str> =
        loss.spec.evidence.iter().filter(|e| e.name == "unreported").map(|e| e.value.as_str()).collect();
    assert!(unreported.contains(&"pods shop/evil"), "{unreported:?}");
    assert_eq!(loss.metadata.namespace.as_deref(), Some("riposte-system"));
    assert!(
        !alerts(&env.client)
            .await
            .iter()
            .any(|a| a.spec.source.as_deref() == Some(AUDIT_SOURCE) && a.spec.alert_type.0 == PRIVILEGED),
        "the pod's audit event was not lost after all"
    );
    println!("audit lost: the watch raised the pod in {raised_in:?}, the loss reported after the {grace:?} grace");
}

#[tokio::test]
async fn an_exposure_no_audit_event_reported_is_raised_from_the_watch_of_the_services() {
    // Every batch is larger than this: the apiserver's audit events never arrive.
    let mut env = Env::with_audit_webhook_and(Options::default(), 64).await;
    let mut settings = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    // A scan at start (before the Service exists) and the next one after the watch's.
    let scan_interval = Duration::from_secs(12);
    settings.scan_interval = scan_interval;
    env.start_detection_with_cluster_watch(env.client.clone(), settings, Duration::ZERO);
    let started = Instant::now();
    ok(env.kubectl(&["create", "namespace", "kubernetes-dashboard"]));
    let dashboard = ["-n", "kubernetes-dashboard"];
    ok(env.kubectl(
        &[
            &dashboard[..],
            &["create", "deployment", "kubernetes-dashboard", "--image=kubernetesui/dashboard:v2.7.0", "--port=8443"],
        ]
        .concat(),
    ));
    // Reachable only inside the cluster: nothing to raise.
    ok(env.kubectl(
        &[&dashboard[..], &["expose", "deployment", "kubernetes-dashboard", "--port=443", "--target-port=8443"]]
            .concat(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(alerts(&env.client).await.iter().all(|a| a.spec.alert_type.0 != "K8S_ExposedDashboard"));

    let exposed = Instant::now();
    ok(env.kubectl(
        &[&dashboard[..], &["patch", "service", "kubernetes-dashboard", "-p", r#"{"spec":{"type":"LoadBalancer"}}"#]]
            .concat(),
    ));
    let alert = eventually("the exposed dashboard", || async {
        alerts(&env.client).await.into_iter().find(|a| a.spec.alert_type.0 == "K8S_ExposedDashboard")
    })
    .await;
    let raised_in = exposed.elapsed();
    assert!(started.elapsed() < scan_interval, "the Alert came after the second scan began: it may be the scan's");
    assert_eq!(alert.spec.source.as_deref(), Some(CLUSTER_SOURCE));
    assert_eq!(alert.spec.entities.namespace.as_deref(), Some("kubernetes-dashboard"));
    let metrics = env.audit.as_ref().expect("audited").metrics.clone();
    assert_eq!(metrics.events_received.get(), 0, "no audit event arrived: the watch alone saw it");

    // The scan that follows sees it open: nothing new.
    tokio::time::sleep((started + scan_interval + Duration::from_secs(3)).saturating_duration_since(Instant::now()))
        .await;
    let exposures =
        alerts(&env.client).await.into_iter().filter(|a| a.spec.alert_type.0.starts_with("K8S_Exposed")).count();
    assert_eq!(exposures, 1);
    println!("exposure raised {raised_in:?} after the Service's change, with no audit event");
}

/// kube-controller-manager with the workload controllers only, on the API-only plane: it
/// makes the ReplicaSets, pods and Jobs that the workloads ask for (they stay Pending).
struct ControllerManager(Child);

impl ControllerManager {
    async fn start(env: &Env) -> ControllerManager {
        let bin = riposte::local::ensure_node_binaries().await.expect("kube-controller-manager builds");
        // Its own user, as the audit log of a real cluster names it.
        let kubeconfig = env.plane.dir().join("controller-manager.kubeconfig");
        std::fs::write(
            &kubeconfig,
            env.plane.kubeconfig_for(CONTROLLER_MANAGER.name.as_str(), &CONTROLLER_MANAGER.token),
        )
        .expect("the controller-manager's kubeconfig");
        let child = Command::new(bin.join("kube-controller-manager"))
            .args([
                format!("--kubeconfig={}", kubeconfig.display()),
                "--controllers=deployment,replicaset,statefulset,job,cronjob,replicationcontroller,daemonset".into(),
                "--use-service-account-credentials=false".into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kube-controller-manager starts");
        ControllerManager(child)
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PRIVILEGED_CONTAINER: &str =
    r#"{"name": "app", "image": "busybox", "command": ["sleep", "3600"], "securityContext": {"privileged": true}}"#;

fn workloads() -> String {
    let template = format!(
        r#"{{"metadata": {{"labels": {{"app": "APP"}}}}, "spec": {{"containers": [{PRIVILEGED_CONTAINER}]}}}}"#
    );
    let job_template = format!(
        r#"{{"metadata": {{"labels": {{"app": "APP"}}}}, "spec": {{"restartPolicy": "Never", "containers": [{PRIVILEGED_CONTAINER}]}}}}"#
    );
    let selector = r#"{"matchLabels": {"app": "APP"}}"#;
    let objects = [
        (
            "apps/v1",
            "Deployment",
            "deploy",
            format!(r#"{{"replicas": 2, "selector": {selector}, "template": {template}}}"#),
        ),
        ("apps/v1", "DaemonSet", "daemon", format!(r#"{{"selector": {selector}, "template": {template}}}"#)),
        (
            "apps/v1",
            "StatefulSet",
            "stateful",
            format!(r#"{{"replicas": 2, "serviceName": "stateful", "selector": {selector}, "template": {template}}}"#),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            "replicas",
            format!(r#"{{"replicas": 2, "selector": {selector}, "template": {template}}}"#),
        ),
        (
            "v1",
            "ReplicationController",
            "controller",
            format!(r#"{{"replicas": 2, "selector": {{"app": "APP"}}, "template": {template}}}"#),
        ),
        ("batch/v1", "Job", "job", format!(r#"{{"template": {job_template}}}"#)),
        (
            "batch/v1",
            "CronJob",
            "cron",
            format!(r#"{{"schedule": "0 0 * * *", "jobTemplate": {{"spec": {{"template": {job_template}}}}}}}"#),
        ),
        ("v1", "Pod", "bare", format!(r#"{{"containers": [{PRIVILEGED_CONTAINER}]}}"#)),
    ];
    objects
        .iter()
        .map(|(api_version, kind, name, spec)| {
            format!(
                r#"{{"apiVersion": "{api_version}", "kind": "{kind}", "metadata": {{"name": "{name}", "namespace": "works"}}, "spec": {}}}"#,
                spec.replace("APP", name)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

static CONTROLLER_MANAGER: std::sync::LazyLock<StaticUser> = std::sync::LazyLock::new(|| StaticUser {
    name: "system:kube-controller-manager".into(),
    token: "controller-manager-token".into(),
    groups: vec!["system:masters".into()],
});

#[tokio::test]
async fn every_workload_kind_and_the_pods_its_controller_makes_raise_one_alert() {
    let options = Options { users: vec![CONTROLLER_MANAGER.clone()], ..Options::default() };
    let mut env = Env::with_audit_webhook_and(options, 32 << 20).await;
    env.run_operator(env.client.clone(), default_guardrails());
    env.start_detection_with_cluster_watch(
        env.client.clone(),
        detection_settings(riposte_detect::Config::default(), Duration::ZERO),
        Duration::from_secs(30),
    );
    let _controllers = ControllerManager::start(&env).await;
    env.namespace("works").await;
    ok(env.kubectl_stdin(&["apply", "-f", "-"], &workloads()));

    // The controllers made their pods (a Deployment's through its ReplicaSet).
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(env.client.clone(), "works");
    eventually("the controllers' pods", || async {
        let owned = pods.list(&ListParams::default()).await.ok()?.items;
        let by_prefix = |prefix: &str| owned.iter().filter(|p| p.name_any().starts_with(prefix)).count();
        (by_prefix("deploy-") == 2
            && by_prefix("stateful-") >= 1
            && by_prefix("replicas-") == 2
            && by_prefix("controller-") == 2
            && by_prefix("job-") == 1)
            .then_some(())
    })
    .await;

    // Both sources raised each workload, and the controller folded one into the other.
    let expected: BTreeMap<String, usize> = [
        "Deployment/deploy",
        "DaemonSet/daemon",
        "StatefulSet/stateful",
        "ReplicaSet/replicas",
        "ReplicationController/controller",
        "Job/job",
        "CronJob/cron",
        "Pod/bare",
    ]
    .iter()
    .map(|place| ((*place).to_owned(), 1))
    .collect();
    let placed = |alert: &Alert| {
        let e = &alert.spec.entities;
        match (&e.workload_kind, &e.workload_name, &e.pod) {
            (Some(kind), Some(name), _) => format!("{kind}/{name}"),
            (_, _, Some(pod)) => format!("Pod/{pod}"),
            _ => "?".into(),
        }
    };
    let settled = eventually("one folded Alert per workload, seen by both sources", || async {
        let open: Vec<Alert> = alerts(&env.client)
            .await
            .into_iter()
            .filter(|a| a.spec.alert_type.0 == PRIVILEGED && a.metadata.deletion_timestamp.is_none())
            .collect();
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for alert in &open {
            *count.entry(placed(alert)).or_default() += 1;
        }
        let single: Vec<String> = open
            .iter()
            .filter(|a| a.status.as_ref().is_none_or(|s| s.occurrences < 2))
            .map(|a| format!("{} ({:?})", placed(a), a.spec.source))
            .collect();
        println!("open: {count:?}; seen once: {single:?}");
        (count == expected && single.is_empty()).then_some(open)
    })
    .await;
    // Stays so: nothing the controllers do later adds an Alert.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let again = alerts(&env.client).await.into_iter().filter(|a| a.spec.alert_type.0 == PRIVILEGED).count();
    assert_eq!(again, settled.len(), "one Alert per workload, however many pods");
}
