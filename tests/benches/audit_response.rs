//! Detection end to end, against a real kube-apiserver on loopback, with the operator and
//! the detection path running as in production (webhook over TLS, queue, rules, Alert
//! writes, ResponsePolicy, isolation):
//!
//! 1. Latency: audit batches posted to the webhook as kube-apiserver does (one HTTPS
//!    connection kept alive, bearer token), one every 100 ms, each of 50 events: 49 benign
//!    ones recorded from a real kube-apiserver and one privileged pod created. Measured from
//!    the post to the Alert stored in the apiserver (seen by a watch), and to the isolation
//!    that a ResponsePolicy asks for seen `Succeeded`.
//! 2. Memory: the process's resident memory while posting 5,000 events/s for 60 s.
//!
//! `cargo bench -p riposte-e2e --bench audit_response [-- ATTACKS SUSTAIN_SECONDS]`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use riposte::detection::pipeline;
use riposte::detection::webhook::Credentials;
use riposte::local::{AuditWebhookTarget, LocalAuditWebhook};
use riposte::metrics::{DetectionMetrics, ReasonLabels};
use riposte_crds::{Alert, Phase, ResponseAction, ResponsePolicy};
use riposte_e2e::{AUDIT_QUEUE, Env, default_guardrails, detection_settings, repo_path, serve_audit_webhook};
use serde_json::{Value, json};

const NS: &str = "bench";
const TOKEN: &str = "bench-token";
const BATCH: usize = 50;
const INTERVAL: Duration = Duration::from_millis(100);
const SUSTAINED_RATE: usize = 5_000;

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let attacks = args.first().copied().unwrap_or(200) as usize;
    let sustain = Duration::from_secs(args.get(1).copied().unwrap_or(60));

    let mut env = Env::start().await;
    env.namespace("riposte-system").await;
    env.namespace(NS).await;
    for i in 0..attacks {
        env.pod(NS, &format!("victim-{i}"), &[("app", "web")]).await;
    }
    let policy = json!({
        "apiVersion": "riposte.dev/v1alpha1", "kind": "ResponsePolicy",
        "metadata": { "name": "isolate-privileged" },
        "spec": { "mode": "Automatic", "match": { "alertTypes": ["K8S_PrivilegedContainer"], "namespaces": [NS] },
                  "actions": [{ "action": "Isolate" }], "maxActionsPerHour": 10000, "cooldownSeconds": 0 },
    });
    Api::<ResponsePolicy>::all(env.client.clone())
        .patch("isolate-privileged", &PatchParams::apply("bench"), &Patch::Apply(&policy))
        .await
        .expect("the policy applies");
    env.run_operator(env.client.clone(), default_guardrails());

    let local = LocalAuditWebhook::bind_with(
        32 * 1024 * 1024,
        Credentials { token: Some(TOKEN.into()), ..Credentials::default() },
    )
    .await
    .expect("the webhook binds");
    let target = local.target.clone();
    let (_server, receiver, metrics) = serve_audit_webhook(local.webhook, AUDIT_QUEUE);
    let settings = detection_settings(riposte_detect::Config::default(), Duration::from_secs(3600));
    let client = env.client.clone();
    let evaluated = metrics.clone();
    tokio::spawn(
        async move { pipeline::run(client, settings, receiver, None, evaluated, std::future::pending()).await },
    );

    let alerts_seen = watch_alerts(&env);
    let isolations_seen = watch_isolations(&env);
    let noise = benign_events();
    let mut poster = Poster::connect(&target).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    println!(
        "audit batch posted → Alert → isolation: {attacks} batches of {BATCH} events (49 benign, 1 privileged pod), \
         one every {INTERVAL:?}, 1 ResponsePolicy, kube-apiserver on loopback\n"
    );
    let mut posted = HashMap::new();
    let mut tick = tokio::time::interval(INTERVAL);
    for i in 0..attacks {
        tick.tick().await;
        let mut events: Vec<Value> = (0..BATCH - 1).map(|j| noise[(i * BATCH + j) % noise.len()].clone()).collect();
        events.push(privileged_pod_created(i));
        let body = event_list(&events);
        let pod = format!("victim-{i}");
        posted.insert(pod, Instant::now());
        poster.post(&body).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while isolations_seen.lock().unwrap().len() < attacks && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    report("audit batch posted → Alert stored", &posted, &alerts_seen, attacks);
    report("audit batch posted → isolation Succeeded", &posted, &isolations_seen, attacks);
    println!(
        "detection path alone (riposte_detection_seconds, batch received → Alert created): mean {:.1} ms over {} alerts",
        histogram_mean_ms(&metrics),
        metrics.alerts_created.get()
    );

    sustained(&mut poster, &noise, &metrics, sustain).await;
}

