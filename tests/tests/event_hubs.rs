//! AKS audit logs through Event Hubs' Kafka endpoint, end to end: a real Apache Kafka broker
//! (the streams crate's harness; its SASL_SSL listener takes the user `$ConnectionString`
//! with a connection string as the password, as Event Hubs does), Riposte's consumer as
//! `riposte run --event-hubs-*` starts it, the detection pipeline, and the Alerts on a real
//! apiserver. The records are the AKS diagnostic records of `detect/tests/data/providers`
//! (SOURCES.md says where the format comes from).

#[allow(dead_code)]
#[path = "../../streams/tests/support/kafka_broker.rs"]
mod kafka_broker;

use std::time::Duration;

use kafka_broker::{KafkaBroker, SaslUser};
use kube::Api;
use kube::api::ListParams;
use prometheus_client::registry::Registry;
use riposte::detection::event_hubs::{self, EventHubsSettings};
use riposte::detection::pipeline::{self, QueueLimits};
use riposte::metrics::{DetectionMetrics, InputLabels};
use riposte_crds::Alert;
use riposte_e2e::{Env, detection_settings, eventually, repo_path};
use riposte_streams::kafka;
use serde_json::Value;

const HUB: &str = "insights-logs-kube-audit";
const CONNECTION_STRING: &str =
    "Endpoint=sb://localhost/;SharedAccessKeyName=riposte-listen;SharedAccessKey=cmlwb3N0ZS1la3M=";

/// The provider sample (a kube-audit lease update by AKS itself and mallory's privileged
/// pod `attacker`), with the pod renamed and the audit ID changed: another sighting.
fn records(pod: &str) -> String {
    let mut batch: Value =
        serde_json::from_slice(&std::fs::read(repo_path("detect/tests/data/providers/aks-event-hubs.json")).unwrap())
            .unwrap();
    for record in batch["records"].as_array_mut().unwrap() {
        let log = record["properties"]["log"].as_str().unwrap();
        let renamed = log.replace("attacker", pod).replace("\"auditID\":\"", &format!("\"auditID\":\"{pod}-"));
        record["properties"]["log"] = renamed.into();
    }
    batch.to_string()
}

async fn privileged_pods(env: &Env) -> Vec<String> {
    let alerts = Api::<Alert>::all(env.client.clone()).list(&ListParams::default()).await.unwrap().items;
    let mut pods: Vec<String> = alerts
        .iter()
        .filter(|a| a.spec.alert_type.0 == "K8S_PrivilegedContainer")
        .filter_map(|a| a.spec.entities.pod.clone())
        .collect();
    pods.sort();
    pods
}

// The broker's client and the apiserver's run beside the test's own waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aks_audit_records_from_event_hubs_raise_alerts_and_wait_in_the_hub_while_the_queue_is_full() {
    let broker = tokio::task::spawn_blocking(|| {
        KafkaBroker::start(&SaslUser {
            username: kafka::EVENT_HUBS_USERNAME.into(),
            password: CONNECTION_STRING.into(),
        })
    })
    .await
    .unwrap()
    .expect("the Kafka broker starts");
    broker.create_topic(HUB, 2).await.expect("the hub is created");
    let env = Env::start().await;
    env.namespace("riposte-system").await;

    // As `riposte run` makes them from its flags; the broker's own CA, on its port.
    let mut settings = EventHubsSettings {
        namespace: broker.sasl_ssl.clone(),
        connection_string: CONNECTION_STRING.into(),
        hubs: vec![HUB.into()],
        consumer_group: "riposte".into(),
        ca_file: Some(broker.ca_file.clone()),
    }
    .kafka()
    .expect("valid Event Hubs settings");
    settings.librdkafka.insert("broker.address.family".into(), "v4".into());
    settings.max_batch_wait = Duration::from_millis(100);
    settings.refusal_backoff = Duration::from_millis(200);

    // A queue of one event, whose rules do not run yet: the first batch fills it, the next
    // are refused and stay uncommitted in the hub.
    let metrics = DetectionMetrics::register(&mut Registry::default());
    let (queue, receiver) = pipeline::queue(QueueLimits { events: 1, bytes: 1 << 20 }, metrics.clone());
    let counters = kafka::Metrics::default();
    tokio::spawn(event_hubs::run(settings, queue, metrics.clone(), counters.clone()));

    broker.produce(HUB, &[(0, records("attacker"))]).await.unwrap();
    eventually("the first batch accepted", || async { (counters.snapshot().records_committed >= 1).then_some(()) })
        .await;
    broker.produce(HUB, &[(0, records("second")), (1, "not a diagnostic record".into())]).await.unwrap();
    eventually("a batch refused by the full queue", || async {
        (counters.snapshot().batches_refused >= 1).then_some(())
    })
    .await;
    assert!(
        metrics.events_deferred.get_or_create(&InputLabels { input: "event_hubs".into() }).get() >= 2,
        "the refused events are counted as deferred"
    );
    assert_eq!(
        metrics.events_dropped.get_or_create(&riposte::metrics::ReasonLabels { reason: "queue_full".into() }).get(),
        0,
        "and not as dropped: the hub keeps them"
    );
    let committed_while_full = counters.snapshot().records_committed;

    // The rules start: the queue drains, the refused batch is offered again and taken.
    let client = env.client.clone();
    let detection = detection_settings(riposte_detect::Config::default(), Duration::ZERO);
    tokio::spawn(pipeline::run(client, detection, receiver, None, metrics.clone(), std::future::pending()));
    let pods = eventually("both sightings' Alerts", || async {
        let pods = privileged_pods(&env).await;
        (pods.len() >= 2).then_some(pods)
    })
    .await;
    assert_eq!(pods, ["attacker", "second"]);
    let attacker = Api::<Alert>::all(env.client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|a| a.spec.entities.pod.as_deref() == Some("attacker"))
        .unwrap();
    assert_eq!(attacker.spec.entities.user.as_deref(), Some("mallory"));
    assert_eq!(attacker.spec.source.as_deref(), Some("riposte-audit"));

    eventually("every record committed", || async { (counters.snapshot().records_committed >= 3).then_some(()) }).await;
    assert!(counters.snapshot().records_committed > committed_while_full);
    // Each sample batch holds one cut-off audit event, and one Kafka record is no batch at
    // all: each counted once, however often its batch was offered, and the rest was read.
    assert_eq!(metrics.records_rejected.get_or_create(&InputLabels { input: "event_hubs".into() }).get(), 3);
    assert_eq!(privileged_pods(&env).await, ["attacker", "second"], "no sighting is raised twice");
}
