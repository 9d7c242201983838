// Command cron runs a job every -every on every replica, and the job runs
// once per tick across the fleet. The job's result is written to etcd
// guarded by the run's IsOwner and fenced by its token, so a replica
// paused past its TTL that wakes up late cannot overwrite a newer result.
//
// -scheduler picks how ticks are scheduled:
//
//	schedule  coord's schedule package: each tick claimed by a
//	          compare-and-swap, exactly one start per tick (the default)
//	gocron    github.com/go-co-op/gocron/v2 with coord as its Locker
//	          (contrib/gocron): runs never overlap, but a tick can run
//	          twice, so the job checks the last tick it wrote
//	elector   gocron with coord as its Elector: only the leader schedules
//
// It is a module of its own, like contrib/gocron, so that coord itself
// never requires gocron. Alone it starts an embedded etcd and three
// replicas in one process (from the repository's root):
//
//	go -C examples/cron run .
//
// As separate processes on one etcd, start `go run ./cmd/coord dev` in one
// terminal, then in each of several others:
//
//	go -C examples/cron run . -endpoints 127.0.0.1:2379 [-scheduler gocron]
//
// and see each tick run in exactly one of them; stop any (Ctrl-C or
// kill -9) and the others carry on.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "cron:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	name      string        // the job: its schedule, lock, election and result key
	every     time.Duration // the schedule
	ttl       time.Duration // how long a crashed replica holds its run
	scheduler string        // schedule, gocron or elector
}

// resultKey is where the job keeps its last result.
func (c config) resultKey() string { return "examples/cron/" + c.name + "/last" }

// run runs the replicas until ctx ends.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("cron", flag.ContinueOnError)
	fs.SetOutput(stdout)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints (default: an embedded etcd)")
	replicas := fs.Int("replicas", 0, "replicas to run in this process (default 3 on an embedded etcd, else 1)")
	id := fs.String("id", "", "name of the first replica (default host-pid)")
	var c config
	fs.StringVar(&c.name, "name", "examples-cron", "job name")
	fs.DurationVar(&c.every, "every", 2*time.Second, "how often the job runs")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "session TTL")
	fs.StringVar(&c.scheduler, "scheduler", "schedule", "schedule, gocron or elector")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case c.every < 10*time.Millisecond:
		return fmt.Errorf("-every %v: too short", c.every)
	case c.scheduler != "schedule" && c.scheduler != "gocron" && c.scheduler != "elector":
		return fmt.Errorf("-scheduler %q: want schedule, gocron or elector", c.scheduler)
	}
	if *replicas <= 0 {
		*replicas = 1
		if *endpoints == "" {
			*replicas = 3
		}
	}
	if *id == "" {
		host, _ := os.Hostname()
		*id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}

	out := &output{w: stdout}
	cli, closeAll, err := connect(*endpoints, out)
	if err != nil {
		return err
	}
	defer closeAll()

	var wg sync.WaitGroup
	errs := make(chan error, *replicas)
	for i := range *replicas {
		name := *id
		if *replicas > 1 {
			name = fmt.Sprintf("%s-%d", *id, i+1)
		}
		wg.Go(func() { errs <- replica(ctx, cli, name, c, out) })
	}
	wg.Wait()
	close(errs)
	return errors.Join(<-errs, <-errs) // the first two are enough to say what went wrong
}

// replica schedules the job until ctx ends, with a new session whenever
// the last one is lost.
func replica(ctx context.Context, cli *clientv3.Client, id string, c config, out *output) error {
	for ctx.Err() == nil {
		var err error
		if c.scheduler == "elector" {
			err = electorScheduler(ctx, cli, id, c, out) // election.Run keeps its own sessions
		} else {
			var s *session.Session
			s, err = session.New(ctx, cli, session.WithTTL(c.ttl))
			if err == nil {
				if c.scheduler == "gocron" {
					err = lockerScheduler(ctx, s, id, c, out)
				} else {
					err = scheduled(ctx, s, id, c, out)
				}
				s.Close()
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, session.ErrInvalid) {
			return err
		}
		out.say("%s: %v; starting over", id, err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

// scheduled runs the job on coord's schedule until ctx or the session
// ends: each tick is claimed by one replica, which runs the job with the
// tick's fencing token and IsOwner.
func scheduled(ctx context.Context, s *session.Session, id string, c config, out *output) error {
	sch := schedule.New(s.Client(), c.name, schedule.Every(c.every), schedule.WithReplica(id))
	err := sch.Run(ctx, s, func(ctx context.Context, t schedule.Tick) error {
		_, err := job(ctx, s.Client(), c, id, t.Time, t.Token, t.IsOwner(), out)
		return err
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// result is what the job writes, and what the next run reads.
type result struct {
	Tick    int64  `json:"tick"`    // the tick, in Unix milliseconds
	Runs    int64  `json:"runs"`    // how many ticks have run: the job's read-modify-write
	Token   int64  `json:"token"`   // the fencing token it was written with
	Replica string `json:"replica"` // who ran it
}

// job runs tick unless it already ran, and writes its result. It must be
// called while holding the tick's run, the job's lock or leadership,
// whose fencing token is token; guard, when not nil, is its IsOwner. It
// reports whether it ran. It refuses to write, and reports false, when
// the stored result is for this tick or a later one (someone ran it: the
// check gocron's Locker needs, which the schedule never trips), or was
// written with a newer token (we are a late replica whose hold is gone),
// or when the write's compare fails: the hold was lost, or someone wrote
// since the read.
func job(ctx context.Context, cli *clientv3.Client, c config, id string, tick time.Time, token int64, guard clientv3.Cmp, out *output) (bool, error) {
	key := c.resultKey()
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return false, err
	}
	var prev result
	var rev int64 // 0: no result yet
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &prev); err != nil {
			return false, fmt.Errorf("%s: %w", key, err)
		}
		rev = resp.Kvs[0].ModRevision
	}
	if prev.Tick >= tick.UnixMilli() || prev.Token > token {
		return false, nil
	}

	// The job's real work goes here; its result is written only if the
	// hold still holds, so a result never goes backwards.
	next := result{Tick: tick.UnixMilli(), Runs: prev.Runs + 1, Token: token, Replica: id}
	val, _ := json.Marshal(next)
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rev)}
	if guard != (clientv3.Cmp{}) {
		cmps = append(cmps, guard)
	}
	txn, err := cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return false, err
	}
	if !txn.Succeeded {
		out.say("%s: tick %s: result refused, the hold was lost", id, tick.Format("15:04:05.000"))
		return false, nil
	}
	out.say("%s: tick %s ran (run #%d, token %d)", id, tick.Format("15:04:05.000"), next.Runs, token)
	return true, nil
}

// connect returns an etcd client for -endpoints, or for an embedded etcd
// started here. closeAll closes it (and the server).
func connect(endpoints string, out *output) (*clientv3.Client, func(), error) {
	if endpoints == "" {
		srv, err := etcdtest.Start()
		if err != nil {
			return nil, nil, err
		}
		out.say("embedded etcd at %s", srv.Endpoints()[0])
		return srv.Client(), srv.Close, nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(endpoints, ","),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, nil, err
	}
	return cli, func() { cli.Close() }, nil
}

// output serializes the lines replicas print.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *output) say(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}
