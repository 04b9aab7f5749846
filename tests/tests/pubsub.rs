//! GKE audit logs as a Pub/Sub push subscription delivers them: a log sink's topic, a push
//! subscription to Riposte's `/pubsub` with an OIDC token Google signed for the
//! subscription's service account, and the Alerts on a real apiserver. Google's side (its
//! signing keys, its key set served over HTTPS) is the streams crate's test support; the
//! push request is the provider sample of `detect/tests/data/providers` (SOURCES.md).

#[allow(dead_code)]
#[path = "../../streams/tests/support/google.rs"]
mod google;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use google::{ACCOUNT, AUDIENCE, JwksServer, SigningKey, claims};
use kube::Api;
use kube::api::ListParams;
use riposte::detection::pipeline;
use riposte::detection::webhook::{Credentials, PubSubPush};
use riposte::local::LocalAuditWebhook;
use riposte::metrics::InputLabels;
use riposte_crds::Alert;
use riposte_e2e::{AUDIT_QUEUE, Env, detection_settings, eventually, post_with_curl, repo_path, serve_audit_webhook};

const AUDIT_TOKEN: &str = "the-audit-webhooks-token";

/// Pushes `body` to `url`, with `Authorization: Bearer <token>` when given; returns (HTTP
/// code, body).
fn push(url: &str, ca: &Path, body: &[u8], token: Option<&str>) -> (u16, String) {
    let authorization = token.map(|token| format!("Authorization: Bearer {token}"));
    let args: Vec<&str> = authorization.iter().flat_map(|header| ["-H", header.as_str()]).collect();
    post_with_curl(url, ca, body, &args)
}

/// A push request of one message whose data is `entry`.
fn push_request(entry: &serde_json::Value) -> Vec<u8> {
    let data = base64::engine::general_purpose::STANDARD.encode(entry.to_string());
    serde_json::json!({
        "message": { "data": data, "messageId": "2070443601311540", "publishTime": "2026-11-22T20:43:28.5Z" },
        "subscription": "projects/shop-prod-4711/subscriptions/riposte-audit",
    })
    .to_string()
    .into_bytes()
}

// curl blocks its thread: the webhook and the key set server serve on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pubsub_push_of_gke_audit_logs_is_verified_and_raises_its_alert() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    let key = SigningKey::generate("google-1");
    let rotated = SigningKey::generate("google-2");
    let jwks = JwksServer::start(&[&key], "public, max-age=19330, must-revalidate, no-transform").await;
    let credentials = Credentials {
        token: Some(AUDIT_TOKEN.into()),
        firehose_access_key: None,
        pubsub: Some(PubSubPush {
            audience: AUDIENCE.into(),
            service_account: ACCOUNT.into(),
            jwks: jwks.settings(true),
        }),
    };
    let local = LocalAuditWebhook::bind_with(1 << 20, credentials).await.expect("the webhook binds");
    let url = local.target.url.replace("/audit", "/pubsub");
    let dir = std::env::temp_dir().join(format!("riposte-pubsub-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, &local.target.ca_pem).unwrap();
    let (_server, receiver, metrics) = serve_audit_webhook(local.webhook, AUDIT_QUEUE);
    let settings = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    tokio::spawn(pipeline::run(env.client.clone(), settings, receiver, None, metrics.clone(), std::future::pending()));

    let sample = std::fs::read(repo_path("detect/tests/data/providers/pubsub-push.json")).unwrap();
    let token = key.token(&claims(|_| {}));

    // Refused before the body is read: no token, the audit webhook's own token, a token for
    // another audience, one from another service account, one signed by a stranger.
    assert_eq!(push(&url, &ca, &sample, None).0, 401);
    assert_eq!(push(&url, &ca, &sample, Some(AUDIT_TOKEN)).0, 401, "the audit token does not open /pubsub");
    let other_audience = key.token(&claims(|c| c["aud"] = "https://elsewhere.example.com/push".into()));
    assert_eq!(push(&url, &ca, &sample, Some(&other_audience)).0, 401);
    let other_account = key.token(&claims(|c| c["email"] = "intruder@riposte-test.iam.gserviceaccount.com".into()));
    assert_eq!(push(&url, &ca, &sample, Some(&other_account)).0, 401);
    let forged = rotated.sign(serde_json::json!({"alg": "RS256", "kid": "google-1"}), &claims(|_| {}));
    assert_eq!(push(&url, &ca, &sample, Some(&forged)).0, 401, "signed by another key under Google's key id");
    let stranger = rotated.token(&claims(|_| {}));
    assert_eq!(push(&url, &ca, &sample, Some(&stranger)).0, 401, "a key the set does not hold");

    // Verified, but not a push request: 400, with what was seen.
    let (code, answer) = push(&url, &ca, b"{\"records\": []}", Some(&token));
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("Pub/Sub"), "{answer}");

    // The sample: accepted, and its privileged pod raised.
    let (code, answer) = push(&url, &ca, &sample, Some(&token));
    assert_eq!(code, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["accepted"], 1, "{answer}");
    let alert = eventually("the pushed pod's Alert", || async {
        let alerts = Api::<Alert>::all(env.client.clone()).list(&ListParams::default()).await.ok()?.items;
        alerts.into_iter().find(|a| a.spec.alert_type.0 == "K8S_PrivilegedContainer")
    })
    .await;
    assert_eq!(alert.spec.entities.pod.as_deref(), Some("attacker"));
    assert_eq!(alert.spec.entities.namespace.as_deref(), Some("shop"));
    assert_eq!(alert.spec.entities.user.as_deref(), Some("mallory"));

    // A LogEntry of another service (a sink with a broad filter): acknowledged, skipped.
    let compute = serde_json::json!({
        "insertId": "x1", "logName": "projects/shop-prod-4711/logs/cloudaudit.googleapis.com%2Factivity",
        "protoPayload": { "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                          "serviceName": "compute.googleapis.com", "methodName": "v1.compute.instances.insert" },
    });
    let (code, answer) = push(&url, &ca, &push_request(&compute), Some(&token));
    assert_eq!(code, 200, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!((answer["accepted"].as_u64(), answer["skipped"].as_u64()), (Some(0), Some(1)), "{answer}");

    // A GKE entry that cannot be converted: acknowledged (it would fail again), counted.
    let broken = serde_json::json!({
        "insertId": "x2", "protoPayload": { "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                                            "serviceName": "k8s.io", "methodName": 7 },
    });
    let (code, answer) = push(&url, &ca, &push_request(&broken), Some(&token));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(metrics.records_rejected.get_or_create(&InputLabels { input: "pubsub".into() }).get(), 2);

    // Google rotated its keys and its key set cannot be fetched: Pub/Sub is told to retry.
    jwks.served.lock().unwrap().status = 503;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, answer) = push(&url, &ca, &sample, Some(&rotated.token(&claims(|_| {}))));
    assert_eq!(code, 503, "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}