/// Posts 5,000 benign events a second for `duration` and samples the process's memory.
async fn sustained(poster: &mut Poster, noise: &[Value], metrics: &DetectionMetrics, duration: Duration) {
    // Services written at 5,000 events/s would make every batch list the workloads of its
    // namespace, which no real cluster does: the sustained mix has no Service writes.
    let noise: Vec<&Value> = noise.iter().filter(|e| e["objectRef"]["resource"] != "services").collect();
    let per_batch = SUSTAINED_RATE / 10;
    let before = memory();
    let received_before = metrics.events_received.get();
    println!(
        "\nsustained load: {SUSTAINED_RATE} events/s ({per_batch} per batch, every {INTERVAL:?}) for {}s",
        duration.as_secs()
    );
    println!("resident memory before: {:.1} MiB", before.resident_mib);
    let started = Instant::now();
    let mut tick = tokio::time::interval(INTERVAL);
    let mut samples = Vec::new();
    let mut max_queue = 0;
    let mut i = 0;
    while started.elapsed() < duration {
        tick.tick().await;
        let events: Vec<Value> = (0..per_batch)
            .map(|_| {
                i += 1;
                let mut event = noise[i % noise.len()].clone();
                event["auditID"] = Value::String(format!("sustained-{i}"));
                event
            })
            .collect();
        poster.post(&event_list(&events)).await;
        max_queue = max_queue.max(metrics.queued_events.get());
        if i % SUSTAINED_RATE < per_batch {
            samples.push(memory().resident_mib);
        }
    }
    let posted = metrics.events_received.get() - received_before;
    let elapsed = started.elapsed().as_secs_f64();
    while metrics.queued_events.get() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = memory();
    let dropped = metrics.events_dropped.get_or_create(&ReasonLabels { reason: "queue_full".into() }).get();
    println!("posted {posted} events in {elapsed:.1}s: {:.0} events/s; dropped {dropped}", posted as f64 / elapsed);
    println!("largest queue seen: {max_queue} events");
    let max = samples.iter().copied().fold(0.0, f64::max);
    let steady: Vec<f64> = samples.iter().skip(samples.len() / 2).copied().collect();
    println!(
        "resident memory under load: max {max:.1} MiB, second half {:.1}–{:.1} MiB; after {:.1} MiB; peak (VmHWM) {:.1} MiB",
        steady.iter().copied().fold(f64::MAX, f64::min),
        steady.iter().copied().fold(0.0, f64::max),
        after.resident_mib,
        after.peak_mib
    );
    println!(
        "growth over the run: {:.1} MiB (the process also holds the operator's caches, the kube clients and this load generator)",
        after.resident_mib - before.resident_mib
    );
}

