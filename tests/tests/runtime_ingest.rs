//! Falco's alerts into Riposte, on a real apiserver: its `http_output` (client certificate)
//! and Falcosidekick's webhook (bearer token), the real alerts a Falco 0.44 captured on this
//! machine kind, attributed to the pod that the container id names, raised as Alerts; an
//! unmapped rule kept; bad input refused and counted, the stream unharmed.

use std::path::Path;
use std::sync::{Arc, RwLock};

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use riposte::detection::runtime::{self, PodIndex, RuntimeSettings};
use riposte::detection::webhook::Credentials;
use riposte::local::LocalAuditWebhook;
use riposte::metrics::{DetectionMetrics, SensorLabels};
use riposte_crds::{Alert, Severity};
use riposte_e2e::{AUDIT_QUEUE, Env, eventually, post_with_curl, repo_path, serve_webhooks};
use serde_json::json;

/// The container id the captured alerts carry (Falco's 12 characters), in full as the
/// kubelet reports it.
const CONTAINER_ID: &str = "03f5519566a284ea064b1e5e81ebfe4c0ffee0000000000000000000000000001";

/// Posts a body to `url` as Falco does (its user agent), with `auth`; returns (HTTP code,
/// body).
fn post(url: &str, dir: &Path, body: &[u8], auth: &[&str]) -> (u16, String) {
    let args = [&["-H", "User-Agent: falcosecurity/falco"][..], auth].concat();
    post_with_curl(url, &dir.join("ca.crt"), body, &args)
}

