// Package pgtest starts throwaway PostgreSQL servers for tests, from the
// server binaries of a local installation (Debian's postgresql package
// puts them in /usr/lib/postgresql/<version>/bin): initdb in a temporary
// directory, then postgres listening only on a Unix socket in that
// directory, stopped and removed by Close. As root, which postgres
// refuses to run as, both run as the "postgres" system user (or
// "nobody"), so the same tests run on a developer's machine and in CI.
//
// It imports no database driver: a test connects with the driver of its
// choice to DSN.
//
// # Safety
//
// Servers listen on no TCP port and trust every local connection: they
// are for tests only. Close removes everything a server wrote. On Linux
// a server is killed by the kernel if the test binary dies, so none
// outlives a crashed test. A Server and a Shared are safe for concurrent
// use.
package pgtest

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RequireEnv names the environment variable that makes a missing
// PostgreSQL a test failure instead of a skip (CI sets it).
const RequireEnv = "COORD_REQUIRE_POSTGRES"

// BinEnv names the environment variable that points at the server
// binaries' directory, for an installation where Binaries does not look.
const BinEnv = "COORD_POSTGRES_BIN"

// Binaries returns the directory holding initdb and postgres: $BinEnv,
// else the newest /usr/lib/postgresql/*/bin, else `pg_config --bindir`,
// else the directory of a postgres on PATH; "" when none has them.
func Binaries() string {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
				return false
			}
		}
		return true
	}
	if d := os.Getenv(BinEnv); d != "" && has(d) {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); has(d) {
			return d
		}
	}
	if p, err := exec.LookPath("postgres"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	return ""
}

// version reads the major version out of /usr/lib/postgresql/<v>/bin.
func version(dir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return v
}

// Server is one running PostgreSQL cluster.
type Server struct {
	bin  string
	dir  string // the temporary directory: data/ and the socket
	port int
	cmd  *exec.Cmd
	exit chan struct{} // closed when postgres exits
	mu   sync.Mutex
	log  []string // the server's last lines, for errors
	once sync.Once
}

// Start starts a server from the binaries in Binaries (an error when
// there are none). The caller must Close it.
func Start() (*Server, error) {
	bin := Binaries()
	if bin == "" {
		return nil, errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) found")
	}
	dir, err := os.MkdirTemp("", "coord-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir, port: 20000 + rand.IntN(40000), exit: make(chan struct{})}
	if err := s.start(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	cred, err := credential(s.dir)
	if err != nil {
		return err
	}
	data := filepath.Join(s.dir, "data")
	initdb := exec.Command(filepath.Join(s.bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	initdb.Dir = s.dir
	initdb.SysProcAttr = procAttr(cred)
	if out, err := initdb.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), "-D", data, "-k", s.dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "log_min_error_statement=panic")
	s.cmd.Dir = s.dir
	s.cmd.SysProcAttr = procAttr(cred)
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signal := ready
		for sc.Scan() {
			if signal != nil && strings.Contains(sc.Text(), "ready to accept connections") {
				close(signal)
				signal = nil
			}
			s.mu.Lock()
			s.log = append(s.log, sc.Text())
			if len(s.log) > 50 {
				s.log = s.log[len(s.log)-50:]
			}
			s.mu.Unlock()
		}
		s.cmd.Wait()
		close(s.exit)
	}()
	// Ready when it says so (its socket exists a little earlier, while it
	// still refuses connections as "starting up").
	select {
	case <-ready:
		return nil
	case <-s.exit:
		return fmt.Errorf("pgtest: postgres exited at start:\n%s", s.lastLog())
	case <-time.After(60 * time.Second):
		return fmt.Errorf("pgtest: postgres not ready after 60s:\n%s", s.lastLog())
	}
}

func (s *Server) lastLog() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, "\n")
}

// DSN returns the keyword/value connection string of database db as the
// superuser "postgres" (pgx and lib/pq both read it).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", s.dir, s.port, db)
}

// Close stops the server (a fast shutdown, then a kill) and removes its
// directory.
func (s *Server) Close() {
	s.once.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			stop(s.cmd.Process)
			select {
			case <-s.exit:
			case <-time.After(10 * time.Second):
				s.cmd.Process.Kill()
				<-s.exit
			}
		}
		os.RemoveAll(s.dir)
	})
}

// Shared is one server for a whole test binary, started by the first
// test that asks for it and closed by Close (from TestMain).
type Shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get returns the shared server, starting it on first use. Without
// PostgreSQL's binaries it skips t, saying how to install them, unless
// RequireEnv is set, when it fails t; a server that does not start fails
// t either way.
func (sh *Shared) Get(t testing.TB) *Server {
	t.Helper()
	sh.once.Do(func() {
		if Binaries() == "" {
			return
		}
		sh.srv, sh.err = Start()
	})
	switch {
	case sh.err != nil:
		t.Fatal(sh.err)
	case sh.srv == nil && os.Getenv(RequireEnv) != "":
		t.Fatalf("%s is set, but no PostgreSQL server binaries were found (apt-get install postgresql, or set %s)", RequireEnv, BinEnv)
	case sh.srv == nil:
		t.Skipf("PostgreSQL server binaries not found (looked in $%s, /usr/lib/postgresql/*/bin, pg_config, PATH): apt-get install postgresql to run this test; set %s=1 to make this a failure", BinEnv, RequireEnv)
	}
	return sh.srv
}

// Close closes the shared server if it was started.
func (sh *Shared) Close() {
	if sh.srv != nil {
		sh.srv.Close()
	}
}
