package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/internal/keys"
)

func init() {
	register("status", "show who holds what, who waits, and since when", runStatus)
}

const statusHelp = `[ROOT] [--kind KIND --name NAME]

Lists every coord primitive in use under the root prefix ROOT (default
coord/): lock holders and waiters in line order, leaders and candidates,
semaphore permits, barriers, queue depths, with fencing tokens and the time
left on each holder's lease. With --kind and --name it shows one primitive
(kinds: lock, rwlock, election, semaphore, barrier, dbarrier, latch, queue).

It is a snapshot: holders may change as it prints. It reads, never writes.`

func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", statusHelp, stderr)
	var c connFlags
	c.register(fs)
	kind := fs.String("kind", "", "show only this kind of primitive (with --name)")
	name := fs.String("name", "", "show only the primitive with this name (with --kind)")
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 1 {
		return usageErr(fs, stderr, "status: want at most one ROOT, got %d arguments", len(pos))
	}
	if (*kind == "") != (*name == "") {
		return usageErr(fs, stderr, "status: --kind and --name go together")
	}
	root := keys.DefaultRoot
	if len(pos) == 1 {
		root = pos[0]
	}
	root, err := keys.NormalizeRoot(root)
	if err != nil {
		return fail(stderr, "status: root %q: %v", pos[0], err)
	}
	cli, err := c.client()
	if err != nil {
		return fail(stderr, "status: %v", err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.dialTimeout+10*time.Second)
	defer cancel()
	var ps []inspect.Primitive
	if *kind != "" {
		p, err := inspect.Get(ctx, cli, root, *kind, *name)
		if err != nil {
			return fail(stderr, "status %s %q: %v", *kind, *name, err)
		}
		ps = []inspect.Primitive{p}
	} else if ps, err = inspect.List(ctx, cli, root); err != nil {
		return fail(stderr, "status %s: %v", root, err)
	}
	if len(ps) == 0 {
		fmt.Fprintf(stdout, "nothing in use under %s\n", root)
		return 0
	}
	inspect.Render(stdout, ps)
	return 0
}
