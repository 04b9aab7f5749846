//! Automated response latency against a real kube-apiserver on loopback: from the creation
//! of an Alert to the moment the ResponseAction its policy created is seen `Succeeded`
//! (pod labelled, isolation policy in place), over many alerts on different pods, a fixed
//! number at a time, with 20 ResponsePolicies loaded (one matches; the others are evaluated
//! and do not).
//!
//! `cargo bench -p riposte-e2e --bench alert_response [-- ALERTS CONCURRENCY]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use riposte::policy::ALERT_LABEL;
use riposte_crds::{Alert, Phase, ResponseAction, ResponsePolicy};
use riposte_e2e::Env;
use serde_json::json;
use tokio::sync::{Semaphore, oneshot};

const NS: &str = "bench";
const POLICIES: usize = 20;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let alerts = args.first().copied().unwrap_or(200);
    let concurrency = args.get(1).copied().unwrap_or(20);
    let env = Env::with_operator().await;
    env.namespace("riposte-system").await;
    env.namespace(NS).await;
    for i in 0..alerts {
        env.pod(NS, &format!("pod-{i}"), &[("app", "web")]).await;
    }
    load_policies(&env).await;
    println!(
        "alert → automatic isolation: {alerts} alerts, {concurrency} at a time, {POLICIES} ResponsePolicies, kube-apiserver on loopback\n"
    );

    let waiters: Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>> = Arc::default();
    let watch_waiters = waiters.clone();
    let actions: Api<ResponseAction> = Api::namespaced(env.client.clone(), NS);
    let watch = tokio::spawn(async move {
        let mut stream = watcher(actions, watcher::Config::default()).applied_objects().boxed();
        while let Ok(Some(action)) = stream.try_next().await {
            let phase = action.status.as_ref().and_then(|s| s.phase);
            if phase == Some(Phase::Failed) {
                panic!("{} failed: {:?}", action.name_any(), action.status.unwrap().message);
            }
            if phase == Some(Phase::Succeeded)
                && let Some(alert) = action.labels().get(ALERT_LABEL)
                && let Some(tx) = watch_waiters.lock().unwrap().remove(alert)
            {
                let _ = tx.send(Instant::now());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let gate = Arc::new(Semaphore::new(concurrency));
    let api: Api<Alert> = Api::namespaced(env.client.clone(), NS);
    let start = Instant::now();
    let tasks: Vec<_> = (0..alerts)
        .map(|i| {
            let (api, gate, waiters) = (api.clone(), gate.clone(), waiters.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let name = format!("shell-{i}");
                let (tx, rx) = oneshot::channel();
                waiters.lock().unwrap().insert(name.clone(), tx);
                let alert = json!({
                    "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "metadata": { "name": name },
                    "spec": { "type": "K8S.NODE_ReverseShell", "title": "Reverse shell", "severity": "High",
                              "tactics": ["Execution"], "detectedAt": k8s_openapi::jiff::Timestamp::now().to_string(),
                              "source": "bench", "entities": { "namespace": NS, "pod": format!("pod-{i}") } },
                });
                let begun = Instant::now();
                api.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&alert)).await.unwrap();
                let done =
                    tokio::time::timeout(Duration::from_secs(60), rx).await.expect("isolated within 60s").unwrap();
                done - begun
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let wall = start.elapsed();
    watch.abort();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "alert created → isolation Succeeded: p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms(pct(0.50)),
        ms(pct(0.90)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap())
    );
    println!(
        "throughput: {:.1} alerts answered per second ({alerts} in {:.1} s)",
        alerts as f64 / wall.as_secs_f64(),
        wall.as_secs_f64()
    );
}

/// One policy that answers the benchmark's alerts, and 19 that are evaluated against every
/// alert and decline it for one reason or another (type, namespace, severity, tactic, labels).
async fn load_policies(env: &Env) {
    let api: Api<ResponsePolicy> = Api::all(env.client.clone());
    let decoys = [
        json!({ "alertTypes": ["K8S.NODE_DigitalCurrencyMining"] }),
        json!({ "namespaces": ["payments"] }),
        json!({ "tactics": ["Exfiltration"] }),
        json!({ "alertTypes": ["K8S.NODE_ReverseShell"], "podSelector": { "matchLabels": { "app": "db" } } }),
    ];
    for i in 0..POLICIES {
        let (name, criteria, max) = if i == 0 {
            (
                "isolate-shells".to_string(),
                json!({ "alertTypes": ["K8S.NODE_ReverseShell"], "minSeverity": "Medium" }),
                10000,
            )
        } else {
            (format!("decoy-{i}"), decoys[i % decoys.len()].clone(), 20)
        };
        let policy = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy", "metadata": { "name": name },
                             "spec": { "mode": "Automatic", "match": criteria, "actions": [{ "action": "Isolate" }], "maxActionsPerHour": max } });
        api.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&policy)).await.unwrap();
    }
    env.until("the operator to see every policy", || async {
        let list = api.list(&Default::default()).await.ok()?;
        (list.items.len() == POLICIES && list.items.iter().all(|p| p.status.is_some())).then_some(())
    })
    .await;
}
