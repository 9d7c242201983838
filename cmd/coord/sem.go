package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/coord-go/coord/semaphore"
)

func init() {
	register("sem", "run a command while holding semaphore permits", runSem)
}

const semHelp = `NAME --capacity N [--weight W] [--try | --wait D] [--conflict-exit 75] [--ttl 15s] [--grace 10s] -- CMD [ARGS...]

Acquires W permits (default 1) of the semaphore NAME, which lets at most N
permits be held at once across every process that uses it, runs CMD while
holding them, and releases them when CMD exits. Requests are served in
order, and a large request is never starved by small ones. Every user of a
name must agree on its capacity (a different one is an error).

CMD gets COORD_TOKEN (the permit's fencing token) and COORD_KEY (its etcd
key). If the permit is lost, CMD gets SIGTERM, then SIGKILL after --grace;
signals sent to coord are passed on to CMD. CMD's process group never
outlives the permit, as with 'coord lock' (see 'coord lock -h').

With --try, coord exits with --conflict-exit (75) without running CMD when
the permits are not free now; with --wait D, when they are not free within D.

Exit status: CMD's (128+N if signal N ended it); 75 (--conflict-exit) when
--try or --wait did not get the permits; 1 when coord failed; 2 for bad
usage.`

func runSem(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("sem", semHelp, stderr)
	var h holdFlags
	h.register(fs)
	capacity := fs.Int64("capacity", 0, "how many permits the semaphore has in all (required)")
	weight := fs.Int64("weight", 1, "how many permits CMD needs")
	var a acquireFlags
	a.register(fs, "the permits", true)
	name, argv, code := nameAndCmd(fs, args)
	if code >= 0 {
		return code
	}
	if *capacity < 1 {
		return usageErr(fs, stderr, "--capacity must be at least 1, got %d", *capacity)
	}
	if *weight < 1 || *weight > *capacity {
		return usageErr(fs, stderr, "--weight must be between 1 and the capacity %d, got %d", *capacity, *weight)
	}
	if code := h.check(fs); code >= 0 {
		return code
	}
	if code := a.check(fs); code >= 0 {
		return code
	}

	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, s, err := h.session(ctx)
	if err != nil {
		return fail(stderr, "semaphore %q: %v", name, err)
	}
	defer cli.Close()
	defer s.Close()

	sem := semaphore.New(s, name, *capacity)
	wctx, cancel := a.bound(ctx)
	defer cancel()
	var p *semaphore.Permit
	if a.try {
		p, err = sem.TryAcquire(wctx, *weight)
	} else {
		p, err = sem.Acquire(wctx, *weight)
	}
	switch {
	case errors.Is(err, semaphore.ErrNoPermits):
		fmt.Fprintf(stderr, "coord: semaphore %q has no %d free permits; not running %s\n", name, *weight, quoteCmd(argv))
		return a.conflict
	case a.timedOut(ctx, err):
		fmt.Fprintf(stderr, "coord: semaphore %q had no %d free permits within %s; not running %s\n", name, *weight, a.wait, quoteCmd(argv))
		return a.conflict
	case err != nil:
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		// The library's errors name the semaphore already.
		return fail(stderr, "%v", err)
	}
	return h.runHeld(sup, argv, stdout, stderr, held{
		what: fmt.Sprintf("semaphore %q permit", name), token: p.Token(), key: p.Key(),
		done: p.Done(), release: p.Release, gone: semaphore.ErrLost,
	})
}
