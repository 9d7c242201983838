#!/usr/bin/env bash
# Soaks the fault suite: runs every scenario (TestFaults) with a fresh
# random seed per scenario, over and over, alternating between the
# in-process cluster and real etcd server processes (where the
# process-only scenarios and the whole-cluster SIGKILL crash run too),
# until DURATION has passed, then prints one summary table: per scenario
# and mode, the runs, operations recorded, violations found, and
# Porcupine's verdicts on the register (lock, election) and queue models.
#
#   internal/harness/faulttest/soak.sh 1h
#   SOAK_SCENARIO_DURATION=1m internal/harness/faulttest/soak.sh 3h
#   COORD_ETCD_BINARY=~/.cache/coord-etcd/etcd-3.6.16 internal/harness/faulttest/soak.sh 45m
#
# DURATION is like a Go duration of h, m and s parts (30m, 1h, 90s). A run that starts before the
# deadline is finished, so the soak can overrun DURATION by one run (about
# 9 × SOAK_SCENARIO_DURATION); the real elapsed time is printed. Each
# scenario runs SOAK_SCENARIO_DURATION (default 30s). Without
# COORD_ETCD_BINARY the module's own etcd server version is built
# (scripts/build-etcd.sh, cached in ~/.cache/coord-etcd). SOAK_MODES picks
# the modes ("in-process processes" by default). Logs of every run are
# kept in SOAK_LOGS (a temporary directory by default); a violation's log
# has its seed and history. Exit status 1 if any run had a violation, a
# Porcupine Illegal verdict, or failed.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 DURATION   (a Go duration: 45m, 1h)" >&2
  exit 2
fi
cd "$(dirname "$0")/../../.."
root=$(pwd)
# to_seconds turns a Go-style duration of h, m and s parts (1h30m, 45m,
# 90s) into seconds.
to_seconds() {
  local d=$1 n=0
  [[ "$d" =~ ^([0-9]+[hms])+$ ]] || { echo "soak.sh: bad DURATION $d (like 45m, 1h30m, 90s)" >&2; exit 2; }
  while [[ "$d" =~ ^([0-9]+)([hms])(.*)$ ]]; do
    case "${BASH_REMATCH[2]}" in
      h) n=$((n + BASH_REMATCH[1] * 3600)) ;;
      m) n=$((n + BASH_REMATCH[1] * 60)) ;;
      s) n=$((n + BASH_REMATCH[1])) ;;
    esac
    d=${BASH_REMATCH[3]}
  done
  echo "$n"
}
total=$(to_seconds "$1")
per=${SOAK_SCENARIO_DURATION:-30s}
modes=${SOAK_MODES:-in-process processes}
logs=${SOAK_LOGS:-$(mktemp -d "${TMPDIR:-/tmp}/coord-soak-XXXXXX")}
mkdir -p "$logs"

bin=${COORD_ETCD_BINARY:-}
if [ -z "$bin" ] && [[ " $modes " == *" processes "* ]]; then
  ver=$(go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
  bin=$(scripts/build-etcd.sh "$ver" "${XDG_CACHE_HOME:-$HOME/.cache}/coord-etcd")
fi
# One test binary for the whole soak: what is soaked does not change
# under it if the work tree does.
testbin="$logs/faulttest.test"
go test -race -c -o "$testbin" ./internal/harness/faulttest/
pkgdir="$root/internal/harness/faulttest"

start=$SECONDS
run=0
failed=0
while [ $((SECONDS - start)) -lt "$total" ]; do
  for mode in $modes; do
    [ $((SECONDS - start)) -lt "$total" ] || break
    run=$((run + 1))
    log="$logs/run-$run-$mode.log"
    pattern='^TestFaults$'
    envbin=
    if [ "$mode" = processes ]; then
      pattern='^(TestFaults|TestWholeClusterCrash)$'
      envbin=$bin
    fi
    echo "soak: run $run ($mode) at $((SECONDS - start)) s, log $log" >&2
    if ! (cd "$pkgdir" && COORD_ETCD_BINARY="$envbin" COORD_FAULT_SEED=0 COORD_FAULT_DURATION="$per" COORD_CRASH_ROUNDS="${SOAK_CRASH_ROUNDS:-3}" \
      "$testbin" -test.run "$pattern" -test.v -test.timeout 60m >"$log" 2>&1); then
      failed=$((failed + 1))
      echo "soak: run $run ($mode) FAILED, see $log" >&2
      # A failure the SOAK lines do not already count as violations.
      if ! grep -q 'SOAK .*violations=[1-9]' "$log"; then
        echo "SOAK scenario=run-failed mode=$mode seed=0 ops=0 violations=1 register=- queue=-" >>"$log"
      fi
    fi
  done
done
elapsed=$((SECONDS - start))

echo
echo "soak: $run runs in $((elapsed / 60))m$((elapsed % 60))s (asked for $1; $per per scenario), logs in $logs"
grep -h -o 'SOAK .*' "$logs"/run-*.log | awk '
{
  for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
  sc = f["scenario"]; sub(/^faults-[0-9]+-/, "", sc)
  k = sc " " f["mode"]
  if (!(k in runs)) order[n++] = k
  runs[k]++; ops[k] += f["ops"]; viol[k] += f["violations"]
  reg[k, f["register"]]++; q[k, f["queue"]]++
}
function verdicts(a, k,   s, v) {
  s = ""
  split("Ok Illegal Unknown", vs, " ")
  for (v = 1; v <= 3; v++) if (a[k, vs[v]] > 0) s = s (s == "" ? "" : " ") vs[v] "=" a[k, vs[v]]
  return s == "" ? "-" : s
}
END {
  printf "%-38s %-10s %5s %9s %10s  %-22s %-22s\n", "scenario", "mode", "runs", "ops", "violations", "porcupine register", "porcupine queue"
  for (i = 0; i < n; i++) {
    k = order[i]; split(k, p, " ")
    printf "%-38s %-10s %5d %9d %10d  %-22s %-22s\n", p[1], p[2], runs[k], ops[k], viol[k], verdicts(reg, k), verdicts(q, k)
    tr += runs[k]; to += ops[k]; tv += viol[k]
  }
  printf "%-38s %-10s %5d %9d %10d\n", "total", "", tr, to, tv
  exit tv > 0 ? 1 : 0
}' || failed=$((failed + 1))
if grep -h -o 'SOAK .*' "$logs"/run-*.log | grep -q 'register=Illegal\|queue=Illegal'; then
  failed=$((failed + 1))
fi
[ "$failed" -eq 0 ]
