//! Managed clusters' envelopes (`tests/data/providers`, built from the providers'
//! documentation: see its SOURCES.md) around two attacks of the fixtures, a privileged pod
//! and a cluster-admin binding, as kube-apiserver wrote them: each envelope unwraps to those
//! events, and the engine finds in them what it finds in the plain events.

use std::io::Write;

use base64::Engine as _;
use riposte_detect::audit::{Event, Level, Stage, Timestamp, parse_event};
use riposte_detect::envelope::{self, Format, Lines, SkipReason, Unwrapped, firehose};
use riposte_detect::{Baseline, Config, Engine, Finding, LearningPeriod, Workload};

const PRIVILEGED_POD: &str = "729aa701-7cf0-427e-a2f4-c8da83c50166";
const ADMIN_BINDING: &str = "5c702f43-bced-461f-a70c-5ba99419f476";
/// The AKS documentation's own sample event (a lease renewal).
const AKS_SAMPLE: &str = "10e60f03-0635-429b-b324-315166f249cc";

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/providers/{name}", env!("CARGO_MANIFEST_DIR"))).expect("test data exists")
}

/// The plain events, as the apiserver's log backend wrote them.
fn plain_attacks() -> Vec<Event> {
    let mut events = Vec::new();
    for (fixture, id) in [("attack-workloads.jsonl", PRIVILEGED_POD), ("attack-control-plane.jsonl", ADMIN_BINDING)] {
        let text = std::fs::read_to_string(format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let line = text.lines().find(|l| l.contains(id)).expect("the attack is in the fixture");
        events.push(parse_event(line.as_bytes()).unwrap());
    }
    events
}

fn ids(unwrapped: &Unwrapped) -> Vec<&str> {
    unwrapped.events.iter().map(|e| e.audit_id.as_str()).collect()
}

fn skipped(unwrapped: &Unwrapped) -> Vec<(String, SkipReason)> {
    unwrapped.skipped.iter().map(|s| (s.record.clone(), s.reason.clone())).collect()
}

fn malformed(unwrapped: &Unwrapped) -> Vec<String> {
    unwrapped.malformed.iter().map(ToString::to_string).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn aks_event_hubs_records_unwrap_to_their_kube_audit_events_and_skip_the_other_categories() {
    let body = envelope::unwrap(&data("aks-event-hubs.json")).unwrap();
    assert_eq!(body.format, Format::AksDiagnostics);
    assert_eq!(ids(&body), [AKS_SAMPLE, PRIVILEGED_POD, ADMIN_BINDING]);
    assert_eq!(
        skipped(&body),
        [
            ("records[2]".to_owned(), SkipReason::OtherCategory("kube-apiserver".into())),
            ("records[4]".to_owned(), SkipReason::OtherCategory("guard".into())),
        ]
    );
    let errors = malformed(&body);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            r#"records[5]: an AKS diagnostic record (category kube-audit) whose properties.log ("{\"kind\":\"Event\","#
        ) && errors[0].ends_with(r#"...) is not an audit event: EOF while parsing a string at line 1 column 81"#),
        "{}",
        errors[0]
    );
    assert_eq!(body.events[0].user.username, "aksService");
}

#[test]
fn aks_storage_blobs_are_json_lines_of_single_records() {
    let blob = envelope::unwrap(&data("aks-storage-PT1H.json")).unwrap();
    assert_eq!(blob.format, Format::AksDiagnostics);
    assert_eq!(ids(&blob), [PRIVILEGED_POD, ADMIN_BINDING]);
    assert_eq!(skipped(&blob), [("line 2".to_owned(), SkipReason::OtherCategory("kube-apiserver".into()))]);

    let read: Vec<Unwrapped> = Lines::new(&data("aks-storage-PT1H.json")[..]).collect::<Result<_, _>>().unwrap();
    assert_eq!(read.len(), 3, "one line at a time");
    assert_eq!(skipped(&read[1]), [("line 2".to_owned(), SkipReason::OtherCategory("kube-apiserver".into()))]);
}

#[test]
fn eks_cloudwatch_payloads_unwrap_plain_or_gzip_compressed() {
    let payload = data("eks-cloudwatch-audit.json");
    for body in [payload.clone(), gzip(&payload)] {
        let unwrapped = envelope::unwrap(&body).unwrap();
        assert_eq!(unwrapped.format, Format::CloudWatchLogs);
        assert_eq!(ids(&unwrapped), [PRIVILEGED_POD, ADMIN_BINDING]);
        let errors = malformed(&unwrapped);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with(
                "logEvents[2]: a CloudWatch log event (log stream kube-apiserver-audit-a8f1c2e5b7d94c06e1f3a2b4c6d8e0f1, \
                 id 37890127651947210000000000000000000000000000000000000002) whose message"
            ),
            "{}",
            errors[0]
        );
    }
    let other = envelope::unwrap(&data("eks-cloudwatch-authenticator.json")).unwrap();
    assert!(other.events.is_empty() && other.malformed.is_empty());
    assert_eq!(
        skipped(&other),
        [(
            "logEvents[0]".to_owned(),
            SkipReason::OtherLogStream("authenticator-a8f1c2e5b7d94c06e1f3a2b4c6d8e0f1".into())
        )]
    );
    let control = envelope::unwrap(&data("cloudwatch-control-message.json")).unwrap();
    assert_eq!(skipped(&control), [("the body".to_owned(), SkipReason::ControlMessage)]);
}

