//! `riposte detect --audit-log`: the built binary over the audit logs a real kube-apiserver
//! wrote (`detect/tests/fixtures`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use riposte_crds::Alert;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../detect/tests/fixtures");

/// What the control-plane attack raises on its own.
const CONTROL_PLANE_TYPES: [&str; 5] = [
    "K8S_ClusterAdminBinding",
    "K8S_HighPrivilegesRole",
    "K8S_DeleteEvents",
    "K8S_CoreDnsModification",
    "K8S_AdmissionController",
];

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

fn riposte(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_riposte"))
        .arg("detect")
        .args(args)
        .env_remove("RIPOSTE_DETECTION_CONFIG")
        .env_remove("RIPOSTE_BASELINE_LEARNING_HOURS")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the riposte binary runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The alert types of a table's rows.
fn table_types(stdout: &str) -> Vec<String> {
    stdout.lines().skip(1).map(|row| row.split_whitespace().nth(2).unwrap_or_default().to_owned()).collect()
}

fn scratch(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("detect-cli-{}-{name}", std::process::id()))
}

#[test]
fn a_fixture_prints_a_table_of_its_alerts_and_a_summary() {
    let output = riposte(&["--audit-log", &fixture("attack-control-plane.jsonl")], None);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    let header: Vec<&str> = stdout.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["TIME", "NAMESPACE", "TYPE", "SEVERITY", "ENTITY", "SUMMARY"]);
    let mut types = table_types(&stdout);
    types.dedup();
    assert_eq!(types, CONTROL_PLANE_TYPES, "{stdout}");
    assert!(stdout.contains("user/mallory"), "{stdout}");
    assert!(stderr.starts_with("riposte detect: 1 file, 60 events, 0 malformed lines skipped, 7 alerts"), "{stderr}");
    assert!(stderr.contains("     3  K8S_HighPrivilegesRole\n"), "{stderr}");
    assert!(!stderr.contains('\r'), "no progress line when stderr is not a terminal: {stderr:?}");
}

#[test]
fn json_output_is_one_alert_per_line() {
    let output = riposte(&["--audit-log", &fixture("attack-control-plane.jsonl"), "-o", "json", "--quiet"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "", "quiet: no summary");
    let alerts: Vec<Alert> =
        text(&output.stdout).lines().map(|line| serde_json::from_str(line).expect("an Alert per line")).collect();
    assert_eq!(alerts.len(), 7);
    let binding = &alerts[0];
    assert_eq!(binding.spec.alert_type.0, "K8S_ClusterAdminBinding");
    assert_eq!(binding.spec.source.as_deref(), Some("riposte-audit"));
    assert_eq!(binding.metadata.namespace.as_deref(), Some("shop"));
    let webhook = alerts.iter().find(|a| a.spec.alert_type.0 == "K8S_AdmissionController").unwrap();
    assert_eq!(webhook.metadata.namespace.as_deref(), Some("riposte-system"), "cluster-scoped: the home namespace");

    let elsewhere = riposte(
        &["--audit-log", &fixture("attack-control-plane.jsonl"), "-o", "json", "-q", "--namespace", "security"],
        None,
    );
    let webhook = text(&elsewhere.stdout)
        .lines()
        .map(|line| serde_json::from_str::<Alert>(line).unwrap())
        .find(|a| a.spec.alert_type.0 == "K8S_AdmissionController")
        .unwrap();
    assert_eq!(webhook.metadata.namespace.as_deref(), Some("security"));
}

#[test]
fn a_missing_file_fails_with_a_message_naming_it() {
    let output = riposte(
        &["--audit-log", &fixture("attack-control-plane.jsonl"), "--audit-log", "/nonexistent/audit.log"],
        None,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nonexistent/audit.log") && stderr.contains("cannot read the audit log"), "{stderr}");
    assert_eq!(text(&output.stdout), "", "nothing is printed before every file is open");
}

#[test]
fn a_file_without_any_event_fails_and_malformed_lines_are_reported() {
    let path = scratch("garbage.jsonl");
    std::fs::write(&path, "not an audit log\n{\"kind\":\"Event\"}\n").unwrap();
    let output = riposte(&["--audit-log", path.to_str().unwrap()], None);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("garbage.jsonl: line 1 skipped: not an audit.k8s.io/v1 event"), "{stderr}");
    assert!(stderr.contains("garbage.jsonl: line 2 skipped: "), "{stderr}");
    assert!(stderr.contains("no audit event in ") && stderr.contains("(2 malformed lines)"), "{stderr}");
}

#[test]
fn managed_clusters_exports_are_read_as_they_are_gzip_compressed_or_not() {
    let providers = concat!(env!("CARGO_MANIFEST_DIR"), "/../detect/tests/data/providers");
    let blob = std::fs::read(format!("{providers}/aks-storage-PT1H.json")).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&blob).unwrap();
    let compressed = scratch("PT1H.json.gz");
    std::fs::write(&compressed, encoder.finish().unwrap()).unwrap();
    let gke = format!("{providers}/gke-logentries.json");
    let output = riposte(&["--audit-log", compressed.to_str().unwrap(), &gke], None);
    std::fs::remove_file(&compressed).unwrap();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        table_types(&stdout),
        ["K8S_PrivilegedContainer", "K8S_ClusterAdminBinding"],
        "the GKE entries are the same requests: raised once"
    );
    assert!(stderr.starts_with("riposte detect: 2 files, 4 events, 0 malformed lines skipped, 2 alerts"), "{stderr}");
    assert!(stderr.contains("PT1H.json.gz: AKS diagnostic records\n"), "{stderr}");
    assert!(stderr.contains("gke-logentries.json: GKE audit LogEntries\n"), "{stderr}");
    assert!(stderr.contains("     1  an AKS record of category kube-apiserver, not kube-audit\n"), "{stderr}");
    assert!(stderr.contains("     1  a LogEntry of container.googleapis.com, not of k8s.io\n"), "{stderr}");
}

