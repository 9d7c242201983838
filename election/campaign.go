package election

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// CampaignOption configures one Campaign or Follow.
type CampaignOption func(*campaignOptions)

type campaignOptions struct {
	prio int
	meta map[string]string
}

// WithPriority sets the candidate's priority, in [MinPriority,
// MaxPriority] (default 0). It matters only in an election whose rule is
// Priority: the highest leads next.
func WithPriority(p int) CampaignOption { return func(o *campaignOptions) { o.prio = p } }

// WithMeta publishes small metadata with the candidacy (version, zone,
// host), at most MaxMetaBytes of keys and values; Candidates lists it.
func WithMeta(m map[string]string) CampaignOption { return func(o *campaignOptions) { o.meta = m } }

// Campaign blocks until this candidate leads the election, then sets the
// leader's value. Candidates lead in the order of the election's rule:
// the order they campaigned (FIFO), or by priority (see Rule).
//
// Uncontended it is one Txn, which also takes the vacant leadership. A
// waiting candidate waits on its process's one mirror of the election;
// a handover (Resign, Transfer) makes it leader with the leader's one
// Txn and one watch event, and a leader that is gone (its lease expired)
// is replaced by the rule's pick with one more Txn. It returns nil only
// after its own key was seen alive and leading while its session lived.
// It fails at once, wrapping session.ErrExpired or session.ErrClosed,
// when the session ends while waiting, with ErrKeyDeleted when its key is
// deleted, with ErrRuleMismatch when the election's stored rule differs
// from WithRule's, and with ErrInvalid for a priority out of range or
// metadata over MaxMetaBytes; on those failures and when ctx ends it
// deletes its key (with its own timeout), so nothing is left behind.
// Campaign on a leader proclaims value.
func (e *Election) Campaign(ctx context.Context, value string, opts ...CampaignOption) error {
	if e.err != nil {
		return e.err
	}
	var co campaignOptions
	for _, o := range opts {
		o(&co)
	}
	if err := validCampaign(co); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	e.mu.Lock()
	if e.campaigning {
		e.mu.Unlock()
		return fmt.Errorf("election %q: %w", e.name, ErrCampaigning)
	}
	e.mu.Unlock()
	if e.leading() != nil {
		return e.Proclaim(ctx, value)
	}
	e.mu.Lock()
	e.campaigning = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.campaigning = false
		e.mu.Unlock()
	}()
	if err := e.s.Err(); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	if err := e.checkRule(ctx); err != nil {
		return err
	}
	wctx, sp := e.startCampaign(ctx, co.prio)
	t, err := e.campaign(wctx, keys.Record{Value: value, Prio: co.prio, Meta: co.meta})
	e.endCampaign(ctx, wctx, sp, t, err)
	if err != nil {
		e.s.Logger().Debug("coord campaign failed", "kind", kind, "name", e.name, "error", err)
		return err
	}
	e.mu.Lock()
	e.cur = t
	e.mu.Unlock()
	return nil
}

// campaign queues the candidate's key and waits until it leads.
func (e *Election) campaign(ctx context.Context, rec keys.Record) (*term, error) {
	cand := e.sp.Key("c", e.s.NextID())
	h := hold.New(e.s, &e.cfg, rec, hold.Key{Key: cand, Watch: watch.MirrorOf{Hub: e.hub, Base: e.sp.Base()}})
	// Nobody leads and nobody waits: take the leadership in the same Txn.
	// (The compare on the line is a range compare, which makes the server
	// read the candidates when there are some: a campaign pays it, never a
	// handover; and a process that already follows the election and sees
	// a leader skips it.)
	c := e.sp.Part("c")
	var created hold.Created
	err := error(nil)
	if !e.leaderSeen() {
		created, err = h.Create(ctx, hold.Spec{
			If: []clientv3.Cmp{
				clientv3.Compare(clientv3.CreateRevision(e.leaderKey()), "=", 0),
				clientv3.Compare(clientv3.CreateRevision(c), "=", 0).WithRange(keys.RangeEnd(c)),
			},
			Then: []clientv3.Op{clientv3.OpPut(e.leaderKey(), cand, clientv3.WithLease(e.s.Lease()))},
		})
	}
	if err == nil && created.Rev == 0 {
		created, err = h.Create(ctx, hold.Spec{})
	}
	if err != nil {
		e.abandon(ctx, h)
		return nil, err
	}
	token := int64(0)
	if len(created.Then) == 1 {
		token = created.Rev // the leader key was put with the candidate
	}
	if token == 0 {
		if token, err = e.wait(ctx, h); err != nil {
			e.abandon(ctx, h)
			return nil, err
		}
	}
	if err := h.Admit(ctx); err != nil {
		e.abandon(ctx, h)
		return nil, err
	}
	return e.lead(h, token), nil
}

