package schedule_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
)

// TestCostFlatInReplicas counts the RPCs of 10 ticks on 2 and on 8
// replicas: a tick costs one claim and one release, whatever the number
// of replicas, because the replicas that joined later wait their stagger
// and see the tick claimed before their turn.
func TestCostFlatInReplicas(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			w := newWorld(at(0).Add(100 * time.Millisecond))
			f := newFleet(t, w, schedule.Every(time.Second), schedule.WithSkewTolerance(100*time.Millisecond))
			f.counter = etcdtest.NewCounter()
			for i := range n {
				f.join(fmt.Sprintf("r%d", i), fixed(0))
			}
			eventually(t, 10*time.Second, "replicas registered", func() bool {
				runTo(t, f, 1)
				return len(f.status(t).Replicas) == n
			})
			runTo(t, f, 2)
			f.idle(t)
			f.counter.Reset()
			for i := 3; i < 13; i++ {
				// To the tick itself, where only the first replica's turn
				// has come; then on, once the claim is in etcd.
				for w.Now().Before(at(i)) {
					w.Advance(100 * time.Millisecond)
				}
				f.decided(t, at(i))
				f.seen(t) // what the stagger's 25 ms give the watch in real time
				runTo(t, f, i)
				f.idle(t)
			}
			// Only the replicas' clients are counted (status reads use another).
			txns := f.counter.Get("Txn")
			if per := float64(txns) / 10; per > 2.5 {
				t.Errorf("%d replicas: %.1f Txns per tick (%v), want 2: one claim, one release", n, per, f.counter)
			}
			t.Logf("%d replicas: %v over 10 ticks", n, f.counter)
		})
	}
}
