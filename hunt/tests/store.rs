//! The embedded store on a real directory and the hunts over it on DataFusion: layout,
//! the in-memory tail, restart, recovery after a crash, retention, the byte cap,
//! compaction, and every check a hunt goes through.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use riposte_detect::runtime::{Action, Container, Process, ProcessEvent, Sensor};
use riposte_hunt::Error;
use riposte_hunt::partition::MICROS_PER_HOUR;
use riposte_hunt::query::{Hunt, Language, Limits, check_sql, run_local};
use riposte_hunt::record::{Record, process_record};
use riposte_hunt::schema::Table;
use riposte_hunt::store::{Store, StoreSettings};
use serde_json::json;

/// 2026-12-01T10:00:00Z.
const TEN_O_CLOCK: i64 = 1_796_119_200_000_000;
const SECOND: i64 = 1_000_000;

fn event(micros: i64, pod: &str, name: &str, pid: u32) -> Record {
    let event = ProcessEvent {
        time: riposte_detect::audit::Timestamp::from_unix_micros(micros),
        sensor: Sensor::Riposte,
        node: Some("node-1".into()),
        container: Some(Container {
            id: format!("c-{pod}"),
            pod: Some(pod.into()),
            namespace: Some("shop".into()),
            ..Container::default()
        }),
        process: Process { pid, name: name.into(), binary: format!("/bin/{name}"), ..Process::default() },
        parent: None,
        ancestors: Vec::new(),
        action: Action::Exec,
    };
    process_record(&event, "test")
}

fn settings(root: &Path) -> StoreSettings {
    StoreSettings::new(root, "writer-0")
}

fn sql(text: &str, from: i64, to: i64) -> Hunt {
    Hunt { text: text.into(), language: Language::Sql, from, to }
}

async fn rows(store: &Store, text: &str, from: i64, to: i64) -> Vec<Vec<serde_json::Value>> {
    run_local(store, &sql(text, from, to), &Limits::default(), to).await.unwrap().rows
}

fn parquet_files(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.retain(|p| !p.ends_with(".lock"));
    found.sort();
    found
}

