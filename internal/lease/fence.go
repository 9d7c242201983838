package lease

import (
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The fence turns away a create that reaches etcd after its caller gave
// up on it: etcd applies any request it receives, even one held up in a
// partition for longer than the caller waited, and such a late create
// would bring back a key that its owner already deleted, on a lease that
// is still alive, blocking a line until the session ends.
//
// Every create a session makes compares the mod revision of the
// session's marker key with the fence the session last knew (Fence).
// Whenever a key whose create may still be in flight is deleted (a
// retire after an ambiguous failure), the same Txn rewrites the marker
// (Bump), which moves the fence: any create sent before, however late it
// arrives, now fails its compare. Creates of this session that were sent
// concurrently fail too, learn the new fence from their Else branch
// (FenceRead, Learn) and retry at once, so a bump costs them one round
// trip and never a wrong answer.
//
// This is one key per session, not one per retired key: a session that
// gives up a million waits keeps one key, and all of it is top-level
// Txn compares and ops (no nested Txn, which some etcd versions do not
// check permissions on).

// Fence returns the compare every create of this session carries.
func (s *Session) Fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(s.marker), "=", s.fence.Load())
}

// FenceRead returns the op a create's Else branch carries, so that a
// create that failed on a moved fence learns the new one (Learn).
func (s *Session) FenceRead() clientv3.Op {
	return clientv3.OpGet(s.marker, clientv3.WithKeysOnly())
}

// Learn moves the fence forward to what a FenceRead returned, and
// reports whether the fence was what failed: the read found a newer
// marker than the one compared. An empty read means the marker is gone:
// the session is (or is about to be) lost, which the marker watch and
// the keepalives report.
func (s *Session) Learn(kvs []*mvccpb.KeyValue, compared int64) (moved bool) {
	if len(kvs) == 0 {
		return false
	}
	s.advance(kvs[0].ModRevision)
	return kvs[0].ModRevision != compared
}

// FenceRev returns the fence revision Fence compares, for a caller that
// must tell afterwards whether its compare failed on the fence.
func (s *Session) FenceRev() int64 { return s.fence.Load() }

// Bump returns the op that moves the fence, for the Txn that deletes a
// key whose create may still be in flight; after the Txn commits at
// revision rev, call Bumped(rev).
func (s *Session) Bump() clientv3.Op {
	return clientv3.OpPut(s.marker, s.owner, clientv3.WithLease(s.lease))
}

// Bumped records the revision of a committed Bump.
func (s *Session) Bumped(rev int64) { s.advance(rev) }

func (s *Session) advance(rev int64) {
	for {
		cur := s.fence.Load()
		if rev <= cur || s.fence.CompareAndSwap(cur, rev) {
			return
		}
	}
}
