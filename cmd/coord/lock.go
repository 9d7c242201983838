package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/lock"
)

func init() {
	register("lock", "run a command while holding a lock; stop it if the lock is lost", runLock)
}

const lockHelp = `NAME [--try] [--ttl 15s] [--grace 10s] [--prefix coord/] -- CMD [ARGS...]

Takes the lock NAME (waiting in line, FIFO), runs CMD while holding it, and
releases it when CMD exits. CMD gets COORD_TOKEN, the lock's fencing token
(strictly increasing across holders: pass it to what CMD writes to), and
COORD_KEY, the lock's etcd key.

If the lock is lost (the session's lease expired or was revoked, or the key
was deleted), CMD's process group gets SIGTERM, then SIGKILL after --grace.
SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to coord are passed on to CMD; while
still waiting they make coord leave the line and exit.

With --try, if someone else holds or waits for the lock, coord prints a line
on stderr and exits 0 without running CMD, as a cron job that should simply
skip this round wants.

Exit status: CMD's (128+N if signal N ended it); 1 when coord itself failed
(etcd unreachable, a bad name); 2 for bad usage; 127 when CMD was not found.`

func runLock(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("lock", lockHelp, stderr)
	var h holdFlags
	h.register(fs)
	try := fs.Bool("try", false, "skip CMD (exit 0) if the lock is held elsewhere, instead of waiting")
	pos, argv, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) != 1 {
		return usageErr(fs, stderr, "lock: want exactly one NAME, got %d arguments", len(pos))
	}
	if len(argv) == 0 {
		return usageErr(fs, stderr, "lock: no command given after --")
	}
	name := pos[0]
	if err := keys.ValidateName(name); err != nil {
		return fail(stderr, "lock: %v", err)
	}

	sup, ctx := newSupervisor()
	defer sup.stop()
	cli, s, err := h.session(ctx)
	if err != nil {
		return fail(stderr, "lock %q: %v", name, err)
	}
	defer cli.Close()
	defer s.Close()

	m := lock.NewMutex(s, name)
	if *try {
		err = m.TryLock(ctx)
		if errors.Is(err, lock.ErrLocked) {
			fmt.Fprintf(stderr, "coord: lock %q is held elsewhere; not running %s\n", name, quoteCmd(argv))
			return 0
		}
	} else {
		err = m.Lock(ctx)
	}
	if err != nil {
		if c := sup.interrupted(); c >= 0 {
			return c
		}
		return fail(stderr, "lock %q: %v", name, err)
	}
	return h.runHeld(sup, argv, stdout, stderr, held{
		what: fmt.Sprintf("lock %q", name), token: m.Token(), key: m.Key(),
		done: m.Done(), release: m.Unlock, gone: lock.ErrLost,
	})
}
