//! Throughput of the sensor adapters on one core: Falco alerts and Tetragon export lines
//! (the real fixtures, repeated to about 100,000 lines each) parsed into Riposte's types,
//! against parsing the same lines into `serde_json::Value` in the same run, the least any
//! reader of the JSON does.
//!
//! Run with `cargo bench -p riposte-detect --bench sensors`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use riposte_detect::runtime::{falco, tetragon};

const LINES: usize = 100_000;
const ROUNDS: usize = 5;

fn repeated(fixture: &[u8]) -> Vec<&[u8]> {
    let lines: Vec<&[u8]> = fixture.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    lines.iter().copied().cycle().take(LINES.div_ceil(lines.len()) * lines.len()).collect()
}

/// Lines per second of the best of a few rounds over all lines.
fn best(lines: &[&[u8]], mut work: impl FnMut(&[u8])) -> f64 {
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

fn report(sensor: &str, lines: &[&[u8]], adapter: f64, value: f64) {
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    println!("{sensor}: {} lines, {:.0} bytes per line on average", lines.len(), bytes as f64 / lines.len() as f64);
    println!("  adapter:               {adapter:>10.0} events/s {:>7.0} ns/event", 1e9 / adapter);
    println!("  serde_json::Value:     {value:>10.0} events/s {:>7.0} ns/event", 1e9 / value);
    println!("  adapter / Value rate:  {:.2}", adapter / value);
}

fn main() {
    let falco_lines = repeated(include_bytes!("../tests/fixtures/sensors/falco-modern-ebpf.jsonl"));
    let tetragon_lines = repeated(include_bytes!("../tests/fixtures/sensors/tetragon-rawtp-patched.jsonl"));
    // Every line must parse, or the figures would time error paths.
    assert!(falco_lines.iter().all(|l| falco::parse_alert(l).is_ok()));
    assert!(tetragon_lines.iter().all(|l| tetragon::parse_line(l).is_ok()));

    let falco = best(&falco_lines, |line| {
        black_box(falco::parse_alert(line).expect("valid"));
    });
    let falco_value = best(&falco_lines, |line| {
        black_box(serde_json::from_slice::<serde_json::Value>(line).expect("valid"));
    });
    let tetragon = best(&tetragon_lines, |line| {
        black_box(tetragon::parse_line(line).expect("valid"));
    });
    let tetragon_value = best(&tetragon_lines, |line| {
        black_box(serde_json::from_slice::<serde_json::Value>(line).expect("valid"));
    });

    println!("riposte-detect sensor adapters: one core, best of {ROUNDS} rounds");
    report("Falco alerts (parse_alert, with the catalog lookup and the event)", &falco_lines, falco, falco_value);
    report("Tetragon export lines (parse_line, with the action)", &tetragon_lines, tetragon, tetragon_value);
}
