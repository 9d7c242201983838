package inspect_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/ratelimit"
)

// A rate limiter in use shows its stored limit, the permits reserved in
// the epochs not yet over, and the processes holding permits.
func TestRateLimitRow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := fmt.Sprintf("inspect-ratelimit-%d/", time.Now().UnixNano())
	s1, s2 := newSession(t, ctx, root), newSession(t, ctx, root)
	l1 := ratelimit.New(s1, "partner", ratelimit.Per(100, time.Second), 10)
	l2 := ratelimit.New(s2, "partner", ratelimit.Per(100, time.Second), 10)
	// Both keep asking, so that both hold permits when the row is read.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for _, l := range []*ratelimit.Limiter{l1, l2} {
		go func() {
			for l.Wait(wctx) == nil {
			}
		}()
	}
	waitFor(t, ctx, root, func(ps []inspect.Primitive) bool {
		p := find(ps, "ratelimit", "partner")
		return p != nil && len(p.Holders) == 2
	})
	p, err := inspect.Get(ctx, s1.Client(), root, "ratelimit", "partner")
	if err != nil {
		t.Fatal(err)
	}
	if p.Info["limit"] != "100/1s" || p.Info["burst"] != "10" || p.Info["reserved"] == "" {
		t.Fatalf("row %+v", p)
	}
	if !inspect.KnownKind("ratelimit") {
		t.Fatal("ratelimit is not a known kind")
	}
}
