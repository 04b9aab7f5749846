//! The second source's figures on a real apiserver holding 5,000 pods: what the cluster
//! watch costs (CPU, memory) to take them in and to follow their changes, and how long a
//! privileged pod takes from its creation to its Alert, p50/p99, against the floor measured
//! in the same run: the time a bare watch of pods takes to see the same creation.
//!
//! `cargo bench -p riposte-e2e --bench cluster_watch` (`RIPOSTE_BENCH_PODS`,
//! `RIPOSTE_BENCH_SAMPLES` to change the sizes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use prometheus_client::registry::Registry;
use riposte::detection::cluster::{self, ClusterSettings};
use riposte::metrics::DetectionMetrics;
use riposte_crds::Alert;
use riposte_e2e::{Env, percentile};
use serde_json::json;

const NAMESPACE: &str = "bench";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').expect("a stat line").1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// Resident memory of this process, in bytes.
fn resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn pod(name: &str, privileged: bool) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "bench"}},
        "spec": {"containers": [{
            "name": "app", "image": "registry.example/app:1.0",
            "securityContext": {"privileged": privileged},
            "env": [{"name": "MODE", "value": "production"}],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
        }]}
    }))
    .expect("a pod")
}

async fn create_pods(pods: &Api<Pod>, count: usize) {
    futures::stream::iter(0..count)
        .map(|i| {
            let pods = pods.clone();
            async move {
                pods.create(&PostParams::default(), &pod(&format!("app-{i:05}"), false))
                    .await
                    .expect("a pod is created")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// When each pod's creation was first seen by a bare watch (the floor).
fn watch_creations(client: Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(Api::<Pod>::namespaced(client, NAMESPACE), watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(pod)) = stream.try_next().await {
            record.lock().unwrap().entry(pod.name_any()).or_insert_with(Instant::now);
        }
    });
    seen
}

/// When each privileged pod's Alert was first seen, by the pod it names.
fn watch_alerts(client: Client) -> Arc<Mutex<HashMap<String, Instant>>> {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(Api::<Alert>::all(client), watcher::Config::default()).applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(alert)) = stream.try_next().await {
            if let Some(pod) = alert.spec.entities.pod.clone() {
                record.lock().unwrap().entry(pod).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() {
    let count = env_number("RIPOSTE_BENCH_PODS", 5000);
    let samples = env_number("RIPOSTE_BENCH_SAMPLES", 100);
    let env = Env::start().await;
    env.namespace(NAMESPACE).await;
    env.namespace("riposte-system").await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), NAMESPACE);
    let started = Instant::now();
    create_pods(&pods, count).await;
    println!("cluster_watch: {count} pods created in {:.1} s", started.elapsed().as_secs_f64());

    let mut registry = Registry::default();
    let metrics = DetectionMetrics::register(&mut registry);
    let (cpu_before, memory_before) = (cpu_time(), resident());
    let settings = ClusterSettings { config: riposte_detect::Config::default(), namespace: "riposte-system".into() };
    let synced = Instant::now();
    tokio::spawn(cluster::run(env.client.clone(), settings, None, metrics.clone(), std::future::pending()));
    wait_for("the first listing", Duration::from_secs(300), || metrics.cluster_objects_evaluated.get() >= count as u64)
        .await;
    let sync_time = synced.elapsed();
    let (sync_cpu, memory) = (cpu_time() - cpu_before, resident().saturating_sub(memory_before));
    println!(
        "cluster_watch: first listing of {count} pods evaluated in {:.2} s, {:.2} s CPU ({:.0} µs per pod), \
         {:.1} MiB more resident ({:.1} KiB per pod)",
        sync_time.as_secs_f64(),
        sync_cpu.as_secs_f64(),
        sync_cpu.as_secs_f64() * 1e6 / count as f64,
        memory as f64 / (1 << 20) as f64,
        memory as f64 / 1024.0 / count as f64
    );

    // Following changes that the rules need not read again (a label, as a rollout or a
    // controller writes them): the watch's cost per event.
    let changes = count.min(1000);
    let cpu = cpu_time();
    let changed = Instant::now();
    futures::stream::iter(0..changes)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let patch = json!({"metadata": {"labels": {"revision": "2"}}});
                pods.patch(&format!("app-{i:05}"), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .expect("patched")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    // The watch events trail the patches: a moment for the last ones.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let change_cpu = cpu_time() - cpu;
    println!(
        "cluster_watch: {changes} label changes followed in {:.1} s, {:.2} s CPU for patching and watching \
         ({:.0} µs per change, the client's patches included)",
        changed.elapsed().as_secs_f64(),
        change_cpu.as_secs_f64(),
        change_cpu.as_secs_f64() * 1e6 / changes as f64
    );

    // Privileged pods, one at a time: creation → Alert, and creation → a bare watch's event.
    let creations = watch_creations(env.client.clone());
    let alerts = watch_alerts(env.client.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut to_alert, mut to_event) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let name = format!("evil-{i:03}");
        let sent = Instant::now();
        pods.create(&PostParams::default(), &pod(&name, true)).await.expect("a privileged pod is created");
        wait_for("the Alert", Duration::from_secs(30), || alerts.lock().unwrap().contains_key(&name)).await;
        wait_for("the watch event", Duration::from_secs(30), || creations.lock().unwrap().contains_key(&name)).await;
        to_alert.push(alerts.lock().unwrap()[&name] - sent);
        to_event.push(creations.lock().unwrap()[&name] - sent);
    }
    to_alert.sort();
    to_event.sort();
    let (alert_p50, alert_p99) = (percentile(&to_alert, 50.0), percentile(&to_alert, 99.0));
    let (event_p50, event_p99) = (percentile(&to_event, 50.0), percentile(&to_event, 99.0));
    println!(
        "cluster_watch: privileged pod created → Alert stored and seen, over {samples} pods among {count}: \
         p50 {:.1} ms, p99 {:.1} ms",
        alert_p50.as_secs_f64() * 1e3,
        alert_p99.as_secs_f64() * 1e3
    );
    println!(
        "cluster_watch: floor, created → a bare watch's event: p50 {:.1} ms, p99 {:.1} ms; ratio p50 {:.2}, p99 {:.2}",
        event_p50.as_secs_f64() * 1e3,
        event_p99.as_secs_f64() * 1e3,
        alert_p50.as_secs_f64() / event_p50.as_secs_f64(),
        alert_p99.as_secs_f64() / event_p99.as_secs_f64()
    );
}
