//! EKS audit logs as Amazon Data Firehose delivers them: a CloudWatch Logs subscription of
//! the cluster's log group, a Firehose stream with an HTTP endpoint destination, Riposte's
//! `/firehose` endpoint over TLS with the stream's access key, and the Alerts stored on a
//! real apiserver. The delivery is the provider sample of `detect/tests/data/providers`
//! (its SOURCES.md says where each part of the format comes from).

use std::path::Path;
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use riposte::detection::pipeline;
use riposte::detection::webhook::Credentials;
use riposte::local::LocalAuditWebhook;
use riposte_crds::Alert;
use riposte_e2e::{AUDIT_QUEUE, Env, detection_settings, eventually, post_with_curl, repo_path, serve_audit_webhook};

const ACCESS_KEY: &str = "firehose-access-key";

/// Delivers `body` to the webhook's `/firehose` as Firehose does (its protocol version and
/// access key headers); returns (HTTP code, answer).
fn deliver(url: &str, ca: &Path, body: &[u8], access_key: &str) -> (u16, serde_json::Value) {
    let key = format!("X-Amz-Firehose-Access-Key: {access_key}");
    let (code, answer) = post_with_curl(url, ca, body, &["-H", "X-Amz-Firehose-Protocol-Version: 1.0", "-H", &key]);
    (code, serde_json::from_str(&answer).unwrap_or(serde_json::Value::Null))
}

// curl blocks its thread: the webhook serves on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firehose_delivery_of_eks_audit_logs_raises_its_alerts_and_gets_firehoses_answer() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    let local = LocalAuditWebhook::bind_with(
        1 << 20,
        Credentials { token: Some("unused-token".into()), firehose_access_key: Some(ACCESS_KEY.into()), pubsub: None },
    )
    .await
    .expect("the webhook binds");
    let url = local.target.url.replace("/audit", "/firehose");
    let dir = std::env::temp_dir().join(format!("riposte-firehose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &local.target.ca_pem).unwrap();
    let ca = dir.join("ca.crt");
    let (_server, receiver, metrics) = serve_audit_webhook(local.webhook, AUDIT_QUEUE);
    let settings = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    let client = env.client.clone();
    tokio::spawn(pipeline::run(client, settings, receiver, None, metrics, std::future::pending()));

    let delivery = std::fs::read(repo_path("detect/tests/data/providers/firehose-delivery.json")).unwrap();
    let request: serde_json::Value = serde_json::from_slice(&delivery).unwrap();

    // The wrong key: refused before the body is read; Firehose will retry.
    assert_eq!(deliver(&url, &ca, &delivery, "wrong").0, 401);
    // Not a delivery: 400, with Firehose's answer and what was wrong.
    let (code, answer) = deliver(&url, &ca, b"{\"records\": 3}", ACCESS_KEY);
    assert_eq!(code, 400);
    assert!(answer["errorMessage"].as_str().is_some_and(|m| !m.is_empty()), "{answer}");

    let (code, answer) = deliver(&url, &ca, &delivery, ACCESS_KEY);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["requestId"], request["requestId"], "the request id is echoed");
    assert!(answer["timestamp"].as_i64().is_some_and(|t| t > 1_700_000_000_000), "{answer}");
    assert!(answer.get("errorMessage").is_none(), "{answer}");

    let alerts = eventually("the delivery's Alerts", || async {
        let alerts = Api::<Alert>::all(env.client.clone()).list(&ListParams::default()).await.ok()?.items;
        let types: Vec<String> = alerts.iter().map(|a| a.spec.alert_type.0.clone()).collect();
        (types.iter().any(|t| t == "K8S_PrivilegedContainer") && types.iter().any(|t| t == "K8S_ClusterAdminBinding"))
            .then_some(alerts)
    })
    .await;
    let pod = alerts.iter().find(|a| a.spec.alert_type.0 == "K8S_PrivilegedContainer").unwrap();
    assert_eq!(pod.spec.entities.pod.as_deref(), Some("attacker"));
    // Firehose retries a delivery it got no 200 for: the same one again raises nothing new.
    let before = alerts.len();
    assert_eq!(deliver(&url, &ca, &delivery, ACCESS_KEY).0, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Api::<Alert>::all(env.client.clone()).list(&ListParams::default()).await.unwrap().items.len();
    assert_eq!(after, before, "a retried delivery names the same Alerts");
    let _ = std::fs::remove_dir_all(&dir);
}
