package fence

import (
	"context"
	"fmt"
	"strconv"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdStore is a Store in etcd: one key per resource,
// <root>fence/<resource>/token, whose value is the highest token seen in
// 20 decimal digits (so that etcd's byte-wise value compare orders
// tokens). Servers sharing one etcd share their highest tokens. Its keys
// are on no lease: they stay until deleted by hand.
type EtcdStore struct {
	cli  *clientv3.Client
	root string
}

// EtcdOption configures an EtcdStore.
type EtcdOption func(*EtcdStore)

// WithPrefix sets the root prefix of the store's keys (default "coord/",
// as for every coord primitive; a '/' is appended when missing).
func WithPrefix(root string) EtcdOption { return func(s *EtcdStore) { s.root = root } }

// NewEtcdStore returns the store on cli. A nil client or a bad root
// prefix is an error wrapping ErrInvalid.
func NewEtcdStore(cli *clientv3.Client, opts ...EtcdOption) (*EtcdStore, error) {
	s := &EtcdStore{cli: cli, root: keys.DefaultRoot}
	for _, o := range opts {
		o(s)
	}
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	root, err := keys.NormalizeRoot(s.root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	s.root = root
	return s, nil
}

// Key returns the etcd key holding resource's highest token.
func (s *EtcdStore) Key(resource string) (string, error) {
	if err := valid(resource, 1); err != nil {
		return "", err
	}
	sp, err := keys.New(s.root, keys.KindFence, resource)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return sp.Single("token"), nil
}

func pad(token int64) string { return fmt.Sprintf("%020d", token) }

// Advance implements Store in one Txn (two the first time a resource is
// seen): the stored token is replaced only if it is not higher, which
// the compare "value < pad(token)+\x00" says for fixed-width values.
func (s *EtcdStore) Advance(ctx context.Context, resource string, token int64) error {
	if err := valid(resource, token); err != nil {
		return err
	}
	key, err := s.Key(resource)
	if err != nil {
		return err
	}
	val := pad(token)
	for range 8 {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "<", val+"\x00")).
			Then(clientv3.OpPut(key, val)).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return s.failed(err)
		}
		if resp.Succeeded {
			return nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			h, err := strconv.ParseInt(string(kvs[0].Value), 10, 64)
			if err != nil {
				return fmt.Errorf("fence: %s: %w: stored value %q is not a token", key, ErrUnavailable, kvs[0].Value)
			}
			return &StaleError{Resource: resource, Token: token, Highest: h}
		}
		// No token stored yet (a value compare fails on a missing key).
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val)).
			Commit()
		if err != nil {
			return s.failed(err)
		}
		if resp.Succeeded {
			return nil
		}
		// Someone stored one in between: compare with it.
	}
	return fmt.Errorf("fence: %s: %w: the stored token kept changing", key, ErrUnavailable)
}

// Highest returns the highest token stored for resource, or 0.
func (s *EtcdStore) Highest(ctx context.Context, resource string) (int64, error) {
	key, err := s.Key(resource)
	if err != nil {
		return 0, err
	}
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return 0, s.failed(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	h, err := strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("fence: %s: %w: stored value %q is not a token", key, ErrUnavailable, resp.Kvs[0].Value)
	}
	return h, nil
}

func (s *EtcdStore) failed(err error) error {
	return fmt.Errorf("fence: etcd: %w: %w", ErrUnavailable, etcderr.Explain(s.cli, err))
}
