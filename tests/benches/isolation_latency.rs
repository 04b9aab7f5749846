//! Isolation latency against a real kube-apiserver on loopback: from the creation of an
//! Isolate ResponseAction to the moment it is seen `Succeeded` with its policy in place,
//! over many actions on different pods, a fixed number at a time. In the same run, the
//! floor: the bare API calls an isolation needs, made directly by this process. Then drift
//! repair: an isolation's label removed or its policy deleted, one at a time, until a reader
//! sees it whole again; its floor is the one call that puts it back, made directly.
//!
//! `cargo bench -p riposte-e2e --bench isolation_latency [-- ACTIONS CONCURRENCY]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use riposte::isolation::{self, ISOLATED_LABEL};
use riposte_crds::ResponseAction;
use riposte_e2e::{Env, percentile, time_actions_until_succeeded};
use serde_json::json;
use tokio::sync::Semaphore;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let actions = args.first().copied().unwrap_or(200);
    let concurrency = args.get(1).copied().unwrap_or(20);
    let env = Env::with_operator().await;
    println!("isolation latency: {actions} actions, {concurrency} at a time, kube-apiserver on loopback\n");

    for (scenario, shared_policy) in [("clean namespace", false), ("namespace-wide allow policy to exclude", true)] {
        // Each batch gets a namespace of its own, alike, so neither lists the other's policies.
        let prefix = if shared_policy { "shared" } else { "clean" };
        let (riposte_ns, floor_ns) = (format!("{prefix}-riposte"), format!("{prefix}-floor"));
        for ns in [&riposte_ns, &floor_ns] {
            prepare_namespace(&env, ns, actions, shared_policy).await;
        }
        let operator = run_operator_batch(&env, &riposte_ns, actions, concurrency).await;
        let floor = run_floor_batch(&env, &floor_ns, actions, concurrency).await;
        report(scenario, &operator, &floor, "p99 within 2x of the floor");
        if shared_policy {
            let repairs = actions.min(100);
            let (label, label_floor, policy, policy_floor) = drift_repair(&env, &riposte_ns, repairs).await;
            // The floor is the one call that puts it back; a repair also waits for the watch
            // event and reads what the isolation depends on.
            let target = "repaired in about a second";
            report(&format!("drift repair: isolation label removed ({repairs} times)"), &label, &label_floor, target);
            report(
                &format!("drift repair: isolation policy deleted ({repairs} times)"),
                &policy,
                &policy_floor,
                target,
            );
        }
    }
}

/// Breaks isolation `iso-i` of `pod-i` for i in 0..n, one at a time, first by removing the
/// pod's label, then by deleting its policy, and times each until it is whole again. The
/// floors put the same things back directly.
async fn drift_repair(env: &Env, ns: &str, n: usize) -> (Batch, Batch, Batch, Batch) {
    let pods: Api<Pod> = env.pods(ns);
    let policies: Api<NetworkPolicy> = env.policies(ns);
    let poll = Duration::from_millis(5);
    let (mut label, mut label_floor, mut policy, mut policy_floor) = (vec![], vec![], vec![], vec![]);
    let start = Instant::now();
    for i in 0..n {
        let (pod, action) = (format!("pod-{i}"), format!("iso-{i}"));
        let unlabel = json!({ "metadata": { "labels": { ISOLATED_LABEL: null } } });
        pods.patch(&pod, &PatchParams::default(), &Patch::Merge(&unlabel)).await.unwrap();
        let broken = Instant::now();
        while pods.get(&pod).await.unwrap().labels().get(ISOLATED_LABEL) != Some(&action) {
            tokio::time::sleep(poll).await;
        }
        label.push(broken.elapsed());

        let name = isolation::policy_name(&action);
        let desired = isolation::isolation_policy(&env.actions(ns).get(&action).await.unwrap());
        policies.delete(&name, &Default::default()).await.unwrap();
        let broken = Instant::now();
        while !policies.get_opt(&name).await.unwrap().is_some_and(|p| isolation::policy_is_current(&p, &desired)) {
            tokio::time::sleep(poll).await;
        }
        policy.push(broken.elapsed());
    }
    let wall = start.elapsed();
    // The floors, on a pod and a policy that no isolation watches over.
    env.pod(ns, "floor-pod", &[]).await;
    let floor_start = Instant::now();
    for i in 0..n {
        let relabel = json!({ "metadata": { "labels": { "floor": i.to_string() } } });
        let begun = Instant::now();
        pods.patch("floor-pod", &PatchParams::default(), &Patch::Merge(&relabel)).await.unwrap();
        label_floor.push(begun.elapsed());
        let unowned = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "floor-policy" },
                              "spec": { "podSelector": { "matchLabels": { "floor": "x" } }, "policyTypes": ["Ingress", "Egress"] } });
        policies.delete("floor-policy", &Default::default()).await.ok();
        let begun = Instant::now();
        policies.patch("floor-policy", &PatchParams::apply("bench").force(), &Patch::Apply(&unowned)).await.unwrap();
        policy_floor.push(begun.elapsed());
    }
    let floor_wall = floor_start.elapsed();
    let batch = |latencies, wall| Batch { latencies, wall };
    (batch(label, wall), batch(label_floor, floor_wall), batch(policy, wall), batch(policy_floor, floor_wall))
}