#[test]
fn stdin_is_read_with_a_dash() {
    let log = std::fs::read(fixture("attack-control-plane.jsonl")).unwrap();
    let output = riposte(&["--audit-log", "-", "-q"], Some(&log));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let mut types = table_types(&text(&output.stdout));
    types.dedup();
    assert_eq!(types, CONTROL_PLANE_TYPES);
}

#[test]
fn several_files_are_read_in_order_with_workloads_and_a_saved_baseline() {
    let benign = ["bootstrap.jsonl", "benign-other.jsonl", "benign-workloads.jsonl"].map(fixture);
    let baseline = scratch("baseline.json");
    let mut args = vec!["-q", "--save-baseline", baseline.to_str().unwrap(), "--audit-log"];
    args.extend(benign.iter().map(String::as_str));
    let output = riposte(&args, None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "", "benign activity raises nothing");
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&baseline).unwrap()).unwrap();
    assert!(saved["accounts"].as_object().is_some_and(|a| !a.is_empty()), "{saved}");

    // The exposure rules need the workloads behind the Services.
    let workloads = scratch("workloads.json");
    std::fs::write(&workloads, workloads_list()).unwrap();
    let exposure = fixture("attack-exposure.jsonl");
    let without = riposte(&["--audit-log", &exposure, "--baseline", baseline.to_str().unwrap()], None);
    assert!(without.status.success(), "{}", text(&without.stderr));
    assert_eq!(text(&without.stdout), "");
    assert!(text(&without.stderr).contains("no --workloads"), "{}", text(&without.stderr));
    let with = riposte(
        &[
            "--audit-log",
            &exposure,
            "--baseline",
            baseline.to_str().unwrap(),
            "--workloads",
            workloads.to_str().unwrap(),
        ],
        None,
    );
    std::fs::remove_file(&baseline).unwrap();
    std::fs::remove_file(&workloads).unwrap();
    assert!(with.status.success(), "{}", text(&with.stderr));
    assert_eq!(
        table_types(&text(&with.stdout)),
        [
            "K8S_ExposedDashboard",
            "K8S_ExposedRedis",
            "K8S_ExposedPostgresTrustAuth",
            "K8S_ExposedPostgresBroadIPRange",
            "K8S_ExposedService",
            "K8S_ExposedKubeflow",
        ],
        "each once: the scan of the file's Services repeats what the log raised"
    );
}

/// The workloads and Services the exposure fixture and the benign ones create, as
/// `kubectl get ... -o json` prints them.
fn workloads_list() -> String {
    let mut items = Vec::new();
    for name in ["benign-other.jsonl", "benign-workloads.jsonl", "attack-exposure.jsonl"] {
        for line in std::fs::read_to_string(fixture(name)).unwrap().lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let written = event["stage"] == "ResponseComplete"
                && matches!(event["verb"].as_str(), Some("create"))
                && event["objectRef"]["subresource"].is_null()
                && event["responseStatus"]["code"].as_i64().is_some_and(|c| c < 400)
                && !event["requestURI"].as_str().unwrap_or_default().contains("dryRun");
            let object = &event["responseObject"];
            let kind = object["kind"].as_str().unwrap_or_default();
            if written && matches!(kind, "Service" | "Deployment" | "DaemonSet" | "StatefulSet" | "Pod") {
                items.push(object.clone());
            }
        }
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}
