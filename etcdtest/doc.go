// Package etcdtest starts real etcd servers inside the test process, the
// way net/http/httptest starts HTTP servers: NewServer for one member,
// NewCluster for several, each on loopback with kernel-chosen ports and
// temporary data directories, stopped at the end of the test.
//
// It also injects faults, for tests of code that must stay correct when
// things break: stop, kill and restart a cluster member, move raft
// leadership, cut a member off from its peers, and put a Proxy between a
// client and etcd that blackholes or delays its traffic. A Counter counts
// the RPCs a client makes, so tests and benchmarks can report RPCs per
// operation.
//
// # Safety
//
// Everything here is for tests and local development: servers bind only
// to 127.0.0.1 and are not secured. A Server, Cluster, Proxy and Counter
// are each safe for concurrent use. Servers started with Start or
// StartCluster must be closed by the caller; those from NewServer and
// NewCluster are closed by t.Cleanup.
package etcdtest
