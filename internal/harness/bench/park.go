package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/coord-go/coord/etcdtest"
)

// parkEnv, set in a process's environment, makes any binary that links
// this package (coord, a test binary) a parker instead: a child process
// that queues a line case's parked waiters, so that their goroutines,
// clients and memory are not the measuring process's (whose collector
// would otherwise scan them all during every measured handoff). It parks
// them, and when its stdin closes (the parent is done, or died) it lets
// them go and exits.
const parkEnv = "COORD_BENCH_PARK"

// parkSpec is what a parker parks.
type parkSpec struct {
	Endpoints []string
	Prefix    string
	N         int
	Side      string // "coord" or "etcd"
}

func init() {
	if spec := os.Getenv(parkEnv); spec != "" {
		os.Exit(park(spec))
	}
}

// lineMakers are the sides' lockers, by the name a parker is given.
var lineMakers = map[string]lineMaker{"coord": coordLineLocker, "etcd": etcdLineLocker}

// park is a parker's main.
func park(spec string) int {
	var p parkSpec
	if err := json.Unmarshal([]byte(spec), &p); err != nil {
		fmt.Fprintln(os.Stderr, "bench parker:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin) // until the parent closes it
		cancel()
	}()
	closeAll, err := parkOn(ctx, p.Endpoints, p.Prefix, p.N, lineMakers[p.Side])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench parker:", err)
		return 1
	}
	<-ctx.Done()
	closeAll()
	return 0
}

// parkOn queues n waiters on lock "line" under prefix, on 8 clients of
// their own, until ctx ends; closeAll waits for them to give up and
// closes their sessions and clients.
func parkOn(ctx context.Context, endpoints []string, prefix string, n int, mk lineMaker) (closeAll func(), err error) {
	var wg sync.WaitGroup
	var closers []func()
	closeAll = func() {
		wg.Wait()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	per := (n + 7) / 8
	parked := 0
	for c := 0; c < 8 && parked < n; c++ {
		cli, err := etcdtest.NewClient(endpoints)
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, func() { cli.Close() })
		mkl, closeS, err := mk(ctx, cli, prefix)
		if err != nil {
			closeAll()
			return nil, err
		}
		closers = append(closers, closeS)
		for k := 0; k < per && parked < n; k++ {
			l := mkl()
			parked++
			wg.Go(func() { l.lock(ctx) })
		}
	}
	return closeAll, nil
}

// parkElsewhere starts a parker of n waiters under prefix on side's
// lockers; stop lets them go and waits for the parker to exit.
func parkElsewhere(env *Env, prefix string, n int, side string) (stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(parkSpec{Endpoints: env.endpoints, Prefix: prefix, N: n, Side: side})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), parkEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	return func() {
		in.Close()
		select {
		case <-exited:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-exited
		}
	}, nil
}
