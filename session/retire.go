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
// when the caller does not know whether its own create went through.
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

func (s *Session) deleteKeys(ctx context.Context, keys []string) error {
	if len(keys) == 1 {
		_, err := s.cli.Delete(ctx, keys[0])
		return err
	}
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpDelete(k)
	}
	_, err := s.cli.Txn(ctx).Then(ops...).Commit()
	return err
}
