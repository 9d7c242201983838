// Command leader is an HTTP service run as several replicas, of which
// exactly one does the leader-only work (here: a line every -work), through
// election.Run.
//
// Every replica serves /leader (the current leader as Run's OnLeader option
// reports it, as JSON) and /healthz. When the leader stops cleanly (Ctrl-C),
// Run resigns and another replica leads within one round trip; when it
// crashes or is cut off from etcd, another leads within the TTL (-ttl), and
// the cut-off one stops its work before that, when its session expires.
//
// Alone it starts an embedded etcd and three replicas in one process, on
// ports 8080, 8081 and 8082:
//
//	go run ./examples/leader
//	curl localhost:8081/leader
//
// To watch a failover, run the replicas as processes sharing one etcd:
//
//	go run ./cmd/coord dev                                                     # terminal 1
//	go run ./examples/leader -endpoints 127.0.0.1:2379 -addr 127.0.0.1:8080    # terminal 2
//	go run ./examples/leader -endpoints 127.0.0.1:2379 -addr 127.0.0.1:8081    # terminal 3
//
// then stop the leader with Ctrl-C (the other leads at once) or kill -9 it
// (the other leads within the TTL).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "leader:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	name string        // the election
	ttl  time.Duration // how long a crashed leader blocks the others
	work time.Duration // how often the leader works
}

// run runs the service until ctx ends.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("leader", flag.ContinueOnError)
	fs.SetOutput(stdout)
	endpoints := fs.String("endpoints", "", "comma-separated etcd endpoints (default: an embedded etcd)")
	replicas := fs.Int("replicas", 0, "replicas to run in this process (default 3 on an embedded etcd, else 1)")
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP address of the first replica; the others take the next ports (port 0: any)")
	id := fs.String("id", "", "name of the first replica (default host-pid)")
	var c config
	fs.StringVar(&c.name, "name", "examples-leader", "election name")
	fs.DurationVar(&c.ttl, "ttl", 5*time.Second, "session TTL: the longest a crashed leader blocks the others")
	fs.DurationVar(&c.work, "work", time.Second, "interval of the leader-only work")
	if err := fs.Parse(args); err != nil {
		return err
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
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}

	out := &output{w: stdout}
	clients, closeAll, err := connect(*endpoints, *replicas, out)
	if err != nil {
		return err
	}
	defer closeAll()

	errs := make(chan error, *replicas)
	for i, cli := range clients {
		name, a := *id, net.JoinHostPort(host, strconv.Itoa(p))
		if *replicas > 1 {
			name = fmt.Sprintf("%s-%d", *id, i+1)
		}
		if p != 0 {
			a = net.JoinHostPort(host, strconv.Itoa(p+i))
		}
		go func() { errs <- serve(ctx, cli, name, a, c, out) }()
	}
	var first error
	for range clients {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// serve is one replica: an HTTP server, and election.Run for the
// leader-only work. It returns nil when ctx ends.
func serve(ctx context.Context, cli *clientv3.Client, id, addr string, c config, out *output) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var leader atomic.Pointer[election.Leader]
	mux := http.NewServeMux()
	mux.HandleFunc("GET /leader", func(w http.ResponseWriter, r *http.Request) {
		l := leader.Load()
		w.Header().Set("Content-Type", "application/json")
		if l == nil || l.Token == 0 {
			w.WriteHeader(http.StatusServiceUnavailable) // no leader right now
			l = &election.Leader{}
		}
		json.NewEncoder(w).Encode(leaderJSON{Leader: l.Value, Token: l.Token, Self: id})
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	out.say("%s: serving http://%s", id, ln.Addr())

	// Run campaigns, calls lead with a ctx that ends with the leadership,
	// and campaigns again after a loss. When ctx ends it resigns, so
	// another replica leads now rather than after the TTL.
	err = election.Run(ctx, cli, c.name, id, func(ctx context.Context) error {
		return lead(ctx, id, c.work, out)
	}, election.WithTTL(c.ttl), election.OnLeader(func(l election.Leader) { leader.Store(&l) }))

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	out.say("%s: stopped", id)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// leaderJSON is what /leader answers.
type leaderJSON struct {
	Leader string `json:"leader"` // the leading replica; empty when none leads
	Token  int64  `json:"token"`  // its fencing token
	Self   string `json:"self"`   // the replica that answered
}

// lead is the leader-only work. It runs until ctx ends, which is the
// moment the leadership is lost or the service stops. Work it does
// outside etcd should carry the fencing token, so that a leader paused
// past its TTL cannot overwrite its successor's work.
func lead(ctx context.Context, id string, every time.Duration, out *output) error {
	token, _ := election.TokenFrom(ctx)
	out.say("%s: leading (token %d)", id, token)
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			out.say("%s: no longer leading (token %d)", id, token)
			return nil // Run campaigns again, unless the service is stopping
		case <-t.C:
			out.say("%s: leader-only work #%d (token %d)", id, n, token)
		}
	}
}

// connect returns n etcd clients, one per replica: to -endpoints, or to an
// embedded etcd started here. closeAll closes them (and the server).
func connect(endpoints string, n int, out *output) (clients []*clientv3.Client, closeAll func(), err error) {
	if endpoints == "" {
		srv, err := etcdtest.Start()
		if err != nil {
			return nil, nil, err
		}
		out.say("embedded etcd at %s", srv.Endpoints()[0])
		for range n {
			cli, err := srv.NewClient()
			if err != nil {
				srv.Close()
				return nil, nil, err
			}
			clients = append(clients, cli)
		}
		return clients, srv.Close, nil
	}
	closeAll = func() {
		for _, cli := range clients {
			cli.Close()
		}
	}
	for range n {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   strings.Split(endpoints, ","),
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		clients = append(clients, cli)
	}
	return clients, closeAll, nil
}

// output serializes the lines replicas print, so that their order is the
// order in which things happened.
type output struct {
	mu sync.Mutex
	w  io.Writer
}

func (o *output) say(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, time.Now().Format("15:04:05.000 ")+format+"\n", args...)
}
