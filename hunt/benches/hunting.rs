//! The hunting store's figures: ingest (events/s on one core, bytes per event on disk), the
//! go hunt and the sample hunts over ten million events (p50/p99, DataFusion and Trino in
//! the same run, each against the floor of a bare count over the same window), and the
//! memory a large hunt takes before its bound stops it.
//!
//!   cargo bench -p riposte-hunt --bench hunting            # 10M events, with Trino
//!   RIPOSTE_BENCH_EVENTS=1000000 RIPOSTE_BENCH_TRINO=0 cargo bench -p riposte-hunt --bench hunting

#[path = "../tests/support/trino_server.rs"]
#[allow(dead_code)]
mod trino_server;

use std::path::Path;
use std::time::{Duration, Instant};

use riposte_detect::runtime::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};
use riposte_hunt::go_hunt::{Entities, go_hunt};
use riposte_hunt::partition::MICROS_PER_HOUR;
use riposte_hunt::query::{Hunt, Language, Limits, TrinoTables, run_local, run_trino, trino_setup_statements};
use riposte_hunt::record::{Record, process_record, to_batch};
use riposte_hunt::schema::Table;
use riposte_hunt::store::{Store, StoreSettings};
use riposte_hunt::trino::{TrinoClient, TrinoSettings};

/// 2026-11-30T00:00:00Z: the events span the hours after it.
const START: i64 = 1_795_996_800_000_000;
const PODS: u32 = 2000;
const RUNS: usize = 11;

fn event(i: u64, span_micros: i64, total: u64) -> Record {
    let programs = ["nginx", "sh", "bash", "curl", "python3", "cat", "ls", "wget"];
    // One process in 50,000 is rare: each is run once, by a pod of its own, which is what
    // the rare-process hunt finds (the others' pods run their program thousands of times).
    let rare = i % 50_000 == 7;
    let pod = if rare { (i / 50_000) % u64::from(PODS) } else { i % u64::from(PODS) } as u32;
    let name = if rare { "xmrig" } else { programs[(i % 8) as usize] };
    let action = match i % 4 {
        0 | 1 => Action::Exec,
        2 => Action::FileOpen { path: format!("/var/log/app/{}.log", i % 97), write: true, truncate: false },
        _ => Action::Connect(Endpoint {
            address: format!("10.1.{}.{}", i % 200, i % 250),
            port: 443,
            protocol: "tcp".into(),
        }),
    };
    let event = ProcessEvent {
        time: riposte_detect::audit::Timestamp::from_unix_micros(START + (i as i64 * span_micros) / total as i64),
        sensor: Sensor::Riposte,
        node: Some(format!("node-{}", pod % 20)),
        container: Some(Container {
            id: format!("{pod:064x}"),
            name: Some("app".into()),
            image: Some(format!("registry.example/shop/app-{}:1.{}", pod % 50, pod % 7)),
            pod: Some(format!("app-{pod}")),
            namespace: Some(format!("team-{}", pod % 40)),
            pod_uid: Some(format!("uid-{pod}")),
            ..Container::default()
        }),
        process: Process {
            pid: (i % 4_000_000) as u32,
            exec_id: Some(format!("{i:x}")),
            parent_exec_id: Some(format!("{:x}", i / 3)),
            binary: format!("/usr/bin/{name}"),
            name: name.into(),
            args: vec!["-c".into(), format!("run {}", i % 1000)],
            uid: Some(1000),
            ..Process::default()
        },
        parent: Some(Process { pid: 1, name: "sh".into(), ..Process::default() }),
        ancestors: vec!["containerd-shim".into()],
        action,
    };
    process_record(&event, "bench")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let path = entry.path();
        total += if path.is_dir() { dir_bytes(&path) } else { entry.metadata().map_or(0, |m| m.len()) };
    }
    total
}

async fn timed<F, Fut>(runs: usize, mut run: F) -> (Duration, Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let started = Instant::now();
        rows = run().await;
        times.push(started.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99), rows)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(32 << 20)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(bench());
}