fn evidence<'a>(alert: &'a Alert, name: &str) -> Option<&'a str> {
    alert.spec.evidence.iter().find(|e| e.name == name).map(|e| e.value.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falco_alerts_become_alerts_on_the_pod_they_name() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    env.namespace("shop").await;
    env.pod("shop", "web-1", &[]).await;
    // No kubelet on this control plane: report the container as a kubelet would.
    env.pods("shop")
        .patch_status(
            "web-1",
            &PatchParams::apply("kubelet-stand-in").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "Pod",
                "status": {"containerStatuses": [{
                    "name": "app", "image": "nginx:1.27", "imageID": "", "ready": true, "restartCount": 0,
                    "containerID": format!("containerd://{CONTAINER_ID}"),
                }]},
            })),
        )
        .await
        .expect("status reported");

    let local = LocalAuditWebhook::bind_with(
        1 << 20,
        Credentials { token: Some("sidekick-token".into()), ..Credentials::default() },
    )
    .await
    .expect("binds");
    let target = local.target.clone();
    let (server, _audit, _audit_metrics, inputs) = serve_webhooks(local.webhook, AUDIT_QUEUE);
    let pods = Arc::new(RwLock::new(PodIndex::default()));
    tokio::spawn(runtime::watch_pods(env.client.clone(), None, pods.clone()));
    let settings = RuntimeSettings {
        config: riposte_detect::runtime::RuntimeConfig::default(),
        namespace: "riposte-system".into(),
        node: None,
        hunting: riposte::hunting::HuntingSink::default(),
    };
    let detection = DetectionMetrics::register(&mut Default::default());
    let runtime_metrics = inputs.metrics.clone();
    let detector = tokio::spawn(runtime::run(
        env.client.clone(),
        settings,
        pods.clone(),
        inputs.receiver,
        detection,
        inputs.metrics,
        std::future::pending(),
    ));
    eventually("the pod is indexed", || {
        let pods = pods.clone();
        async move {
            let mut container =
                riposte_detect::runtime::Container { id: CONTAINER_ID[..12].into(), ..Default::default() };
            pods.read().unwrap().attribute(&mut container).then_some(())
        }
    })
    .await;

    let dir = std::env::temp_dir().join(format!("riposte-falco-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let certificate = riposte_e2e::write_webhook_credentials(&target, &dir);
    let falco_url = target.url.replace("/audit", "/falco");
    let sidekick_url = target.url.replace("/audit", "/falcosidekick");
    let certificate: Vec<&str> = certificate.iter().map(String::as_str).collect();
    let token = ["-H", "Authorization: Bearer sidekick-token"];

    // Falco sends no credentials: without a client certificate, refused before reading.
    let captured = std::fs::read_to_string(repo_path("detect/tests/fixtures/sensors/falco-modern-ebpf.jsonl")).unwrap();
    let first = captured.lines().next().unwrap();
    assert_eq!(post(&falco_url, &dir, first.as_bytes(), &[]).0, 401, "unauthenticated");
    assert_eq!(post(&sidekick_url, &dir, first.as_bytes(), &["-H", "Authorization: Bearer wrong"]).0, 401);

    // http_output: one alert per POST, as Falco sent these.
    for line in captured.lines() {
        let (code, body) = post(&falco_url, &dir, line.as_bytes(), &certificate);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""accepted":1"#), "{body}");
    }
    // Falcosidekick: the same payload with its uuid, and a rule of the user's own.
    let mut custom: serde_json::Value = serde_json::from_str(first).unwrap();
    custom["rule"] = json!("Our own rule: unexpected outbound from web");
    custom["priority"] = json!("Critical");
    custom["uuid"] = json!("8a8c5b2e-4d1f-4a0b-9d5e-2f0c1e3b4a59");
    let (code, body) = post(&sidekick_url, &dir, custom.to_string().as_bytes(), &token);
    assert_eq!(code, 200, "{body}");

    // Bad input: refused with what was wrong, counted; a good line beside a bad one is kept.
    let (code, body) = post(&falco_url, &dir, br#"{"rule": 7}"#, &certificate);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("rule"), "the error names the field: {body}");
    let (code, body) = post(&falco_url, &dir, b"not json at all", &certificate);
    assert_eq!(code, 400, "{body}");
    let mixed = format!("{{\"rule\":\n{}\n", captured.lines().nth(1).unwrap());
    let (code, body) = post(&falco_url, &dir, mixed.as_bytes(), &certificate);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(r#""accepted":1"#) && body.contains(r#""rejected":1"#), "{body}");
    assert!(body.contains("line 1"), "the bad line is named: {body}");
    let rejected = runtime_metrics.events_rejected.get_or_create(&SensorLabels { sensor: "falco".into() }).get();
    assert_eq!(rejected, 3);

    let alerts: Api<Alert> = Api::namespaced(env.client.clone(), "shop");
    let expected = [
        "K8S.NODE_SuspectPasswordFileAccess",
        "K8S.NODE_ReverseShell",
        "K8S.NODE_DigitalCurrencyMining",
        "K8S.NODE_HistoryFileCleared",
        "K8S.NODE_SuspectDownloadArtifacts",
        "Riposte.SensorRule",
    ];
    let raised = eventually("the Falco alerts are raised on pod shop/web-1", || {
        let alerts = alerts.clone();
        async move {
            let list = alerts.list(&ListParams::default()).await.ok()?.items;
            let types: Vec<String> = list.iter().map(|a| a.spec.alert_type.0.clone()).collect();
            expected.iter().all(|t| types.iter().any(|have| have == t)).then_some(list)
        }
    })
    .await;
    for alert in &raised {
        assert_eq!(alert.spec.entities.pod.as_deref(), Some("web-1"), "{}", alert.spec.title);
        assert_eq!(alert.spec.entities.container.as_deref(), Some("app"));
        assert_eq!(alert.spec.entities.image.as_deref(), Some("nginx:1.27"));
        assert_eq!(alert.spec.source.as_deref(), Some("falco"));
    }
    let shadow = raised.iter().find(|a| a.spec.alert_type.0 == "K8S.NODE_SuspectPasswordFileAccess").unwrap();
    assert_eq!(evidence(shadow, "commandLine"), Some("/usr/bin/cat /etc/shadow"));
    assert_eq!(evidence(shadow, "file"), Some("/etc/shadow"));
    let custom = raised.iter().find(|a| a.spec.alert_type.0 == "Riposte.SensorRule").unwrap();
    assert_eq!(evidence(custom, "rule"), Some("Our own rule: unexpected outbound from web"));
    assert_eq!(custom.spec.severity, Severity::High, "Falco's Critical");
    let shells = raised.iter().filter(|a| a.spec.alert_type.0 == "K8S.NODE_ReverseShell").count();
    assert_eq!(shells, 1, "three redirections of one process are one alert");

    server.abort();
    detector.abort();
    let _ = std::fs::remove_dir_all(dir);
}
