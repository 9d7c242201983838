package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/semaphore"
)

func init() {
	register("sem", "run a command while holding semaphore permits", runSem)
}

const semHelp = `NAME --capacity N [--weight W] [--try] [--ttl 15s] [--grace 10s] -- CMD [ARGS...]

Acquires W permits (default 1) of the semaphore NAME, which lets at most N
permits be held at once across every process that uses it, runs CMD while
holding them, and releases them when CMD exits. Requests are served in
order, and a large request is never starved by small ones. Every user of a
name must agree on its capacity (a different one is an error).

CMD gets COORD_TOKEN (the permit's fencing token) and COORD_KEY (its etcd
key). If the permit is lost, CMD gets SIGTERM, then SIGKILL after --grace;
signals sent to coord are passed on to CMD. With --try, coord exits 0
without running CMD when the permits are not free now.

Exit status: CMD's (128+N if signal N ended it); 1 when coord failed; 2 for
bad usage.`

func runSem(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sem", semHelp, stderr)
	var h holdFlags
	h.register(fs)
	capacity := fs.Int64("capacity", 0, "how many permits the semaphore has in all (required)")
	weight := fs.Int64("weight", 1, "how many permits CMD needs")
	try := fs.Bool("try", false, "skip CMD (exit 0) if the permits are not free now, instead of waiting")
	pos, argv, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return usageErr(fs, stderr, "sem: want exactly one NAME, got %d arguments", len(pos))
	}
	if len(argv) == 0 {
		return usageErr(fs, stderr, "sem: no command given after --")
	}
	if *capacity < 1 {
		return usageErr(fs, stderr, "sem: --capacity must be at least 1, got %d", *capacity)
	}
	if *weight < 1 || *weight > *capacity {
		return usageErr(fs, stderr, "sem: --weight must be between 1 and the capacity %d, got %d", *capacity, *weight)
	}
	name := pos[0]
	if err := keys.ValidateName(name); err != nil {
		return fail(stderr, "sem: %v", err)
	}

	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, s, err := h.session(ctx)
	if err != nil {
		return fail(stderr, "sem %q: %v", name, err)
	}
	defer cli.Close()
	defer s.Close()

	sem := semaphore.New(s, name, *capacity)
	var p *semaphore.Permit
	if *try {
		p, err = sem.TryAcquire(ctx, *weight)
		if errors.Is(err, semaphore.ErrNoPermits) {
			fmt.Fprintf(stderr, "coord: semaphore %q has no %d free permits; not running %s\n", name, *weight, quoteCmd(argv))
			return 0
		}
	} else {
		p, err = sem.Acquire(ctx, *weight)
	}
	if err != nil {
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		return fail(stderr, "semaphore %q: %v", name, err)
	}
	return h.runHeld(sup, argv, stdout, stderr, held{
		what: fmt.Sprintf("semaphore %q permit", name), token: p.Token(), key: p.Key(),
		done: p.Done(), release: p.Release, gone: semaphore.ErrLost,
	})
}
