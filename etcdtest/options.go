package etcdtest

import (
	"io"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Option configures a Server or Cluster.
type Option func(*config)

type config struct {
	fsync           bool
	logOutput       io.Writer
	dataDir         string
	maxRequestBytes uint
	tick, election  time.Duration
	clientAddr      string
	binary          string
	bcryptCost      int
	quota           int64
}

// BinaryEnv names the environment variable that makes every Server and
// Cluster of this package run as real etcd server processes of the binary
// it names, as if each were made WithBinary: the same tests then run
// against another etcd version without a change to their code (see
// scripts/build-etcd.sh). WithBinary, given explicitly, wins over it.
const BinaryEnv = "COORD_ETCD_BINARY"

func newConfig(opts []Option) config {
	c := config{fsync: true, tick: 100 * time.Millisecond, election: time.Second, binary: os.Getenv(BinaryEnv)}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// WithoutFsync turns fsync off: faster tests, no durability across a
// machine crash (member restarts in a test are unaffected). Benchmarks
// should leave fsync on, as production does.
func WithoutFsync() Option { return func(c *config) { c.fsync = false } }

// WithLogOutput sends the server's own logs (info level and up) to w.
// By default the server is silent.
func WithLogOutput(w io.Writer) Option { return func(c *config) { c.logOutput = w } }

// WithDataDir keeps the data in dir instead of a temporary directory that
// is removed at cleanup. With a Cluster, member i uses dir/member-i.
func WithDataDir(dir string) Option { return func(c *config) { c.dataDir = dir } }

// WithMaxRequestBytes sets the server's request size limit (etcd's
// default is 1.5 MiB).
func WithMaxRequestBytes(n uint) Option { return func(c *config) { c.maxRequestBytes = n } }

// WithElectionTimeout sets the raft heartbeat interval and election
// timeout (defaults 100ms and 1s, as etcd's). The server's minimum lease
// TTL is 1.5 × the election timeout, rounded up to whole seconds.
func WithElectionTimeout(heartbeat, election time.Duration) Option {
	return func(c *config) { c.tick, c.election = heartbeat, election }
}

// WithClientAddr makes a Server listen for clients on addr ("host:port")
// instead of a kernel-chosen loopback port, for a local development
// server that tools find at a known address. Clusters ignore it.
func WithClientAddr(addr string) Option { return func(c *config) { c.clientAddr = addr } }

// WithBcryptCost sets the bcrypt cost the server hashes passwords with
// (etcd's default is 10). Each new gRPC stream of a client that logs in
// authenticates again, and at cost 10 under -race on a busy machine one
// authentication takes a second or more: tests of auth-enabled servers
// that are not about that cost use bcrypt.MinCost (4).
func WithBcryptCost(n int) Option { return func(c *config) { c.bcryptCost = n } }

// WithQuotaBackendBytes sets the server's backend size quota
// (--quota-backend-bytes; etcd's default is 2 GiB). A write that would grow
// the database past it raises the NOSPACE alarm, and from then on every
// write that needs space fails with "etcdserver: mvcc: database space
// exceeded" until the space is reclaimed (compaction, defragmentation) and
// the alarm disarmed: for tests of what clients do when etcd is full. The
// backend never shrinks below a few hundred KiB, so a quota under 1 MiB
// is soon reached. n must be positive.
func WithQuotaBackendBytes(n int64) Option { return func(c *config) { c.quota = n } }

func (c config) zapLogger() *zap.Logger {
	if c.logOutput == nil {
		return zap.NewNop()
	}
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(c.logOutput), zap.InfoLevel))
}
