package main_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/session"
	"github.com/coord-go/coord/shard"
)

// coord group and coord shard show what a running map's members see,
// and coord status lists both kinds with their members and owners.
func TestGroupAndShardCommands(t *testing.T) {
	t.Parallel()
	root := name(t) + "/"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, id := range []string{"a", "b"} {
		s, err := session.New(ctx, srv.Client(), session.WithPrefix(root))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		m, err := group.Join(ctx, s, "workers", id, map[string]string{"addr": id + ":8080"})
		if err != nil {
			t.Fatal(err)
		}
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			done <- shard.New(m, "parts", shard.Count(4)).Run(rctx, func(ctx context.Context, _ *shard.Shard) error {
				<-ctx.Done()
				return nil
			})
		}()
		defer func() { stop(); <-done }()
	}
	ob := shard.NewObserver(srv.Client(), "parts", shard.WithPrefix(root))
	eventually(t, 30*time.Second, "the map converged over a and b", func() bool {
		tb, err := ob.Table(ctx)
		return err == nil && tb.Converged && len(tb.Members) == 2
	})

	out, stderr, code := coord(t, "", "group", "--prefix", root, "workers")
	if code != 0 || !strings.Contains(out, "ID") || !strings.Contains(out, "addr=a:8080") || !strings.Contains(out, "addr=b:8080") {
		t.Errorf("coord group: code %d, stdout %q, stderr %q", code, out, stderr)
	}
	out, _, code = coord(t, "", "group", "--prefix", root, "-o", "json", "workers")
	var g struct {
		Group   string
		Members []struct {
			ID   string
			Meta map[string]string
		}
	}
	if err := json.Unmarshal([]byte(out), &g); code != 0 || err != nil || g.Group != "workers" || len(g.Members) != 2 || g.Members[1].Meta["addr"] != "b:8080" {
		t.Errorf("coord group -o json: code %d, %q (%v)", code, out, err)
	}

	out, stderr, code = coord(t, "", "shard", "--prefix", root, "parts")
	if code != 0 || !strings.Contains(out, "converged: 4 shards over 2 members") || strings.Count(out, "\n") != 10 {
		t.Errorf("coord shard: code %d, stdout %q, stderr %q", code, out, stderr)
	}
	out, _, code = coord(t, "", "shard", "--prefix", root, "-o", "json", "parts")
	var sm struct {
		Converged bool
		Members   []struct {
			ID           string
			Owned, Quota int
		}
		Shards []struct {
			Shard, Owner string
			Token        int64
		}
	}
	if err := json.Unmarshal([]byte(out), &sm); code != 0 || err != nil || !sm.Converged || len(sm.Shards) != 4 || sm.Members[0].Owned != 2 {
		t.Errorf("coord shard -o json: code %d, %q (%v)", code, out, err)
	}
	for _, s := range sm.Shards {
		if s.Owner == "" || s.Token <= 0 {
			t.Errorf("shard %+v has no owner or token", s)
		}
	}
	if _, stderr, code := coord(t, "", "shard", "--prefix", root, "never-run"); code != 1 || !strings.Contains(stderr, "no member has run it") {
		t.Errorf("coord shard of a map never run: code %d, stderr %q", code, stderr)
	}
	if _, _, code := coord(t, "", "shard", "--prefix", root); code != 2 {
		t.Errorf("coord shard with no NAME: code %d, want 2", code)
	}

	out, stderr, code = coord(t, "", "status", "--prefix", root)
	for _, want := range []string{"group", `"workers"`, "member", "members=2", "shard", `"parts"`, "owner", "shards=4", "owned=4", "members=a:2,b:2"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("coord status lacks %q: code %d, stdout:\n%s\nstderr %q", want, code, out, stderr)
		}
	}
	if n := strings.Count(out, "\nshard "); n != 5 { // the map's facts and its 4 owners
		t.Errorf("coord status: %d shard rows, want 5:\n%s", n, out)
	}
}
