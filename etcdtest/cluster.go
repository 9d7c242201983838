package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster is a group of etcd members on loopback, embedded in the test
// process or, WithBinary, real etcd processes. Each member
// has stable client and peer URLs (a front proxy owned by the cluster), so
// members can be stopped, killed and restarted while clients keep their
// endpoints, and a killed member's connections drop as they would in a
// crash.
type Cluster struct {
	members []*member
	tmp     string
	mu      sync.Mutex
	cli     *clientv3.Client
	clients []*clientv3.Client
	closed  bool
}

// NewCluster starts size members, waits until they have elected a leader,
// and tears everything down when the test ends.
func NewCluster(t testing.TB, size int, opts ...Option) *Cluster {
	t.Helper()
	c, err := StartCluster(size, opts...)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartCluster is NewCluster without a testing.TB; the caller must Close.
func StartCluster(size int, opts ...Option) (*Cluster, error) {
	c, err := startCluster(size, opts...)
	for i := 1; err != nil && i < startRetries && newConfig(opts).binary != ""; i++ {
		c, err = startCluster(size, opts...) // a picked port may have been taken
	}
	return c, err
}

func startCluster(size int, opts ...Option) (*Cluster, error) {
	if size < 1 {
		return nil, fmt.Errorf("cluster size %d: need at least 1", size)
	}
	cfg := newConfig(opts)
	c := &Cluster{}
	root := cfg.dataDir
	if root == "" {
		tmp, err := os.MkdirTemp("", "etcdtest-cluster-")
		if err != nil {
			return nil, err
		}
		c.tmp, root = tmp, tmp
	}
	var initial []string
	token := fmt.Sprintf("etcdtest-%d", time.Now().UnixNano())
	for i := 0; i < size; i++ {
		cf, err := StartProxy("127.0.0.1:1")
		if err != nil {
			c.Close()
			return nil, err
		}
		pf, err := StartProxy("127.0.0.1:1")
		if err != nil {
			cf.Close()
			c.Close()
			return nil, err
		}
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(root, fmt.Sprintf("member-%d", i)), cfg: cfg, clientFront: cf, peerFront: pf, token: token}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"=http://"+pf.Addr())
	}
	for _, m := range c.members {
		m.cluster = strings.Join(initial, ",")
		if err := m.start(true, false); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := m.waitReady(60 * time.Second); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.members) }

// Endpoints returns every member's client URL.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, "http://"+m.clientFront.Addr())
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *Cluster) Endpoint(i int) string { return "http://" + c.members[i].clientFront.Addr() }

// Client returns a client for all members, made on first use and closed
// with the cluster.
func (c *Cluster) Client() *clientv3.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == nil {
		cli, err := NewClient(c.Endpoints())
		if err != nil {
			panic(fmt.Sprintf("etcdtest: client for a running cluster: %v", err))
		}
		c.cli = cli
	}
	return c.cli
}

// NewClient returns a new client of its own for the given endpoints (all
// members when none are given), closed with the cluster.
func (c *Cluster) NewClient(endpoints []string, opts ...ClientOption) (*clientv3.Client, error) {
	if len(endpoints) == 0 {
		endpoints = c.Endpoints()
	}
	cli, err := NewClient(endpoints, opts...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.clients = append(c.clients, cli)
	c.mu.Unlock()
	return cli, nil
}

// Stop stops member i gracefully (it hands over raft leadership first).
func (c *Cluster) Stop(i int) { c.members[i].stop(false) }

// Kill stops member i at once, without handing over leadership, and cuts
// its client and peer connections, as SIGKILL would.
func (c *Cluster) Kill(i int) { c.members[i].stop(true) }

// Restart starts a stopped or killed member again from its data directory
// and waits until it serves requests.
func (c *Cluster) Restart(i int) error {
	m := c.members[i]
	if m.running() {
		return fmt.Errorf("member %d is running", i)
	}
	return m.start(false, true)
}

// Running reports whether member i is running.
func (c *Cluster) Running(i int) bool { return c.members[i].running() }

// Leader returns the index of the member that is raft leader as seen by
// the running members, or -1 when they do not agree on one.
func (c *Cluster) Leader() int {
	lead := -1
	var agreed uint64
	ids := make([]uint64, len(c.members))
	for i, m := range c.members {
		if !m.running() {
			continue
		}
		id, l := m.ids()
		ids[i] = id
		if l == 0 || (agreed != 0 && l != agreed) {
			return -1
		}
		agreed = l
	}
	for i, m := range c.members {
		if m.running() && ids[i] == agreed {
			lead = i
		}
	}
	return lead
}

// WaitLeader waits until the running members agree on a leader and
// returns its index.
func (c *Cluster) WaitLeader(ctx context.Context) (int, error) {
	for {
		if l := c.Leader(); l >= 0 {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return -1, fmt.Errorf("no leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// MoveLeader transfers raft leadership to member to and waits until the
// running members agree on it.
func (c *Cluster) MoveLeader(ctx context.Context, to int) error {
	from, err := c.WaitLeader(ctx)
	if err != nil {
		return err
	}
	if from == to {
		return nil
	}
	lm, tm := c.members[from], c.members[to]
	if !tm.running() {
		return errors.New("etcdtest: target member is not running")
	}
	if err := c.moveLeader(ctx, lm, tm); err != nil {
		return err
	}
	for {
		if l := c.Leader(); l == to {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// IsolatePeers cuts member i off from the other members (its clients can
// still reach it) until HealPeers: its peer traffic is blackholed.
// Note: traffic that member i initiates to others travels on connections
// to their peer ports, so this drops what others send to i and what i
// sends on streams others opened to it; raft sees i as unreachable.
func (c *Cluster) IsolatePeers(i int) {
	c.members[i].peerFront.Blackhole()
	c.members[i].peerFront.Reset()
}

// HealPeers undoes IsolatePeers.
func (c *Cluster) HealPeers(i int) { c.members[i].peerFront.Restore() }

// Compact compacts the cluster's history up to its current revision.
func (c *Cluster) Compact(ctx context.Context) error { return compactAll(ctx, c.Client()) }

// Close stops every member, closes the clients and removes a temporary
// data directory. It is safe to call more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	clients := append(c.clients, c.cli)
	c.mu.Unlock()
	for _, cl := range clients {
		if cl != nil {
			cl.Close()
		}
	}
	var wg sync.WaitGroup
	for _, m := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); m.stop(true) }()
	}
	wg.Wait()
	for _, m := range c.members {
		m.clientFront.Close()
		m.peerFront.Close()
	}
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
	}
}

func (c *Cluster) moveLeader(ctx context.Context, lm, tm *member) error {
	if lm.proc == nil {
		return lm.etcd.Server.MoveLeader(ctx, uint64(lm.etcd.Server.MemberID()), uint64(tm.etcd.Server.MemberID()))
	}
	to, _ := tm.ids()
	cli, err := NewClient([]string{"http://" + lm.proc.clientAddr})
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.MoveLeader(ctx, to)
	return err
}
