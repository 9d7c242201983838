package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// member is one embedded etcd process-in-a-goroutine. Its client and peer
// listeners bind port 0 (the kernel picks; the real address is read back),
// and a front proxy with a stable address sits before each, so that a
// member can be stopped, killed and restarted on fresh ports while clients
// and peers keep using the same URLs.
type member struct {
	name    string
	dir     string
	cfg     config
	cluster string // initial-cluster string
	token   string

	clientFront, peerFront *Proxy // nil for a single Server (direct)
	etcd                   *embed.Etcd
	proc                   *proc // instead of etcd, WithBinary
}

func (m *member) embedConfig(newCluster bool) *embed.Config {
	ec := embed.NewConfig()
	ec.Name = m.name
	ec.Dir = m.dir
	ec.UnsafeNoFsync = !m.cfg.fsync
	ec.TickMs = uint(m.cfg.tick / time.Millisecond)
	ec.ElectionMs = uint(m.cfg.election / time.Millisecond)
	if m.cfg.bcryptCost > 0 {
		ec.BcryptCost = uint(m.cfg.bcryptCost)
	}
	if m.cfg.maxRequestBytes > 0 {
		ec.MaxRequestBytes = m.cfg.maxRequestBytes
	}
	if m.cfg.quota > 0 {
		ec.QuotaBackendBytes = m.cfg.quota
	}
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(m.cfg.zapLogger())
	ec.LogLevel = "error"
	local := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	ec.ListenClientUrls = []url.URL{local}
	ec.ListenPeerUrls = []url.URL{local}
	if m.cfg.clientAddr != "" && m.clientFront == nil {
		ec.ListenClientUrls = []url.URL{{Scheme: "http", Host: m.cfg.clientAddr}}
	}
	if m.clientFront != nil {
		ec.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: m.clientFront.Addr()}}
		ec.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: m.peerFront.Addr()}}
		ec.InitialCluster = m.cluster
		ec.InitialClusterToken = m.token
	} else {
		ec.AdvertiseClientUrls = ec.ListenClientUrls
		ec.AdvertisePeerUrls = []url.URL{local}
		ec.InitialCluster = ec.InitialClusterFromName(m.name)
	}
	if newCluster {
		ec.ClusterState = embed.ClusterStateFlagNew
	} else {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	return ec
}

// start launches the member; with wait it also waits until the member
// has joined a raft group with a leader and serves requests.
func (m *member) start(newCluster, wait bool) error {
	if m.cfg.binary != "" {
		if err := m.startProcess(newCluster); err != nil {
			return err
		}
		if !wait {
			return nil
		}
		return m.waitReady(60 * time.Second)
	}
	if err := os.MkdirAll(m.dir, 0o700); err != nil {
		return err
	}
	e, err := embed.StartEtcd(m.embedConfig(newCluster))
	if err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	m.etcd = e
	if m.clientFront != nil {
		m.clientFront.SetTarget(e.Clients[0].Addr().String())
		m.peerFront.SetTarget(e.Peers[0].Addr().String())
		m.clientFront.Restore()
		m.peerFront.Restore()
	}
	if !wait {
		return nil
	}
	return m.waitReady(60 * time.Second)
}

func (m *member) waitReady(d time.Duration) error {
	if m.proc != nil {
		return m.waitProcess(d)
	}
	select {
	case <-m.etcd.Server.ReadyNotify():
		return m.waitServing(d)
	case err := <-m.etcd.Err():
		return fmt.Errorf("%s failed: %v", m.name, err)
	case <-time.After(d):
		return fmt.Errorf("%s not ready after %v", m.name, d)
	}
}

// waitServing waits until the member answers a client call on its own
// listener. Ready means raft is up, but the server's client handlers are
// still being set up in goroutines of its own, which read globals such as
// os.Stderr; returning only once one has answered keeps that setup from
// racing whatever the caller does next (testing.M.Run, under go test
// -json, swaps os.Stderr).
func (m *member) waitServing(d time.Duration) error {
	cli, err := NewClient([]string{"http://" + m.etcd.Clients[0].Addr().String()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	// Serializable: answered by this member alone, even without a quorum.
	if _, err := cli.Get(ctx, "etcdtest-serving-probe", clientv3.WithSerializable()); err != nil {
		return fmt.Errorf("%s ready but not serving: %w", m.name, err)
	}
	return nil
}

// clientURL is what clients dial: the stable front, or the listener.
func (m *member) clientURL() string {
	switch {
	case m.clientFront != nil:
		return "http://" + m.clientFront.Addr()
	case m.proc != nil:
		return "http://" + m.proc.clientAddr
	}
	return "http://" + m.etcd.Clients[0].Addr().String()
}

func (m *member) running() bool { return m.etcd != nil || m.proc != nil }

// ids returns the member's raft id and the leader it knows of (0: none).
func (m *member) ids() (id, leader uint64) {
	if m.proc != nil {
		id, leader, err := m.status()
		if err != nil {
			return id, 0
		}
		return id, leader
	}
	return uint64(m.etcd.Server.MemberID()), uint64(m.etcd.Server.Leader())
}

// stop shuts the member down. A graceful stop hands raft leadership over
// first, as `etcd` does on SIGTERM; a hard one does not, and cuts every
// connection at once, as a crash or SIGKILL does.
func (m *member) stop(hard bool) {
	if m.proc != nil {
		m.stopProcess(hard)
		return
	}
	if m.etcd == nil {
		return
	}
	if m.clientFront != nil {
		// Clients see the connection drop at once and go elsewhere; the
		// embedded server's own graceful gRPC stop then has no streams
		// left to wait for.
		m.clientFront.Refuse()
		m.clientFront.Reset()
	}
	if hard {
		if m.peerFront != nil {
			m.peerFront.Refuse()
			m.peerFront.Reset()
		}
		m.etcd.Server.HardStop()
	}
	m.etcd.Close()
	if m.peerFront != nil {
		m.peerFront.Refuse()
		m.peerFront.Reset()
	}
	m.etcd = nil
}
