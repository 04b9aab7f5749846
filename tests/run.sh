#!/usr/bin/env bash
# Runs Riposte's whole test suite: formatting, lints, CRD drift, unit and mocked-API tests,
# the suites against a real kube-apiserver and etcd, and the suites on a real node
# (docs/testing-node.md). Builds what it needs on first use (etcd, kube-apiserver, the node's
# Kubernetes binaries, kube-router, Helm and, when missing, kubectl from Go modules, and the
# test images, cached under ~/.cache/riposte) and installs the node's Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "tests/run.sh: $1 is required: $2" >&2; exit 1; }; }
need cargo "install Rust with rustup"
need go "install Go (1.24 or newer)"
rustup component add rustfmt clippy >/dev/null 2>&1 || true

if ! command -v kubectl >/dev/null 2>&1; then
  kubectl_dir="${RIPOSTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/riposte}/tools/kubectl-v1.33.13"
  if [ ! -x "$kubectl_dir/kubectl" ]; then
    echo "==> building kubectl v1.33.13 (not on PATH)"
    work=$(mktemp -d)
    mkdir -p "$kubectl_dir"
    (
      cd "$work"
      printf 'module riposte.dev/kubectl\n\ngo 1.24\n\nrequire k8s.io/kubectl v0.33.13\n' > go.mod
      printf 'package main\n\nimport (\n\t"os"\n\n\t"k8s.io/component-base/cli"\n\t"k8s.io/kubectl/pkg/cmd"\n)\n\nfunc main() { os.Exit(cli.Run(cmd.NewDefaultKubectlCommand())) }\n' > main.go
      GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go mod tidy
      GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go build -ldflags "-X k8s.io/component-base/version.gitVersion=v1.33.13" -o "$kubectl_dir/kubectl" .
    )
    rm -rf "$work"
  fi
  export PATH="$kubectl_dir:$PATH"
fi

# The node suites run containerd, runc and the CNI bridge from Debian's packages, and
# images made of busybox-static and a debootstrap rootfs; buildah builds Riposte's image,
# curl talks to its audit webhook, clang-19 with libbpf-dev builds the eBPF sensor's
# program (sensor/build.rs), and the sensor's tests trace strace. The Kafka consumer
# (streams/) builds librdkafka with make and links OpenSSL found by pkg-config; its tests run
# an Apache Kafka broker resolved by Maven and run by Java 17.
host_packages="containerd runc containernetworking-plugins iptables ipset conntrack busybox-static debootstrap buildah curl clang-19 libbpf-dev strace make pkg-config libssl-dev"
command -v mvn >/dev/null 2>&1 || host_packages="$host_packages maven"
command -v java >/dev/null 2>&1 || [ -n "${JAVA_HOME:-}" ] || host_packages="$host_packages openjdk-17-jre-headless"
missing_packages=""
for package in $host_packages; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing_packages="$missing_packages $package"
done
if [ -n "$missing_packages" ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/run.sh: the suites need these Debian packages:$missing_packages (and root to run the node suites)" >&2
    exit 1
  fi
  echo "==> installing the host packages:$missing_packages"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing_packages
fi

echo "==> formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> CRD YAML matches the Rust types"
cargo run --quiet --locked -p riposte-crds --bin crdgen -- --check

echo "==> local control plane binaries and Helm"
cargo run --quiet --locked -p riposte -- prepare
helm_version=$(cat tests/tools/helm-version)
helm_dir="${RIPOSTE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/riposte}/tools/helm-$helm_version"
if [ ! -x "$helm_dir/helm" ]; then
  echo "building helm $helm_version (first time only)"
  GOBIN="$helm_dir" CGO_ENABLED=0 GOTOOLCHAIN=local go install "helm.sh/helm/v3/cmd/helm@$helm_version"
fi

echo "==> tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "total: %d passed, %d failed\n", passed, failed }' "$log"
