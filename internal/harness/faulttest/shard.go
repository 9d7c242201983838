package faulttest

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/shard"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// shardRun: every process is a member of one group and runs one shard
// map over it; each shard's work writes, over and over, to a data key of
// its shard, guarded by its ownership (Shard.IsOwner) and carrying its
// fencing token. The faults move shards around (a partitioned member's
// session ends, a revoked lease takes its shards, a killed etcd member
// moves clients). What must hold: per shard, the writes that landed, in
// the order etcd applied them, carry tokens that never decrease — no
// owner ever wrote after a later owner was granted the shard.
type shardRun struct {
	group, name string
	n           int
	mu          sync.Mutex
	writes      map[string][]shardWrite // by shard
	works       int                     // work calls
}

type shardWrite struct {
	rev, token int64
	client     int
}

func newShardRun() *shardRun {
	return &shardRun{group: "fleet", name: "slices", n: 16, writes: map[string][]shardWrite{}}
}

// member keeps process c in the group and running the map until ctx
// ends, joining again on a new session after a loss.
func (r *shardRun) member(ctx context.Context, e *Env, c *Client) {
	id := fmt.Sprintf("c%d", c.ID)
	for ctx.Err() == nil {
		s, err := c.Session(ctx, e)
		if err != nil {
			pause(ctx, 100*time.Millisecond)
			continue
		}
		jctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := group.Join(jctx, s, r.group, id, nil)
		cancel()
		if err != nil {
			// ErrDuplicate: the lost session's membership has not expired
			// yet on the server; anything else is a fault's doing.
			pause(ctx, 100*time.Millisecond)
			continue
		}
		err = shard.New(m, r.name, shard.Count(r.n), shard.WithRestartDelay(50*time.Millisecond)).Run(ctx, func(wctx context.Context, sh *shard.Shard) error {
			r.mu.Lock()
			r.works++
			r.mu.Unlock()
			for wctx.Err() == nil {
				r.write(wctx, e, c, sh)
				pause(wctx, time.Duration(10+e.Rand(30))*time.Millisecond)
			}
			return nil
		})
		if m.Err() == nil {
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			m.Leave(lctx)
			cancel()
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			pause(ctx, 50*time.Millisecond)
		}
	}
}

// write is one fenced write of shard sh's work.
func (r *shardRun) write(ctx context.Context, e *Env, c *Client, sh *shard.Shard) {
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	key := e.Root + "shard-data/" + sh.Name()
	resp, err := c.Cli.Txn(wctx).If(sh.IsOwner()).Then(clientv3.OpPut(key, fmt.Sprint(sh.Token()))).Commit()
	if err != nil || !resp.Succeeded {
		return
	}
	r.mu.Lock()
	r.writes[sh.Name()] = append(r.writes[sh.Name()], shardWrite{rev: resp.Header.Revision, token: sh.Token(), client: c.ID})
	r.mu.Unlock()
}

func (r *shardRun) check(e *Env) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for name, ws := range r.writes {
		sort.Slice(ws, func(i, j int) bool { return ws[i].rev < ws[j].rev })
		for i := 1; i < len(ws); i++ {
			if ws[i].token < ws[i-1].token {
				e.Stats.Violation("shard %s: client %d wrote with token %d at revision %d, after client %d wrote with the later token %d at revision %d",
					name, ws[i].client, ws[i].token, ws[i].rev, ws[i-1].client, ws[i-1].token, ws[i-1].rev)
			}
		}
		n += len(ws)
	}
	e.Stats.mu.Lock()
	e.Stats.Faults["shard-writes"] = n
	e.Stats.Faults["shard-works"] = r.works
	e.Stats.mu.Unlock()
}
