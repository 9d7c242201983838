package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
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

func (c *connFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("ETCDCTL_ENDPOINTS")
	if def == "" {
		def = "127.0.0.1:2379"
	}
	fs.StringVar(&c.endpoints, "endpoints", def, "comma-separated etcd endpoints (env ETCDCTL_ENDPOINTS)")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 5*time.Second, "timeout for connecting to etcd")
	fs.StringVar(&c.cacert, "cacert", os.Getenv("ETCDCTL_CACERT"), "CA bundle to verify the servers (env ETCDCTL_CACERT)")
	fs.StringVar(&c.cert, "cert", os.Getenv("ETCDCTL_CERT"), "client TLS certificate (env ETCDCTL_CERT)")
	fs.StringVar(&c.key, "key", os.Getenv("ETCDCTL_KEY"), "client TLS key (env ETCDCTL_KEY)")
	fs.BoolVar(&c.insecureTLS, "insecure-skip-tls-verify", false, "do not verify the servers' certificates")
	fs.StringVar(&c.user, "user", os.Getenv("ETCDCTL_USER"), "user[:password] for authentication (env ETCDCTL_USER)")
	fs.StringVar(&c.password, "password", os.Getenv("ETCDCTL_PASSWORD"), "password, when --user has none (env ETCDCTL_PASSWORD)")
}

func (c *connFlags) client() (*clientv3.Client, error) {
	var eps []string
	for _, e := range strings.Split(c.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("no endpoints: set --endpoints or ETCDCTL_ENDPOINTS")
	}
	cfg := clientv3.Config{Endpoints: eps, DialTimeout: c.dialTimeout, Logger: zap.NewNop()}
	if c.cacert != "" || c.cert != "" || c.insecureTLS {
		info := transport.TLSInfo{TrustedCAFile: c.cacert, CertFile: c.cert, KeyFile: c.key}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("TLS: %w", err)
		}
		if c.insecureTLS {
			tc.InsecureSkipVerify = true
		}
		cfg.TLS = tc
	}
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
