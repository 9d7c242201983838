// Command fenced runs a job under a coord lock on several replicas, the
// way examples/cron does, and fences each run's result through package
// fence: the result is posted, with the lock's token, to a results
// service behind fence.Middleware, which refuses any token older than
// one it has seen.
//
// One replica (-freeze) freezes while it holds the lock, for longer than
// its session's TTL, the way a long GC pause, a SIGSTOP or a VM migration
// would: its lease expires, another replica takes the lock and posts a
// newer result, and when the frozen replica wakes up, still believing it
// holds the lock, its late result is refused with 409 Conflict. Without
// the fence it would have overwritten the newer one.
//
//	go run ./examples/fenced
//
// It starts an embedded etcd and the results service itself (-endpoints
// uses an etcd of yours; the service stays in this process).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/fence"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fenced:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	name     string        // the job's lock, and the results' resource
	work     time.Duration // how long one run of the job takes
	ttl      time.Duration // the sessions' TTL
	freeze   int           // the replica that freezes once, 0 for none
	duration time.Duration // how long to run, 0 until interrupted
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fenced", flag.ContinueOnError)
	fs.SetOutput(stdout)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints (default: an embedded etcd)")
	replicas := fs.Int("replicas", 3, "replicas to run")
	var c config
	fs.StringVar(&c.name, "name", "examples-fenced", "job name")
	fs.DurationVar(&c.work, "work", 300*time.Millisecond, "how long one run of the job takes")
	fs.DurationVar(&c.ttl, "ttl", 2*time.Second, "session TTL (the server's minimum is 2s with etcd's default timing)")
	fs.IntVar(&c.freeze, "freeze", 2, "the replica (1..replicas) that freezes once while holding the lock; 0: none")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long (0: run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *replicas < 1 || c.freeze < 0 || c.freeze > *replicas {
		return fmt.Errorf("-replicas %d -freeze %d: want at least one replica, and -freeze one of them or 0", *replicas, c.freeze)
	}
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	out := &output{w: stdout}
	target, closeEtcd, err := etcd(*endpoints, out)
	if err != nil {
		return err
	}
	defer closeEtcd()

	svc := newResults()
	defer svc.Close()
	out.say("results service at %s, fenced on resource %q", svc.URL, c.name)

	var wg sync.WaitGroup
	errs := make(chan error, *replicas)
	for i := 1; i <= *replicas; i++ {
		wg.Go(func() { errs <- replica(ctx, target, i, c, svc.URL, out) })
	}
	wg.Wait()
	close(errs)
	accepted, refused, backwards := svc.counts()
	out.say("done: %d results accepted, %d refused as stale, %d accepted out of order", accepted, refused, backwards)
	return errors.Join(<-errs, <-errs)
}

// replica runs the job whenever it gets the lock, on a client of its own
// behind a proxy (so that a freeze can cut it off from etcd the way a
// paused process is), with a new session whenever the last one is lost.
func replica(ctx context.Context, target string, i int, c config, url string, out *output) error {
	id := fmt.Sprintf("replica-%d", i)
	p, err := etcdtest.StartProxy(target)
	if err != nil {
		return err
	}
	defer p.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: p.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	frozen := i != c.freeze // whether this replica has had its freeze
	for ctx.Err() == nil {
		s, err := session.New(ctx, cli, session.WithTTL(c.ttl))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for ctx.Err() == nil && s.Err() == nil {
			m := lock.NewMutex(s, c.name)
			if err := m.Lock(ctx); err != nil {
				break
			}
			// The token is read once, when the lock is taken, as a
			// process would keep it: a frozen process cannot ask again.
			token := m.Token()
			result := fmt.Sprintf("%s, token %d, at %s", id, token, time.Now().Format("15:04:05.000"))
			sleep(ctx, c.work)
			if !frozen {
				frozen = true
				out.say("%s: token %d: freezing for %v while holding the lock (a GC pause, a SIGSTOP)", id, token, 3*c.ttl)
				p.Blackhole()
				sleep(ctx, 3*c.ttl)
				p.Restore()
				out.say("%s: woke up, and posts its result as if it still held the lock", id)
			}
			if err := post(ctx, url, c.name, token, result); ctx.Err() != nil {
				// Stopping: the result was not wanted any more.
			} else if err != nil {
				out.say("%s: token %d: result refused: %v", id, token, err)
			} else {
				out.say("%s: token %d: result accepted", id, token)
			}
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := m.Unlock(uctx); errors.Is(err, lock.ErrLost) {
				out.say("%s: the lock had been lost (%v); starting over", id, err)
			}
			cancel()
		}
		s.Close()
	}
	return nil
}

// post sends a result with the holder's token through fence.Transport;
// a stale token comes back as the service's 409 and its reason.
func post(ctx context.Context, url, resource string, token int64, result string) error {
	c := &http.Client{Transport: &fence.Transport{Resource: resource, Token: func() int64 { return token }}}
	req, err := http.NewRequestWithContext(ctx, "PUT", url, strings.NewReader(result))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// results is the service the job writes to: it keeps the last result,
// behind fence.Middleware.
type results struct {
	*httptest.Server
	mu               sync.Mutex
	last             string
	lastToken        int64
	accepted, failed int
	backwards        int // results older than the last that got through: what the fence rules out
}

func newResults() *results {
	r := &results{}
	store := &fence.Memory{}
	write := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_, token, _ := fence.FromContext(req.Context())
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if token < r.lastToken {
			r.backwards++
		}
		r.last, r.lastToken = string(b), token
		r.accepted++
	})
	fenced := fence.Middleware(store)(write)
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rec := &status{ResponseWriter: w, code: http.StatusOK}
		fenced.ServeHTTP(rec, req)
		if rec.code == http.StatusConflict {
			r.mu.Lock()
			r.failed++
			r.mu.Unlock()
		}
	}))
	return r
}

func (r *results) counts() (accepted, refused, backwards int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted, r.failed, r.backwards
}

// status records a response's status code.
type status struct {
	http.ResponseWriter
	code int
}

func (s *status) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// etcd returns the endpoint to proxy to: -endpoints' first, or an
// embedded etcd started here.
func etcd(endpoints string, out *output) (string, func(), error) {
	if endpoints != "" {
		return strings.Split(endpoints, ",")[0], func() {}, nil
	}
	srv, err := etcdtest.Start()
	if err != nil {
		return "", nil, err
	}
	out.say("embedded etcd at %s", srv.Endpoints()[0])
	return srv.Endpoints()[0], srv.Close, nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
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
