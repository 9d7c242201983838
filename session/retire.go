package session

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// retireTimeout bounds Retire's first, synchronous attempt.
const retireTimeout = 5 * time.Second

// Retire deletes keys this session no longer wants, such as a cancelled
// waiter's place in a queue. It tries at once, within its own bounded
// timeout (the caller's ctx may already be cancelled, and only its values
// are used). If etcd cannot be reached in that time, Retire hands the
// keys to a background goroutine that keeps retrying until etcd accepts
// the delete or the session ends, when the lease takes the keys anyway.
// So a cancelled or failed wait never leaves a key blocking others for
// longer than etcd itself is unavailable.
//
// Only pass keys that are unique to this session (as NextID makes them):
// the delete is unconditional, which is what makes it safe to repeat even
// when the caller does not know whether its own create went through. The
// same Txn marks each key retired, so a create made with PutOwn that
// reaches etcd after the delete does nothing; the marks live on the lease
// (one small key per retired key, gone with the session).
// Retire returns nil once the keys are gone, or the error of the first
// attempt when the background takes over.
func (s *Session) Retire(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if s.Err() != nil {
		// The lease is gone or going: lose and Close revoke it, and
		// revocation deletes every key on it.
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retireTimeout)
	err := s.deleteKeys(ctx, keys)
	cancel()
	if err == nil {
		return nil
	}
	s.logger.Debug("coord cleanup deferred to the background", "keys", keys, "error", err)
	go func() {
		backoff := 50 * time.Millisecond
		for {
			select {
			case <-s.done:
				return
			case <-time.After(backoff):
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.ttl)
			err := s.deleteKeys(ctx, keys)
			cancel()
			if err == nil {
				return
			}
			backoff = min(backoff*2, time.Second)
		}
	}()
	return err
}

// deleteKeys deletes keys and, in the same Txn, marks each retired (on
// the lease, so the marks go with the session), which turns away a create
// of the key that reaches etcd only now: a request held up in a partition
// and delivered after its caller gave up and cleaned up. See PutOwn.
func (s *Session) deleteKeys(ctx context.Context, keys []string) error {
	ops := make([]clientv3.Op, 0, 2*len(keys))
	for _, k := range keys {
		ops = append(ops, clientv3.OpPut(s.retiredKey(k), "", clientv3.WithLease(s.lease)), clientv3.OpDelete(k))
	}
	_, err := s.cli.Txn(ctx).Then(ops...).Commit()
	return err
}

func (s *Session) retiredKey(key string) string { return s.root + "retired/" + key }

// PutOwn returns the Op that creates key with value on the session's
// lease, unless Retire has retired key: then it does nothing. Primitives
// create their keys with it, so that a create delivered late, after the
// caller gave up and retired the key, cannot bring back a key nobody will
// ever delete (etcd applies a request it receives even if the client has
// stopped waiting for it). It is a nested Txn, so its response is a
// ResponseTxn.
func (s *Session) PutOwn(key, value string) clientv3.Op {
	return clientv3.OpTxn(
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(s.retiredKey(key)), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, value, clientv3.WithLease(s.lease))}, nil)
}