async fn prepare_namespace(env: &Env, ns: &str, pods: usize, shared_policy: bool) {
    env.namespace(ns).await;
    if shared_policy {
        env.apply::<NetworkPolicy>(
            ns,
            json!({ "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": { "name": "allow-all" },
                    "spec": { "podSelector": {}, "ingress": [{}] } }),
        )
        .await;
    }
    for i in 0..pods {
        env.pod(ns, &format!("pod-{i}"), &[("app", "web")]).await;
    }
}

struct Batch {
    latencies: Vec<Duration>,
    wall: Duration,
}

/// Creates the actions (on pods 0..n) and waits for each to be seen Succeeded by a watch.
async fn run_operator_batch(env: &Env, ns: &str, n: usize, concurrency: usize) -> Batch {
    let actions = (0..n)
        .map(|i| {
            let spec =
                json!({ "action": "Isolate", "target": { "pod": format!("pod-{i}") }, "requestedBy": "riposte-admin" });
            (format!("iso-{i}"), spec)
        })
        .collect();
    let start = Instant::now();
    let latencies = time_actions_until_succeeded(&env.actions(ns), actions, concurrency).await;
    let wall = start.elapsed();
    // Every isolation has its policy in place.
    let policies = env.policies(ns).list(&ListParams::default()).await.unwrap().items;
    assert!(policies.iter().filter(|p| isolation::is_managed_by_riposte(p)).count() >= n);
    Batch { latencies, wall }
}

/// The bare calls of one isolation, made directly: read the pod, label it,
/// apply the isolation policy, list the namespace's policies (and exclude the one that
/// selects the pod, when there is one), record the result.
async fn run_floor_batch(env: &Env, ns: &str, n: usize, concurrency: usize) -> Batch {
    let gate = Arc::new(Semaphore::new(concurrency));
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (client, gate, ns) = (env.client.clone(), gate.clone(), ns.to_owned());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
                let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), &ns);
                let actions: Api<ResponseAction> = Api::namespaced(client.clone(), &ns);
                let name = format!("floor-{i}");
                let pod_name = format!("pod-{i}");
                let begun = Instant::now();
                let action = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name },
                                     "spec": { "action": "Isolate", "target": { "pod": pod_name }, "dryRun": true, "requestedBy": "riposte-admin" } });
                let created = actions.patch(&name, &PatchParams::apply("bench"), &Patch::Apply(&action)).await.unwrap();
                let pod = pods.get(&pod_name).await.unwrap();
                let label = json!({ "metadata": { "uid": pod.uid(), "labels": { ISOLATED_LABEL: name } } });
                let pod = pods.patch(&pod_name, &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
                let policy = isolation::isolation_policy(&created);
                policies.patch(&policy.name_any(), &PatchParams::apply("bench").force(), &Patch::Apply(&policy)).await.unwrap();
                let existing = policies.list(&ListParams::default()).await.unwrap().items;
                for found in isolation::defeating_policies(&existing, &pod) {
                    let mut current = existing.iter().find(|p| p.name_any() == found.name).unwrap().clone();
                    while let Some(patch) = isolation::exclusion_patch(&current, &name) {
                        match policies.patch(&found.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                            Ok(_) => break,
                            Err(_) => current = policies.get(&found.name).await.unwrap(),
                        }
                    }
                }
                let status = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponseAction", "metadata": { "name": name },
                                     "status": { "phase": "Succeeded" } });
                actions.patch_status(&name, &PatchParams::apply("bench-floor").force(), &Patch::Apply(&status)).await.unwrap();
                begun.elapsed()
            })
        })
        .collect();
    let latencies = futures::future::join_all(tasks).await.into_iter().map(Result::unwrap).collect();
    Batch { latencies, wall: start.elapsed() }
}

fn report(scenario: &str, operator: &Batch, floor: &Batch, target: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let summarize = |b: &Batch| {
        let mut sorted = b.latencies.clone();
        sorted.sort();
        let total: Duration = sorted.iter().sum();
        (percentile(&sorted, 50.0), percentile(&sorted, 99.0), total.as_secs_f64() / b.wall.as_secs_f64())
    };
    let (p50, p99, overlap) = summarize(operator);
    let (f50, f99, f_overlap) = summarize(floor);
    println!("scenario: {scenario}");
    println!(
        "  riposte  p50 {:7.1} ms   p99 {:7.1} ms   wall {:6.2} s   mean actions in flight {overlap:.1}",
        ms(p50),
        ms(p99),
        operator.wall.as_secs_f64()
    );
    println!(
        "  floor    p50 {:7.1} ms   p99 {:7.1} ms   wall {:6.2} s   mean calls in flight   {f_overlap:.1}",
        ms(f50),
        ms(f99),
        floor.wall.as_secs_f64()
    );
    println!("  ratio    p50 {:.2}x   p99 {:.2}x   (target: {})\n", ms(p50) / ms(f50), ms(p99) / ms(f99), target);
}
