package wait

import (
	"context"
	"fmt"

	"github.com/coord-go/coord/internal/keys"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Queue describes a waiter's place in a line of keys under one prefix,
// ordered by create revision (etcd's free FIFO).
type Queue struct {
	Prefix string // every key of the line starts with it
	Own    string // the waiter's key
	Rev    int64  // its create revision
}

// Predecessor returns the Op that reads the waiter's immediate
// predecessor: the newest key of the line created before it.
func (q Queue) Predecessor() clientv3.Op {
	return clientv3.OpGet(q.Prefix, clientv3.WithRange(keys.RangeEnd(q.Prefix)),
		clientv3.WithMaxCreateRev(q.Rev-1), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortDescend),
		clientv3.WithLimit(1), clientv3.WithKeysOnly())
}

// NoneBefore blocks until no key of the line was created before the
// waiter's, and the waiter's own key is still there: the moment the
// waiter is first. pred is the predecessor the caller already knows (from
// the Txn that queued it, at revision since); the waiter watches only
// that key, so each departure wakes exactly one waiter. When the
// predecessor goes, one read (which also re-checks the waiter's own key)
// says whether the waiter is now first or must watch an earlier key.
func NoneBefore(ctx context.Context, cli *clientv3.Client, q Queue, pred string, since int64, stops ...Stopper) error {
	for pred != "" {
		next := pred
		err := Until(ctx, cli, since, []Range{{Key: pred, DeletesOnly: true}}, func(ctx context.Context) (bool, int64, error) {
			resp, err := cli.Txn(ctx).Then(clientv3.OpGet(q.Own), q.Predecessor()).Commit()
			if err != nil {
				return false, 0, err
			}
			own := resp.Responses[0].GetResponseRange().Kvs
			if len(own) == 0 || own[0].CreateRevision != q.Rev {
				return false, 0, fmt.Errorf("%w: %s", ErrKeyGone, q.Own)
			}
			since = resp.Header.Revision
			preds := resp.Responses[1].GetResponseRange().Kvs
			if len(preds) == 0 {
				next = ""
				return true, since, nil
			}
			next = string(preds[0].Key)
			return next != pred, since, nil
		}, stops...)
		if err != nil {
			return err
		}
		pred = next
	}
	return nil
}

// Changed blocks until key changes after the caller read it at revision
// since: present says whether the caller saw it then. A put or delete
// after since ends the wait; so does a key that appeared or vanished.
func Changed(ctx context.Context, cli *clientv3.Client, key string, since int64, present bool, stops ...Stopper) error {
	return Until(ctx, cli, since, []Range{{Key: key}}, func(ctx context.Context) (bool, int64, error) {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return false, 0, err
		}
		if len(resp.Kvs) == 0 {
			return present, resp.Header.Revision, nil
		}
		return !present || resp.Kvs[0].ModRevision > since, resp.Header.Revision, nil
	}, stops...)
}
