#!/usr/bin/env bash
# Builds kube-apiserver and etcd from Go modules into a cache outside the repository.
#
# Usage: build.sh OUT_DIR KUBERNETES_VERSION ETCD_VERSION
#
# kube-apiserver cannot be built with `go install k8s.io/kubernetes/...@vX`: that module
# requires its staging modules at v0.0.0 through replace directives, which Go ignores in
# installed modules. So we build it from a throwaway wrapper module that repeats those
# replace lines, pointing each staging module at its published v0.x.y twin.
set -euo pipefail

out=$1 k8s=$2 etcd=$3
staging_version="v0.${k8s#v1.}"
mkdir -p "$out"
# Concurrent test processes may all find the cache empty: one builds, the others wait.
exec 9>"$out/.build.lock"
flock 9
work=$(mktemp -d "${TMPDIR:-/tmp}/riposte-cp-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

if [ ! -x "$out/kube-apiserver" ]; then
  echo "riposte: building kube-apiserver $k8s (first time only; several minutes on two cores)" >&2
  mkdir -p "$work/apiserver"
  cd "$work/apiserver"
  gomod=$(go mod download -json "k8s.io/kubernetes@$k8s" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module riposte.dev/kube-apiserver"
    echo
    echo "go 1.23"
    echo
    echo "require k8s.io/kubernetes $k8s"
    echo
    awk '$2 == "v0.0.0" && $1 ~ /^k8s\.io\// { print "replace " $1 " => " $1 " '"$staging_version"'" }' "$gomod"
  } > go.mod
  cat > main.go <<'GO'
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
GO
  go mod tidy >&2
  go build -trimpath -o "$out/kube-apiserver.partial" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$k8s -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$k8s" | cut -d. -f2)" .
  mv "$out/kube-apiserver.partial" "$out/kube-apiserver"
fi

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
