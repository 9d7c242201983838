// Package etcdtest starts real etcd servers for tests, the way
// net/http/httptest starts HTTP servers: NewServer for one member,
// NewCluster for several, each on loopback with kernel-chosen ports and
// temporary data directories, stopped at the end of the test. Start and
// StartCluster do the same for TestMain, examples and programs, which
// close what they start.
//
// Servers run inside the test process by default. WithBinary, or the
// COORD_ETCD_BINARY environment variable (BinaryEnv) for every server and
// cluster at once, runs them as real etcd processes of a given binary
// instead, so the same tests run against another etcd version unchanged.
//
// Clients: Server.Client and Cluster.Client are shared and closed with
// their server; Server.NewClient and Cluster.NewClient make clients of
// their own, also closed with it; the NewClient function makes one the
// caller closes, and NewTestClient one that closes when the test ends.
// All are set up for tests: silent logs and a reconnect backoff capped
// at one second.
//
// It also injects faults, for tests of code that must stay correct when
// things break: stop, kill and restart a cluster member, crash every
// member at once and restart the cluster from its data directories
// (KillAll, RestartAll), fill a server up to its backend quota
// (WithQuotaBackendBytes), move raft leadership, cut a member off from its peers, pause a process member
// with SIGSTOP, and put a Proxy between a client and etcd that blackholes
// or delays its traffic. A Counter counts the RPCs a client makes, so
// tests and benchmarks can report RPCs per operation.
//
// Main, and CheckLeaks in a TestMain of one's own, fail a run whose tests
// passed but left goroutines running once every server and client was
// closed (see Leaks).
//
// # Safety
//
// Everything here is for tests and local development: servers bind only
// to 127.0.0.1 and are not secured. A Server, Cluster, Proxy and Counter
// are each safe for concurrent use. Servers started with Start or
// StartCluster must be closed by the caller; those from NewServer and
// NewCluster are closed by t.Cleanup. Process servers are killed by the
// kernel if the test binary dies (Linux), so none outlives a crashed test.
package etcdtest
