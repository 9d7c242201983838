package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/harness/bench"
)

func init() {
	register("bench", "coord vs etcd's concurrency and recipes, side by side, as a markdown table", runBench)
}

const benchHelp = `[--short] [--duration D] [--only lock,queue,...] [--endpoints HOST:PORT,...]

Runs every primitive side by side with its counterpart in etcd's own
concurrency package (Mutex, Election) or experimental recipes (Queue,
Barrier), on the same server in the same run, and prints one markdown
table: operations per second, the ratio coord/etcd, p50/p99 latency, and
etcd RPCs per operation (counted on every participant's client, session
keepalives included).

Without --endpoints it starts an embedded etcd with fsync on, as production
runs, in a temporary directory. With --endpoints it uses that cluster and
removes its keys (under coord-bench/) afterwards; TLS and auth are not
supported there. Progress goes to stderr, the table to stdout.`

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("bench", benchHelp, stderr)
	endpoints := fs.String("endpoints", "", "benchmark this etcd instead of an embedded one")
	short := fs.Bool("short", false, "about 1 s per case and side, for CI")
	dur := fs.Duration("duration", 3*time.Second, "how long each side of each case runs")
	only := fs.String("only", "", "comma-separated primitives to run (lock, election, semaphore, queue, barrier, schedule, ratelimit)")
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 0 {
		return usageErr(fs, stderr, "bench: unexpected argument %q", pos[0])
	}
	d := *dur
	if *short && !fs.isSet("duration") {
		d = time.Second
	}
	if d <= 0 {
		return usageErr(fs, stderr, "bench: --duration must be positive, got %s", d)
	}
	cases := bench.Cases()
	if *only != "" {
		want := map[string]bool{}
		for _, p := range strings.Split(*only, ",") {
			want[strings.TrimSpace(p)] = true
		}
		var sel []bench.Case
		for _, c := range cases {
			if want[c.Primitive] {
				sel = append(sel, c)
			}
		}
		if len(sel) == 0 {
			return usageErr(fs, stderr, "bench: --only %q names no primitive", *only)
		}
		cases = sel
	}

	eps := splitEndpoints(*endpoints)
	where := strings.Join(eps, ",")
	if len(eps) == 0 {
		srv, err := etcdtest.Start()
		if err != nil {
			return fail(stderr, "bench: start embedded etcd: %v", err)
		}
		defer srv.Close()
		eps, where = srv.Endpoints(), "an embedded etcd (fsync on)"
	}
	fmt.Fprintf(stderr, "coord bench: %d cases, %s per side, on %s\n", len(cases), d, where)
	sup, ctx := newSupervisor()
	defer sup.stop()
	rows, err := bench.Run(ctx, eps, d, cases, func(c bench.Case) {
		fmt.Fprintf(stderr, "  %s: %s\n", c.Primitive, c.Name)
	})
	if err != nil {
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		return fail(stderr, "bench: %v", err)
	}
	fmt.Fprintf(stdout, "coord vs etcd v3.7 on %s, %s per side (`coord bench`):\n\n", where, d)
	bench.Table(stdout, rows)
	bench.Notes(stdout, rows)
	return 0
}

// isSet reports whether the flag name was given on the command line.
func (fs *flagSet) isSet(name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func splitEndpoints(s string) []string {
	var eps []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}
