//! The captured output of Falco and Tetragon (real sensors, this machine kind) through the
//! adapters and Riposte's own rules: the same behaviours raise the same alert types.

use std::collections::BTreeSet;

use riposte_detect::runtime::{RuntimeConfig, RuntimeEngine, falco, tetragon};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/sensors/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The workload of the capture: a reverse shell's redirections, `/etc/shadow` read, the
/// shell history deleted, a miner's Stratum arguments, netcat, a curl download.
#[test]
fn tetragons_export_raises_the_workloads_alerts() {
    let mut engine = RuntimeEngine::new(RuntimeConfig::default());
    let mut types = BTreeSet::new();
    for outcome in tetragon::parse_lines(&fixture("tetragon-rawtp-patched.jsonl")) {
        if let tetragon::Outcome::Event(mapped) = outcome.expect("every captured line parses") {
            types.extend(engine.evaluate(&mapped.event).into_iter().map(|f| f.alert_type));
        }
    }
    for expected in
        ["K8S.NODE_SuspectPasswordFileAccess", "K8S.NODE_DigitalCurrencyMining", "K8S.NODE_HistoryFileCleared"]
    {
        assert!(types.contains(expected), "{expected}: raised {types:?}");
    }
}

#[test]
fn falcos_alerts_raise_the_same_types_through_ripostes_rules() {
    let mut engine = RuntimeEngine::new(RuntimeConfig::default());
    let mut ours = BTreeSet::new();
    let mut mapped = BTreeSet::new();
    for alert in falco::parse_lines(&fixture("falco-modern-ebpf.jsonl")) {
        let alert = alert.expect("every captured alert parses");
        mapped.extend(alert.catalog_id);
        if let Some(event) = alert.event() {
            ours.extend(engine.evaluate(&event).into_iter().map(|f| f.alert_type));
        }
    }
    for expected in [
        "K8S.NODE_SuspectPasswordFileAccess",
        "K8S.NODE_DigitalCurrencyMining",
        "K8S.NODE_HistoryFileCleared",
        "K8S.NODE_ReverseShell",
    ] {
        assert!(ours.contains(expected), "{expected}: Riposte's rules raised {ours:?}");
        assert!(mapped.contains(expected), "{expected}: Falco's rules mapped to {mapped:?}");
    }
}
