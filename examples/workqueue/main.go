// Command workqueue shows producers and workers sharing a coord queue with
// at-least-once processing: urgent items go first (priorities), a worker
// that crashes holding an item does not lose it (another worker gets it,
// as attempt 2), and an item that keeps failing because a downstream
// service is down lands in the dead-letter list after -max-attempts, to be
// re-driven once the service is back.
//
// Alone it starts an embedded etcd, enqueues the items, runs -workers
// workers (the first crashes on its first item), re-drives the dead
// letter, and exits when every item is done:
//
//	go run ./examples/workqueue
//
// As separate processes on one etcd, start `go run ./cmd/coord dev`, then:
//
//	go run ./examples/workqueue -endpoints 127.0.0.1:2379 -role worker     # in several terminals
//	go run ./examples/workqueue -endpoints 127.0.0.1:2379 -role producer
//	kill -9 a worker: its item goes to another worker after the TTL
//	go run ./examples/workqueue -endpoints 127.0.0.1:2379 -role redrive    # once "fragile" is dead
package main

import (
	"context"
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
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "workqueue:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	name        string        // the queue
	items       int           // normal items the producer enqueues
	workers     int           // workers in this process
	maxAttempts int           // claims before an item is dead
	ttl         time.Duration // how long a crashed worker holds its item
}

// downstreamKey says whether the service that "fragile" needs is up.
func (c config) downstreamKey() string { return "examples/workqueue/" + c.name + "/downstream" }

// run plays -role until it is done or ctx ends.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("workqueue", flag.ContinueOnError)
	fs.SetOutput(stdout)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints (default: an embedded etcd)")
	role := fs.String("role", "all", "all, producer, worker or redrive")
	var c config
	fs.StringVar(&c.name, "name", "examples-workqueue", "queue name")
	fs.IntVar(&c.items, "items", 10, "normal items to enqueue (plus 3 urgent and 1 fragile)")
	fs.IntVar(&c.workers, "workers", 3, "workers in this process")
	fs.IntVar(&c.maxAttempts, "max-attempts", 3, "claims before an item is dead-lettered")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "worker session TTL: how long a crashed worker holds its item")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.items < 0 || c.workers < 1 || c.maxAttempts < 1 {
		return errors.New("-items, -workers and -max-attempts must be positive")
	}
	switch *role {
	case "all", "producer", "worker", "redrive":
	default:
		return fmt.Errorf("-role %q: want all, producer, worker or redrive", *role)
	}
	out := &output{w: stdout}
	cli, closeAll, err := connect(*endpoints, out)
	if err != nil {
		return err
	}
	defer closeAll()
	// The settings are stored with the queue, for every worker: fast
	// retries for the demo.
	q := queue.New(cli, c.name, queue.WithConfig(queue.Config{MaxAttempts: c.maxAttempts,
		Backoff: queue.Backoff{Min: 100 * time.Millisecond, Max: time.Second, Jitter: 0.2}}))

	switch *role {
	case "producer":
		_, err := produce(ctx, q, c, out)
		return err
	case "worker":
		return workers(ctx, cli, q, c, false, out, nil)
	case "redrive":
		return redrive(ctx, cli, q, c, out)
	}
	return all(ctx, cli, q, c, out)
}

