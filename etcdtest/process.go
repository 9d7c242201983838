package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// WithBinary runs a Server, or each Cluster member, as a real etcd server
// process from the binary at path (scripts/build-etcd.sh builds one of any
// version from the Go module proxy), instead of inside the test process.
// Kill then sends SIGKILL, Stop sends SIGTERM, and Pause and Resume send
// SIGSTOP and SIGCONT. The options map to etcd's flags (WithoutFsync to
// --unsafe-no-fsync, WithElectionTimeout to --heartbeat-interval and
// --election-timeout, WithMaxRequestBytes to --max-request-bytes,
// WithQuotaBackendBytes to --quota-backend-bytes, WithLogOutput to the
// process's stdout and stderr). Ports for the
// processes are picked by binding port 0 and releasing it, so a start can
// race another program for a port; Start and StartCluster retry.
//
// WithBinary("") runs in the test process even when BinaryEnv is set, for
// a test that needs the embedded server (Server.Etcd).
func WithBinary(path string) Option { return func(c *config) { c.binary = path } }

// startRetries is how often a process start is tried: a port picked by
// freePort can be taken by someone else before etcd binds it.
const startRetries = 3

// proc is a member running as a child process.
type proc struct {
	cmd        *exec.Cmd
	clientAddr string
	peerAddr   string
	exited     chan struct{}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func (m *member) startProcess(newCluster bool) error {
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	ca, err := freePort()
	if err != nil {
		return err
	}
	pa, err := freePort()
	if err != nil {
		return err
	}
	state := "existing"
	if newCluster {
		state = "new"
	}
	// A cluster member advertises its stable fronts; a single Server is
	// dialled directly, so it advertises its own listeners.
	advClient, advPeer, initial, token := ca, pa, m.name+"=http://"+pa, "etcdtest-"+m.name
	if m.clientFront != nil {
		advClient, advPeer, initial, token = m.clientFront.Addr(), m.peerFront.Addr(), m.cluster, m.token
	} else if m.cfg.clientAddr != "" {
		ca, advClient = m.cfg.clientAddr, m.cfg.clientAddr
	}
	args := []string{
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", "http://" + ca, "--advertise-client-urls", "http://" + advClient,
		"--listen-peer-urls", "http://" + pa, "--initial-advertise-peer-urls", "http://" + advPeer,
		"--initial-cluster", initial, "--initial-cluster-token", token, "--initial-cluster-state", state,
		"--heartbeat-interval", strconv.Itoa(int(m.cfg.tick / time.Millisecond)),
		"--election-timeout", strconv.Itoa(int(m.cfg.election / time.Millisecond)),
		"--log-level", "error",
	}
	if !m.cfg.fsync {
		args = append(args, "--unsafe-no-fsync")
	}
	if m.cfg.bcryptCost > 0 {
		args = append(args, "--bcrypt-cost", strconv.Itoa(m.cfg.bcryptCost))
	}
	if m.cfg.maxRequestBytes > 0 {
		args = append(args, "--max-request-bytes", strconv.FormatUint(uint64(m.cfg.maxRequestBytes), 10))
	}
	if m.cfg.quota > 0 {
		args = append(args, "--quota-backend-bytes", strconv.FormatInt(m.cfg.quota, 10))
	}
	cmd := exec.Command(m.cfg.binary, args...)
	var out io.Writer = io.Discard
	if m.cfg.logOutput != nil {
		out = m.cfg.logOutput
	}
	cmd.Stdout, cmd.Stderr = out, out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	p := &proc{cmd: cmd, clientAddr: ca, peerAddr: pa, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	m.proc = p
	if m.clientFront != nil {
		m.clientFront.SetTarget(ca)
		m.peerFront.SetTarget(pa)
		m.clientFront.Restore()
		m.peerFront.Restore()
	}
	return nil
}

// waitProcess waits until the process answers a Status call through its
// own listener and knows a leader.
func (m *member) waitProcess(d time.Duration) error {
	cli, err := NewClient([]string{"http://" + m.proc.clientAddr})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		select {
		case <-m.proc.exited:
			return fmt.Errorf("%s exited: %v", m.name, m.proc.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		st, err := cli.Status(ctx, "http://"+m.proc.clientAddr)
		cancel()
		if err == nil && st.Leader != 0 {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %v", m.name, d)
}

func (m *member) stopProcess(hard bool) {
	p := m.proc
	if p == nil {
		return
	}
	if m.clientFront != nil {
		m.clientFront.Refuse()
		m.clientFront.Reset()
	}
	sig := syscall.SIGTERM
	if hard {
		if m.peerFront != nil {
			m.peerFront.Refuse()
			m.peerFront.Reset()
		}
		sig = syscall.SIGKILL
	}
	resume(p.cmd.Process) // a paused process cannot act on SIGTERM
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
	if m.peerFront != nil {
		m.peerFront.Refuse()
		m.peerFront.Reset()
	}
	m.proc = nil
}

// status asks a process member who it is and who it thinks leads.
func (m *member) status() (id, leader uint64, err error) {
	cli, err := NewClient([]string{"http://" + m.proc.clientAddr})
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	st, err := cli.Status(ctx, "http://"+m.proc.clientAddr)
	if err != nil {
		return 0, 0, err
	}
	return st.Header.MemberId, st.Leader, nil
}

// Pause stops member i's process with SIGSTOP: it keeps its connections
// but answers nothing, like a process in a long GC pause or a VM that is
// being migrated. Only clusters made WithBinary can pause a member.
func (c *Cluster) Pause(i int) error {
	m := c.members[i]
	if m.proc == nil {
		return errors.New("etcdtest: Pause needs a running member of a cluster made WithBinary")
	}
	return pause(m.proc.cmd.Process)
}

// Resume continues a paused member with SIGCONT.
func (c *Cluster) Resume(i int) error {
	m := c.members[i]
	if m.proc == nil {
		return errors.New("etcdtest: Resume needs a running member of a cluster made WithBinary")
	}
	return resume(m.proc.cmd.Process)
}
