//! Riposte as a real pod: the image built from the repository's `Dockerfile` (with buildah,
//! cached; see `riposte_e2e::node::riposte_image`) and imported into the node, then a real
//! `helm install` of charts/riposte with its default values. The operator runs as two
//! replicas under its ServiceAccount: both pass their probes, one leads, the audit webhook
//! Service answers, the leader isolates a running pod, and deleting the leader's pod hands
//! leadership to the other replica, which isolates too. No operator runs in this process.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use riposte_crds::{Phase, ResponseAction};
use riposte_e2e::node::{self, Cluster, Protocol, SERVER_TCP_PORTS};
use serde_json::{Value, json};

const NS: &str = "riposte-system";
const SELECTOR: &str = "app.kubernetes.io/name=riposte,app.kubernetes.io/instance=riposte";
const LEASE: &str = "riposte-leader";
/// Pods of a fresh install: scheduled, the image found in containerd, started, probed.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// The Lease lasts 15 s and standbys try for it every 2 s. A leader stopped by SIGTERM
/// releases the Lease, so a standby takes it within one try: well before the Lease would
/// expire, which is what this bound checks.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(8);
const ACTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long kube-router may take to apply a policy.
const ENFORCEMENT: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    node::run_trials(vec![
        node::trial("both_replicas_start_and_pass_their_probes", both_replicas_start_and_pass_their_probes),
        node::trial("exactly_one_replica_leads", exactly_one_replica_leads),
        node::trial("the_audit_webhook_service_answers", the_audit_webhook_service_answers),
        node::trial("the_operator_pod_isolates_a_running_pod", the_operator_pod_isolates_a_running_pod),
        // Last: it deletes the leader's pod.
        node::trial("deleting_the_leaders_pod_hands_leadership_over", deleting_the_leaders_pod_hands_leadership_over),
    ])
}

/// The chart, installed once for all trials (whichever runs first installs it).
static INSTALLED: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
/// Set by the first try: a build or install that failed is not tried again by every trial.
static TRIED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Builds and imports the image, installs the chart with its defaults and waits until both
/// replicas are Ready; the image's reference.
async fn installed(cluster: &Cluster) -> &'static str {
    if let Some(image) = INSTALLED.get() {
        return image;
    }
    let tried = TRIED.swap(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!tried, "the image or the chart's install failed in an earlier trial (the first failed trial says why)");
    INSTALLED
        .get_or_init(|| async {
            let began = Instant::now();
            // Blocks only this trial's thread: trials run their futures with block_on.
            let image = cluster.import_riposte_image().unwrap_or_else(|e| panic!("Riposte's image: {e}"));
            eprintln!("node_chart: image {image} ready in the node after {:.0} s", began.elapsed().as_secs_f64());
            cluster.namespace(NS).await;
            let chart = riposte_e2e::repo_path("charts/riposte");
            let install = Instant::now();
            let out = Command::new(riposte_e2e::helm())
                .args(["install", "riposte", &chart.display().to_string(), "--namespace", NS])
                .env("KUBECONFIG", cluster.kubeconfig())
                .output()
                .expect("helm runs");
            assert!(out.status.success(), "helm install: {}", String::from_utf8_lossy(&out.stderr));
            ready_replicas(cluster, 2, INSTALL_TIMEOUT).await;
            eprintln!("node_chart: helm install → 2 replicas Ready in {:.1} s", install.elapsed().as_secs_f64());
            image
        })
        .await
}