#[tokio::test]
async fn rows_are_seen_in_memory_at_once_then_committed_as_hive_partitions() {
    let dir = tempdir();
    let store = Store::open(settings(dir.path())).unwrap();
    store.append([
        event(TEN_O_CLOCK + SECOND, "web-0", "bash", 1),
        event(TEN_O_CLOCK + MICROS_PER_HOUR, "web-0", "curl", 2),
    ]);
    let query = r#"SELECT "ProcessName", "ReportId" FROM "CloudProcessEvents" ORDER BY "Timestamp""#;
    let window = (TEN_O_CLOCK, TEN_O_CLOCK + 2 * MICROS_PER_HOUR);
    let before = rows(&store, query, window.0, window.1).await;
    assert_eq!(before.iter().map(|r| r[0].clone()).collect::<Vec<_>>(), [json!("bash"), json!("curl")]);
    assert!(parquet_files(dir.path()).is_empty(), "nothing is written before a flush");

    let flushed = store.flush().await.unwrap();
    assert_eq!((flushed.rows, flushed.files), (2, 2));
    assert_eq!(
        parquet_files(dir.path()),
        [
            "CloudProcessEvents/date=2026-12-01/hour=10/part-writer-0-000000000000-000000000000.parquet",
            "CloudProcessEvents/date=2026-12-01/hour=11/part-writer-0-000000000000-000000000000.parquet",
        ]
    );
    let after = rows(&store, query, window.0, window.1).await;
    assert_eq!(after, before, "the same rows, with the same ReportIds, from the files");

    // The window is the hunt's, whatever the query says: one hour reads one partition.
    let hour =
        rows(&store, r#"SELECT count(*) FROM "CloudProcessEvents""#, TEN_O_CLOCK, TEN_O_CLOCK + MICROS_PER_HOUR).await;
    assert_eq!(hour, [[json!(1)]]);
    store.append([event(TEN_O_CLOCK + 2 * SECOND, "web-1", "sh", 3)]);
    let mixed = rows(
        &store,
        r#"SELECT "KubernetesPodName" FROM "CloudProcessEvents" ORDER BY "Timestamp""#,
        window.0,
        window.1,
    )
    .await;
    assert_eq!(mixed, [[json!("web-0")], [json!("web-1")], [json!("web-0")]], "files and memory together");
}

#[test]
fn writer_ids_name_files_that_every_engine_reads() {
    let dir = tempdir();
    // A node's name, with dots.
    assert!(Store::open(StoreSettings::new(dir.path(), "ip-10-0-1-5.ec2.internal")).is_ok());
    for refused in ["", ".hidden", "-x", "a/b", "a b", "a_b"] {
        let opened = Store::open(StoreSettings::new(dir.path(), refused));
        assert!(matches!(opened, Err(Error::WriterId(_))), "{refused:?} must be refused");
    }
}

#[tokio::test]
async fn a_reopened_store_lists_its_files_and_a_second_writer_is_refused() {
    let dir = tempdir();
    let store = Store::open(settings(dir.path())).unwrap();
    assert!(matches!(Store::open(settings(dir.path())), Err(Error::StoreLocked(_))));
    store.append([event(TEN_O_CLOCK, "web-0", "bash", 1)]);
    store.flush().await.unwrap();
    drop(store);

    let store = Store::open(settings(dir.path())).unwrap();
    store.append([event(TEN_O_CLOCK + SECOND, "web-0", "id", 2)]);
    store.flush().await.unwrap();
    assert_eq!(
        parquet_files(dir.path()).len(),
        2,
        "a new generation, not an overwrite: {:?}",
        parquet_files(dir.path())
    );
    let found = rows(
        &store,
        r#"SELECT "ProcessName" FROM "CloudProcessEvents" ORDER BY "Timestamp""#,
        TEN_O_CLOCK,
        TEN_O_CLOCK + MICROS_PER_HOUR,
    )
    .await;
    assert_eq!(found, [[json!("bash")], [json!("id")]]);
}

#[tokio::test]
async fn replicas_sharing_a_volume_write_their_own_files_and_hunt_everyones() {
    let dir = tempdir();
    let first = Store::open(settings(dir.path())).unwrap();
    let second = Store::open(StoreSettings::new(dir.path(), "writer-1")).unwrap();
    first.append([event(TEN_O_CLOCK, "web-0", "bash", 1)]);
    second.append([event(TEN_O_CLOCK + SECOND, "web-1", "curl", 2)]);
    first.flush().await.unwrap();
    second.flush().await.unwrap();
    let names = || async {
        rows(
            &first,
            r#"SELECT "ProcessName" FROM "CloudProcessEvents" ORDER BY "Timestamp""#,
            TEN_O_CLOCK,
            TEN_O_CLOCK + MICROS_PER_HOUR,
        )
        .await
    };
    assert_eq!(names().await, [[json!("bash")]], "another writer's files are listed every minute, not at once");
    first.maintain(TEN_O_CLOCK + MICROS_PER_HOUR / 2).await.unwrap();
    assert_eq!(names().await, [[json!("bash")], [json!("curl")]]);
    // The other writer merges its files: the merged file replaces its inputs in the listing.
    for pid in 3..10 {
        second.append([event(TEN_O_CLOCK + i64::from(pid) * SECOND, "web-1", "curl", pid)]);
        second.flush().await.unwrap();
    }
    second.maintain(TEN_O_CLOCK + 2 * MICROS_PER_HOUR).await.unwrap();
    first.maintain(TEN_O_CLOCK + 2 * MICROS_PER_HOUR).await.unwrap();
    let count =
        rows(&first, r#"SELECT count(*) FROM "CloudProcessEvents""#, TEN_O_CLOCK, TEN_O_CLOCK + MICROS_PER_HOUR).await;
    assert_eq!(count, [[json!(9)]]);
}

#[tokio::test]
async fn what_a_killed_writer_leaves_is_cleaned_up_at_open() {
    let dir = tempdir();
    let store = Store::open(settings(dir.path())).unwrap();
    for pid in 0..3 {
        store.append([event(TEN_O_CLOCK + i64::from(pid) * SECOND, "web-0", "bash", pid)]);
        store.flush().await.unwrap();
    }
    drop(store);
    let partition = dir.path().join("CloudProcessEvents/date=2026-12-01/hour=10");
    // A write cut short, and a compaction whose merged file was committed but whose inputs
    // were not yet removed: the merged file is a copy of generations 0 and 1.
    fs::write(partition.join(".part-writer-0-000000000007-000000000007.parquet.tmp"), b"PAR1 half a file").unwrap();
    fs::copy(
        partition.join("part-writer-0-000000000000-000000000000.parquet"),
        partition.join("part-writer-0-000000000000-000000000001.parquet"),
    )
    .unwrap();
    // A file of another writer sharing the layout is read, never removed.
    fs::copy(
        partition.join("part-writer-0-000000000001-000000000001.parquet"),
        partition.join("part-writer-1-000000000000-000000000000.parquet"),
    )
    .unwrap();

    let store = Store::open(settings(dir.path())).unwrap();
    let names: Vec<String> = parquet_files(&partition);
    assert_eq!(
        names,
        [
            "part-writer-0-000000000000-000000000001.parquet",
            "part-writer-0-000000000002-000000000002.parquet",
            "part-writer-1-000000000000-000000000000.parquet",
        ]
    );
    let count =
        rows(&store, r#"SELECT count(*) FROM "CloudProcessEvents""#, TEN_O_CLOCK, TEN_O_CLOCK + MICROS_PER_HOUR).await;
    assert_eq!(count, [[json!(3)]]);
}

#[tokio::test]
async fn retention_then_the_byte_cap_delete_the_oldest_partitions_first() {
    let dir = tempdir();
    let mut settings = settings(dir.path());
    settings.retention = Duration::from_secs(3 * 3600);
    let store = Store::open(settings.clone()).unwrap();
    for hour in 0..6 {
        store.append([event(TEN_O_CLOCK + hour * MICROS_PER_HOUR, "web-0", "bash", 1)]);
    }
    store.flush().await.unwrap();
    let now = TEN_O_CLOCK + 6 * MICROS_PER_HOUR;
    let done = store.maintain(now).await.unwrap();
    assert_eq!(done.expired_partitions, 3, "hours 10, 11 and 12 ended 3 hours or more before 16:00");
    let hours: Vec<String> =
        parquet_files(dir.path()).iter().map(|p| p.split('/').nth(2).unwrap().to_owned()).collect();
    assert_eq!(hours, ["hour=13", "hour=14", "hour=15"]);
    assert!(!dir.path().join("CloudProcessEvents/date=2026-12-01/hour=10").exists(), "emptied directories are removed");

    let one_file = store.usage().bytes / 3;
    drop(store);
    settings.max_bytes = one_file * 2;
    let store = Store::open(settings).unwrap();
    let done = store.maintain(now).await.unwrap();
    assert_eq!(done.capped_partitions, 1);
    let hours: Vec<String> =
        parquet_files(dir.path()).iter().map(|p| p.split('/').nth(2).unwrap().to_owned()).collect();
    assert_eq!(hours, ["hour=14", "hour=15"]);
}

#[tokio::test]
async fn past_hours_with_many_files_are_merged_and_a_running_hunt_keeps_its_files() {
    let dir = tempdir();
    let store = Store::open(settings(dir.path())).unwrap();
    for pid in 0..8 {
        store.append([event(TEN_O_CLOCK + i64::from(pid) * SECOND, "web-0", "bash", pid)]);
        store.flush().await.unwrap();
    }
    let held = store.snapshot(Table::CloudProcessEvents, TEN_O_CLOCK, TEN_O_CLOCK + MICROS_PER_HOUR).unwrap();
    assert_eq!(held.files.len(), 8);
    let done = store.maintain(TEN_O_CLOCK + 2 * MICROS_PER_HOUR).await.unwrap();
    assert_eq!((done.compacted_partitions, done.deleted_files), (1, 0), "the snapshot holds the inputs");
    assert_eq!(parquet_files(dir.path()).len(), 9);
    drop(held);
    let done = store.maintain(TEN_O_CLOCK + 2 * MICROS_PER_HOUR).await.unwrap();
    assert_eq!(done.deleted_files, 8);
    assert_eq!(
        parquet_files(dir.path()),
        ["CloudProcessEvents/date=2026-12-01/hour=10/part-writer-0-000000000000-000000000007.parquet"]
    );
    let pids = rows(
        &store,
        r#"SELECT "ProcessId" FROM "CloudProcessEvents" ORDER BY 1"#,
        TEN_O_CLOCK,
        TEN_O_CLOCK + MICROS_PER_HOUR,
    )
    .await;
    assert_eq!(pids, (0..8).map(|p| vec![json!(p)]).collect::<Vec<_>>());
}

#[test]
fn only_one_select_over_the_hunting_tables_is_a_hunt() {
    let refused = |text: &str| check_sql(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(refused(r#"DROP TABLE "CloudAuditEvents""#).contains("read-only"), "{}", refused("DROP TABLE x"));
    assert!(refused(r#"INSERT INTO "CloudAuditEvents" VALUES (1)"#).contains("only SELECT"));
    assert!(refused("COPY (SELECT 1) TO '/tmp/x'").contains("read-only"));
    assert!(refused("SELECT 1; SELECT 2").contains("2 statements"));
    assert!(
        refused("SELECT * FROM secrets").contains("unknown table secrets: the hunting tables are CloudProcessEvents")
    );
    assert!(refused("SELECT * FROM information_schema.tables").contains("qualified name"));
    assert!(refused("SELECT * FROM read_parquet('/etc/passwd')").contains("table function"));
    assert!(refused("SELEC 1").contains("not valid SQL"));
    let checked = check_sql(
        r#"WITH shells AS (SELECT * FROM "CloudProcessEvents" WHERE "ProcessName" = 'sh')
           SELECT a."AuditId" FROM cloudauditevents a JOIN shells s ON a."KubernetesPodName" = s."KubernetesPodName""#,
    )
    .unwrap();
    assert_eq!(checked.tables.into_iter().collect::<Vec<_>>(), [Table::CloudProcessEvents, Table::CloudAuditEvents]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hunts_are_bounded_in_window_rows_memory_and_time() {
    let dir = tempdir();
    let store = Store::open(settings(dir.path())).unwrap();
    store.append((0..2000).map(|i| event(TEN_O_CLOCK + i64::from(i), &format!("pod-{i}"), "bash", i)));
    let now = TEN_O_CLOCK + MICROS_PER_HOUR;
    let limits = Limits { max_rows: 1500, ..Limits::default() };
    let all = r#"SELECT "KubernetesPodName" FROM "CloudProcessEvents" ORDER BY "ProcessId""#;
    let result = run_local(&store, &sql(all, TEN_O_CLOCK, now), &limits, now).await.unwrap();
    assert_eq!((result.rows.len(), result.truncated), (1500, true));
    assert_eq!(result.rows[0], [json!("pod-0")]);

    let backwards = run_local(&store, &sql(all, now, TEN_O_CLOCK), &limits, now).await.unwrap_err();
    assert!(backwards.to_string().contains("the start must come first"), "{backwards}");
    let too_old = run_local(&store, &sql(all, now - 31 * 24 * MICROS_PER_HOUR, now), &limits, now).await.unwrap_err();
    assert!(too_old.to_string().contains("more than 30 days back"), "{too_old}");

    let tight = Limits { memory_bytes: 64 << 10, ..Limits::default() };
    let sorted =
        r#"SELECT "ProcessCommandLine" FROM "CloudProcessEvents" ORDER BY "ProcessCommandLine" || "KubernetesPodName""#;
    let error = run_local(&store, &sql(sorted, TEN_O_CLOCK, now), &tight, now).await.unwrap_err();
    assert!(matches!(error, Error::MemoryLimit { .. }), "{error}");
    assert!(error.to_string().contains("narrow the time window"), "{error}");

    // Eight billion combinations: far longer than the limit, which cancels it.
    let endless = r#"SELECT count(*) FROM "CloudProcessEvents" a, "CloudProcessEvents" b, "CloudProcessEvents" c
                     WHERE a."ProcessId" + b."ProcessId" = c."ProcessId" * 7"#;
    let short = Limits { timeout: Duration::from_millis(300), ..Limits::default() };
    let started = std::time::Instant::now();
    let error = run_local(&store, &sql(endless, TEN_O_CLOCK, now), &short, now).await.unwrap_err();
    assert!(matches!(error, Error::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5), "cancelled at once, not run to the end");

    let error =
        run_local(&store, &sql(r#"SELECT "NoSuchColumn" FROM "CloudProcessEvents""#, TEN_O_CLOCK, now), &limits, now)
            .await
            .unwrap_err();
    assert!(error.to_string().contains("NoSuchColumn"), "{error}");
}

/// The child of [`a_killed_writer_loses_nothing_it_acknowledged`]: ingests and flushes until
/// killed, printing each acknowledged row count.
#[tokio::test]
async fn crash_child() {
    let Some(root) = std::env::var_os("RIPOSTE_HUNT_CRASH_CHILD") else { return };
    let store = Store::open(StoreSettings::new(root, "writer-0")).unwrap();
    let mut next = 0u32;
    loop {
        store.append((next..next + 5000).map(|i| event(TEN_O_CLOCK + i64::from(i), "web-0", "bash", i)));
        next += 5000;
        store.flush().await.unwrap();
        println!("acknowledged {next}");
    }
}

#[tokio::test]
async fn a_killed_writer_loses_nothing_it_acknowledged() {
    let dir = tempdir();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env("RIPOSTE_HUNT_CRASH_CHILD", dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut acknowledged = 0u32;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acknowledged ") {
                acknowledged = n.parse().unwrap();
            }
        }
        acknowledged
    });
    // Kill it mid-flush at some point of sustained ingest.
    std::thread::sleep(Duration::from_millis(2500));
    child.kill().unwrap();
    child.wait().unwrap();
    let acknowledged = reader.join().unwrap();
    assert!(acknowledged >= 20_000, "the child acknowledged only {acknowledged} rows in 2.5 s");

    let store = Store::open(StoreSettings::new(dir.path(), "writer-0")).unwrap();
    let window = (TEN_O_CLOCK, TEN_O_CLOCK + MICROS_PER_HOUR);
    let found = rows(
        &store,
        r#"SELECT count(*), count(DISTINCT "ProcessId"), max("ProcessId") FROM "CloudProcessEvents""#,
        window.0,
        window.1,
    )
    .await;
    let (count, distinct, max) =
        (found[0][0].as_u64().unwrap(), found[0][1].as_u64().unwrap(), found[0][2].as_u64().unwrap());
    assert!(count >= u64::from(acknowledged), "{count} rows found, {acknowledged} acknowledged");
    assert_eq!(count, distinct, "no row is there twice");
    assert_eq!(max + 1, count, "the rows are a prefix of what was sent: nothing in the middle is lost");
    assert!(!parquet_files(dir.path()).iter().any(|p| p.contains(".tmp")), "no half-written file is left");
}

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("riposte-hunt-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&path);
    fs::create_dir_all(&path).unwrap();
    TempDir(path)
}