fn report(what: &str, posted: &HashMap<String, Instant>, seen: &Seen, expected: usize) {
    let seen = seen.lock().unwrap();
    let mut latencies: Vec<f64> = posted
        .iter()
        .filter_map(|(pod, at)| seen.get(pod).map(|done| done.saturating_duration_since(*at).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    assert_eq!(latencies.len(), expected, "{what}: only {} of {expected} completed", latencies.len());
    println!(
        "{what:<42} p50 {:>6.0} ms   p90 {:>6.0} ms   p99 {:>6.0} ms   max {:>6.0} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
}

fn histogram_mean_ms(metrics: &DetectionMetrics) -> f64 {
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("h", "", metrics.detection_seconds.clone());
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("h_{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    value("sum") / value("count").max(1.0) * 1000.0
}

/// When each pod's K8S_PrivilegedContainer Alert was first seen.
fn watch_alerts(env: &Env) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let alerts: Api<Alert> = Api::namespaced(env.client.clone(), NS);
    tokio::spawn(async move {
        let mut stream = watcher(alerts, watcher::Config::default()).applied_objects().boxed();
        while let Ok(Some(alert)) = stream.try_next().await {
            if let Some(pod) = alert.spec.entities.pod.clone() {
                record.lock().unwrap().entry(pod).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// When each pod's isolation was first seen Succeeded.
fn watch_isolations(env: &Env) -> Seen {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let actions: Api<ResponseAction> = Api::namespaced(env.client.clone(), NS);
    tokio::spawn(async move {
        let mut stream = watcher(actions, watcher::Config::default()).applied_objects().boxed();
        while let Ok(Some(action)) = stream.try_next().await {
            let phase = action.status.as_ref().and_then(|s| s.phase);
            assert_ne!(phase, Some(Phase::Failed), "{:?}", action.status);
            if phase == Some(Phase::Succeeded) {
                record.lock().unwrap().entry(action.spec.target.pod.clone()).or_insert_with(Instant::now);
            }
        }
    });
    seen
}

/// Benign events recorded from a real kube-apiserver (detect/tests/fixtures).
fn benign_events() -> Vec<Value> {
    ["benign-workloads.jsonl", "benign-other.jsonl", "bootstrap.jsonl"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(repo_path("detect/tests/fixtures").join(file)).expect("fixture");
            text.lines().map(|l| serde_json::from_str::<Value>(l).expect("a fixture event")).collect::<Vec<_>>()
        })
        .collect()
}

/// The audit event of `kubectl run victim-<i> --privileged`, as kube-apiserver wrote it
/// for the attack fixture, renamed.
fn privileged_pod_created(i: usize) -> Value {
    static TEMPLATE: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let text = std::fs::read_to_string(repo_path("detect/tests/fixtures/attack-workloads.jsonl")).expect("fixture");
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("a fixture event"))
            .find(|e| {
                e["verb"] == "create" && e["objectRef"]["resource"] == "pods" && e["objectRef"]["name"] == "attacker"
            })
            .expect("the attack fixture creates the privileged pod attacker")
    });
    let mut event = template.clone();
    let name = format!("victim-{i}");
    event["auditID"] = Value::String(format!("bench-attack-{i}"));
    event["objectRef"]["name"] = Value::String(name.clone());
    event["objectRef"]["namespace"] = Value::String(NS.into());
    event["requestURI"] = Value::String(format!("/api/v1/namespaces/{NS}/pods"));
    for object in ["requestObject", "responseObject"] {
        event[object]["metadata"]["name"] = Value::String(name.clone());
        event[object]["metadata"]["namespace"] = Value::String(NS.into());
    }
    event
}

fn event_list(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(
        &json!({ "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events }),
    )
    .expect("serialises")
}

/// One HTTPS connection kept alive, as kube-apiserver's webhook backend keeps it.
struct Poster {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl Poster {
    async fn connect(target: &AuditWebhookTarget) -> Poster {
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(target.ca_pem.as_bytes()) {
            roots.add(certificate.expect("a CA certificate")).expect("a usable CA");
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let authority = target.url.trim_start_matches("https://").split('/').next().expect("an authority").to_owned();
        let tcp = tokio::net::TcpStream::connect(&authority).await.expect("the webhook listens");
        tcp.set_nodelay(true).expect("nodelay");
        let server_name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a server name").to_owned();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(server_name, tcp).await.expect("TLS");
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.expect("HTTP/1.1");
        tokio::spawn(connection);
        Poster { sender, authority }
    }

    async fn post(&mut self, body: &[u8]) {
        let request = hyper::Request::post(riposte::detection::webhook::PATH)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("a request");
        let response = self.sender.send_request(request).await.expect("the webhook answers");
        let status = response.status();
        let text = response.into_body().collect().await.expect("a body").to_bytes();
        assert!(status.is_success(), "{status}: {}", String::from_utf8_lossy(&text));
    }
}

struct Memory {
    resident_mib: f64,
    peak_mib: f64,
}

fn memory() -> Memory {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Memory { resident_mib: kib("VmRSS:") / 1024.0, peak_mib: kib("VmHWM:") / 1024.0 }
}
