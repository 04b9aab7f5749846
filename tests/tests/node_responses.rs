//! Every response on running pods of a real node: isolation and release proven with real
//! TCP and UDP connections between pods (kube-router enforcing), terminate met by a real
//! kubelet, evidence read from real container logs, and enforcer detection against a real
//! enforcer that is then stopped. The operator runs in this process against the node's
//! control plane, as in the API-only suites.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use riposte_crds::{Phase, ResponseAction, ResponseActionStatus};
use riposte_e2e::InProcessOperator;
use riposte_e2e::node::{self, Cluster, Protocol, Reach, SERVER_TCP_PORTS, SERVER_UDP_PORT};
use serde_json::{Value, json};

/// How long kube-router may take to apply or lift a policy: seconds, not its resync period.
const ENFORCEMENT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

fn main() -> std::process::ExitCode {
    node::run_trials(vec![
        node::trial(
            "isolation_cuts_exactly_the_target_and_release_restores_every_connection",
            isolation_cuts_exactly_the_target_and_release_restores_every_connection,
        ),
        node::trial(
            "each_allow_list_lets_through_exactly_what_it_names",
            each_allow_list_lets_through_exactly_what_it_names,
        ),
        node::trial(
            "a_tampered_isolation_refuses_packets_again_at_once",
            a_tampered_isolation_refuses_packets_again_at_once,
        ),
        node::trial(
            "terminate_is_carried_out_by_the_kubelet_within_the_grace_period",
            terminate_is_carried_out_by_the_kubelet_within_the_grace_period,
        ),
        node::trial(
            "a_replicaset_pod_comes_back_and_a_recreated_pod_is_never_deleted",
            a_replicaset_pod_comes_back_and_a_recreated_pod_is_never_deleted,
        ),
        node::trial(
            "evidence_keeps_the_real_log_bounded_before_terminate",
            evidence_keeps_the_real_log_bounded_before_terminate,
        ),
        // Last: it stops the enforcer (and starts it again).
        node::trial("kube_router_is_reported_running_then_not_ready", kube_router_is_reported_running_then_not_ready),
    ])
}

async fn operator(cluster: &Cluster) -> InProcessOperator {
    InProcessOperator::start(&cluster.client).await
}

fn actions(cluster: &Cluster, ns: &str) -> Api<ResponseAction> {
    Api::namespaced(cluster.client.clone(), ns)
}

async fn act(cluster: &Cluster, ns: &str, name: &str, mut spec: Value) {
    spec["requestedBy"] = json!(riposte_e2e::ADMIN);
    let action = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name }, "spec": spec });
    actions(cluster, ns)
        .patch(name, &PatchParams::apply("riposte-tests"), &Patch::Apply(&action))
        .await
        .unwrap_or_else(|e| panic!("creating ResponseAction {ns}/{name}: {e}"));
}