#[test]
fn firehose_deliveries_unwrap_each_record_and_report_the_bad_ones() {
    let delivery = envelope::unwrap(&data("firehose-delivery.json")).unwrap();
    assert_eq!(delivery.format, Format::FirehoseDelivery);
    assert_eq!(ids(&delivery), [PRIVILEGED_POD, ADMIN_BINDING]);
    assert_eq!(
        skipped(&delivery),
        [
            ("records[0]".to_owned(), SkipReason::ControlMessage),
            (
                "records[2].logEvents[0]".to_owned(),
                SkipReason::OtherLogStream("authenticator-a8f1c2e5b7d94c06e1f3a2b4c6d8e0f1".into())
            ),
            ("records[3]".to_owned(), SkipReason::EmptyRecord),
        ]
    );
    let errors = malformed(&delivery);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].starts_with("records[1].logEvents[2]: a CloudWatch log event"), "{}", errors[0]);
    assert!(errors[1].starts_with("records[4]: the data of record 4 is not base64: "), "{}", errors[1]);
    // Content-Encoding: gzip on the whole request.
    assert_eq!(
        ids(&envelope::unwrap(&gzip(&data("firehose-delivery.json"))).unwrap()),
        [PRIVILEGED_POD, ADMIN_BINDING]
    );

    // The documentation's example: the payload as an object, its messages not audit events.
    let example = envelope::unwrap(&data("firehose-doc-example.json")).unwrap();
    assert!(example.events.is_empty());
    let errors = malformed(&example);
    assert_eq!(errors.len(), 2);
    assert!(
        errors[0].starts_with(
            "records[0].logEvents[0]: a CloudWatch log event (log stream log_stream_name, id \
             0123456789012345678901234567890123456789012345) whose message (\"log message 1\") is not an audit event"
        ),
        "{}",
        errors[0]
    );
}

