package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/benchutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Result is one side of one case.
type Result struct {
	Ops     int           // operations completed
	Elapsed time.Duration // wall time they took
	P50     time.Duration // median latency of the measured step
	P99     time.Duration
	RPCs    int64   // RPCs sent by every participant's client
	Bytes   int64   // bytes of read replies they received
	Syncs   float64 // WAL fsyncs the server made meanwhile (first endpoint's member); NaN when its metrics could not be read
	Note    string  // what went wrong on a side that could not finish ("hung after 10 rounds")
}

// BytesPerOp is how much each operation read, in bytes of replies.
func (r Result) BytesPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.Bytes) / float64(r.Ops)
}

// OpsPerSec is the throughput.
func (r Result) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// SyncsPerOp is how many durable writes (WAL fsyncs, each of which may
// carry several writes) one operation cost the server; NaN when unknown.
// It is what bounds a handoff: the floor makes one per step.
func (r Result) SyncsPerOp() float64 {
	if r.Ops == 0 {
		return math.NaN()
	}
	return r.Syncs / float64(r.Ops)
}

// RPCsPerOp is the cost of one operation in etcd requests.
func (r Result) RPCsPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.RPCs) / float64(r.Ops)
}

// Case is one benchmark: the same workload for coord and for etcd's
// equivalent (none for the physical floor, or where etcd has no such
// operation).
type Case struct {
	Primitive string // "lock"
	Name      string // "4 contenders"
	Etcd      string // what coord is compared with: "concurrency.Mutex", "" for none
	Measured  string // what the latency columns measure
	coord     runner
	etcd      runner
}

// runner runs one side of a case for about d.
type runner func(ctx context.Context, env *Env, d time.Duration) (Result, error)

// Row is a case with both results.
type Row struct {
	Case
	Coord, Etcd Result
}

// Cases are the cases coord bench runs, in table order: first the
// physical floor every handoff is judged against.
func Cases() []Case {
	return []Case{
		Floor(),
		Lock(1), Lock(4), Lock(16),
		LockDelay(1), LockDelay(4),
		Election(4), Transfer(4),
		Semaphore(4, 16),
		Enqueue(), EnqueueBatch(64, 1), EnqueueBatch(64, 4),
		Claim(4), Consume(8, 16),
		Barrier(),
		Schedule(3),
		RateLimit(8, 2000),
	}
}

// Env is where a run's participants connect, and the key prefix it owns.
type Env struct {
	endpoints []string
	root      string
	mu        sync.Mutex
	clients   []*clientv3.Client
}

var runSeq atomic.Int64

// client returns a new client counting into c (when not nil).
func (e *Env) client(c *etcdtest.Counter) (*clientv3.Client, error) {
	var opts []etcdtest.ClientOption
	if c != nil {
		opts = append(opts, etcdtest.WithCounter(c))
	}
	cli, err := etcdtest.NewClient(e.endpoints, opts...)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.clients = append(e.clients, cli)
	e.mu.Unlock()
	return cli, nil
}

// clients returns n clients counting into c.
func (e *Env) clientsN(n int, c *etcdtest.Counter) ([]*clientv3.Client, error) {
	out := make([]*clientv3.Client, n)
	for i := range out {
		cli, err := e.client(c)
		if err != nil {
			return nil, err
		}
		out[i] = cli
	}
	return out, nil
}

// walFsyncs is the server's count of WAL fsyncs, in its metrics.
const walFsyncs = "etcd_disk_wal_fsync_duration_seconds_count"

// syncs reads how many WAL fsyncs the first endpoint's member has made,
// from its /metrics (served on the client URL, embedded or not; an
// embedded server reports its whole process's); NaN when it cannot.
func (e *Env) syncs() float64 {
	if len(e.endpoints) == 0 {
		return math.NaN()
	}
	url := e.endpoints[0]
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if err != nil {
		return math.NaN()
	}
	req.Close = true // no idle connection left behind to leak
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return math.NaN()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return math.NaN()
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, walFsyncs+" "); ok {
			if n, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return n
			}
		}
	}
	return math.NaN()
}

// window is one side's measured stretch: opening it resets the
// participants' RPC counter, notes the server's fsyncs and starts the
// clock; result reads all three.
type window struct {
	c     *etcdtest.Counter
	env   *Env
	syncs float64
	start time.Time
}

func (e *Env) open(c *etcdtest.Counter) *window {
	c.Reset()
	return &window{c: c, env: e, syncs: e.syncs(), start: time.Now()}
}

// result is what the window measured for ops operations, its clock
// stopped now.
func (w *window) result(ops int) Result {
	return w.resultOver(ops, time.Since(w.start))
}

// resultOver is result with the elapsed time given.
func (w *window) resultOver(ops int, el time.Duration) Result {
	return Result{Ops: ops, Elapsed: el, RPCs: w.c.Total(), Bytes: w.c.Bytes(), Syncs: w.env.syncs() - w.syncs}
}

// prefix returns a key prefix of its own for one side of one case.
func (e *Env) prefix(side string) string {
	return fmt.Sprintf("%s%s-%d/", e.root, side, runSeq.Add(1))
}

