#!/usr/bin/env bash
# Builds Kubernetes components and etcd from Go modules into a cache outside the repository.
#
# Usage: build.sh OUT_DIR KUBERNETES_VERSION ETCD_VERSION   kube-apiserver and etcd
#        build.sh --node OUT_DIR KUBERNETES_VERSION          kubelet, kube-controller-manager
#                                                            and kube-scheduler
#
# Kubernetes commands cannot be built with `go install k8s.io/kubernetes/cmd/...@vX`: that
# module requires its staging modules at v0.0.0 through replace directives, which Go ignores
# in installed modules. So we build them from a throwaway wrapper module that repeats those
# replace lines, pointing each staging module at its published v0.x.y twin, and build
# upstream's own main packages from inside it.
set -euo pipefail

node=false
if [ "${1:-}" = --node ]; then
  node=true
  shift
fi
out=$1 k8s=$2
mkdir -p "$out"
# Concurrent test processes may all find the cache empty: one builds, the others wait.
exec 9>"$out/.build.lock"
flock 9
work=$(mktemp -d "${TMPDIR:-/tmp}/riposte-k8s-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

# Builds the named commands of k8s.io/kubernetes that are not in $out yet, in one `go build`
# so that the packages they share are compiled once. Shows how many packages are done.
build_kubernetes() {
  local missing=() name
  for name in "$@"; do
    [ -x "$out/$name" ] || missing+=("$name")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local packages=("${missing[@]/#/k8s.io/kubernetes/cmd/}")
  mkdir -p "$work/kubernetes" "$work/bin"
  cd "$work/kubernetes"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module riposte.dev/kubernetes"
    echo
    echo "go 1.23"
    echo
    echo "require k8s.io/kubernetes $k8s"
    echo
    awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print "replace " $1 " => " $1 " v0.'"${k8s#v1.}"'" }' "$gomod"
  } > go.mod
  local total
  total=$(go list -deps "${packages[@]}" | wc -l)
  echo "riposte: building ${missing[*]} $k8s (first time only; several minutes on two cores, $total packages)" >&2
  local log="$out/build.log"
  # `go build -v` names each package it compiles: count them as progress, keep the log for errors.
  if ! go build -v -trimpath -o "$work/bin/" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)" \
    "${packages[@]}" 2>&1 | tee "$log" | awk -v total="$total" '
      /^[a-zA-Z0-9._\/-]+$/ { done++; if (done % 200 == 0) printf "riposte: %d of at most %d packages compiled\n", done, total > "/dev/stderr" }'; then
    echo "riposte: building ${missing[*]} failed; the end of $log:" >&2
    tail -n 30 "$log" >&2
    return 1
  fi
  for name in "${missing[@]}"; do
    mv "$work/bin/$name" "$out/$name"
  done
}

if $node; then
  build_kubernetes kubelet kube-controller-manager kube-scheduler
  echo "riposte: node binaries ready in $out" >&2
  exit 0
fi

etcd=$3
build_kubernetes kube-apiserver

if [ ! -x "$out/etcd" ]; then
  echo "riposte: building etcd $etcd (first time only)" >&2
  mkdir -p "$work/etcd"
  cd "$work/etcd"
  cat > go.mod <<MOD
module riposte.dev/etcd

go 1.23

require go.etcd.io/etcd/server/v3 $etcd
MOD
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
GO
  go mod tidy >&2
  go build -trimpath -o "$out/etcd.partial" -ldflags "-s -w" .
  mv "$out/etcd.partial" "$out/etcd"
fi
echo "riposte: control plane binaries ready in $out" >&2