/// Waits until the action reaches `phase`; its status, and when it was first seen there.
async fn reached(cluster: &Cluster, ns: &str, name: &str, phase: Phase) -> (ResponseActionStatus, Instant) {
    let api = actions(cluster, ns);
    let deadline = Instant::now() + WAIT;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(status) = api.get_opt(name).await.ok().flatten().and_then(|a| a.status) {
            if status.phase == Some(phase) {
                return (status, Instant::now());
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "ResponseAction {ns}/{name} did not reach {phase:?}; last status:\n{}",
        serde_yaml::to_string(&last).unwrap()
    );
}

async fn policy(cluster: &Cluster, ns: &str, name: &str, spec: Value) {
    let object = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": name }, "spec": spec });
    Api::<NetworkPolicy>::namespaced(cluster.client.clone(), ns)
        .patch(name, &PatchParams::apply("riposte-tests").force(), &Patch::Apply(&object))
        .await
        .unwrap_or_else(|e| panic!("applying NetworkPolicy {ns}/{name}: {e}"));
}

/// One connection to probe: from pod `from` (in `ns`) to `target`, and whether it must get through.
#[derive(Clone)]
struct Path {
    ns: &'static str,
    from: &'static str,
    target: String,
    protocol: Protocol,
}

impl Path {
    fn describe(&self) -> String {
        format!("{}/{} -> {} {:?}", self.ns, self.from, self.target, self.protocol)
    }
}

fn tcp(ns: &'static str, from: &'static str, ip: std::net::IpAddr, port: u16) -> Path {
    Path { ns, from, target: format!("{ip}:{port}"), protocol: Protocol::Tcp }
}

fn udp(ns: &'static str, from: &'static str, ip: std::net::IpAddr, port: u16) -> Path {
    Path { ns, from, target: format!("{ip}:{port}"), protocol: Protocol::Udp }
}

/// Waits until every path is as wanted (kube-router applies a change within a second or
/// two), and fails naming the paths that are not.
async fn expect_paths(cluster: &Cluster, when: &str, open: &[Path], closed: &[Path]) {
    for path in closed {
        let outcome =
            cluster.probe_until(path.ns, path.from, &path.target, path.protocol, ENFORCEMENT, |r| !r.connected()).await;
        assert!(outcome.is_ok(), "{when}: {} must be cut, got {:?}", path.describe(), outcome.unwrap_err());
    }
    for path in open {
        let outcome =
            cluster.probe_until(path.ns, path.from, &path.target, path.protocol, ENFORCEMENT, Reach::connected).await;
        assert!(outcome.is_ok(), "{when}: {} must get through, got {:?}", path.describe(), outcome.unwrap_err());
    }
}

/// Every path must get through, now, in one probe each: used for what an isolation must
/// never touch, once the enforcer has applied it.
fn expect_untouched(cluster: &Cluster, when: &str, paths: &[Path]) {
    for path in paths {
        let reach = cluster.probe(path.ns, path.from, &path.target, path.protocol);
        assert!(reach.connected(), "{when}: {} must keep working, got {reach:?}", path.describe());
    }
}

async fn isolation_cuts_exactly_the_target_and_release_restores_every_connection(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let (ns, visitors) = ("iso-shop", "iso-visitors");
    cluster.namespace(ns).await;
    cluster.namespace(visitors).await;
    // Allow policies of several kinds, all of which select the target: a namespace-wide
    // allow-all ingress, an ingress from another namespace to the app, a namespace-wide
    // allow-all egress; and in the other namespace, an allow-all egress of its own.
    policy(cluster, ns, "allow-all-ingress", json!({ "podSelector": {}, "ingress": [{}] })).await;
    policy(
        cluster,
        ns,
        "allow-web-from-visitors",
        json!({ "podSelector": { "matchLabels": { "app": "web" } },
                "ingress": [{ "from": [{ "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": visitors } } }],
                              "ports": [{ "port": SERVER_TCP_PORTS[0], "protocol": "TCP" }] }] }),
    )
    .await;
    policy(cluster, ns, "allow-all-egress", json!({ "podSelector": {}, "policyTypes": ["Egress"], "egress": [{}] }))
        .await;
    policy(
        cluster,
        visitors,
        "visitors-go-anywhere",
        json!({ "podSelector": {}, "policyTypes": ["Egress"], "egress": [{}] }),
    )
    .await;
    cluster.server_pod(ns, "web-1", &[("app", "web")]).await;
    cluster.server_pod(ns, "web-2", &[("app", "web")]).await;
    cluster.client_pod(ns, "probe", &[]).await;
    cluster.client_pod(visitors, "visitor", &[]).await;
    let (web1, web2) = (cluster.pod_ip(ns, "web-1").await, cluster.pod_ip(ns, "web-2").await);

    let [first, second] = SERVER_TCP_PORTS;
    let to_target = || {
        vec![
            tcp(ns, "probe", web1, first),
            tcp(ns, "probe", web1, second),
            udp(ns, "probe", web1, SERVER_UDP_PORT),
            tcp(visitors, "visitor", web1, first),
            tcp(ns, "web-1", web2, first),
            udp(ns, "web-1", web2, SERVER_UDP_PORT),
        ]
    };
    let siblings = || {
        vec![
            tcp(ns, "probe", web2, first),
            tcp(ns, "probe", web2, second),
            udp(ns, "probe", web2, SERVER_UDP_PORT),
            tcp(visitors, "visitor", web2, first),
        ]
    };
    expect_paths(cluster, "before isolation", &[to_target(), siblings()].concat(), &[]).await;

    act(cluster, ns, "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    let (status, succeeded) = reached(cluster, ns, "iso", Phase::Succeeded).await;
    cluster
        .probe_until(ns, "probe", &format!("{web1}:{first}"), Protocol::Tcp, ENFORCEMENT, |r| !r.connected())
        .await
        .expect("the target's ingress is cut");
    eprintln!("first refused packet within {} ms of Succeeded", succeeded.elapsed().as_millis());
    let mut excluded = status.excluded_policies.clone();
    excluded.sort();
    assert_eq!(excluded, ["allow-all-egress", "allow-all-ingress", "allow-web-from-visitors"]);
    expect_paths(cluster, "isolated", &[], &to_target()).await;
    expect_untouched(cluster, "isolated", &siblings());

    act(cluster, ns, "rel", json!({ "action": "Release", "target": { "pod": "web-1" } })).await;
    reached(cluster, ns, "rel", Phase::Succeeded).await;
    expect_paths(cluster, "released", &[to_target(), siblings()].concat(), &[]).await;
}

