//! Runtime detection to response on a real node, with Riposte's eBPF sensor and the operator
//! in this process:
//! - alert latency: a process starts in a pod (the kernel's timestamp of its event) → the
//!   Alert it raised is seen through a watch, over many processes;
//! - isolation latency: a process starts → a ResponsePolicy has isolated its pod → the first
//!   refused connection from a probe pod, over several pods. Probes are `kubectl exec` runs:
//!   the floor, one probe of a path no policy touches, is timed in the same run.
//!
//! `cargo bench -p riposte-e2e --bench runtime_response [-- ALERTS ISOLATIONS]`

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use riposte::detection::node::NodeSettings;
use riposte::metrics::{DetectionMetrics, RuntimeMetrics};
use riposte_crds::{Alert, ResponsePolicy};
use riposte_detect::runtime::RuntimeConfig;
use riposte_e2e::node::{Cluster, NODE_NAME, Protocol, Reach, SERVER_TCP_PORTS};
use riposte_e2e::{InProcessOperator, percentile};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let alerts = args.first().copied().unwrap_or(100);
    let isolations = args.get(1).copied().unwrap_or(20);
    let cluster = Cluster::start().await.unwrap_or_else(|e| panic!("the node starts: {e}"));
    {
        let _operator = InProcessOperator::start(&cluster.client).await;
        let mut registry = Default::default();
        let metrics = DetectionMetrics::register(&mut registry);
        let runtime_metrics = RuntimeMetrics::register(&mut registry);
        let settings = NodeSettings {
            node: NODE_NAME.into(),
            namespace: "riposte-system".into(),
            config: RuntimeConfig::default(),
            ebpf: true,
            tetragon_export: None,
            forget_isolated_connections: true,
            hunting: riposte::hunting::HuntingSink::default(),
        };
        let client = cluster.client.clone();
        let sensor = tokio::spawn(async move {
            riposte::detection::node::run(client, settings, metrics, runtime_metrics, std::future::pending()).await
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        alert_latency(&cluster, alerts).await;
        isolation_latency(&cluster, isolations).await;
        sensor.abort();
    }
    let problems = cluster.teardown();
    assert!(problems.is_empty(), "teardown: {problems:?}");
}

fn now_micros() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64
}

/// The event's time, as the sensor read it from the kernel (evidence `time`).
fn event_micros(alert: &Alert) -> Option<i64> {
    let time = alert.spec.evidence.iter().find(|e| e.name == "time")?;
    time.value.parse::<riposte_detect::audit::Timestamp>().ok().map(|t| t.unix_micros())
}

fn summary(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{what}: n={} p50 {:?} p90 {:?} p99 {:?} max {:?}",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 90.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or_default()
    );
}

async fn alert_latency(cluster: &Cluster, count: usize) {
    let ns = "runtime-latency";
    cluster.namespace(ns).await;
    // Debian's shell runs each `cat` as its own program (busybox's would run it in-process).
    let image = cluster.debian_image().await;
    cluster.run_pod(ns, "victim", &[], &image, &["sleep", "infinity"]).await;
    let alerts: Api<Alert> = Api::namespaced(cluster.client.clone(), ns);
    let mut stream = std::pin::pin!(watcher(alerts, watcher::Config::default()));
    // One process per alert, 100 ms apart, started inside the pod (no kubectl in the path),
    // while the watch is read.
    let script = format!("for i in $(seq {count}); do cat /etc/shadow > /dev/null; sleep 0.1; done");
    let kubeconfig = cluster.kubeconfig().to_path_buf();
    let exec = std::thread::spawn(move || {
        riposte_e2e::kubectl_with(&kubeconfig, &["exec", "-n", ns, "victim", "--", "bash", "-c", &script], None)
    });
    let mut seen = HashSet::new();
    let mut samples = Vec::new();
    let deadline = Instant::now() + WAIT;
    while samples.len() < count && Instant::now() < deadline {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await else { continue };
        let arrived = now_micros();
        if let Ok(watcher::Event::Apply(alert) | watcher::Event::InitApply(alert)) = event
            && alert.spec.alert_type.0 == "K8S.NODE_SuspectPasswordFileAccess"
            && seen.insert(alert.metadata.name.clone().unwrap_or_default())
            && let Some(at) = event_micros(&alert)
        {
            samples.push(Duration::from_micros((arrived - at).max(0) as u64));
        }
    }
    assert!(exec.join().expect("the loop's thread").status.success(), "the loop ran");
    println!("runtime detection on a real node: {count} processes in a pod, one `cat /etc/shadow` each");
    summary("  process started → Alert stored (watch)  [target p99 < 1 s]", samples);
}

async fn isolation_latency(cluster: &Cluster, count: usize) {
    let ns = "runtime-isolation";
    cluster.namespace(ns).await;
    cluster.start_kube_router().await;
    let policy = json!({
        "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy", "metadata": { "name": "isolate-shadow-readers" },
        "spec": {
            "mode": "Automatic",
            "match": { "alertTypes": ["K8S.NODE_SuspectPasswordFileAccess"], "namespaces": [ns] },
            "actions": [{ "action": "Isolate" }],
        },
    });
    Api::<ResponsePolicy>::all(cluster.client.clone())
        .patch("isolate-shadow-readers", &PatchParams::apply("riposte-bench").force(), &Patch::Apply(&policy))
        .await
        .expect("policy applied");
    cluster.client_pod(ns, "probe", &[]).await;
    let mut floors = Vec::new();
    let mut samples = Vec::new();
    for i in 0..count {
        let victim = format!("victim-{i}");
        cluster.server_pod(ns, &victim, &[]).await;
        let target = format!("{}:{}", cluster.pod_ip(ns, &victim).await, SERVER_TCP_PORTS[0]);
        let floor = Instant::now();
        assert!(cluster.probe(ns, "probe", &target, Protocol::Tcp).connected(), "the victim serves");
        floors.push(floor.elapsed());
        let started = now_micros();
        cluster.exec(ns, &victim, &["cat", "/etc/shadow"]);
        let refused = cluster
            .probe_until(ns, "probe", &target, Protocol::Tcp, WAIT, |r| matches!(r, Reach::Refused | Reach::TimedOut))
            .await;
        assert!(refused.is_ok(), "{victim} was not isolated: {refused:?}");
        // From the process's own start, as the kernel saw it.
        let alerts: Api<Alert> = Api::namespaced(cluster.client.clone(), ns);
        let process_at = alerts
            .list(&Default::default())
            .await
            .ok()
            .and_then(|l| l.items.into_iter().find(|a| a.spec.entities.pod.as_deref() == Some(victim.as_str())))
            .and_then(|a| event_micros(&a))
            .unwrap_or(started);
        samples.push(Duration::from_micros((now_micros() - process_at).max(0) as u64));
    }
    cluster.stop_kube_router().await;
    println!("isolation from a runtime alert on a real node (kube-router enforcing), {count} pods");
    summary("  process started → packets refused  [target p99 < 2 s]", samples);
    summary("  floor: one kubectl-exec probe", floors);
}
