package bench

import (
	"context"
	"errors"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// floorPrimitive names the floor row.
const floorPrimitive = "floor"

// Floor is the physical floor of a handoff: one fsynced write seen by the
// next owner through a watch event. Two clients play ping-pong on one key:
// each waits, on a watch opened from now (synced from the start), for the
// other's write, and answers with its own. A step is one write and one
// event; no coordination primitive can hand something over faster, so
// every contended row is judged as a fraction of it.
func Floor() Case {
	return Case{
		Primitive: floorPrimitive, Name: "ping-pong of writes, 2 clients", Etcd: "",
		Measured: "one step: a write on one client, seen by the other through its watch",
		coord:    pingPong,
	}
}

func pingPong(ctx context.Context, env *Env, d time.Duration) (Result, error) {
	counter := etcdtest.NewCounter()
	clis, err := env.clientsN(2, counter)
	if err != nil {
		return Result{}, err
	}
	key := env.prefix("floor") + "ball"
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each player watches for the other's writes.
	events := make([]clientv3.WatchChan, 2)
	for i, cli := range clis {
		events[i] = cli.Watch(clientv3.WithRequireLeader(ctx), key, clientv3.WithCreatedNotify())
		if r := <-events[i]; !r.Created {
			return Result{}, errors.New("floor: watch did not start")
		}
	}
	var lat benchutil.Latencies
	win := env.open(counter)
	steps := 0
	turn := 0
	last := time.Now()
	if _, err := clis[turn].Put(ctx, key, "0"); err != nil {
		return Result{}, err
	}
	for time.Since(win.start) < d {
		other := 1 - turn
		// The other player waits for the write of the player whose turn it
		// was, then writes itself.
		for got := false; !got; {
			select {
			case r, ok := <-events[other]:
				if !ok || r.Err() != nil {
					return Result{}, errors.New("floor: watch broke")
				}
				for _, ev := range r.Events {
					if string(ev.Kv.Value) == string(rune('0'+turn)) {
						got = true
					}
				}
			case <-ctx.Done():
				return Result{}, ctx.Err()
			}
		}
		lat.Since(last)
		steps++
		last = time.Now()
		turn = other
		if _, err := clis[turn].Put(ctx, key, string(rune('0'+turn))); err != nil {
			return Result{}, err
		}
	}
	res := win.result(steps)
	res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
	return res, nil
}
