package gocron_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	coordgocron "github.com/coord-go/coord/contrib/gocron"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	"github.com/go-co-op/gocron/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tickRecord is what one side of BenchmarkTicks saw.
type tickRecord struct {
	mu       sync.Mutex
	runs     map[int64]int // runs per tick (UnixNano)
	lateness []time.Duration
}

func (r *tickRecord) ran(tick time.Time, late time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs[tick.UnixNano()]++
	r.lateness = append(r.lateness, late)
}

// BenchmarkTicks runs the same ticks (every 100 ms, aligned to the epoch)
// on R replicas, each on its own client counted by an etcdtest.Counter,
// on one fsynced embedded etcd: once with package schedule, once with
// gocron and this package's Locker (the job instant, the worst case for
// a Locker). It reports lateness (start − scheduled time) p50/p99, etcd
// RPCs per tick per replica (keepalives and watches included), and runs
// per tick: extra runs (a tick run twice) and missed ticks.
// COORD_TICKS sets the number of ticks (default 50), COORD_REPLICAS the
// replicas (default 3).
func BenchmarkTicks(b *testing.B) {
	ticks, replicas := envInt("COORD_TICKS", 50), envInt("COORD_REPLICAS", 3)
	const interval = 100 * time.Millisecond
	srv := etcdtest.NewServer(b) // fsync on, as in production
	for _, side := range []string{"schedule", "gocron+Locker"} {
		b.Run(side, func(b *testing.B) {
			var rec *tickRecord
			var rpcs int64
			var from time.Time
			for b.Loop() {
				rec, rpcs, from = runTicks(b, srv, side, replicas, interval, ticks)
			}
			var extra, missed int
			for i := range ticks {
				switch n := rec.runs[from.Add(time.Duration(i)*interval).UnixNano()]; {
				case n == 0:
					missed++
				case n > 1:
					extra += n - 1
				}
			}
			lat := slices.Clone(rec.lateness)
			slices.Sort(lat)
			p := func(q float64) float64 {
				if len(lat) == 0 {
					return 0
				}
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(p(0.50), "late-p50-ms")
			b.ReportMetric(p(0.99), "late-p99-ms")
			b.ReportMetric(float64(rpcs)/float64(ticks)/float64(replicas), "rpcs/tick/replica")
			b.ReportMetric(float64(extra)/float64(ticks), "extra-runs/tick")
			b.ReportMetric(float64(missed)/float64(ticks), "missed/tick")
			b.Logf("| %s | %d | %d | %.2f / %.2f | %.2f | %d | %d |", side, replicas, ticks, p(0.5), p(0.99),
				float64(rpcs)/float64(ticks)/float64(replicas), extra, missed)
		})
	}
}

func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// runTicks runs one side for ticks ticks and returns what it saw, the
// RPCs counted over those ticks, and the first tick measured.
func runTicks(b *testing.B, srv *etcdtest.Server, side string, replicas int, interval time.Duration, ticks int) (*tickRecord, int64, time.Time) {
	counter := etcdtest.NewCounter()
	rec := &tickRecord{runs: map[int64]int{}}
	name := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var stops []func()
	for i := range replicas {
		cli, err := etcdtest.NewClient(srv.Endpoints(), etcdtest.WithCounter(counter))
		if err != nil {
			b.Fatal(err)
		}
		s, err := session.New(ctx, cli)
		if err != nil {
			b.Fatal(err)
		}
		stops = append(stops, func() { s.Close(); cli.Close() })
		switch side {
		case "schedule":
			sch := schedule.New(cli, name, schedule.Every(interval), schedule.WithReplica(strconv.Itoa(i)))
			wg.Go(func() {
				sch.Run(ctx, s, func(_ context.Context, t schedule.Tick) error {
					rec.ran(t.Time, time.Since(t.Time))
					return nil
				})
			})
		default:
			l := coordgocron.NewLocker(s)
			sched, err := gocron.NewScheduler(gocron.WithDistributedLocker(l))
			if err != nil {
				b.Fatal(err)
			}
			if _, err := sched.NewJob(gocron.DurationJob(interval),
				gocron.NewTask(func() {
					now := time.Now()
					tick := now.Truncate(interval)
					rec.ran(tick, now.Sub(tick))
				}),
				gocron.WithName(name),
				gocron.WithStartAt(gocron.WithStartDateTime(time.Now().Truncate(interval).Add(interval)))); err != nil {
				b.Fatal(err)
			}
			sched.Start()
			stops = append(stops, func() { sched.Shutdown() })
		}
	}
	// Two ticks to settle (sessions, watches), then the measured ticks.
	from := time.Now().Truncate(interval).Add(3 * interval)
	time.Sleep(time.Until(from.Add(-interval / 2)))
	counter.Reset()
	rec.mu.Lock()
	rec.runs, rec.lateness = map[int64]int{}, nil
	rec.mu.Unlock()
	time.Sleep(time.Until(from.Add(time.Duration(ticks)*interval - interval/2)))
	rpcs := counter.Total()
	cancel()
	wg.Wait()
	for _, stop := range slices.Backward(stops) {
		stop()
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	srv.Client().Delete(cctx, "coord/", clientv3.WithPrefix())
	rec.mu.Lock()
	defer rec.mu.Unlock()
	// Keep only the measured ticks' lateness and runs.
	return rec, rpcs, from
}