// close closes every client and deletes the run's keys.
func (e *Env) close() {
	e.mu.Lock()
	clients := e.clients
	e.clients = nil
	e.mu.Unlock()
	for _, c := range clients {
		c.Close()
	}
	if cli, err := etcdtest.NewClient(e.endpoints); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cli.Delete(ctx, e.root, clientv3.WithPrefix())
		cancel()
		cli.Close()
	}
}

// Run runs every case for about d per side against endpoints; each side
// of each case gets clients, sessions and keys of its own, removed after.
// progress, when not nil, is called before each case.
func Run(ctx context.Context, endpoints []string, d time.Duration, cases []Case, progress func(Case)) ([]Row, error) {
	root := fmt.Sprintf("coord-bench/%d/", time.Now().UnixNano())
	var rows []Row
	for _, c := range cases {
		if progress != nil {
			progress(c)
		}
		row := Row{Case: c}
		for _, side := range []struct {
			r   runner
			out *Result
		}{{c.coord, &row.Coord}, {c.etcd, &row.Etcd}} {
			if side.r == nil {
				continue
			}
			env := &Env{endpoints: endpoints, root: root}
			res, err := side.r(ctx, env, d)
			env.close()
			if err != nil {
				return rows, fmt.Errorf("%s %s: %w", c.Primitive, c.Name, err)
			}
			*side.out = res
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// drive runs one goroutine per worker, each calling op until d has
// passed, or until max operations were taken in all when max > 0. It
// measures in a window of env over c, read at the end, before anyone
// cleans up.
func drive(env *Env, workers int, d time.Duration, max int, c *etcdtest.Counter, lat *benchutil.Latencies, op func(w int) error) (Result, error) {
	var (
		taken  atomic.Int64
		failed atomic.Pointer[error]
		wg     sync.WaitGroup
	)
	win := env.open(c)
	stopped := win.start.Add(d)
	for w := range workers {
		wg.Go(func() {
			for failed.Load() == nil && time.Now().Before(stopped) {
				if n := taken.Add(1); max > 0 && n > int64(max) {
					taken.Add(-1)
					return
				}
				if err := op(w); err != nil {
					failed.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	res := win.result(int(taken.Load()))
	if e := failed.Load(); e != nil {
		return res, *e
	}
	if lat != nil {
		res.P50, res.P99 = lat.Percentile(50), lat.Percentile(99)
	}
	return res, nil
}

// Table writes rows as one markdown table. When the floor row is among
// them, every handoff row also says what fraction of the floor it runs at;
// the fsync columns say why (the floor makes one per step).
func Table(w io.Writer, rows []Row) {
	var floor float64
	for _, r := range rows {
		if r.Primitive == floorPrimitive {
			floor = r.Coord.OpsPerSec()
		}
	}
	fmt.Fprintln(w, "| primitive | case | vs etcd | coord ops/s | etcd ops/s | coord/etcd | of floor | coord p50 / p99 ms | etcd p50 / p99 ms | coord RPCs/op | etcd RPCs/op | coord fsyncs/op | etcd fsyncs/op |")
	fmt.Fprintln(w, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		ratio, of := "-", "-"
		if e := r.Etcd.OpsPerSec(); e > 0 {
			ratio = fmt.Sprintf("%.2fx", r.Coord.OpsPerSec()/e)
		}
		if floor > 0 && r.Primitive != floorPrimitive {
			of = fmt.Sprintf("%.2f", r.Coord.OpsPerSec()/floor)
		}
		etcdOps, etcdMS, etcdRPCs, etcdSyncs, vs := "-", "-", "-", "-", r.Case.Etcd
		if r.etcd != nil {
			etcdOps, etcdMS, etcdRPCs, etcdSyncs = fmt.Sprintf("%.0f", r.Etcd.OpsPerSec()), ms(r.Etcd), fmt.Sprintf("%.2f", r.Etcd.RPCsPerOp()), syncs(r.Etcd)
		}
		if vs == "" {
			vs = "-"
		}
		if r.Etcd.Note != "" {
			etcdOps, ratio = r.Etcd.Note, "-"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %.2f | %s | %s | %s |\n",
			r.Primitive, r.Name, vs, r.Coord.OpsPerSec(), etcdOps, ratio, of,
			ms(r.Coord), etcdMS, r.Coord.RPCsPerOp(), etcdRPCs, syncs(r.Coord), etcdSyncs)
	}
}

// Notes writes what each case's latency measures, below the table.
func Notes(w io.Writer, rows []Row) {
	seen := map[string]bool{}
	var lines []string
	for _, r := range rows {
		k := r.Primitive + ": " + r.Measured
		if !seen[k] {
			seen[k] = true
			lines = append(lines, "- "+k)
		}
	}
	fmt.Fprintln(w, "\nLatency columns measure:")
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// syncs is a result's fsyncs per operation, "-" when unknown.
func syncs(r Result) string {
	if s := r.SyncsPerOp(); !math.IsNaN(s) {
		return fmt.Sprintf("%.2f", s)
	}
	return "-"
}

func ms(r Result) string {
	return fmt.Sprintf("%.2f / %.2f", float64(r.P50.Microseconds())/1000, float64(r.P99.Microseconds())/1000)
}
