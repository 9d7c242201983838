package faulttest

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// TestWholeClusterCrash kills every member of a 3-member cluster at once
// in the middle of every workload and restarts the cluster from its data
// directories (crashcheck_test.go says what must hold). With COORD_ETCD_BINARY the
// members are real etcd processes killed with SIGKILL (CI runs it so
// against each supported server version); without, embedded members are
// hard-stopped together. It runs in its short form (one crash) under
// -short too; COORD_CRASH_ROUNDS sets the number of crashes (soak.sh).
func TestWholeClusterCrash(t *testing.T) {
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("COORD_CRASH_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	cluster := etcdtest.NewCluster(t, 3, clusterOptions()...)
	sc := scenario{name: "whole-cluster-crash", nemesis: crashNemesis(rounds), ttls: crashTTLs, explicitAcks: true}
	var rep CrashReport
	sc.check = func(e *Env, qr *queueRun) { rep = checkCrash(e, qr) }
	root := "whole-cluster-crash/"
	// Each round: up to 3 s of workload, the outage and the restart; then
	// a last spell of workload after the last restart.
	d := time.Duration(rounds)*8*time.Second + 3*time.Second
	st := runScenario(t, cluster, sc, root, holdSpecs(root), newQueueRun("work"), d, 0)
	t.Logf("CRASH crashes=%d ops=%d enqueued=%d delivered=%d lost=%d acks-ok=%d acked-then-redelivered=%d held-at-crash=%d kept=%d reported-lost=%d released=%d max-token-before=%d min-token-after=%d",
		rep.Crashes, rep.Ops, rep.Enqueued, rep.Delivered, rep.Lost, rep.Acked, rep.AckedRedelivered,
		rep.HeldAtCrash, rep.Kept, rep.Reported, rep.Released, rep.TokensBefore, rep.TokensAfter)
	if rep.Crashes != rounds {
		t.Errorf("%d whole-cluster crashes happened, want %d", rep.Crashes, rounds)
	}
	for _, v := range st.Violations {
		t.Errorf("violation: %s", v)
	}
}