async fn bench() {
    let total: u64 = std::env::var("RIPOSTE_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let with_trino = std::env::var("RIPOSTE_BENCH_TRINO").map_or(true, |v| v != "0");
    let root = std::env::temp_dir().join(format!("riposte-hunt-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let span = 24 * MICROS_PER_HOUR;
    println!("hunting bench: {total} process events over 24 hours, {PODS} pods");

    // Ingest, on one core: rows made, appended and committed, against the floor of making
    // the same Arrow batches without writing them.
    let ingest_sample = total.min(2_000_000);
    let records: Vec<Record> = (0..ingest_sample).map(|i| event(i, span, total)).collect();
    let started = Instant::now();
    let batch =
        to_batch(Table::CloudProcessEvents, "floor-", records.iter().enumerate().map(|(i, r)| (i as u64, r))).unwrap();
    let floor = started.elapsed();
    drop(batch);
    let mut settings = StoreSettings::new(&root, "bench");
    settings.max_memory_rows = usize::MAX;
    let store = Store::open(settings).unwrap();
    let started = Instant::now();
    for chunk in records.chunks(50_000) {
        store.append(chunk.iter().cloned());
        store.flush().await.unwrap();
    }
    let ingest = started.elapsed();
    let rate = ingest_sample as f64 / ingest.as_secs_f64();
    println!(
        "ingest: {:.0} events/s (append + commit, one flush per 50,000), floor (Arrow batches only) {:.0} events/s, ratio {:.2}",
        rate,
        ingest_sample as f64 / floor.as_secs_f64(),
        ingest.as_secs_f64() / floor.as_secs_f64()
    );
    drop(records);
    // The rest of the ten million, made and committed the same way.
    let mut next = ingest_sample;
    while next < total {
        let end = (next + 200_000).min(total);
        store.append((next..end).map(|i| event(i, span, total)));
        store.flush().await.unwrap();
        next = end;
    }
    let compacted = store.maintain(START + span + 2 * MICROS_PER_HOUR).await.unwrap();
    let bytes = dir_bytes(&root);
    println!(
        "on disk: {:.1} MiB for {total} events: {:.1} bytes per event ({} partitions compacted)",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / total as f64,
        compacted.compacted_partitions
    );

    let limits = Limits::default();
    let now = START + span + MICROS_PER_HOUR;
    let whole_day =
        |text: &str, language: Language| Hunt { text: text.into(), language, from: START, to: START + span };
    let go = go_hunt(
        &Entities { namespace: Some("team-7".into()), pod: Some("app-7".into()), ..Entities::default() },
        START + span / 2,
    )
    .unwrap();
    let hunts: Vec<(&str, Hunt)> = vec![
        ("floor: count(*) over the day", whole_day(r#"SELECT count(*) FROM "CloudProcessEvents""#, Language::Sql)),
        ("go hunt (one pod, ±1 h)", go.clone()),
        (
            "curl/wget/bash command lines (KQL)",
            whole_day(
                r#"CloudProcessEvents
| where ProcessName in~ ("curl", "wget", "bash") or ProcessCommandLine has_any ("curl", "wget")
| project Timestamp, KubernetesNamespace, KubernetesPodName, ContainerName, ProcessName, ProcessCommandLine
| order by Timestamp desc
| take 1000"#,
                Language::Kql,
            ),
        ),
        (
            "rare processes in a pod (KQL)",
            whole_day(
                r#"CloudProcessEvents
| summarize Count = count(), FirstSeen = min(Timestamp), LastSeen = max(Timestamp) by KubernetesPodName, ProcessName
| where Count < 5
| order by Count asc"#,
                Language::Kql,
            ),
        ),
    ];
    let mut local_floor = None;
    for (name, hunt) in &hunts {
        let (p50, p99, rows) = timed(RUNS, || async {
            run_local(&store, hunt, &limits, now).await.unwrap_or_else(|e| panic!("{name}: {e}")).rows.len()
        })
        .await;
        let floor = *local_floor.get_or_insert(p50);
        println!(
            "datafusion {name}: p50 {:.0} ms, p99 {:.0} ms, {rows} rows, {:.2}× the floor",
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            p50.as_secs_f64() / floor.as_secs_f64()
        );
    }

    // A hunt that would hold every row: stopped by its memory bound, with the process's
    // peak memory reported.
    let before = rss_mib();
    let all =
        whole_day(r#"SELECT * FROM "CloudProcessEvents" ORDER BY "ProcessCommandLine", "Timestamp""#, Language::Sql);
    let outcome = run_local(&store, &all, &limits, now).await;
    println!(
        "a sort of every row with a {} MiB bound: {} (RSS {:.0} MiB before, peak {:.0} MiB)",
        limits.memory_bytes >> 20,
        match &outcome {
            Ok(result) => format!("returned {} rows", result.rows.len()),
            Err(e) => format!("refused: {}", e.to_string().chars().take(90).collect::<String>()),
        },
        before,
        peak_rss_mib()
    );

    if with_trino {
        let server = trino_server::TrinoServer::start(&root).await.expect("Trino starts");
        let client = TrinoClient::new(TrinoSettings {
            endpoint: server.endpoint(),
            user: "bench".into(),
            catalog: "hive".into(),
            schema: "riposte".into(),
            ca_file: None,
        })
        .unwrap();
        let tables = TrinoTables { catalog: "hive".into(), schema: "riposte".into() };
        for statement in trino_setup_statements(&tables, "local:///") {
            client.execute(&statement, Duration::from_secs(120)).await.expect("Trino's tables");
        }
        let mut trino_floor = None;
        for (name, hunt) in &hunts {
            let (p50, p99, rows) = timed(RUNS, || async {
                run_trino(&client, &tables, hunt, &limits, now)
                    .await
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .rows
                    .len()
            })
            .await;
            let floor = *trino_floor.get_or_insert(p50);
            println!(
                "trino {name}: p50 {:.0} ms, p99 {:.0} ms, {rows} rows, {:.2}× the floor",
                p50.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0,
                p50.as_secs_f64() / floor.as_secs_f64()
            );
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
}
