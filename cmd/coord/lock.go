package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/lock"
)

func init() {
	register("lock", "run a command while holding a lock; stop it if the lock is lost", runLock)
}

const lockHelp = `NAME [--try | --wait D] [--conflict-exit 75] [--lock-delay D] [--ttl 15s] [--grace 10s] [--prefix coord/] -- CMD [ARGS...]

Takes the lock NAME (waiting in line, FIFO), runs CMD while holding it, and
releases it when CMD exits. CMD gets COORD_TOKEN, the lock's fencing token
(strictly increasing across holders: pass it to what CMD writes to), and
COORD_KEY, the lock's etcd key.

If the lock is lost (the session's lease expired or was revoked, or the key
was deleted), CMD's process group gets SIGTERM, then SIGKILL after --grace.
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to coord are passed on to CMD; while
still waiting they make coord leave the line and exit.

CMD never outlives the lock: it runs in a process group of its own, which
is killed when CMD exits (background processes CMD left behind included;
start a daemon with setsid if it must live on) and at once if coord itself
is killed, even with SIGKILL: a small reaper process (coord itself,
leading the group) does that on every Unix system, and on Linux the
kernel also kills CMD itself (PR_SET_PDEATHSIG). On Windows a killed
coord leaves CMD running.

With --try, if someone else holds or waits for the lock, coord prints a line
on stderr and exits with --conflict-exit (75) without running CMD, as a cron
job that should skip this round wants. With --wait D it waits at most D.

With --lock-delay D (whole seconds), a holder of NAME that lost the lock
without releasing it (killed with its reaper, paused, cut off) makes the
next holder wait D before its CMD starts, for writes that cannot check
COORD_TOKEN; every coord lock of NAME should pass the same D.

Exit status: CMD's (128+N if signal N ended it); 75 (--conflict-exit) when
--try or --wait did not get the lock; 1 when coord itself failed (etcd
unreachable, TLS, auth); 2 for bad usage; 126 when CMD could not run, 127
when it was not found.`

func runLock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("lock", lockHelp, stderr)
	var h holdFlags
	h.register(fs)
	var a acquireFlags
	a.register(fs, "the lock", true)
	var delay time.Duration
	fs.DurationVar(&delay, "lock-delay", 0, "after a holder lost the lock without releasing it, wait this long before running CMD (whole seconds; 0: off)")
	name, argv, code := nameAndCmd(fs, args)
	if code >= 0 {
		return code
	}
	if err := hold.CheckDelay(delay); err != nil {
		return usageErr(fs, stderr, "--lock-delay: %v", err)
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
		return fail(stderr, "lock %q: %v", name, err)
	}
	defer cli.Close()
	defer s.Close()

	m := lock.NewMutex(s, name, lock.WithLockDelay(delay))
	wctx, cancel := a.bound(ctx)
	defer cancel()
	if a.try {
		err = m.TryLock(wctx)
	} else {
		err = m.Lock(wctx)
	}
	switch {
	case errors.Is(err, lock.ErrLocked):
		fmt.Fprintf(stderr, "coord: lock %q is held elsewhere; not running %s\n", name, quoteCmd(argv))
		return a.conflict
	case a.timedOut(ctx, err):
		fmt.Fprintf(stderr, "coord: lock %q still held elsewhere after %s; not running %s\n", name, a.wait, quoteCmd(argv))
		return a.conflict
	case err != nil:
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		return fail(stderr, "%v", err)
	}
	return h.runHeld(sup, argv, stdout, stderr, held{
		what: fmt.Sprintf("lock %q", name), token: m.Token(), key: m.Key(),
		done: m.Done(), release: m.Unlock, gone: lock.ErrLost,
	})
}

// nameAndCmd parses "NAME [flags] -- CMD...": exactly one NAME, valid,
// and a command after "--".
func nameAndCmd(fs *flagSet, args []string) (string, []string, int) {
	pos, argv, code := splitArgs(fs, args)
	if code >= 0 {
		return "", nil, code
	}
	switch {
	case len(pos) == 0:
		return "", nil, usageErr(fs, fs.stderr, "NAME is missing")
	case len(argv) == 0 && len(pos) > 1:
		return "", nil, usageErr(fs, fs.stderr, "CMD must follow '--' (coord %s NAME -- %s)", fs.cmd, quoteCmd(pos[1:]))
	case len(argv) == 0:
		return "", nil, usageErr(fs, fs.stderr, "no command given after --")
	case len(pos) > 1:
		return "", nil, usageErr(fs, fs.stderr, "want exactly one NAME, got %d arguments before --", len(pos))
	}
	if code := checkName(fs, pos[0]); code >= 0 {
		return "", nil, code
	}
	return pos[0], argv, -1
}
