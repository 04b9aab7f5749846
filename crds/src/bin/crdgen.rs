//! Writes Riposte's CRDs as YAML, or checks the committed ones.
//!
//! `crdgen [DIR]` writes `DIR/<group>_<plural>.yaml` (DIR defaults to this crate's folder);
//! `crdgen --check [DIR]` exits 1 and names the files that differ from the Rust types.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.first().is_some_and(|a| a == "--check");
    if check {
        args.remove(0);
    }
    let dir = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut drifted = Vec::new();
    for crd in riposte_crds::crds() {
        let path = dir.join(riposte_crds::crd_file_name(&crd));
        let yaml = riposte_crds::crd_yaml(&crd);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                drifted.push(path.display().to_string());
            }
        } else if let Err(e) = std::fs::write(&path, yaml) {
            eprintln!("crdgen: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if drifted.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "crdgen: these CRDs differ from the Rust types; run `cargo run -p riposte-crds --bin crdgen` and commit:\n  {}",
            drifted.join("\n  ")
        );
        ExitCode::FAILURE
    }
}