// abandon gives up a candidacy that never led as far as its caller
// knows: its key goes, and so does a leader key naming it (a vacant
// leadership it took, or a handover to it, whose answer came too late),
// so no leadership is left naming a candidate that is gone.
func (e *Election) abandon(ctx context.Context, h *hold.Hold) {
	h.AbandonIf(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.Value(e.leaderKey()), "=", h.Key())},
		clientv3.OpDelete(e.leaderKey()))
}

// leaderSeen reports whether the process's mirror of the election, if it
// has one open, shows a leader now.
func (e *Election) leaderSeen() bool {
	if !e.hub.Warm(e.sp.Base()) {
		return false
	}
	m := e.hub.Mirror(e.sp.Base())
	defer m.Release()
	seen := false
	m.Locked(func(v *watch.View, loaded bool) {
		if loaded {
			_, holder := leaderIn(v, e.sp)
			seen = holder != nil
		}
	})
	return seen
}

// waiters is a mirror's local candidates waiting to lead, by key: after
// every change the listener wakes only the one the change may make leader
// (the candidate the leader key now names, or the rule's pick while the
// leadership is vacant) and any whose own key changed.
type waiters struct {
	sp keys.Space
	by map[string]chan struct{}
}

func newWaiters(sp keys.Space) func() (any, watch.Listener) {
	return func() (any, watch.Listener) {
		w := &waiters{sp: sp, by: map[string]chan struct{}{}}
		return w, w.changed
	}
}

func (w *waiters) wake(key string) {
	if ch, ok := w.by[key]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *waiters) changed(v *watch.View, c watch.Change) {
	if len(w.by) == 0 {
		return
	}
	if c.Err != nil {
		for k := range w.by {
			w.wake(k)
		}
		return
	}
	leadership := c.Reloaded
	for _, ev := range c.Events {
		k := string(ev.Kv.Key)
		w.wake(k)
		if k == w.sp.Single("leader") || k == w.sp.Single("rule") || ev.Type == clientv3.EventTypeDelete {
			leadership = true
		}
	}
	if !leadership {
		return
	}
	if _, holder := leaderIn(v, w.sp); holder != nil {
		w.wake(holder.Key)
		return
	}
	if next := electNext(v, w.sp, ruleIn(v, w.sp), ""); next != nil {
		w.wake(next.Key)
	}
}

// wait blocks until the candidate leads, taking a vacant leadership
// itself when the rule picks it, and returns the term's token.
func (e *Election) wait(ctx context.Context, h *hold.Hold) (int64, error) {
	ctx, cancel := e.s.Bound(ctx) // ends with the session too
	defer cancel()
	m := e.hub.Mirror(e.sp.Base())
	defer m.Release()
	ws := m.Shared("election waiters", newWaiters(e.sp)).(*waiters)
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	if err := m.Locked(func(*watch.View, bool) { ws.by[h.Key()] = wake }); err != nil {
		return 0, e.waitErr(ctx, h, err)
	}
	defer m.Locked(func(*watch.View, bool) { delete(ws.by, h.Key()) })
	pause := 10 * time.Millisecond
	for {
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, e.waitErr(ctx, h, ctx.Err())
		}
		var (
			token, staleMod, mirrorRev int64
			gone, try                  bool
			rule                       Rule
		)
		err := m.Read(ctx, h.Rev(), func(v *watch.View) {
			if own := v.Get(h.Key()); own == nil || own.CreateRev != h.Rev() {
				gone = true
				return
			}
			l := v.Get(e.leaderKey())
			if l != nil && string(l.Value) == h.Key() {
				token = l.ModRev
				return
			}
			if _, holder := leaderIn(v, e.sp); holder != nil {
				return // someone leads: wait for the handover
			}
			rule = ruleIn(v, e.sp)
			if next := electNext(v, e.sp, rule, ""); next != nil && next.Key == h.Key() {
				try, mirrorRev = true, v.Rev()
				if l != nil {
					staleMod = l.ModRev // a leader key naming a candidate that is gone
				}
			}
		})
		switch {
		case err != nil:
			return 0, e.waitErr(ctx, h, err)
		case gone:
			return 0, e.waitErr(ctx, h, watch.ErrGone)
		case token != 0:
			return token, nil
		case !try:
			continue
		}
		// The leadership is vacant and the rule picks this candidate:
		// take it, unless the leader key changed meanwhile, or (under the
		// priority rule) a candidate joined that this mirror has not seen.
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(e.leaderKey()), "=", staleMod),
			clientv3.Compare(clientv3.CreateRevision(h.Key()), "=", h.Rev()),
		}
		if rule.Priority {
			c := e.sp.Part("c")
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(c), "<", mirrorRev+1).WithRange(keys.RangeEnd(c)))
		}
		resp, err := e.s.Client().Txn(ctx).If(cmps...).
			Then(clientv3.OpPut(e.leaderKey(), h.Key(), clientv3.WithLease(e.s.Lease()))).Commit()
		switch {
		case err == nil && resp.Succeeded:
			return resp.Header.Revision, nil
		case err == nil:
			pause = 10 * time.Millisecond
			select {
			case wake <- struct{}{}: // look again
			default:
			}
		case etcderr.Transient(err) && ctx.Err() == nil:
			sleepCtx(ctx, pause)
			pause = min(2*pause, 500*time.Millisecond)
			select {
			case wake <- struct{}{}:
			default:
			}
		default:
			return 0, e.waitErr(ctx, h, err)
		}
	}
}

