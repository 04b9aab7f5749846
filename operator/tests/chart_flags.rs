//! The chart passes the operator only flags it has: every `--flag` in the Deployment
//! template is one `riposte run` accepts.

use std::process::Command;

#[test]
fn every_flag_of_the_charts_deployment_is_one_the_operator_accepts() {
    let template =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/riposte/templates/deployment.yaml"))
            .expect("the chart's Deployment template");
    let flags: Vec<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- --"))
        .map(|flag| flag.split(['=', ' ']).next().unwrap_or_default())
        .collect();
    assert!(flags.len() >= 10, "the template's flags were found: {flags:?}");
    let help = Command::new(env!("CARGO_BIN_EXE_riposte")).args(["run", "--help"]).output().expect("riposte runs");
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    let unknown: Vec<&&str> = flags.iter().filter(|flag| !help.contains(&format!("--{flag}"))).collect();
    assert!(unknown.is_empty(), "flags the chart passes but `riposte run` does not know: {unknown:?}");
}