// all runs the whole story in one process and returns when every item is done.
func all(ctx context.Context, cli *clientv3.Client, q *queue.Queue, c config, out *output) error {
	if _, err := cli.Put(ctx, c.downstreamKey(), "down"); err != nil {
		return err
	}
	items, err := produce(ctx, q, c, out)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan event)
	errc := make(chan error, 1)
	go func() { errc <- workers(ctx, cli, q, c, true, out, events) }()

	pending := map[string]bool{}
	for _, it := range items {
		pending[it] = true
	}
	for len(pending) > 0 {
		select {
		case ev := <-events:
			switch {
			case ev.done:
				delete(pending, ev.item)
			case ev.dead:
				// The operator brings the service back and re-drives.
				if err := redrive(ctx, cli, q, c, out); err != nil {
					return err
				}
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	cancel()
	<-errc
	out.say("all %d items done", len(items))
	return nil
}

// produce enqueues the items: normal ones, then urgent ones that jump the
// line, then one that fails while the downstream service is down.
func produce(ctx context.Context, q *queue.Queue, c config, out *output) ([]string, error) {
	var items []string
	enqueue := func(item string, priority int) error {
		if _, err := q.Enqueue(ctx, []byte(item), queue.WithPriority(priority)); err != nil {
			return err
		}
		items = append(items, item)
		return nil
	}
	for i := 1; i <= c.items; i++ {
		if err := enqueue(fmt.Sprintf("job-%d", i), 0); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= 3; i++ {
		if err := enqueue(fmt.Sprintf("urgent-%d", i), -1); err != nil { // lower runs first
			return nil, err
		}
	}
	if err := enqueue("fragile", 0); err != nil {
		return nil, err
	}
	out.say("producer: enqueued %d items", len(items))
	return items, nil
}

// event tells all what a worker did.
type event struct {
	item       string
	done, dead bool
}

// workers runs a pool of c.workers handlers under one session until ctx
// ends: queue.Consume claims for them, acks what they finish, nacks what
// fails with the queue's backoff, and dead-letters an item at its last
// attempt. With crash, another "process" first claims an item and
// crashes holding it.
func workers(ctx context.Context, cli *clientv3.Client, q *queue.Queue, c config, crash bool, out *output, events chan<- event) error {
	report := func(ev event) {
		if events != nil {
			select {
			case events <- ev:
			case <-ctx.Done():
			}
		}
	}
	if crash {
		if err := crashOne(ctx, cli, q, c, out); err != nil {
			return err
		}
	}
	for ctx.Err() == nil {
		s, err := session.New(ctx, cli, session.WithTTL(c.ttl))
		if err != nil {
			return err
		}
		err = q.Consume(ctx, s, func(ctx context.Context, m *queue.Message) error {
			item := string(m.Payload)
			out.say("worker: claimed %s (attempt %d, priority %d)", item, m.Attempt, m.Priority)
			// At least once: if the claim is lost while the work runs (the
			// session expired), ctx is cancelled and another worker does
			// it again; side effects elsewhere can be fenced with
			// m.Token().
			if err := handle(ctx, cli, c, item); err != nil {
				out.say("worker: %s failed (attempt %d): %v", item, m.Attempt, err)
				if m.Attempt < c.maxAttempts {
					return err // Consume nacks it, with the queue's backoff
				}
				// The last attempt: Consume would dead-letter it on return;
				// doing it here, with the reason, tells the operator only
				// once it is in the dead-letter list.
				if err := m.Dead(ctx, "downstream service is down"); err != nil {
					return err
				}
				out.say("worker: %s dead-lettered after %d attempts", item, m.Attempt)
				report(event{item: item, dead: true})
				return nil
			}
			out.say("worker: %s done (attempt %d)", item, m.Attempt)
			report(event{item: item, done: true})
			return nil
		}, queue.WithWorkers(c.workers))
		s.Close()
		if ctx.Err() != nil || errors.Is(err, queue.ErrInvalid) || errors.Is(err, session.ErrInvalid) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		out.say("worker: %v; starting a new session", err)
	}
	return nil
}

// crashOne claims the next item as a process of its own would, and
// crashes holding it: the item goes to another worker, as attempt 2.
func crashOne(ctx context.Context, cli *clientv3.Client, q *queue.Queue, c config, out *output) error {
	s, err := session.New(ctx, cli, session.WithTTL(c.ttl))
	if err != nil {
		return err
	}
	m, err := q.Claim(ctx, s)
	if err != nil {
		s.Close()
		return err
	}
	out.say("crasher: claimed %s (attempt %d, priority %d)", m.Payload, m.Attempt, m.Priority)
	// A crashed process stops renewing its lease, and its claims go
	// after the TTL; closing the session lets them go now.
	out.say("crasher: crashed holding %s (attempt %d)", m.Payload, m.Attempt)
	return s.Close()
}

// handle does the work for one item. "fragile" needs a downstream service
// that is down until the operator brings it back (-role redrive).
func handle(ctx context.Context, cli *clientv3.Client, c config, item string) error {
	if item == "fragile" {
		resp, err := cli.Get(ctx, c.downstreamKey())
		if err != nil {
			return err
		}
		if len(resp.Kvs) == 0 || string(resp.Kvs[0].Value) != "up" {
			return errors.New("downstream service is down")
		}
	}
	t := time.NewTimer(20 * time.Millisecond) // the work
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// redrive is the operator: it brings the downstream service back and puts
// every dead letter back in the queue.
func redrive(ctx context.Context, cli *clientv3.Client, q *queue.Queue, c config, out *output) error {
	if _, err := cli.Put(ctx, c.downstreamKey(), "up"); err != nil {
		return err
	}
	dead, err := q.DeadLetters(ctx)
	if err != nil {
		return err
	}
	for _, d := range dead {
		if err := q.Redrive(ctx, d.ID); err != nil && !errors.Is(err, queue.ErrNotFound) {
			return err
		}
		out.say("operator: downstream is back; re-drove %s (dead after %d attempts)", d.Payload, d.Attempts)
	}
	return nil
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

// output serializes the lines workers print.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *output) say(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}
