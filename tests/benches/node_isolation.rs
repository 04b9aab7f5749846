//! Isolation on a real node (containerd, kubelet, kube-router enforcing), with the operator
//! in this process:
//! - API latency: Isolate created → seen `Succeeded`, over many actions on running pods,
//!   a fixed number at a time (two rounds over the pods, released in between);
//! - packets: from `Succeeded` to the first refused connection from a probe pod, over
//!   sequential isolations; and from an isolation broken (label removed, policy deleted) to
//!   the first refused connection again. Probes are `kubectl exec` runs, so the floor is one
//!   probe of a path no policy touches, timed in the same run.
//!
//! `cargo bench -p riposte-e2e --bench node_isolation [-- PODS CONCURRENCY PACKET_SAMPLES]`

use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use riposte::isolation::{self, ISOLATED_LABEL};
use riposte_crds::{Phase, ResponseAction};
use riposte_e2e::node::{Cluster, Protocol, SERVER_TCP_PORTS};
use riposte_e2e::{InProcessOperator, percentile, time_actions_until_succeeded};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pods = args.first().copied().unwrap_or(100);
    let concurrency = args.get(1).copied().unwrap_or(20);
    let samples = args.get(2).copied().unwrap_or(50);
    let cluster = Cluster::start().await.unwrap_or_else(|e| panic!("the node starts: {e}"));
    println!("isolation on a real node: kube-router enforcing, {pods} running pods, {concurrency} actions at a time\n");
    {
        let _operator = InProcessOperator::start(&cluster.client).await;
        api_latency(&cluster, pods, concurrency).await;
        packets(&cluster, samples).await;
    }
    let problems = cluster.teardown();
    assert!(problems.is_empty(), "teardown: {problems:?}");
}

fn summary(what: &str, mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let (p50, p99) = (percentile(&samples, 50.0), percentile(&samples, 99.0));
    println!(
        "  {what:<52} n={:<4} p50 {:7.1} ms   p99 {:7.1} ms   max {:7.1} ms",
        samples.len(),
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0,
        samples.last().unwrap().as_secs_f64() * 1000.0
    );
    (p50, p99)
}

async fn api_latency(cluster: &Cluster, pods: usize, concurrency: usize) {
    let ns = "bench-api";
    cluster.namespace(ns).await;
    let api = cluster.pods(ns);
    let busybox = cluster.images.busybox.clone();
    let created = Instant::now();
    for i in 0..pods {
        let manifest = cluster.pod_manifest(&format!("pod-{i}"), &[("app", "web")], &busybox, &["sleep", "86400"]);
        api.create(&PostParams::default(), &serde_json::from_value(manifest).unwrap()).await.unwrap();
    }
    for i in 0..pods {
        let name = format!("pod-{i}");
        if cluster.wait_ready(ns, &name, WAIT).await.is_none() {
            panic!("{}", cluster.pod_report(ns, &name, "did not start"));
        }
    }
    println!("{pods} pods running in {:.1} s", created.elapsed().as_secs_f64());
    // A namespace-wide allow policy that every isolation must exclude, as in real namespaces.
    let allow = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-all" },
                        "spec": { "podSelector": {}, "ingress": [{}] } });
    Api::<NetworkPolicy>::namespaced(cluster.client.clone(), ns)
        .patch("allow-all", &PatchParams::apply("bench").force(), &Patch::Apply(&allow))
        .await
        .unwrap();
    let mut latencies = Vec::new();
    let started = Instant::now();
    for round in ["a", "b"] {
        latencies.extend(batch(cluster, ns, pods, concurrency, "Isolate", round).await);
        batch(cluster, ns, pods, concurrency, "Release", round).await;
    }
    println!("isolation API latency ({} actions in {:.1} s):", latencies.len(), started.elapsed().as_secs_f64());
    summary("Isolate created -> seen Succeeded", latencies);
}

/// Creates one `kind` action per pod, `concurrency` at a time, and times each until it is
/// seen Succeeded.
async fn batch(cluster: &Cluster, ns: &str, pods: usize, concurrency: usize, kind: &str, round: &str) -> Vec<Duration> {
    let actions = (0..pods)
        .map(|i| {
            let mut spec =
                json!({ "action": kind, "target": { "pod": format!("pod-{i}") }, "requestedBy": riposte_e2e::ADMIN });
            if kind == "Release" {
                spec["release"] = json!({ "actionName": format!("isolate-{round}-{i}") });
            }
            (format!("{}-{round}-{i}", kind.to_lowercase()), spec)
        })
        .collect();
    time_actions_until_succeeded(&Api::namespaced(cluster.client.clone(), ns), actions, concurrency).await
}

