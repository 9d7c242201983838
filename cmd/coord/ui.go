package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coord-go/coord/console"
	"github.com/coord-go/coord/internal/keys"
)

func init() {
	register("ui", "serve the live console of a root on loopback (Ctrl-C stops it)", runUI)
}

const uiHelp = `[--prefix coord/] [--listen 127.0.0.1:8379] [--allow-actions]

Serves the console: one live page of every primitive in use under the root
prefix (--prefix, default coord/): locks, elections, semaphores, barriers,
latches, queues with their dead letters, schedules, rate limits, groups
and shard maps, with holders, tokens, owners and waiters in line order.
It follows etcd with one watch, whatever the number of viewers, and
prints its URL.

It listens on loopback by default. --listen 0.0.0.0:8379 (or any other
address) serves it to the network: it has no authentication of its own,
so put it behind one. It is read-only unless started with
--allow-actions, which adds buttons to re-drive or discard dead letters,
pause, resume or trigger schedules, and force-release a holder by
revoking its lease (after a confirmation; every action is logged to
stderr).

Exit status: 0 after Ctrl-C or SIGTERM; 1 when etcd cannot be reached or
the address cannot be listened on; 2 for bad usage.`

func runUI(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("ui", uiHelp, stderr)
	var c connFlags
	c.register(fs)
	var root string
	registerPrefix(fs, &root)
	listen := fs.String("listen", "127.0.0.1:8379", "the address to serve on (host:port; port 0 picks one)")
	actions := fs.Bool("allow-actions", false, "enable re-drive, discard, pause, resume, trigger and force release")
	pos, _, code := splitArgs(fs, args)
	if code >= 0 {
		return code
	}
	if len(pos) > 0 {
		return usageErr(fs, stderr, "takes no arguments, got %q", pos)
	}
	if code := checkRoot(fs, root); code >= 0 {
		return code
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		return usageErr(fs, stderr, "--listen %q: want host:port", *listen)
	}
	if err := c.check(); err != nil {
		return usageErr(fs, stderr, "%v", err)
	}
	root, _ = keys.NormalizeRoot(root)

	cli, err := c.client()
	if err != nil {
		return fail(stderr, "ui: %v", err)
	}
	defer cli.Close()
	log := slog.New(slog.NewTextHandler(stderr, nil))
	con, err := console.New(cli, console.WithPrefix(root), console.WithActions(*actions), console.WithLogger(log))
	if err != nil {
		return fail(stderr, "ui: %v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fail(stderr, "ui: %v", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(stderr, "coord ui: serving on %s, beyond loopback: the console has no authentication of its own\n", ln.Addr())
	}
	mode := "read-only"
	if *actions {
		mode = "actions enabled"
	}
	fmt.Fprintf(stdout, "coord console of %s (%s) at http://%s/ (Ctrl-C to stop)\n", root, mode, ln.Addr())

	hs := &http.Server{Handler: con, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-served:
		return fail(stderr, "ui: %v", err)
	}
	// The console first, which ends the viewers' event streams, then the
	// server, which then has no long request left to wait for.
	con.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fail(stderr, "ui: %v", err)
	}
	return 0
}