#[test]
fn the_firehose_protocol_request_and_response() {
    let request = firehose::parse_request(&data("firehose-doc-example.json")).unwrap();
    assert_eq!(
        (request.request_id.as_str(), request.timestamp),
        ("ed4acda5-034f-9f42-bba1-f29aea6d7d8f", Some(1578090901599))
    );
    assert_eq!(request.records.len(), 1);
    let delivery = firehose::parse_request(&data("firehose-delivery.json")).unwrap();
    assert_eq!(delivery.records.len(), 5);
    assert!(delivery.records[0].as_ref().unwrap().starts_with(&[0x1f, 0x8b]), "the data is decoded, not inflated");
    assert!(delivery.records[4].is_err());

    let ok = firehose::response_body("ed4acda5-034f-9f42-bba1-f29aea6d7d8f", 1578090903599, None);
    assert_eq!(ok, r#"{"requestId":"ed4acda5-034f-9f42-bba1-f29aea6d7d8f","timestamp":1578090903599}"#);
    let failed = firehose::response_body("r-1", 7, Some("Unable to deliver records due to unknown error."));
    assert_eq!(
        failed,
        r#"{"errorMessage":"Unable to deliver records due to unknown error.","requestId":"r-1","timestamp":7}"#
    );
    let long = "é".repeat(firehose::MAX_ERROR_MESSAGE);
    let cut: serde_json::Value = serde_json::from_str(&firehose::response_body("r", 0, Some(&long))).unwrap();
    let message = cut["errorMessage"].as_str().unwrap();
    assert_eq!(message.len(), firehose::MAX_ERROR_MESSAGE, "cut to the limit, at a character boundary");

    let err = firehose::parse_request(br#"{"records":[]}"#).unwrap_err().to_string();
    assert!(err.starts_with("not a valid Firehose HTTP endpoint delivery: missing field `requestId`"), "{err}");
}

#[test]
fn gke_log_entries_convert_field_by_field() {
    let entries = envelope::unwrap(&data("gke-logentries.json")).unwrap();
    assert_eq!(entries.format, Format::GkeAuditLog);
    assert_eq!(ids(&entries), [PRIVILEGED_POD, ADMIN_BINDING], "auditID is the operation's id");
    assert_eq!(
        skipped(&entries),
        [
            ("[1]".to_owned(), SkipReason::OtherService("container.googleapis.com".into())),
            ("[3]".to_owned(), SkipReason::SplitPart { index: 1, total: 2 }),
        ]
    );
    let plain = plain_attacks();
    let (pod, binding) = (&entries.events[0], &entries.events[1]);
    assert_eq!(
        (pod.verb.as_str(), &pod.stage, &pod.level),
        ("create", &Stage::ResponseComplete, &Level::RequestResponse)
    );
    let object = pod.object_ref.as_ref().unwrap();
    assert_eq!((object.api_group.as_str(), object.api_version.as_str(), object.resource.as_str()), ("", "v1", "pods"));
    assert_eq!((object.namespace.as_str(), object.name.as_str()), ("shop", "attacker"));
    assert_eq!(pod.request_uri, "/api/v1/namespaces/shop/pods", "the collection; the query is not recorded");
    assert_eq!(pod.user.username, "mallory");
    assert_eq!(pod.source_ips, plain[0].source_ips[..1]);
    assert_eq!(pod.user_agent, plain[0].user_agent);
    assert_eq!(pod.status_code(), Some(200));
    assert_eq!(
        pod.request_received_timestamp,
        Some(plain[0].request_received_timestamp.unwrap()),
        "nanoseconds read to the microsecond"
    );
    assert_eq!(pod.annotations["authorization.k8s.io/decision"], "allow");
    assert_eq!(pod.annotations["riposte.dev/gke-resource-cluster_name"], "shop-prod");
    assert!(pod.annotations.contains_key("riposte.dev/gke-receive-timestamp"));
    assert!(
        pod.request_object.as_ref().unwrap().get().contains(r#""@type": "core.k8s.io/v1.Pod""#),
        "kept as GKE wrote it"
    );
    let object = binding.object_ref.as_ref().unwrap();
    assert_eq!(
        (object.api_group.as_str(), object.resource.as_str()),
        ("rbac.authorization.k8s.io", "clusterrolebindings")
    );
    assert_eq!(binding.request_uri, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings");

    let lines = envelope::unwrap(&data("gke-logentries.jsonl")).unwrap();
    assert_eq!(ids(&lines), [PRIVILEGED_POD, ADMIN_BINDING]);
}

/// A LogEntry of the GKE shape, with the given payload fields.
fn gke_entry(payload: serde_json::Value) -> Vec<u8> {
    let mut proto = serde_json::json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog", "serviceName": "k8s.io",
        "authenticationInfo": {"principalEmail": "alice@example.com"},
        "requestMetadata": {"callerIp": "203.0.113.7", "callerSuppliedUserAgent": "kubectl/v1.33.1"},
    });
    proto.as_object_mut().unwrap().extend(payload.as_object().unwrap().clone());
    serde_json::json!({"insertId": "abc123", "timestamp": "2026-11-22T20:43:27.123456789Z", "protoPayload": proto})
        .to_string()
        .into_bytes()
}

fn gke_event(payload: serde_json::Value) -> Event {
    let mut unwrapped = envelope::unwrap(&gke_entry(payload)).unwrap();
    assert_eq!(unwrapped.events.len(), 1, "{:?}", malformed(&unwrapped));
    unwrapped.events.remove(0)
}

#[test]
fn gke_resource_names_statuses_and_ids_map_to_the_apiserver_s() {
    let exec = gke_event(serde_json::json!({
        "methodName": "io.k8s.core.v1.pods.exec.create", "resourceName": "core/v1/namespaces/shop/pods/web-1/exec",
        "status": {"code": 7, "message": "forbidden"},
    }));
    let object = exec.object_ref.as_ref().unwrap();
    assert_eq!((object.name.as_str(), object.subresource.as_str()), ("web-1", "exec"));
    assert_eq!(exec.request_uri, "/api/v1/namespaces/shop/pods/web-1/exec");
    assert_eq!(exec.status_code(), Some(403), "PERMISSION_DENIED");
    assert_eq!(exec.response_status.as_ref().unwrap().message.as_deref(), Some("forbidden"));
    assert_eq!(exec.audit_id, "abc123", "no operation: the insertId");
    assert_eq!(exec.level, Level::Metadata, "no bodies");

    let finalize = gke_event(serde_json::json!({
        "methodName": "io.k8s.core.v1.namespaces.finalize.update", "resourceName": "core/v1/namespaces/shop/finalize",
    }));
    let object = finalize.object_ref.as_ref().unwrap();
    assert_eq!(
        (object.resource.as_str(), object.name.as_str(), object.subresource.as_str()),
        ("namespaces", "shop", "finalize")
    );
    let list = gke_event(
        serde_json::json!({"methodName": "io.k8s.core.v1.secrets.list", "resourceName": "core/v1/namespaces/shop/secrets"}),
    );
    let object = list.object_ref.as_ref().unwrap();
    assert_eq!((object.namespace.as_str(), object.resource.as_str(), object.name.as_str()), ("shop", "secrets", ""));
    let version = gke_event(serde_json::json!({"methodName": "io.k8s.get", "resourceName": "version"}));
    assert!(version.object_ref.is_none());
    assert_eq!((version.verb.as_str(), version.request_uri.as_str()), ("get", "/version"));

    for (code, http) in
        [(0, 200), (3, 400), (5, 404), (6, 409), (10, 409), (16, 401), (8, 429), (14, 503), (13, 500), (99, 500)]
    {
        let event = gke_event(serde_json::json!({
            "methodName": "io.k8s.core.v1.pods.get", "resourceName": "core/v1/namespaces/shop/pods/web-1", "status": {"code": code},
        }));
        assert_eq!(event.status_code(), Some(http), "google.rpc.Code {code}");
    }

    let nameless =
        envelope::unwrap(&gke_entry(serde_json::json!({"methodName": "", "resourceName": "core/v1/pods"}))).unwrap();
    let errors = malformed(&nameless);
    assert_eq!(
        errors,
        ["the body: a GKE audit LogEntry (insertId abc123): its methodName \"\" names no verb \
          (io.k8s.<group>.<version>.<resource>.<verb>)"]
    );
}

#[test]
fn pubsub_pushes_carry_a_log_entry_in_base64() {
    let push = envelope::unwrap(&data("pubsub-push.json")).unwrap();
    assert_eq!(push.format, Format::PubSubPush);
    assert_eq!(ids(&push), [PRIVILEGED_POD]);
    let empty =
        envelope::unwrap(br#"{"message":{"data":"","messageId":"1"},"subscription":"projects/p/subscriptions/s"}"#)
            .unwrap();
    assert_eq!(skipped(&empty), [("message".to_owned(), SkipReason::EmptyRecord)]);
}

#[test]
fn plain_kubernetes_audit_is_one_of_the_formats() {
    let plain = plain_attacks();
    let lines: Vec<String> = plain.iter().map(|e| serde_json::to_string(e).unwrap()).collect();
    let list =
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{},{{"kind":"Event"}}]}}"#, lines[0]);
    let unwrapped = envelope::unwrap(list.as_bytes()).unwrap();
    assert_eq!((unwrapped.format, ids(&unwrapped)), (Format::KubernetesAudit, vec![PRIVILEGED_POD]));
    assert!(malformed(&unwrapped)[0].starts_with("items[1]: EventList item 1"), "a bad item fails alone");
    let jsonl = format!("\u{feff}{}\nnot json\n{}\n", lines[0], lines[1]);
    let unwrapped = envelope::unwrap(jsonl.as_bytes()).unwrap();
    assert_eq!(ids(&unwrapped), [PRIVILEGED_POD, ADMIN_BINDING]);
    assert_eq!(malformed(&unwrapped).len(), 1);
    assert!(malformed(&unwrapped)[0].starts_with("line 2: text that is not JSON"), "{:?}", malformed(&unwrapped));
    let forced = envelope::unwrap_as(Format::GkeAuditLog, lines[0].as_bytes()).unwrap();
    assert_eq!(
        skipped(&forced),
        [("the body".to_owned(), SkipReason::OtherService("a log without protoPayload".into()))]
    );
}