// waitErr explains why a wait ended: the session's end first (the cause
// users test for), then a deleted key, then the rest.
func (e *Election) waitErr(ctx context.Context, h *hold.Hold, err error) error {
	if errors.Is(err, watch.ErrGone) {
		e.s.Verify(context.WithoutCancel(ctx))
	}
	if serr := e.s.Err(); serr != nil {
		return fmt.Errorf("election %q: %w", e.name, serr)
	}
	if errors.Is(err, watch.ErrGone) {
		return fmt.Errorf("election %q: %w: %s", e.name, ErrKeyDeleted, h.Key())
	}
	if strings.HasPrefix(err.Error(), "election ") {
		return err
	}
	return fmt.Errorf("election %q: %w", e.name, etcderr.Explain(e.s.Client(), err))
}

// lead starts a term: it watches, in the process's mirror, for the
// leadership ending (the candidacy lost, or the leader key no longer this
// term's) and for requests to step aside (a transfer request, or a
// candidate of higher priority under a preempting rule).
func (e *Election) lead(h *hold.Hold, token int64) *term {
	t := &term{h: h, token: token, done: make(chan struct{}), asked: make(chan struct{})}
	m := e.hub.Mirror(e.sp.Base())
	prio := h.Record().Prio
	stopL := m.Listen(func(v *watch.View, c watch.Change) {
		if c.Err != nil {
			go e.endTerm(t, c.Err)
			return
		}
		if v.Rev() < token {
			return
		}
		if l := v.Get(e.leaderKey()); l == nil || l.ModRev != token {
			t.mu.Lock()
			leaving := t.ended || t.leaving
			t.mu.Unlock()
			if !leaving && h.Held() {
				go e.endTerm(t, fmt.Errorf("%w: the leader key changed", watch.ErrGone))
			}
			return
		}
		ask := false
		if req := v.Get(e.transferKey()); req != nil && string(req.Value) != h.Key() {
			ask = true
		}
		if r := ruleIn(v, e.sp); r.Priority && r.Preempt {
			v.Line("c").Each(func(en *watch.Entry) bool {
				if cd := candidateOf(en, e.sp); !cd.Observer && cd.Priority > prio {
					ask = true
					return false
				}
				return true
			})
		}
		if ask {
			t.mu.Lock()
			if !t.askedC {
				t.askedC = true
				close(t.asked)
			}
			t.mu.Unlock()
		}
	})
	hdone := h.Done()
	stopped := make(chan struct{})
	t.stop = func() {
		stopL()
		m.Release()
		close(stopped)
	}
	go func() {
		select {
		case <-hdone:
			if err := h.Lost(); err != nil {
				e.endTerm(t, err)
			}
		case <-stopped:
		}
	}()
	e.s.Metrics().Leader(e.name, true)
	e.s.Logger().Info("coord leadership gained", "kind", kind, "name", e.name, "token", token, "lease", e.s.LeaseHex())
	return t
}

// Follow makes this Election an observer candidate with value: listed by
// Candidates (as Observer) until Resign or the session ends, following the
// election like any candidate, and never leading. It returns at once. A
// dashboard or a standby that only needs to follow uses it, or, without a
// session at all, an Observer.
func (e *Election) Follow(ctx context.Context, value string, opts ...CampaignOption) error {
	if e.err != nil {
		return e.err
	}
	var co campaignOptions
	for _, o := range opts {
		o(&co)
	}
	if err := validCampaign(co); err != nil {
		return fmt.Errorf("election %q: %w", e.name, err)
	}
	e.mu.Lock()
	if e.cur != nil || e.campaigning {
		e.mu.Unlock()
		return fmt.Errorf("election %q: %w", e.name, ErrCampaigning)
	}
	e.campaigning = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.campaigning = false
		e.mu.Unlock()
	}()
	// An observer never leads, so its end is never a loss to wait for.
	cfg := e.cfg
	cfg.Delay = 0
	h := hold.New(e.s, &cfg, keys.Record{Value: value, Prio: co.prio, Meta: co.meta, Observer: true},
		hold.Key{Key: e.sp.Key("c", e.s.NextID()), Watch: watch.MirrorOf{Hub: e.hub, Base: e.sp.Base()}})
	if _, err := h.Create(ctx, hold.Spec{}); err != nil {
		h.Abandon(ctx)
		return err
	}
	if err := h.Grant(); err != nil {
		h.Abandon(ctx)
		return err
	}
	t := &term{h: h, done: make(chan struct{}), asked: make(chan struct{}), ended: true}
	close(t.done) // a follower never leads
	e.mu.Lock()
	e.cur = t
	e.mu.Unlock()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
