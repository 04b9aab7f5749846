#!/usr/bin/env bash
# Runs Riposte's whole test suite: formatting, lints, CRD drift, unit and mocked-API tests,
# and the suites against a real kube-apiserver and etcd. Builds what it needs on first use
# (etcd, kube-apiserver and Helm from Go modules, cached under ~/.cache/riposte).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is required: $2" >&2; exit 1; }; }
need cargo "install Rust with rustup"
need go "install Go (1.24 or newer)"
need kubectl "install kubectl (1.32 or newer)"

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> CRD YAML matches the Rust types"
cargo run --quiet --locked -p riposte-crds --bin crdgen -- --check

echo "==> local control plane binaries"
cargo run --quiet --locked -p riposte -- prepare

echo "==> tests"
cargo test --workspace --locked