#[test]
fn unknown_input_is_refused_saying_what_it_is() {
    let err = |body: &[u8]| envelope::unwrap(body).unwrap_err().to_string();
    let expected = "; expected an audit event, an EventList, AKS diagnostic records, a CloudWatch Logs payload, \
                    a Firehose delivery, a GKE LogEntry or a Pub/Sub push";
    assert_eq!(err(br#"{"foo":1,"bar":[2]}"#), format!("a JSON object with keys [foo, bar]{expected}"));
    assert_eq!(err(b"[1, 2]"), format!("a JSON number{expected}"));
    assert_eq!(err(br#""hello""#), format!("a JSON string{expected}"));
    assert_eq!(err(br#"{"kind":"Pod","apiVersion":"v1"}"#), format!("a Kubernetes Pod{expected}"));
    assert!(
        err(b"I0624 20:14:59.855669 1 wrap.go:47] PUT")
            .starts_with("text that is not JSON (expected value at line 1 column 1)")
    );
    assert!(err(&[0x1f, 0x8b, 0, 1]).starts_with("the body starts as gzip but cannot be decompressed"));
    assert!(err(&[0xff, 0xfe, b'{']).starts_with("bytes that are neither UTF-8 text nor gzip"));
    assert_eq!(err(b"  \n"), format!("an empty body{expected}"));
    let mut nested = data("pubsub-push.json");
    for _ in 0..5 {
        nested = gzip(&nested);
    }
    assert_eq!(err(&nested), "envelopes nested more than 4 deep");
}

#[test]
fn the_line_reader_reads_gzip_files_documents_over_many_lines_and_goes_on_after_a_bad_line() {
    let records = data("aks-storage-PT1H.json");
    let mut file = records.clone();
    file.extend_from_slice(b"{\"category\":\"kube-audit\"}\ngarbage\n");
    file.extend_from_slice(&records);
    let results: Vec<_> = Lines::new(&gzip(&file)[..]).collect();
    assert_eq!(results.len(), 8);
    let events: usize = results.iter().filter_map(|r| r.as_ref().ok()).map(|u| u.events.len()).sum();
    assert_eq!(events, 4);
    let bad: Vec<String> = results.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(bad[0].starts_with("line 5: text that is not JSON"), "{bad:?}");
    let no_log = results[3].as_ref().unwrap();
    assert_eq!(malformed(no_log), ["line 4: an AKS diagnostic record (category kube-audit): it has no properties.log"]);

    // An indented array over many lines (gcloud logging read --format=json): read whole.
    let array = data("gke-logentries.json");
    let mut lines = Lines::new(&array[..]);
    let whole = lines.next().unwrap().unwrap();
    assert_eq!(ids(&whole), [PRIVILEGED_POD, ADMIN_BINDING]);
    assert!(lines.next().is_none());
    assert!(lines.line() > 100);
    // A broken document is one error, at its first line.
    let broken: Vec<_> = Lines::new(&b"\n{\n  \"records\": [\n"[..]).collect();
    assert_eq!(broken.len(), 1);
    assert!(broken[0].as_ref().unwrap_err().to_string().starts_with("line 2: "), "{:?}", broken[0]);
}

fn engine() -> Engine {
    let epoch = Timestamp::from_unix_micros(0);
    Engine::new(Config::default(), Baseline::new(LearningPeriod { start: epoch, end: epoch }))
}

/// What a responder acts on: the alert, its entities, and the field that raised it.
fn findings(events: &[Event]) -> Vec<String> {
    let mut engine = engine();
    let cluster: Vec<Workload> = Vec::new();
    let describe = |f: &Finding| {
        let field = f.evidence.iter().find(|(n, _)| n == "field").map(|(_, v)| v.as_str());
        format!("{} {:?} {} {field:?}", f.alert_type, f.entities, f.summary)
    };
    events.iter().flat_map(|e| engine.evaluate(e, &cluster)).map(|f| describe(&f)).collect()
}

#[test]
fn the_same_attack_in_every_envelope_raises_the_same_findings() {
    let plain = findings(&plain_attacks());
    assert_eq!(plain.len(), 2, "{plain:#?}");
    assert!(
        plain[0].starts_with("K8S_PrivilegedContainer") && plain[1].starts_with("K8S_ClusterAdminBinding"),
        "{plain:#?}"
    );
    let attacks = |unwrapped: Unwrapped| -> Vec<Event> {
        unwrapped.events.into_iter().filter(|e| e.audit_id == PRIVILEGED_POD || e.audit_id == ADMIN_BINDING).collect()
    };
    let cloudwatch = data("eks-cloudwatch-audit.json");
    let pubsub_binding = {
        let entries: Vec<serde_json::Value> = serde_json::from_slice(&data("gke-logentries.json")).unwrap();
        let push =
            serde_json::json!({"message": {"data": base64(entries[2].to_string().as_bytes())}, "subscription": "s"});
        envelope::unwrap(push.to_string().as_bytes()).unwrap().events
    };
    let mut pubsub = attacks(envelope::unwrap(&data("pubsub-push.json")).unwrap());
    pubsub.extend(pubsub_binding);
    let wrapped: Vec<(&str, Vec<Event>)> = vec![
        ("AKS Event Hubs", attacks(envelope::unwrap(&data("aks-event-hubs.json")).unwrap())),
        ("AKS storage", attacks(envelope::unwrap(&data("aks-storage-PT1H.json")).unwrap())),
        ("CloudWatch", attacks(envelope::unwrap(&cloudwatch).unwrap())),
        ("CloudWatch gzip", attacks(envelope::unwrap(&gzip(&cloudwatch)).unwrap())),
        ("Firehose", attacks(envelope::unwrap(&data("firehose-delivery.json")).unwrap())),
        ("GKE", attacks(envelope::unwrap(&data("gke-logentries.json")).unwrap())),
        ("Pub/Sub", pubsub),
    ];
    for (envelope, events) in wrapped {
        assert_eq!(findings(&events), plain, "{envelope}");
    }
}
