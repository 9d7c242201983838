#!/usr/bin/env bash
# Builds an etcd server binary of the given version from the Go module
# proxy, for running coord's tests against real etcd processes:
#
#   scripts/build-etcd.sh 3.5.21 /tmp/etcd-bin     # writes /tmp/etcd-bin/etcd-3.5.21
#   COORD_ETCD_BINARY=/tmp/etcd-bin/etcd-3.5.21 go test -race -short ./lock/
#
# The binary is built in a throwaway module in a temporary directory whose
# main calls etcdmain.Main, so coord's own go.mod never gains etcd's server
# command dependencies, and each version builds with exactly the
# dependencies its own go.mod asks for. go.etcd.io/etcd/server/v3/etcdmain
# is the import path for both 3.5.x and 3.6.x (and 3.7.x). An existing
# binary of that version in OUTDIR is reused. Prints the binary's path.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 VERSION OUTDIR   (VERSION like 3.5.21 or v3.6.16)" >&2
  exit 2
fi
ver=${1#v}
case "$ver" in
  3.[5-9].*) ;;
  *) echo "$0: version $ver: only etcd 3.5 and later have the go.etcd.io/etcd/server/v3 module" >&2; exit 2 ;;
esac
mkdir -p "$2"
out="$(cd "$2" && pwd)/etcd-$ver"
if [ -x "$out" ] && "$out" --version 2>/dev/null | grep -q "etcd Version: $ver\$"; then
  echo "$out"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  export PATH="$PATH:/usr/local/go/bin"
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
cat > main.go <<'GO'
// Command etcd is etcd's server, built from the module proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
# GOFLAGS=-mod=mod: resolve from the module proxy even when the caller's
# environment sets -mod=vendor or readonly for its own module.
export GOFLAGS=-mod=mod GOWORK=off
go mod init etcdbuild >/dev/null 2>&1
# Getting the package (not just the module) records the checksums of
# everything it imports, and nothing else: no test-only downloads.
go get "go.etcd.io/etcd/server/v3/etcdmain@v$ver" >&2
CGO_ENABLED=0 go build -trimpath -o "$out" .
"$out" --version >&2
echo "$out"
