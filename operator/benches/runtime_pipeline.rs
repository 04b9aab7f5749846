//! The runtime detection path's userspace cost on one core, against parsing alone, in the
//! same run: events per second of
//! - the node sensor's events (as JSON lines of `ProcessEvent`, the hunting store's form):
//!   parse, then parse + attribute to a pod + every runtime rule;
//! - Falco's alerts (the captured fixture): parse, then parse + attribute + rules;
//! - Tetragon's export lines (the captured fixture): the same.
//!
//! Target: the rules cost no more than parsing (a ratio of at least 0.5 of the parse-only rate).
//!
//! Run with `cargo bench -p riposte --bench runtime_pipeline`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use riposte::detection::runtime::{Input, PodIndex, falco_input};
use riposte_detect::runtime::{
    Action, Container, Endpoint, Process, ProcessEvent, RuntimeConfig, RuntimeEngine, Sensor, falco, tetragon,
};

const EVENTS: usize = 200_000;
const ROUNDS: usize = 3;
const PODS: usize = 200;

fn container_id(i: usize) -> String {
    format!("{:064x}", i + 1)
}

fn pods() -> PodIndex {
    let mut index = PodIndex::default();
    for i in 0..PODS {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{i}"), "namespace": "shop", "uid": format!("uid-{i}")},
            "spec": {"containers": [{"name": "app", "image": "shop/web:1"}]},
            "status": {"containerStatuses": [{"name": "app", "image": "", "imageID": "", "ready": true,
                "restartCount": 0, "containerID": format!("containerd://{}", container_id(i))}]},
        }))
        .unwrap();
        index.apply(&pod);
    }
    index
}

/// A realistic mix: program starts of a web application's workers and probes, file opens
/// that pass the kernel's filter, connections, exits.
fn sensor_lines() -> Vec<String> {
    let commands = [
        ("/usr/bin/curl", vec!["-fsS", "http://localhost:8080/healthz"]),
        ("/bin/sh", vec!["-c", "date"]),
        ("/usr/bin/python3", vec!["/app/worker.py", "--queue", "jobs"]),
        ("/usr/bin/cat", vec!["/etc/hostname"]),
        ("/usr/sbin/nginx", vec!["-g", "daemon off;"]),
    ];
    (0..EVENTS)
        .map(|i| {
            let (binary, args) = &commands[i % commands.len()];
            let action = match i % 10 {
                0..=5 => Action::Exec,
                6 => Action::FileOpen { path: "/var/log/app.log".into(), write: true, truncate: false },
                7 | 8 => Action::Connect(Endpoint { address: "10.96.0.10".into(), port: 53, protocol: "udp".into() }),
                _ => Action::Exit { code: Some(0) },
            };
            let event = ProcessEvent {
                time: riposte_detect::audit::Timestamp::from_unix_micros(1_796_000_000_000_000 + i as i64 * 1000),
                sensor: Sensor::Riposte,
                node: Some("node-1".into()),
                container: Some(Container { id: container_id(i % PODS), ..Container::default() }),
                process: Process {
                    pid: 1000 + i as u32,
                    exec_id: Some(format!("{i:x}")),
                    binary: (*binary).into(),
                    name: binary.rsplit('/').next().unwrap().into(),
                    args: args.iter().map(|a| (*a).to_owned()).collect(),
                    cwd: Some("/app".into()),
                    uid: Some(1000),
                    ..Process::default()
                },
                parent: Some(Process { pid: 1, name: "tini".into(), ..Process::default() }),
                ancestors: vec!["containerd-shim".into()],
                action,
            };
            serde_json::to_string(&event).unwrap()
        })
        .collect()
}

fn repeated(fixture: &str) -> Vec<String> {
    let lines: Vec<&str> = fixture.lines().filter(|l| !l.is_empty()).collect();
    lines.iter().cycle().take(EVENTS).map(|l| (*l).to_owned()).collect()
}

/// Events per second, best of a few rounds.
fn best(lines: &[String], mut work: impl FnMut(&str)) -> f64 {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for line in lines {
                work(line);
            }
            lines.len() as f64 / start.elapsed().max(Duration::from_nanos(1)).as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn attribute(index: &PodIndex, event: &mut ProcessEvent) {
    if let Some(container) = &mut event.container {
        index.attribute(container);
    }
}

fn report(name: &str, parse: f64, full: f64) {
    println!("{name}");
    println!("  parse:                     {parse:>10.0} events/s {:>7.0} ns/event", 1e9 / parse);
    println!("  parse + attribute + rules: {full:>10.0} events/s {:>7.0} ns/event", 1e9 / full);
    println!(
        "  rules' share of the time:  {:.0}%  (full/parse rate {:.2}; target >= 0.50)",
        100.0 * (1.0 - full / parse),
        full / parse
    );
}

fn main() {
    let index = pods();
    let config = RuntimeConfig::default();

    let lines = sensor_lines();
    let parse = best(&lines, |l| {
        black_box(serde_json::from_str::<ProcessEvent>(l).unwrap());
    });
    let mut engine = RuntimeEngine::new(config.clone());
    let mut findings = 0usize;
    let full = best(&lines, |l| {
        let mut event: ProcessEvent = serde_json::from_str(l).unwrap();
        attribute(&index, &mut event);
        findings += engine.evaluate(&event).len();
    });
    report(&format!("Riposte sensor events ({} lines, {findings} findings)", lines.len()), parse, full);

    let lines = repeated(include_str!("../../detect/tests/fixtures/sensors/falco-modern-ebpf.jsonl"));
    let parse = best(&lines, |l| {
        black_box(falco::parse_alert(l.as_bytes()).unwrap());
    });
    let mut engine = RuntimeEngine::new(config.clone());
    let full = best(&lines, |l| {
        let input = falco_input(falco::parse_alert(l.as_bytes()).unwrap());
        let Input::SensorAlert(mut event, alert) = input else { unreachable!("Falco gives sensor alerts") };
        attribute(&index, &mut event);
        black_box(engine.evaluate(&event));
        black_box(engine.sensor_alert(&event, &alert));
    });
    report(&format!("Falco alerts ({} lines)", lines.len()), parse, full);

    let lines = repeated(include_str!("../../detect/tests/fixtures/sensors/tetragon-rawtp-patched.jsonl"));
    let parse = best(&lines, |l| {
        black_box(tetragon::parse_line(l.as_bytes()).unwrap());
    });
    let mut engine = RuntimeEngine::new(config);
    let full = best(&lines, |l| {
        if let tetragon::Outcome::Event(mapped) = tetragon::parse_line(l.as_bytes()).unwrap() {
            let mut event = mapped.event;
            attribute(&index, &mut event);
            black_box(engine.evaluate(&event));
        }
    });
    report(&format!("Tetragon export lines ({} lines)", lines.len()), parse, full);
}
