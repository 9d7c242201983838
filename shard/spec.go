package shard

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/coord-go/coord/internal/etcderr"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// spec is what a map is stored with: its group and its shards. Every
// member must agree on both, or their plans would differ.
type spec struct {
	Group string   `json:"group"`
	Count int      `json:"count,omitempty"`
	Names []string `json:"names,omitempty"`
}

func (mp *Map) spec() spec {
	if mp.numbered {
		return spec{Group: mp.gname, Count: len(mp.names)}
	}
	return spec{Group: mp.gname, Names: mp.names}
}

func decodeSpec(v []byte) (spec, error) {
	var sp spec
	if err := json.Unmarshal(v, &sp); err != nil {
		return spec{}, fmt.Errorf("shard: stored spec %.64q: %w", v, err)
	}
	return sp, nil
}

func (a spec) equal(b spec) bool {
	return a.Group == b.Group && a.Count == b.Count && slices.Equal(a.Names, b.Names)
}

func (a spec) String() string {
	if a.Names != nil {
		return fmt.Sprintf("%d named shards over group %q", len(a.Names), a.Group)
	}
	return fmt.Sprintf("%d shards over group %q", a.Count, a.Group)
}

// ensureSpec stores the map's spec if it has none, or checks the one
// stored: one Txn.
func (mp *Map) ensureSpec(ctx context.Context) error {
	want := mp.spec()
	b, _ := json.Marshal(want)
	key := mp.sp.Single("spec")
	cli := mp.s.Client()
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(b))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("shard map %q: %w", mp.sp.Name(), etcderr.Explain(cli, err))
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return mp.ensureSpec(ctx) // deleted meanwhile
	}
	got, err := decodeSpec(kvs[0].Value)
	if err != nil || !got.equal(want) {
		return fmt.Errorf("shard map %q: %w: stored as %v, this member has %v", mp.sp.Name(), ErrSpecMismatch, got, want)
	}
	return nil
}
