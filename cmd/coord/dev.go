package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/coord-go/coord/etcdtest"
)

func init() {
	register("dev", "start an embedded etcd for local development (Ctrl-C stops it)", runDev)
}

func runDev(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("dev", "[--port 2379] [--data-dir DIR]", stderr)
	port := fs.Int("port", 2379, "client port on 127.0.0.1")
	dir := fs.String("data-dir", "", "keep data here across runs (default: a temporary directory, removed on exit)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	opts := []etcdtest.Option{etcdtest.WithClientAddr(net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))}
	if *dir != "" {
		opts = append(opts, etcdtest.WithDataDir(*dir))
	}
	srv, err := etcdtest.Start(opts...)
	if err != nil {
		return fail(stderr, "dev: start etcd on port %d: %v", *port, err)
	}
	fmt.Fprintf(stdout, "etcd serving on %s (Ctrl-C to stop)\n", srv.Endpoints()[0])
	fmt.Fprintf(stdout, "  export ETCDCTL_ENDPOINTS=%s\n", srv.Endpoints()[0])
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintln(stdout, "stopping etcd")
	srv.Close()
	return 0
}
