//! The sensor's cost to the node: how much slower short processes start while it runs
//! (and its events are consumed), how many events per second it delivers, what it drops,
//! and its memory at a sustained ~1000 execs/s.
//!
//! `cargo bench -p riposte-sensor --bench overhead` (as root). `RIPOSTE_BENCH_EXECS` sets
//! the processes per round (3000). Figures only: nothing here fails on a slow machine.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use riposte_sensor::{Options, Sensor};

const ROUNDS: usize = 5;
const SUSTAINED_RATE: u64 = 1000;
const SUSTAINED_SECONDS: u64 = 5;

fn spawn_true() {
    let status = Command::new("/bin/true").stdin(Stdio::null()).status().expect("running /bin/true");
    assert!(status.success());
}

/// One round: its wall time, and the CPU seconds of this process and of the execs.
fn run(n: usize) -> (Duration, f64, f64) {
    let (own, children) = cpu_seconds();
    let start = Instant::now();
    for _ in 0..n {
        spawn_true();
    }
    let elapsed = start.elapsed();
    let (own_after, children_after) = cpu_seconds();
    (elapsed, own_after - own, children_after - children)
}

/// CPU seconds of this process (the spawning loop, the sensor's reader thread and the
/// consumer) and of its waited-for children (the /bin/true processes, where the BPF
/// programs run), from /proc/self/stat.
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let tick = rustix::param::clock_ticks_per_second() as f64;
    match fields[..] {
        [utime, stime, cutime, cstime] => ((utime + stime) / tick, (cutime + cstime) / tick),
        _ => (0.0, 0.0),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .unwrap_or(0)
}

/// The sensor with a task that receives (and counts) every event.
struct Running {
    received: Arc<AtomicU64>,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Sensor>,
}

fn start(runtime: &tokio::runtime::Runtime) -> Running {
    let mut sensor = Sensor::start(Options::default()).unwrap_or_else(|e| panic!("the bench needs root: {e}"));
    let received = Arc::new(AtomicU64::new(0));
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let count = received.clone();
    let done = runtime.spawn(async move {
        loop {
            tokio::select! {
                event = sensor.recv() => match event {
                    Some(_) => { count.fetch_add(1, Ordering::Relaxed); }
                    None => break,
                },
                _ = &mut stopped => break,
            }
        }
        sensor
    });
    Running { received, stop, done }
}

fn stop(runtime: &tokio::runtime::Runtime, running: Running) -> (u64, u64) {
    // Lets the reader catch up with the last records before counting.
    std::thread::sleep(Duration::from_millis(300));
    let _ = running.stop.send(());
    let sensor = runtime.block_on(running.done).expect("the consumer task");
    (running.received.load(Ordering::Relaxed), sensor.dropped())
}

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too, and a test run
    // should not take a minute.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    let n: usize = std::env::var("RIPOSTE_BENCH_EXECS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    run(200); // warm the page cache and the allocator

    let (mut without, mut with) = (Vec::new(), Vec::new());
    let (mut own_without, mut own_with) = (Vec::new(), Vec::new());
    let (mut execs_without, mut execs_with) = (Vec::new(), Vec::new());
    let mut received = 0;
    let mut dropped = 0;
    let mut sensor_time = Duration::ZERO;
    for round in 0..ROUNDS {
        let (t, own, execs) = run(n);
        println!(
            "round {round}: without sensor {n} execs in {:.3} s (CPU: bench {own:.2} s, execs {execs:.2} s)",
            t.as_secs_f64()
        );
        without.push(t);
        own_without.push(own);
        execs_without.push(execs);

        let running = start(&runtime);
        let (t, own, execs) = run(n);
        let (r, d) = stop(&runtime, running);
        println!(
            "round {round}: with sensor    {n} execs in {:.3} s (CPU: bench+sensor {own:.2} s, execs {execs:.2} s), {r} events received, {d} dropped",
            t.as_secs_f64()
        );
        with.push(t);
        own_with.push(own);
        execs_with.push(execs);
        received += r;
        dropped += d;
        sensor_time += t;
    }
    let (without, with) = (median(without), median(with));
    println!(
        "median: without {:.3} s, with {:.3} s, ratio {:.3} ({:+.1} %)",
        without.as_secs_f64(),
        with.as_secs_f64(),
        with.as_secs_f64() / without.as_secs_f64(),
        (with.as_secs_f64() / without.as_secs_f64() - 1.0) * 100.0
    );
    println!(
        "median CPU per exec: sensor's reader and consumer {:.1} us, in the exec'd processes (BPF included) {:+.1} us",
        (median(own_with) - median(own_without)) * 1e6 / n as f64,
        (median(execs_with) - median(execs_without)) * 1e6 / n as f64
    );
    println!(
        "events: {received} received in {:.1} s of sensor rounds ({:.0}/s), {dropped} dropped",
        sensor_time.as_secs_f64(),
        received as f64 / sensor_time.as_secs_f64()
    );

    let rss_before = rss_kib();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).ok();
    let running = start(&runtime);
    let period = Duration::from_nanos(1_000_000_000 / SUSTAINED_RATE);
    let start = Instant::now();
    let mut next = start;
    let mut spawned = 0u64;
    let mut peak = 0;
    while start.elapsed() < Duration::from_secs(SUSTAINED_SECONDS) {
        spawn_true();
        spawned += 1;
        if spawned.is_multiple_of(500) {
            peak = peak.max(rss_kib());
        }
        next += period;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let elapsed = start.elapsed();
    let rss = rss_kib();
    let programs = program_stats();
    let (r, d) = stop(&runtime, running);
    println!(
        "sustained: {spawned} execs in {:.1} s ({:.0}/s), {r} events ({:.0}/s), {d} dropped; VmRSS {rss_before} KiB before, {rss} KiB at the end, {} KiB peak",
        elapsed.as_secs_f64(),
        spawned as f64 / elapsed.as_secs_f64(),
        r as f64 / elapsed.as_secs_f64(),
        peak.max(rss)
    );
    println!("BPF run time during the sustained run (all the node's processes, not only the bench's):");
    for (name, runs, ns) in programs {
        println!("  {name}: {runs} runs, {:.0} ns per run", ns as f64 / runs.max(1) as f64);
    }
}

/// (program, runs, total ns) of the sensor's programs, from bpftool while the kernel's
/// run-time statistics are on (enabled for as long as the returned fd of BPF_ENABLE_STATS
/// lives, which `main` holds). Empty without bpftool.
fn program_stats() -> Vec<(String, u64, u64)> {
    let Ok(output) = Command::new("bpftool").args(["prog", "show"]).output() else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut stats = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |key: &str| words.iter().position(|w| *w == key).and_then(|i| words.get(i + 1));
        if let (Some(name), Some(ns), Some(runs)) = (after("name"), after("run_time_ns"), after("run_cnt"))
            && name.starts_with("riposte_")
        {
            stats.push(((*name).to_owned(), runs.parse().unwrap_or(0), ns.parse().unwrap_or(0)));
        }
    }
    stats
}
