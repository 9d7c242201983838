package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// connFlags are the connection flags every command that talks to etcd
// shares, named as etcdctl names them.
type connFlags struct {
	endpoints   string
	dialTimeout time.Duration
	cacert      string
	cert, key   string
	insecureTLS bool
	user        string
	password    string
}

func (c *connFlags) register(fs *flagSet) {
	def := os.Getenv("ETCDCTL_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	fs.StringVar(&c.endpoints, "endpoints", def, "comma-separated etcd endpoints (env ETCDCTL_ENDPOINTS)")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 5*time.Second, "how long to try to reach etcd before giving up with the reason")
	fs.StringVar(&c.cacert, "cacert", os.Getenv("ETCDCTL_CACERT"), "CA bundle to verify the servers (env ETCDCTL_CACERT)")
	fs.StringVar(&c.cert, "cert", os.Getenv("ETCDCTL_CERT"), "client TLS certificate (env ETCDCTL_CERT)")
	fs.StringVar(&c.key, "key", os.Getenv("ETCDCTL_KEY"), "client TLS key (env ETCDCTL_KEY)")
	fs.BoolVar(&c.insecureTLS, "insecure-skip-tls-verify", false, "do not verify the servers' certificates")
	fs.StringVar(&c.user, "user", os.Getenv("ETCDCTL_USER"), "user[:password] for authentication (env ETCDCTL_USER)")
	fs.StringVar(&c.password, "password", os.Getenv("ETCDCTL_PASSWORD"), "password, when --user has none (env ETCDCTL_PASSWORD)")
}

// check reports a connection flag that can never work, before any dial.
func (c *connFlags) check() error {
	if len(c.list()) == 0 {
		return errors.New("no endpoints: set --endpoints or ETCDCTL_ENDPOINTS")
	}
	if c.dialTimeout <= 0 {
		return fmt.Errorf("--dial-timeout must be positive, got %s", c.dialTimeout)
	}
	if (c.cert == "") != (c.key == "") {
		return errors.New("--cert and --key go together")
	}
	return nil
}

func (c *connFlags) list() []string {
	var eps []string
	for _, e := range strings.Split(c.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return eps
}

func (c *connFlags) tlsConfig() (*tls.Config, error) {
	if c.cacert == "" && c.cert == "" && !c.insecureTLS {
		return nil, nil
	}
	info := transport.TLSInfo{TrustedCAFile: c.cacert, CertFile: c.cert, KeyFile: c.key}
	tc, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	if c.insecureTLS {
		tc.InsecureSkipVerify = true
	}
	return tc, nil
}

// beforeDial, when set, runs where client would start dialing, and an
// error from it is returned instead. It is nil except in the fuzz test of
// argument parsing, which stops every command there: arguments that get
// this far passed every usage check, and nothing is dialed or run.
var beforeDial func(*connFlags) error

// client connects to etcd. It first makes sure at least one endpoint
// answers within --dial-timeout, so that an unreachable endpoint or a TLS
// mistake is reported with its reason (connection refused, x509: ...)
// instead of surfacing later as a bare "context deadline exceeded": the
// etcd client's calls wait for a connection until their deadline and
// never say why none came.
func (c *connFlags) client() (*clientv3.Client, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	eps := c.list()
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	if beforeDial != nil {
		if err := beforeDial(c); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.dialTimeout)
	defer cancel()
	if err := probe(ctx, eps, tc, c.dialTimeout); err != nil {
		return nil, err
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: c.dialTimeout, Logger: zap.NewNop(), TLS: tc, Context: context.Background()}
	if c.user != "" {
		user, pass, ok := strings.Cut(c.user, ":")
		if !ok {
			pass = c.password
		}
		cfg.Username, cfg.Password = user, pass
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", strings.Join(eps, ","), err)
	}
	return cli, nil
}

// probe dials every endpoint at once with its own gRPC connection and
// returns nil as soon as one completes a call, or an error that gives each
// endpoint's reason. The call is gRPC's health check, which etcd serves to
// anyone: no user or permission is needed to learn that the transport
// (TCP, TLS) works; auth is the etcd client's to report.
func probe(ctx context.Context, eps []string, tc *tls.Config, timeout time.Duration) error {
	type answer struct {
		ep  string
		err error
	}
	answers := make(chan answer, len(eps))
	for _, ep := range eps {
		go func() { answers <- answer{ep, probeOne(ctx, ep, tc)} }()
	}
	var why []string
	for range eps {
		a := <-answers
		if a.err == nil {
			return nil
		}
		why = append(why, a.ep+": "+reason(a.err, timeout))
	}
	return fmt.Errorf("cannot reach etcd at %s", strings.Join(why, "; "))
}

func probeOne(ctx context.Context, ep string, tc *tls.Config) error {
	target, creds := probeTarget(ep, tc)
	if target == "" {
		return nil // a unix socket: leave it to the etcd client
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	// Not WaitForReady: a call fails as soon as the connection does, with
	// the transport's own error, instead of waiting out the deadline.
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	switch status.Code(err) {
	case codes.OK, codes.Unimplemented, codes.NotFound, codes.Unauthenticated, codes.PermissionDenied:
		return nil // the server answered: the transport works
	}
	return err
}

// probeTarget maps an etcd endpoint to a gRPC target and its transport
// credentials, the way the etcd client does: https requires TLS, http
// and a bare host:port use TLS only when TLS flags were given.
func probeTarget(ep string, tc *tls.Config) (string, credentials.TransportCredentials) {
	scheme, host, ok := strings.Cut(ep, "://")
	if !ok {
		scheme, host = "", ep
	}
	switch scheme {
	case "unix", "unixs":
		return "", nil
	case "https":
		if tc == nil {
			tc = &tls.Config{}
		}
	}
	if tc == nil {
		return "passthrough:///" + host, insecure.NewCredentials()
	}
	return "passthrough:///" + host, credentials.NewTLS(tc.Clone())
}

// reason turns a failed probe into what a person needs to read: the
// transport's own words, without gRPC's wrapping.
func reason(err error, timeout time.Duration) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	if st.Code() == codes.DeadlineExceeded {
		return fmt.Sprintf("no answer within %s (--dial-timeout)", timeout)
	}
	msg := st.Message()
	for _, p := range []string{"connection error: desc = ", `"`, "transport: ", "Error while dialing: ", "error reading server preface: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return strings.TrimSuffix(msg, `"`)
}