async fn each_allow_list_lets_through_exactly_what_it_names(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let (ns, forensics) = ("lists-shop", "lists-forensics");
    cluster.namespace(ns).await;
    cluster.namespace(forensics).await;
    // The cluster's DNS, as the DNS allow-list finds it: kube-system pods labelled k8s-app=kube-dns.
    let busybox = cluster.images.busybox.clone();
    let dns = cluster.pod_manifest(
        "fake-dns",
        &[("k8s-app", "kube-dns")],
        &busybox,
        &["/bin/netcheck", "serve", "udp:53", "tcp:53"],
    );
    cluster.run_pod_manifest("kube-system", dns).await;
    cluster.server_pod(ns, "web-1", &[("app", "web")]).await;
    cluster.server_pod(ns, "sink", &[("app", "sink")]).await;
    cluster.server_pod(ns, "elsewhere", &[("app", "elsewhere")]).await;
    cluster.client_pod(ns, "probe", &[]).await;
    cluster.client_pod(ns, "trusted", &[]).await;
    cluster.client_pod(forensics, "analyst", &[]).await;
    let ip = |name: &'static str| async move { cluster.pod_ip(ns, name).await };
    let (web1, sink, elsewhere, trusted) =
        (ip("web-1").await, ip("sink").await, ip("elsewhere").await, ip("trusted").await);
    let dns_ip = cluster.pod_ip("kube-system", "fake-dns").await;
    let [first, second] = SERVER_TCP_PORTS;

    act(
        cluster,
        ns,
        "iso",
        json!({ "action": "Isolate", "target": { "pod": "web-1" }, "isolation": {
            "allowDns": true,
            "ingress": { "namespaces": [forensics], "cidrs": [format!("{trusted}/32")], "ports": [{ "port": first, "protocol": "TCP" }] },
            "egress": { "cidrs": [format!("{sink}/32")], "ports": [{ "port": second, "protocol": "TCP" }] },
        } }),
    )
    .await;
    reached(cluster, ns, "iso", Phase::Succeeded).await;
    let open = [
        tcp(forensics, "analyst", web1, first),
        tcp(ns, "trusted", web1, first),
        tcp(ns, "web-1", sink, second),
        udp(ns, "web-1", dns_ip, 53),
        tcp(ns, "web-1", dns_ip, 53),
    ];
    let closed = [
        // Ingress: the listed namespace and CIDR on the listed port only; nobody else.
        tcp(forensics, "analyst", web1, second),
        udp(forensics, "analyst", web1, SERVER_UDP_PORT),
        tcp(ns, "trusted", web1, second),
        tcp(ns, "probe", web1, first),
        // Egress: the listed CIDR on the listed port only.
        tcp(ns, "web-1", sink, first),
        udp(ns, "web-1", sink, SERVER_UDP_PORT),
        tcp(ns, "web-1", elsewhere, second),
    ];
    expect_paths(cluster, "isolated with allow-lists", &open, &closed).await;
    // The allow-lists open the target's side only: the others keep talking as before.
    expect_untouched(
        cluster,
        "isolated with allow-lists",
        &[tcp(ns, "probe", sink, first), tcp(ns, "probe", elsewhere, second)],
    );
    cluster.pods("kube-system").delete("fake-dns", &Default::default()).await.expect("the fake DNS pod goes");
}