/// Waits for the action to be Succeeded; the moment it was seen so.
async fn succeeded(api: &Api<ResponseAction>, name: &str) -> Instant {
    let begun = Instant::now();
    loop {
        let phase = api.get(name).await.unwrap().status.and_then(|s| s.phase);
        if phase == Some(Phase::Succeeded) {
            return Instant::now();
        }
        assert!(begun.elapsed() < WAIT, "{name} did not succeed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Probes until the path is refused (or times out); when the first refused probe began and
/// when it ended: the refusal came in between.
fn first_refused(cluster: &Cluster, ns: &str, target: &str) -> (Instant, Instant) {
    let begun = Instant::now();
    loop {
        let probe_started = Instant::now();
        if !cluster.probe(ns, "probe", target, Protocol::Tcp).connected() {
            return (probe_started, Instant::now());
        }
        assert!(begun.elapsed() < WAIT, "{target} was never refused");
    }
}

fn connected_again(cluster: &Cluster, ns: &str, target: &str) {
    let begun = Instant::now();
    while !cluster.probe(ns, "probe", target, Protocol::Tcp).connected() {
        assert!(begun.elapsed() < WAIT, "{target} never reconnected");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn packets(cluster: &Cluster, samples: usize) {
    let ns = "bench-packets";
    cluster.namespace(ns).await;
    let allow = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-all" },
                        "spec": { "podSelector": {}, "ingress": [{}] } });
    let policies: Api<NetworkPolicy> = Api::namespaced(cluster.client.clone(), ns);
    policies.patch("allow-all", &PatchParams::apply("bench").force(), &Patch::Apply(&allow)).await.unwrap();
    cluster.server_pod(ns, "web", &[("app", "web")]).await;
    cluster.server_pod(ns, "untouched", &[("app", "web")]).await;
    cluster.client_pod(ns, "probe", &[]).await;
    let web = format!("{}:{}", cluster.pod_ip(ns, "web").await, SERVER_TCP_PORTS[0]);
    let untouched = format!("{}:{}", cluster.pod_ip(ns, "untouched").await, SERVER_TCP_PORTS[0]);
    let actions: Api<ResponseAction> = Api::namespaced(cluster.client.clone(), ns);
    let pods = cluster.pods(ns);

    let mut floor = Vec::new();
    for _ in 0..samples {
        let begun = Instant::now();
        assert!(cluster.probe(ns, "probe", &untouched, Protocol::Tcp).connected());
        floor.push(begun.elapsed());
    }
    let (mut to_refused, mut to_refused_by) = (Vec::new(), Vec::new());
    let (mut label_repair, mut policy_repair) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let name = format!("iso-{i}");
        let action = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name },
                             "spec": { "action": "Isolate", "target": { "pod": "web" }, "requestedBy": riposte_e2e::ADMIN } });
        actions.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&action)).await.unwrap();
        let done = succeeded(&actions, &name).await;
        let (began, ended) = first_refused(cluster, ns, &web);
        to_refused.push(began.saturating_duration_since(done));
        to_refused_by.push(ended - done);

        let unlabel = json!({ "metadata": { "labels": { ISOLATED_LABEL: null } } });
        pods.patch("web", &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
        let broken = Instant::now();
        label_repair.push(
            first_refused_after_repair(cluster, ns, &web, broken, || async {
                pods.get("web").await.unwrap().labels().get(ISOLATED_LABEL) == Some(&name)
            })
            .await,
        );

        policies.delete(&isolation::policy_name(&name), &Default::default()).await.unwrap();
        let broken = Instant::now();
        let recreated = || async { policies.get_opt(&isolation::policy_name(&name)).await.unwrap().is_some() };
        policy_repair.push(first_refused_after_repair(cluster, ns, &web, broken, recreated).await);

        // Deleting the action releases the pod; the next isolation starts once it is gone.
        actions.delete(&name, &Default::default()).await.unwrap();
        let deleted = Instant::now();
        while actions.get_opt(&name).await.unwrap().is_some() {
            assert!(deleted.elapsed() < WAIT, "{name} was never released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        connected_again(cluster, ns, &web);
    }
    println!("\npackets ({samples} sequential isolations; a probe is one kubectl exec):");
    let (floor50, floor99) = summary("floor: one probe of an untouched path", floor);
    let (p50, p99) = summary("Succeeded -> first refused probe began", to_refused);
    summary("Succeeded -> first refused probe ended", to_refused_by);
    let (l50, l99) = summary("label removed -> put back, a probe refused", label_repair);
    let (d50, d99) = summary("policy deleted -> recreated, a probe refused", policy_repair);
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "  ratios to the probe floor: refused p50 {:.2}x p99 {:.2}x; label repair p50 {:.2}x p99 {:.2}x; policy repair p50 {:.2}x p99 {:.2}x",
        ratio(p50, floor50),
        ratio(p99, floor99),
        ratio(l50, floor50),
        ratio(l99, floor99),
        ratio(d50, floor50),
        ratio(d99, floor99)
    );
    let stale = policies.list(&ListParams::default()).await.unwrap().items;
    assert!(stale.iter().all(|p| !isolation::is_managed_by_riposte(p)), "every isolation was released");
}

/// From `broken`: waits until Riposte repaired the isolation, then until a probe is refused
/// again; the whole time, to the end of that probe.
async fn first_refused_after_repair<F, Fut>(
    cluster: &Cluster,
    ns: &str,
    target: &str,
    broken: Instant,
    repaired: F,
) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    while !repaired().await {
        assert!(broken.elapsed() < WAIT, "never repaired");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first_refused(cluster, ns, target).1 - broken
}
