#!/usr/bin/env bash
# Runs the fault suite against real etcd server processes (SIGKILL, SIGTERM
# and SIGSTOP instead of in-process stops), with the same etcd version the
# module uses. The binary is built in a scratch module so coord's go.mod
# stays free of etcd's server command dependencies.
#   internal/harness/faulttest/run-processes.sh                 # brief, every scenario
#   COORD_FAULT_DURATION=1m internal/harness/faulttest/run-processes.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
ver=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
bin="${TMPDIR:-/tmp}/coord-etcd-$ver"
if [ ! -x "$bin" ]; then
  scratch=$(mktemp -d)
  (cd "$scratch" && go mod init etcdbuild >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@$ver" >/dev/null 2>&1 &&
    go build -o "$bin" go.etcd.io/etcd/server/v3)
  rm -rf "$scratch"
fi
COORD_ETCD_BINARY="$bin" go test -race -run 'TestFaults' -v -timeout 60m ./internal/harness/faulttest/ "$@"