async fn a_tampered_isolation_refuses_packets_again_at_once(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let ns = "tamper-shop";
    cluster.namespace(ns).await;
    policy(cluster, ns, "allow-all-ingress", json!({ "podSelector": {}, "ingress": [{}] })).await;
    cluster.server_pod(ns, "web-1", &[("app", "web")]).await;
    cluster.client_pod(ns, "probe", &[]).await;
    let target = format!("{}:{}", cluster.pod_ip(ns, "web-1").await, SERVER_TCP_PORTS[0]);
    act(cluster, ns, "iso", json!({ "action": "Isolate", "target": { "pod": "web-1" } })).await;
    reached(cluster, ns, "iso", Phase::Succeeded).await;
    cluster.probe_until(ns, "probe", &target, Protocol::Tcp, ENFORCEMENT, |r| !r.connected()).await.expect("isolated");

    // Without the chart's guard, an editor can remove the label: Riposte puts it back, and
    // the packets are refused again long before the five-minute resync.
    let unlabel = json!({ "metadata": { "labels": { riposte::isolation::ISOLATED_LABEL: null } } });
    cluster.pods(ns).patch("web-1", &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
    let removed = Instant::now();
    // The label comes back, whatever the enforcer saw meanwhile.
    let pods = cluster.pods(ns);
    let deadline = Instant::now() + ENFORCEMENT;
    while pods.get("web-1").await.unwrap().labels().get(riposte::isolation::ISOLATED_LABEL).is_none() {
        assert!(Instant::now() < deadline, "the label was not put back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster
        .probe_until(ns, "probe", &target, Protocol::Tcp, ENFORCEMENT, |r| !r.connected())
        .await
        .expect("isolated again");
    eprintln!("label removed -> refused again within {:.0} ms", removed.elapsed().as_millis());

    Api::<NetworkPolicy>::namespaced(cluster.client.clone(), ns)
        .delete("riposte-isolate-iso", &Default::default())
        .await
        .unwrap();
    let reach = cluster.probe_until(ns, "probe", &target, Protocol::Tcp, ENFORCEMENT, |r| !r.connected()).await;
    assert!(reach.is_ok(), "the deleted policy is recreated and enforced: {reach:?}");
    let status = actions(cluster, ns).get("iso").await.unwrap().status.unwrap();
    assert!(status.history.iter().filter(|h| h.event == "DriftRepaired").count() >= 2, "{:#?}", status.history);
}

/// The pod's UID.
async fn uid(cluster: &Cluster, ns: &str, name: &str) -> String {
    cluster.pods(ns).get(name).await.unwrap().uid().unwrap()
}

/// Waits until no pod named `name` with this UID exists; how long that took.
async fn gone(cluster: &Cluster, ns: &str, name: &str, uid: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let pod = cluster.pods(ns).get_opt(name).await.unwrap();
        if pod.is_none_or(|p| p.uid().as_deref() != Some(uid)) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{}",
            cluster.pod_report(ns, name, &format!("was not gone within {within:?}"))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn terminate_is_carried_out_by_the_kubelet_within_the_grace_period(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let ns = "term-grace";
    cluster.namespace(ns).await;
    // A process that ignores SIGTERM: only the kubelet's SIGKILL at the end of the grace
    // period stops it, so the pod's disappearance times the grace period itself.
    let busybox = cluster.images.busybox.clone();
    let mut stubborn =
        cluster.pod_manifest("stubborn", &[], &busybox, &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]);
    stubborn["spec"]["terminationGracePeriodSeconds"] = json!(60);
    cluster.run_pod_manifest(ns, stubborn).await;
    let uid = uid(cluster, ns, "stubborn").await;
    act(
        cluster,
        ns,
        "kill",
        json!({ "action": "Terminate", "target": { "pod": "stubborn" }, "terminate": { "gracePeriodSeconds": 3 } }),
    )
    .await;
    let (status, deleted) = reached(cluster, ns, "kill", Phase::Succeeded).await;
    gone(cluster, ns, "stubborn", &uid, Duration::from_secs(20)).await;
    let took = deleted.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "the kubelet waited the 3 s grace period (not the pod's 60 s), took {took:?}"
    );
    assert!(took < Duration::from_secs(13), "the kubelet stopped the pod within its 3 s grace period, took {took:?}");
    let message = status.message.unwrap();
    assert!(message.contains("no workload controls it, so it will not come back"), "{message}");
}

async fn a_replicaset_pod_comes_back_and_a_recreated_pod_is_never_deleted(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let ns = "term-owned";
    cluster.namespace(ns).await;
    let busybox = cluster.images.busybox.clone();
    let template = |app: &str| {
        let mut pod = cluster.pod_manifest("ignored", &[("app", app)], &busybox, &["sleep", "86400"]);
        pod["metadata"].as_object_mut().unwrap().remove("name");
        json!({ "metadata": pod["metadata"], "spec": pod["spec"] })
    };
    cluster.apply(&json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": "web", "namespace": ns },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } }, "template": template("web") },
    }));
    cluster.apply(&json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db", "namespace": ns },
        "spec": { "replicas": 1, "serviceName": "db", "selector": { "matchLabels": { "app": "db" } }, "template": template("db") },
    }));
    let running = |app: &'static str| async move {
        let deadline = Instant::now() + WAIT;
        loop {
            let pods =
                cluster.pods(ns).list(&kube::api::ListParams::default().labels(&format!("app={app}"))).await.unwrap();
            let ready: Vec<Pod> = pods
                .items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .collect();
            if let [pod] = ready.as_slice() {
                return pod.clone();
            }
            assert!(Instant::now() < deadline, "no single running pod of {app}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    let web = running("web").await;
    act(cluster, ns, "kill-web", json!({ "action": "Terminate", "target": { "pod": web.name_any() } })).await;
    let (status, _) = reached(cluster, ns, "kill-web", Phase::Succeeded).await;
    assert!(status.message.unwrap().contains("its ReplicaSet web will create a replacement"));
    gone(cluster, ns, &web.name_any(), &web.uid().unwrap(), Duration::from_secs(20)).await;
    let replacement = running("web").await;
    assert_ne!(replacement.uid(), web.uid(), "the ReplicaSet made a new pod");

    // A StatefulSet recreates its pod under the same name: the action, reconciled again,
    // must leave the new pod alone (its UID is not the one it resolved).
    let db = running("db").await;
    assert_eq!(db.name_any(), "db-0");
    act(cluster, ns, "kill-db", json!({ "action": "Terminate", "target": { "pod": "db-0" } })).await;
    let (status, _) = reached(cluster, ns, "kill-db", Phase::Succeeded).await;
    assert!(status.message.unwrap().contains("its StatefulSet db will create a replacement"));
    gone(cluster, ns, "db-0", &db.uid().unwrap(), Duration::from_secs(20)).await;
    let recreated = running("db").await;
    assert_eq!(recreated.name_any(), "db-0");
    assert_ne!(recreated.uid(), db.uid());
    let comment = json!({ "spec": { "comments": [{ "author": riposte_e2e::ADMIN, "message": "db-0 is back" }] } });
    actions(cluster, ns).patch("kill-db", &PatchParams::default(), &Patch::Merge(&comment)).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let history = actions(cluster, ns).get("kill-db").await.unwrap().status.unwrap().history;
        if history.iter().any(|h| h.message == "db-0 is back") {
            break;
        }
        assert!(Instant::now() < deadline, "the comment was never recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = cluster.pods(ns).get("db-0").await.unwrap();
    assert_eq!(still.uid(), recreated.uid(), "the recreated db-0 is never deleted");
    assert!(still.metadata.deletion_timestamp.is_none());
}

async fn evidence_keeps_the_real_log_bounded_before_terminate(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let ns = "term-evidence";
    cluster.namespace(ns).await;
    let busybox = cluster.images.busybox.clone();
    // 300 numbered lines of 32 bytes, far more than the 1 KiB kept.
    let script =
        "i=1; while [ $i -le 300 ]; do printf 'exfiltration step %013d\\n' $i; i=$((i + 1)); done; exec sleep 86400";
    cluster.run_pod(ns, "chatty", &[], &busybox, &["sh", "-c", script]).await;
    let log = cluster.kubectl_ok(&["logs", "-n", ns, "chatty"]);
    assert_eq!(log.lines().count(), 300, "the container wrote its log");
    act(
        cluster,
        ns,
        "kill",
        json!({ "action": "Terminate", "target": { "pod": "chatty" },
                "terminate": { "evidence": { "capture": "Required", "logLimitBytes": 1024 } } }),
    )
    .await;
    let (status, _) = reached(cluster, ns, "kill", Phase::Succeeded).await;
    let evidence = status.evidence.expect("evidence is recorded");
    assert!(evidence.complete, "{evidence:?}");
    let stored = Api::<ConfigMap>::namespaced(cluster.client.clone(), &evidence.config_map.namespace)
        .get(&evidence.config_map.name)
        .await
        .expect("the evidence ConfigMap exists");
    let data: BTreeMap<String, String> = stored.data.unwrap_or_default();
    let (key, kept) = data.iter().find(|(k, _)| k.starts_with("logs-")).expect("the container's log is kept");
    assert!(kept.len() <= 1024, "bounded: {} bytes", kept.len());
    assert!(kept.ends_with("exfiltration step 0000000000300\n"), "the latest lines are kept:\n{kept}");
    assert!(!kept.contains("step 0000000000001\n"), "the oldest lines are dropped");
    // Each line as the kubelet stamps it: `<RFC 3339 time> <line>`.
    assert!(
        kept.lines().all(|l| l.split_once(' ').is_some_and(|(time, line)| time.ends_with('Z') && line.len() == 31)),
        "whole lines only, each with its time:\n{kept}"
    );
    let item = evidence.items.iter().find(|i| &i.key == key).unwrap();
    assert_eq!(item.bytes as usize, kept.len());
    assert!(data.get("pod.yaml").is_some_and(|m| m.contains("name: chatty")), "the pod's manifest is kept");
    assert_eq!(stored.immutable, Some(true));
}

fn enforcement(status: &ResponseActionStatus) -> (String, String, String) {
    let c = status.conditions.iter().find(|c| c.type_ == "NetworkPolicyEnforcement").expect("an enforcement condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

async fn kube_router_is_reported_running_then_not_ready(cluster: &Cluster) {
    let _operator = operator(cluster).await;
    let ns = "enforcer";
    cluster.namespace(ns).await;
    cluster.client_pod(ns, "one", &[]).await;
    cluster.client_pod(ns, "two", &[]).await;
    act(cluster, ns, "iso-one", json!({ "action": "Isolate", "target": { "pod": "one" } })).await;
    let (status, _) = reached(cluster, ns, "iso-one", Phase::Succeeded).await;
    assert_eq!(
        enforcement(&status),
        ("True".into(), "EnforcerFound".into(), "NetworkPolicies are enforced by kube-system/kube-router".into())
    );

    cluster.suspend_kube_router().await;
    // Past the operator's short cache of what it found.
    tokio::time::sleep(Duration::from_secs(11)).await;
    act(cluster, ns, "iso-two", json!({ "action": "Isolate", "target": { "pod": "two" } })).await;
    let (status, _) = reached(cluster, ns, "iso-two", Phase::Succeeded).await;
    let (state, reason, message) = enforcement(&status);
    assert_eq!((state.as_str(), reason.as_str()), ("Unknown", "EnforcerNotReady"), "{message}");
    assert!(message.contains("kube-system/kube-router has no ready pod"), "{message}");
    cluster.start_kube_router().await;
}
