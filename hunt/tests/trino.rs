//! Trino over Riposte's Parquet layout, on a real Trino server: the Hive connector reads
//! the files the store writes (`<root>/<Table>/date=…/hour=…/*.parquet`, zstd, CamelCase
//! columns, UTC microsecond timestamps) with the types and values DataFusion sees, and the
//! client reports Trino's errors and cancels what runs too long.

#[path = "support/trino_server.rs"]
#[allow(dead_code)] // Its bucket catalog is engines.rs's.
mod trino_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use riposte_hunt::trino::{TrinoClient, TrinoError, TrinoSettings};
use serde_json::json;
use trino_server::TrinoServer;

/// 2026-12-01T10:00:00Z.
const TEN_O_CLOCK: i64 = 1_796_119_200_000_000;
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// One event of the test table.
struct Event {
    micros: i64,
    pod: Option<&'static str>,
    pid: i64,
    privileged: bool,
    groups: &'static [&'static str],
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("Timestamp", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("KubernetesPodName", DataType::Utf8, true),
        Field::new("ProcessId", DataType::Int64, false),
        Field::new("Privileged", DataType::Boolean, false),
        Field::new("UserGroups", DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))), true),
    ]))
}

/// Writes `events` as one zstd Parquet file, as the store does.
fn write_parquet(path: &Path, events: &[Event]) {
    let mut groups = ListBuilder::new(StringBuilder::new());
    for event in events {
        for group in event.groups {
            groups.values().append_value(group);
        }
        groups.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.micros)).with_timezone("UTC")),
        Arc::new(StringArray::from_iter(events.iter().map(|e| e.pod))),
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.pid))),
        Arc::new(BooleanArray::from_iter(events.iter().map(|e| Some(e.privileged)))),
        Arc::new(groups.finish()),
    ];
    let batch = RecordBatch::try_new(schema(), columns).unwrap();
    let properties =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap())).build();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut writer = ArrowWriter::try_new(fs::File::create(path).unwrap(), schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn event(micros: i64, pod: Option<&'static str>, pid: i64, privileged: bool, groups: &'static [&'static str]) -> Event {
    Event { micros, pod, pid, privileged, groups }
}

/// Two hours of CloudProcessEvents, one file each: 10:00:01.123456, 10:30:00.000001 (no pod,
/// no groups) and 11:15:00.5.
fn write_two_partitions(root: &Path) {
    let table = root.join("CloudProcessEvents/date=2026-12-01");
    let ten = [
        event(TEN_O_CLOCK + 1_123_456, Some("web-0"), 101, false, &["root", "wheel"]),
        event(TEN_O_CLOCK + 1_800_000_001, None, 102, true, &[]),
    ];
    write_parquet(&table.join("hour=10/a.parquet"), &ten);
    write_parquet(
        &table.join("hour=11/b.parquet"),
        &[event(TEN_O_CLOCK + 4_500_500_000, Some("web-1"), 103, false, &["users"])],
    );
}

fn client(server: &TrinoServer) -> TrinoClient {
    TrinoClient::new(TrinoSettings {
        endpoint: server.endpoint(),
        user: "riposte-test".into(),
        catalog: "hive".into(),
        schema: "riposte".into(),
        ca_file: None,
    })
    .unwrap()
}

/// The DDL that maps the store's files to a Trino table. Partition columns come last, as
/// the Hive connector requires; `date` and `hour` are quoted, being SQL keywords.
const CREATE_TABLE: &str = r#"CREATE TABLE hive.riposte.cloudprocessevents (
    "Timestamp" timestamp(6),
    KubernetesPodName varchar,
    ProcessId bigint,
    Privileged boolean,
    UserGroups array(varchar),
    "date" varchar,
    "hour" varchar
) WITH (
    external_location = 'local:///CloudProcessEvents',
    format = 'PARQUET',
    partitioned_by = ARRAY['date', 'hour']
)"#;

#[tokio::test]
async fn trino_reads_the_stores_hive_partitioned_parquet() {
    let root = TempDir::new("layout");
    write_two_partitions(root.path());
    let server = TrinoServer::start(root.path()).await.unwrap_or_else(|error| panic!("{error}"));
    let trino = client(&server);
    let run = async |sql: &str| {
        trino
            .query(sql, STATEMENT_TIMEOUT)
            .await
            .unwrap_or_else(|error| panic!("{sql}\n{error}\n{}", server.log_tail()))
    };

    run("CREATE SCHEMA hive.riposte").await;
    run(CREATE_TABLE).await;
    run("CALL hive.system.sync_partition_metadata('riposte', 'cloudprocessevents', 'FULL')").await;

    let columns = r#""Timestamp", KubernetesPodName, ProcessId, Privileged, UserGroups, "date", "hour""#;
    let all = run(&format!(r#"SELECT {columns} FROM cloudprocessevents ORDER BY "Timestamp""#)).await;
    let types: Vec<(&str, &str)> =
        all.columns.iter().map(|column| (column.name.as_str(), column.type_name.as_str())).collect();
    assert_eq!(
        types,
        [
            ("Timestamp", "timestamp(6)"),
            ("KubernetesPodName", "varchar"),
            ("ProcessId", "bigint"),
            ("Privileged", "boolean"),
            ("UserGroups", "array(varchar)"),
            ("date", "varchar"),
            ("hour", "varchar"),
        ]
    );
    assert_eq!(
        json!(all.rows),
        json!([
            ["2026-12-01 10:00:01.123456", "web-0", 101, false, ["root", "wheel"], "2026-12-01", "10"],
            ["2026-12-01 10:30:00.000001", null, 102, true, [], "2026-12-01", "10"],
            ["2026-12-01 11:15:00.500000", "web-1", 103, false, ["users"], "2026-12-01", "11"],
        ])
    );

    // Identifiers are case-insensitive, so the store's CamelCase names work as they are.
    let camel = run("SELECT KubernetesPodName FROM hive.riposte.CloudProcessEvents WHERE ProcessId = 101").await;
    assert_eq!(camel.rows, [vec![json!("web-0")]]);

    // The same instant with its zone, as DataFusion shows a Timestamp(µs, "UTC") column.
    let zoned = run(r#"SELECT with_timezone("Timestamp", 'UTC') FROM cloudprocessevents WHERE ProcessId = 101"#).await;
    assert_eq!(zoned.columns[0].type_name, "timestamp(6) with time zone");
    assert_eq!(zoned.rows, [vec![json!("2026-12-01 10:00:01.123456 UTC")]]);

    // A filter on the partition keys opens no file of the other partitions: one that is not
    // Parquet at all, in hour 10, only fails the queries that read hour 10.
    fs::write(root.path().join("CloudProcessEvents/date=2026-12-01/hour=10/broken.parquet"), "not Parquet").unwrap();
    let eleven = run(r#"SELECT ProcessId FROM cloudprocessevents WHERE "date" = '2026-12-01' AND "hour" = '11'"#).await;
    assert_eq!(eleven.rows, [vec![json!(103)]]);
    match trino.query(r#"SELECT count(*) FROM cloudprocessevents WHERE "hour" = '10'"#, STATEMENT_TIMEOUT).await {
        Err(TrinoError::Query { message, error_name }) => {
            assert_eq!(error_name, "HIVE_BAD_DATA", "{message}");
            assert!(message.contains("broken.parquet"), "{message}");
        }
        other => panic!("expected the broken file to fail the query, got {other:?}"),
    }
}

#[tokio::test]
async fn trino_errors_and_timeouts_come_back_as_trino_errors() {
    let root = TempDir::new("errors");
    let server = TrinoServer::start(root.path()).await.unwrap_or_else(|error| panic!("{error}"));
    let trino = client(&server);

    match trino.query("SELECT * FROM hive.riposte.nothing_here", STATEMENT_TIMEOUT).await {
        Err(TrinoError::Query { message, error_name }) => {
            assert_eq!(error_name, "SCHEMA_NOT_FOUND", "{message}");
            assert!(message.contains("Schema 'riposte' does not exist"), "{message}");
        }
        other => panic!("expected Trino's error, got {other:?}"),
    }
    match trino.query("SELEC 1", STATEMENT_TIMEOUT).await {
        Err(TrinoError::Query { message, error_name }) => {
            assert_eq!(error_name, "SYNTAX_ERROR", "{message}");
            assert!(message.starts_with("line 1:1: mismatched input 'SELEC'"), "{message}");
        }
        other => panic!("expected Trino's error, got {other:?}"),
    }

    // A cross join of 10¹² rows runs far longer than the test's patience.
    let endless = "SELECT count(*) AS endless FROM UNNEST(sequence(1, 10000)) a(x) \
                   CROSS JOIN UNNEST(sequence(1, 10000)) b(y) CROSS JOIN UNNEST(sequence(1, 10000)) c(z)";
    let timeout = Duration::from_secs(3);
    match trino.query(endless, timeout).await {
        Err(TrinoError::Timeout(after)) => assert_eq!(after, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // The client cancelled it: Trino says the user cancelled it, not that it still runs.
    let state_sql = format!("SELECT state, error_code FROM system.runtime.queries WHERE query = '{endless}'");
    let mut state = Vec::new();
    for _ in 0..50 {
        state = trino.query(&state_sql, STATEMENT_TIMEOUT).await.unwrap().rows;
        if state.first().is_some_and(|row| row[0] != json!("RUNNING")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(state, [vec![json!("FAILED"), json!("USER_CANCELED")]]);
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("riposte-hunt-trino-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
