//! Writes Riposte's CRDs as YAML, or checks the committed ones.
//!
//! `crdgen` writes `<group>_<plural>.yaml` into `crds/` and into the Helm chart's `crds/`;
//! `crdgen --check` writes nothing, exits 1 and names the files that differ from the Rust types.

use std::path::PathBuf;
use std::process::ExitCode;

/// Where the CRD YAML lives, relative to the repository root.
const TARGETS: [&str; 2] = ["crds", "charts/riposte/crds"];

fn main() -> ExitCode {
    let check = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--check") => true,
        Some(other) => {
            eprintln!("crdgen: unknown argument {other}; usage: crdgen [--check]");
            return ExitCode::FAILURE;
        }
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut drifted = Vec::new();
    for target in TARGETS {
        let dir = root.join(target);
        for crd in riposte_crds::crds() {
            let path = dir.join(riposte_crds::crd_file_name(&crd));
            let yaml = riposte_crds::crd_yaml(&crd);
            if check {
                if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                    drifted.push(format!("{target}/{}", riposte_crds::crd_file_name(&crd)));
                }
            } else if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, yaml)) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if drifted.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "crdgen: these files differ from the Rust types; run `cargo run -p riposte-crds --bin crdgen` and commit them:\n  {}",
        drifted.join("\n  ")
    );
    ExitCode::FAILURE
}