/// The operator's pods (not being deleted).
async fn operator_pods(cluster: &Cluster) -> Vec<Pod> {
    let listed = cluster.pods(NS).list(&ListParams::default().labels(SELECTOR)).await;
    let pods = listed.unwrap_or_else(|e| panic!("listing the operator's pods: {e}")).items;
    pods.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until `count` operator pods are Running and Ready; panics with their reports.
async fn ready_replicas(cluster: &Cluster, count: usize, timeout: Duration) -> Vec<Pod> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = operator_pods(cluster).await;
        if pods.len() == count && pods.iter().all(is_ready) {
            return pods;
        }
        if Instant::now() > deadline {
            let reports: Vec<String> = pods
                .iter()
                .map(|p| {
                    format!(
                        "{}\n--- its log ---\n{}",
                        cluster.pod_report(NS, &p.name_any(), "is not Ready"),
                        log(cluster, &p.name_any())
                    )
                })
                .collect();
            panic!(
                "{count} Ready operator pods wanted after {timeout:?}, {} found:\n{}",
                pods.len(),
                reports.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn log(cluster: &Cluster, pod: &str) -> String {
    let out = cluster.kubectl(&["logs", "-n", NS, pod, "--tail=40"]);
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

async fn lease_holder(cluster: &Cluster) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(cluster.client.clone(), NS);
    leases.get_opt(LEASE).await.ok().flatten()?.spec?.holder_identity.filter(|h| !h.is_empty())
}

/// Waits until the Lease is held by one of the Ready operator pods, other than `not`; its name.
async fn leader(cluster: &Cluster, not: Option<&str>, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let pods: Vec<String> =
            operator_pods(cluster).await.iter().filter(|p| is_ready(p)).map(|p| p.name_any()).collect();
        let holder = lease_holder(cluster).await;
        if let Some(holder) = holder.as_ref().filter(|h| pods.contains(h) && Some(h.as_str()) != not) {
            return holder.clone();
        }
        if Instant::now() > deadline {
            panic!(
                "no Ready operator pod{} holds Lease {LEASE} after {timeout:?}: held by {holder:?}, pods {pods:?}",
                not.map(|n| format!(" but {n}")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn both_replicas_start_and_pass_their_probes(cluster: &Cluster) {
    let image = installed(cluster).await;
    let pods = ready_replicas(cluster, 2, INSTALL_TIMEOUT).await;
    for pod in &pods {
        let name = pod.name_any();
        let spec = pod.spec.as_ref().expect("a pod has a spec");
        assert_eq!(
            spec.service_account_name.as_deref(),
            Some("riposte"),
            "{name} runs under the chart's ServiceAccount"
        );
        let container = &spec.containers[0];
        assert_eq!(container.image.as_deref(), Some(image), "{name} runs the chart's default image, built here");
        assert!(container.liveness_probe.is_some() && container.readiness_probe.is_some(), "{name} is probed");
        let security = spec.security_context.as_ref().expect("the chart sets a pod security context");
        assert_eq!(
            (security.run_as_user, security.run_as_non_root),
            (Some(65532), Some(true)),
            "{name} runs as non-root"
        );
    }
    // Still Ready a while later, and never restarted: the liveness probe passes too (its
    // period is 10 s, three failures restart the container).
    tokio::time::sleep(Duration::from_secs(12)).await;
    for pod in ready_replicas(cluster, 2, INSTALL_TIMEOUT).await {
        let name = pod.name_any();
        let statuses = pod.status.and_then(|s| s.container_statuses).unwrap_or_default();
        let restarts: i32 = statuses.iter().map(|s| s.restart_count).sum();
        assert_eq!(restarts, 0, "{name} restarted:\n{}", log(cluster, &name));
        assert!(statuses.iter().all(|s| s.ready), "{name}'s container is ready");
    }
}

/// Whether the pod's log says it became the leader (the operator logs it once per term).
fn says_it_leads(cluster: &Cluster, pod: &str) -> bool {
    let out = cluster.kubectl(&["logs", "-n", NS, pod]);
    assert!(out.status.success(), "logs of {pod}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).contains("became the leader")
}

async fn exactly_one_replica_leads(cluster: &Cluster) {
    installed(cluster).await;
    let holder = leader(cluster, None, HANDOVER_TIMEOUT).await;
    let pods: Vec<String> = operator_pods(cluster).await.iter().map(|p| p.name_any()).collect();
    let leading: Vec<&String> = pods.iter().filter(|p| says_it_leads(cluster, p)).collect();
    assert_eq!(leading, [&holder], "of {pods:?}, only the Lease holder {holder} says it leads");
    // And it keeps the Lease: renewed, not passed back and forth.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(lease_holder(cluster).await.as_deref(), Some(holder.as_str()), "the leader keeps the Lease");
}

/// `kubectl port-forward` to `target` in the operator's namespace, stopped when dropped.
struct PortForward {
    child: Child,
    port: u16,
    // Kept open: kubectl writes a line per address it listens on, and per connection, and
    // dies of a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl PortForward {
    fn start(cluster: &Cluster, target: &str, port: u16) -> PortForward {
        let mut child = Command::new("kubectl")
            .args(["port-forward", "-n", NS, target, &format!(":{port}")])
            .env("KUBECONFIG", cluster.kubeconfig())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        // "Forwarding from 127.0.0.1:40123 -> 8443"
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("kubectl's output");
        let local = line.split_once("127.0.0.1:").and_then(|(_, rest)| rest.split_whitespace().next());
        let Some(local) = local.and_then(|p| p.parse().ok()) else {
            let _ = child.kill();
            let out = child.wait_with_output().expect("kubectl ends");
            panic!("kubectl port-forward {target}: {line:?} {}", String::from_utf8_lossy(&out.stderr));
        };
        PortForward { child, port: local, _stdout: stdout }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn the_audit_webhook_service_answers(cluster: &Cluster) {
    installed(cluster).await;
    // The Service selects both replicas, each serving the webhook.
    let pods: Vec<Pod> = ready_replicas(cluster, 2, INSTALL_TIMEOUT).await;
    let mut pod_ips: Vec<String> = pods.iter().filter_map(|p| p.status.as_ref()?.pod_ip.clone()).collect();
    pod_ips.sort();
    let slices = riposte_e2e::eventually("riposte-audit's endpoints to list both replicas, ready", || async {
        let out = cluster.kubectl(&[
            "get",
            "endpointslices",
            "-n",
            NS,
            "-l",
            "kubernetes.io/service-name=riposte-audit",
            "-o",
            "json",
        ]);
        let list: Value = serde_json::from_slice(&out.stdout).ok()?;
        let mut ready: Vec<String> = list["items"]
            .as_array()?
            .iter()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["conditions"]["ready"] == json!(true))
            .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        ready.sort();
        (ready == pod_ips).then_some(list)
    })
    .await;
    let ports = &slices["items"][0]["ports"];
    assert_eq!(ports[0]["port"], json!(8443), "the Service targets the webhook's port: {ports}");

    // Through the Service, over TLS verified against the chart's CA for the Service's name.
    let secret = |name: &str, key: &str| {
        let jsonpath = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
        let encoded = cluster.kubectl_ok(&["get", "secret", "-n", NS, name, "-o", &jsonpath]);
        node::host::run_with_input("base64", &["-d"], &encoded).unwrap_or_else(|e| panic!("{name}'s {key}: {e}"))
    };
    let ca = std::env::temp_dir().join(format!("riposte-node-chart-ca-{}.crt", std::process::id()));
    std::fs::write(&ca, secret("riposte-audit-tls", "ca.crt")).expect("writing the CA");
    let token = secret("riposte-audit-token", "token");
    let forward = PortForward::start(cluster, "svc/riposte-audit", 8443);
    let host = format!("riposte-audit.{NS}.svc");
    let post = |authorization: Option<&str>| {
        let url = format!("https://{host}:{}/audit", forward.port);
        let resolve = format!("{host}:{}:127.0.0.1", forward.port);
        let body = r#"{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[]}"#;
        let mut args =
            vec!["-sS", "--max-time", "10", "--cacert", ca.to_str().expect("a UTF-8 path"), "--resolve", &resolve];
        let header;
        if let Some(token) = authorization {
            header = format!("Authorization: Bearer {token}");
            args.extend(["-H", &header]);
        }
        args.extend(["-H", "Content-Type: application/json", "--data", body, "-w", "\n%{http_code}", &url]);
        let out = Command::new("curl").args(&args).output().expect("curl is installed");
        assert!(out.status.success(), "curl POST {url}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.to_owned(), body.to_owned())
    };
    let (code, body) = post(None);
    assert_eq!(code, "401", "POST /audit without credentials: {body}");
    let (code, body) = post(Some("not-the-token"));
    assert_eq!(code, "401", "POST /audit with a wrong token: {body}");
    let (code, body) = post(Some(token.trim()));
    assert_eq!((code.as_str(), body.trim()), ("200", r#"{"accepted":0}"#), "POST /audit with the chart's token");
    drop(forward);
    let _ = std::fs::remove_file(ca);
}

/// Creates an Isolate action for `pod` as the admin (the provenance policy wants the
/// requester's own name) and waits until it Succeeded; the pod name of the replica that
/// reported it.
async fn isolate(cluster: &Cluster, ns: &str, action: &str, pod: &str) -> String {
    cluster.apply(&json!({
        "apiVersion": "riposte.dev/v1alpha1",
        "kind": "ResponseAction",
        "metadata": { "name": action, "namespace": ns },
        "spec": { "action": "Isolate", "target": { "pod": pod }, "requestedBy": riposte_e2e::ADMIN },
    }));
    let actions: Api<ResponseAction> = Api::namespaced(cluster.client.clone(), ns);
    let began = Instant::now();
    let mut last = None;
    while began.elapsed() < ACTION_TIMEOUT {
        last = actions.get_opt(action).await.ok().flatten().and_then(|a| a.status);
        if last.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        last.as_ref().and_then(|s| s.phase),
        Some(Phase::Succeeded),
        "{ns}/{action} after {ACTION_TIMEOUT:?}: {last:#?}"
    );
    eprintln!("node_chart: {ns}/{action} Succeeded {:.1} s after kubectl apply", began.elapsed().as_secs_f64());
    // The Events of the action name the replica that carried it out.
    let reporters = riposte_e2e::eventually(&format!("riposte's Events about {ns}/{action}"), || async {
        let out = cluster.kubectl(&["get", "events.events.k8s.io", "-n", ns, "-o", "json"]);
        let events: Value = serde_json::from_slice(&out.stdout).ok()?;
        let reporters: Vec<String> = events["items"]
            .as_array()?
            .iter()
            .filter(|e| e["regarding"]["kind"] == "ResponseAction" && e["regarding"]["name"] == action)
            .filter(|e| e["reportingController"] == "riposte")
            .filter_map(|e| e["reportingInstance"].as_str().map(str::to_owned))
            .collect();
        (!reporters.is_empty()).then_some(reporters)
    })
    .await;
    let first = reporters[0].clone();
    assert!(reporters.iter().all(|r| *r == first), "one replica reported {ns}/{action}: {reporters:?}");
    first
}

/// Waits until the server pod of `ns` refuses the client's TCP connections.
async fn cut_off(cluster: &Cluster, ns: &str) {
    let target = format!("{}:{}", cluster.pod_ip(ns, "server").await, SERVER_TCP_PORTS[0]);
    cluster
        .probe_until(ns, "client", &target, Protocol::Tcp, ENFORCEMENT, |r| !r.connected())
        .await
        .unwrap_or_else(|last| panic!("{ns}/server still {last:?} {ENFORCEMENT:?} after its isolation Succeeded"));
}

/// A namespace with a server pod that the client pod reaches.
async fn server_and_client(cluster: &Cluster, ns: &str) {
    cluster.namespace(ns).await;
    cluster.server_pod(ns, "server", &[("app", "server")]).await;
    cluster.client_pod(ns, "client", &[]).await;
    let target = format!("{}:{}", cluster.pod_ip(ns, "server").await, SERVER_TCP_PORTS[0]);
    assert!(cluster.probe(ns, "client", &target, Protocol::Tcp).connected(), "{ns}: TCP before any isolation");
}

async fn the_operator_pod_isolates_a_running_pod(cluster: &Cluster) {
    installed(cluster).await;
    let ns = "chart-isolate";
    server_and_client(cluster, ns).await;
    let holder = leader(cluster, None, HANDOVER_TIMEOUT).await;
    let reporter = isolate(cluster, ns, "isolate-server", "server").await;
    assert_eq!(reporter, holder, "the leader carried the isolation out");
    cut_off(cluster, ns).await;
}

async fn deleting_the_leaders_pod_hands_leadership_over(cluster: &Cluster) {
    installed(cluster).await;
    let old = leader(cluster, None, HANDOVER_TIMEOUT).await;
    let standby: Vec<String> =
        operator_pods(cluster).await.iter().map(|p| p.name_any()).filter(|p| *p != old).collect();
    let deleted = Instant::now();
    cluster.kubectl_ok(&["delete", "pod", "-n", NS, &old, "--wait=false"]);
    let new = leader(cluster, Some(&old), HANDOVER_TIMEOUT).await;
    eprintln!(
        "node_chart: leadership passed from {old} to {new} {:.1} s after its pod was deleted",
        deleted.elapsed().as_secs_f64()
    );
    // The standby usually takes the released Lease first; the ReplicaSet's replacement may
    // win the race, and either is a handover.
    let by = if standby.contains(&new) { "the standby" } else { "the replacement" };
    eprintln!("node_chart: the new leader is {by}");
    assert!(says_it_leads(cluster, &new), "{new} says it leads");

    let ns = "chart-handover";
    server_and_client(cluster, ns).await;
    let reporter = isolate(cluster, ns, "isolate-after-handover", "server").await;
    assert_eq!(reporter, new, "the new leader carried the isolation out");
    cut_off(cluster, ns).await;
    // The Deployment is whole again: the replacement pod stands by.
    let pods = ready_replicas(cluster, 2, INSTALL_TIMEOUT).await;
    assert!(pods.iter().all(|p| p.name_any() != old), "{old} is gone");
    assert_eq!(lease_holder(cluster).await.as_deref(), Some(new.as_str()), "the new leader keeps the Lease");
}
