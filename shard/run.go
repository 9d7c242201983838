package shard

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coord-go/coord/group"
	"github.com/coord-go/coord/internal/hold"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"github.com/coord-go/coord/metrics"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Run takes part in the map until ctx ends: it owns the shards the plan
// gives this member and calls work for each, in a goroutine of its own,
// with the Shard and a context that ends when the ownership must:
//
//   - with ErrMoved when the shard is handed over (a member joined, or
//     this one is over its share): work finishes up and returns; the
//     shard is released only then, and only then can the next owner take
//     it, so the two never work on it at once;
//   - with an error wrapping ErrLost when the shard was taken away (the
//     session ended, which it does before the server could give the
//     shard to anyone else, or its key was deleted);
//   - with ctx's cause when Run ends.
//
// work must return promptly once its context ends: until it does, the
// shard stays this member's and no one else gets it. If work returns
// while the shard is still owned, Run logs its error and calls it again
// after WithRestartDelay, with the same ownership.
//
// Shards with no owner are taken at once, several at a time
// (WithAcquireConcurrency), each with one Txn; a handoff is the owner's
// Delete and the next owner's Txn; in between, the process follows the
// map and the group through one watch each, whatever the number of
// shards, and pays no RPC at all.
//
// Run returns ctx.Err() when ctx ends, and an error wrapping group.ErrLost
// (or the session's error) when the membership ends: in both cases after
// every work returned and every shard was released (a release that etcd
// cannot take now is retried in the background until it can, or until
// the session ends). It returns ErrSpecMismatch at once when the map is
// stored with other shards or another group, ErrRunning while another Run
// of this Map runs, and errors wrapping ErrInvalid for bad arguments.
func (mp *Map) Run(ctx context.Context, work func(ctx context.Context, sh *Shard) error) error {
	if mp.err != nil {
		return mp.err
	}
	if work == nil {
		return fmt.Errorf("shard map %q: %w: nil work function", mp.sp.Name(), ErrInvalid)
	}
	mp.mu.Lock()
	if mp.running {
		mp.mu.Unlock()
		return fmt.Errorf("shard map %q: %w", mp.sp.Name(), ErrRunning)
	}
	mp.running = true
	mp.mu.Unlock()
	defer func() {
		mp.mu.Lock()
		mp.running = false
		mp.mu.Unlock()
	}()
	if err := mp.mem.Err(); err != nil {
		return fmt.Errorf("shard map %q: %w", mp.sp.Name(), err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("shard map %q: %w", mp.sp.Name(), err)
	}
	if err := mp.ensureSpec(ctx); err != nil {
		return err
	}
	mg := newManager(mp, work)
	return mg.run(ctx)
}

// lookGap is the shortest time between two looks at the map, and
// maxLookGap the longest a burst can delay one: in between, a look waits
// four times as long as the last one took, so planning takes at most a
// fifth of a core per member on a slow machine (a look at 256 shards over
// 10 members takes about 0.15 ms, 0.4 ms under -race, and far longer on
// a starved CPU, where the waits grow with it, up to maxLookGap).
const (
	lookGap    = 10 * time.Millisecond
	maxLookGap = 50 * time.Millisecond
)

// slot states.
const (
	idle      = iota // not ours
	acquiring        // a create is under way
	owned            // ours: work runs
	draining         // ours, being let go: work is told to stop, then the key is released
)

type slot struct {
	st        int
	cancel    context.CancelCauseFunc
	notBefore int64     // do not try to acquire before the mirror is past this revision
	retryAt   time.Time // nor before then (after a failure)
}

// manager is one Run: the process's part in the map.
type manager struct {
	mp    *Map
	work  func(context.Context, *Shard) error
	me    string
	part  *hold.Hold
	mir   *watch.Mirror
	base  context.Context // parent of every work and acquisition
	stop  context.CancelCauseFunc
	wake  chan struct{}
	wg    sync.WaitGroup
	label string

	// What the mirror shows of the map, kept by its listener (under cmu)
	// one event at a time, so a look costs nothing that grows with the
	// shards the events did not touch.
	cmu     sync.Mutex
	cloaded bool
	crev    int64
	cowners []owner
	cparts  map[string]participant // by participant key
	mirErr  error

	mu         sync.Mutex
	slots      []slot
	inflight   int
	view       group.View
	viewSeen   bool
	stopping   bool
	liveSig    string
	changedAt  time.Time // when the live members last changed; zero once converged
	lastChange time.Time // for WithSettle
}

func newManager(mp *Map, work func(context.Context, *Shard) error) *manager {
	return &manager{mp: mp, work: work, me: mp.mem.ID(), wake: make(chan struct{}, 1),
		slots: make([]slot, len(mp.names)), label: fmt.Sprintf("shard map %q", mp.sp.Name())}
}

func (mg *manager) signal() {
	select {
	case mg.wake <- struct{}{}:
	default:
	}
}

func (mg *manager) run(ctx context.Context) error {
	mp := mg.mp
	mg.base, mg.stop = context.WithCancelCause(context.WithoutCancel(ctx))
	defer mg.stop(nil)
	mg.mir = mp.hub.Mirror(mp.sp.Base())
	defer mg.mir.Release()
	stopL := mg.mir.Listen(mg.mirrored)
	defer stopL()

	// Take part: a key on the session's lease, only while a member.
	pcfg := &hold.Config{Kind: kind, Names: []string{mp.sp.Name()}, Label: mg.label, Noun: "shard map participation",
		Errors: hold.Errors{Lost: ErrLost, NotHeld: errReleased}}
	mg.part = hold.New(mp.s, pcfg, keys.Record{Value: mg.me}, hold.Key{Key: mp.sp.Key("p", mp.s.NextID()),
		Watch: watch.MirrorOf{Hub: mp.hub, Base: mp.sp.Base()}})
	created, err := mg.part.Create(ctx, hold.Spec{If: []clientv3.Cmp{mp.mem.IsOwner()}})
	if err == nil && created.Failed() {
		err = fmt.Errorf("%s: %w", mg.label, mp.mem.Err())
	}
	if err == nil {
		err = mg.part.Grant()
	}
	if err != nil {
		mg.part.Abandon(ctx)
		return err
	}

	gctx, gcancel := context.WithCancel(ctx)
	defer gcancel()
	views := mp.mem.Group().Watch(gctx)
	memDone, partDone := mp.mem.Done(), mg.part.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	mg.mu.Lock()
	mg.changedAt = time.Now()
	mg.mu.Unlock()
	var exit error
	var looked time.Time
	gap := lookGap
	for exit == nil {
		select {
		case v, ok := <-views:
			if !ok {
				exit = fmt.Errorf("%s: following group %q stopped: %w", mg.label, mp.gname, mg.watchErr(ctx))
				break
			}
			mg.setView(v)
		drain:
			for {
				select {
				case v, ok := <-views:
					if !ok {
						break drain
					}
					mg.setView(v)
				default:
					break drain
				}
			}
		case <-mg.wake:
		case <-timer.C:
		case <-ctx.Done():
			exit = ctx.Err()
		case <-memDone:
			exit = fmt.Errorf("%s: %w", mg.label, mp.mem.Err())
		case <-partDone:
			exit = fmt.Errorf("%s: %w", mg.label, mg.part.Lost())
		}
		if exit != nil {
			break
		}
		mg.cmu.Lock()
		if mg.mirErr != nil {
			exit = fmt.Errorf("%s: %w", mg.label, mg.mirErr)
		}
		mg.cmu.Unlock()
		if exit != nil {
			break
		}
		// Look at most once per gap: a burst of events (every member's
		// acquisitions when the map starts) is judged in batches, so each
		// member's planning costs per burst, not per event; a lone event
		// is judged at once.
		if wait := gap - time.Since(looked); wait > 0 {
			timer.Reset(wait)
			continue
		}
		looked = time.Now()
		mg.mu.Lock()
		next := mg.reconcile()
		mg.mu.Unlock()
		gap = min(max(lookGap, 4*time.Since(looked)), maxLookGap)
		if !next.IsZero() {
			timer.Reset(time.Until(next))
		}
	}
	// What the works are told: Run's end, a handover of everything (the
	// membership ended, the session lives: the shards are drained and
	// released in order), or a loss (the session ended: every shard went
	// with it, and each hold says so too).
	cause := context.Cause(ctx)
	switch {
	case ctx.Err() != nil:
	case mp.s.Err() != nil:
		cause = fmt.Errorf("%s: %w: %w", mg.label, ErrLost, mp.s.Err())
	default:
		cause = fmt.Errorf("%w: %w", ErrMoved, exit)
	}
	mg.shutdown(ctx, cause)
	return exit
}

func (mg *manager) watchErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := mg.mp.s.Err(); err != nil {
		return err
	}
	return errors.New("the group's watch ended")
}

func (mg *manager) setView(v group.View) {
	mg.mu.Lock()
	mg.view, mg.viewSeen = v, true
	mg.mu.Unlock()
}

// shutdown stops taking shards, lets the others plan without this member
// (its participant key goes first), then tells every work to stop and
// waits for each to return and its shard to be released.
func (mg *manager) shutdown(ctx context.Context, cause error) {
	mg.mu.Lock()
	mg.stopping = true
	mg.mu.Unlock()
	if mg.part.Held() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		mg.part.Release(rctx)
		cancel()
	}
	mg.stop(cause)
	mg.mu.Lock()
	for i := range mg.slots {
		if sl := &mg.slots[i]; sl.cancel != nil {
			sl.cancel(cause)
		}
	}
	mg.mu.Unlock()
	mg.wg.Wait()
}

// mirrored is the listener of the map's mirror: it keeps the owners and
// participants current, one event at a time, and wakes the loop. It runs
// with the mirror locked.
func (mg *manager) mirrored(v *watch.View, c watch.Change) {
	mp := mg.mp
	mg.cmu.Lock()
	switch {
	case c.Err != nil:
		mg.mirErr = c.Err
	case c.Reloaded || !mg.cloaded:
		mg.cowners, mg.cparts = make([]owner, len(mp.names)), map[string]participant{}
		for i, k := range mp.okeys {
			if e := v.Get(k); e != nil {
				rec, _ := e.Record()
				mg.cowners[i] = owner{present: true, id: rec.Value, lease: e.Lease}
			}
		}
		v.Line("p").Each(func(e *watch.Entry) bool {
			rec, _ := e.Record()
			mg.cparts[e.Key] = participant{rec.Value, e.Lease}
			return true
		})
	default:
		for _, ev := range c.Events {
			k := string(ev.Kv.Key)
			del := ev.Type == clientv3.EventTypeDelete
			var rec keys.Record
			if !del {
				rec, _ = keys.DecodeRecord(ev.Kv.Value)
			}
			if i, ok := mp.okeyIndex[k]; ok {
				mg.cowners[i] = owner{}
				if !del {
					mg.cowners[i] = owner{present: true, id: rec.Value, lease: ev.Kv.Lease}
				}
			} else if strings.HasPrefix(k, mp.sp.Part("p")) {
				delete(mg.cparts, k)
				if !del {
					mg.cparts[k] = participant{rec.Value, ev.Kv.Lease}
				}
			}
		}
	}
	if c.Err == nil {
		mg.cloaded, mg.crev = true, v.Rev()
	}
	mg.cmu.Unlock()
	mg.signal()
}

// owner is who owns one shard, as the mirror shows it.
type owner struct {
	present bool
	id      string
	lease   int64
}

type participant struct {
	id    string
	lease int64
}

// reconcile looks at the map and the group as the process sees them now,
// plans, and starts what this member must do: acquire the shards it
// should have and nobody owns, hand over those it should not keep. It
// returns when to look again even if nothing changes (zero: no need).
// mg.mu held.
func (mg *manager) reconcile() time.Time {
	mp := mg.mp
	if !mg.viewSeen || mg.stopping {
		return time.Time{}
	}
	if mp.s.Err() != nil || !mg.part.Held() || mp.mem.Err() != nil {
		// Lost, or going: the loop is about to end, and each shard's own
		// loss (or the handover at the end) tells its work why. Judged now,
		// this member would look like one that was planned out, and its
		// works would be told ErrMoved for what is a loss.
		return time.Time{}
	}
	mg.cmu.Lock()
	loaded, rev := mg.cloaded, mg.crev
	owners := append([]owner(nil), mg.cowners...)
	parts := make(map[participant]bool, len(mg.cparts))
	for _, p := range mg.cparts {
		parts[p] = true
	}
	mg.cmu.Unlock()
	if !loaded {
		return time.Time{}
	}
	cands, leases := liveCandidates(mg.view.Members, parts)
	target, ownerIdx, _ := planFor(mp.hashes, cands, leases, owners)
	me := -1
	for c, cd := range cands {
		if cd.id == mg.me && leases[c] == int64(mp.s.Lease()) && mg.part.Held() {
			me = c
		}
	}
	now := time.Now()
	if sig := signature(cands); sig != mg.liveSig {
		mg.liveSig, mg.changedAt, mg.lastChange = sig, now, now
	}
	var next time.Time
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	settled := mg.lastChange.Add(mp.opts.settle)
	for i := range mg.slots {
		sl := &mg.slots[i]
		switch sl.st {
		case owned:
			if target[i] == me && me >= 0 {
				continue
			}
			if me >= 0 && now.Before(settled) {
				later(settled)
				continue
			}
			sl.st = draining
			sl.cancel(ErrMoved)
		case idle:
			if me < 0 || target[i] != me || owners[i].present || rev < sl.notBefore || mg.inflight >= mp.opts.inFlight {
				continue
			}
			if now.Before(sl.retryAt) {
				later(sl.retryAt)
				continue
			}
			sl.st = acquiring
			mg.inflight++
			mg.wg.Add(1)
			go mg.own(i)
		}
	}
	converged := len(cands) > 0
	for i := range owners {
		if !owners[i].present || ownerIdx[i] < 0 || target[i] != ownerIdx[i] {
			converged = false
			break
		}
	}
	if converged && !mg.changedAt.IsZero() {
		d := now.Sub(mg.changedAt)
		mg.changedAt = time.Time{}
		mp.s.Metrics().ShardConverged(mp.sp.Name(), d)
		mp.s.Logger().Debug("coord shard map converged", "kind", kind, "name", mp.sp.Name(), "members", len(cands), "after", d)
	}
	return next
}

// liveCandidates are the group's members that take part in the map (a
// participant key of theirs, on their own lease), sorted by id, and their
// leases.
func liveCandidates(members []group.Member, parts map[participant]bool) ([]candidate, []int64) {
	var cands []candidate
	var leases []int64
	for _, m := range members {
		if parts[participant{m.ID, int64(m.Lease)}] {
			cands = append(cands, candidate{id: m.ID, weight: m.Weight, hash: hashString(m.ID)})
			leases = append(leases, int64(m.Lease))
		}
	}
	return cands, leases
}

// planFor runs the plan over what a mirror or a read shows: owners are
// counted for the live member of their id and lease only.
func planFor(hashes []uint64, cands []candidate, leases []int64, owners []owner) (target, ownerIdx, quota []int) {
	idx := make(map[string]int, len(cands))
	for c, cd := range cands {
		idx[cd.id] = c
	}
	ownerIdx = make([]int, len(owners))
	for i, o := range owners {
		ownerIdx[i] = -1
		if c, ok := idx[o.id]; ok && o.present && leases[c] == o.lease {
			ownerIdx[i] = c
		}
	}
	target, quota = plan(hashes, cands, ownerIdx)
	return target, ownerIdx, quota
}

func signature(cands []candidate) string {
	var b strings.Builder
	for _, c := range cands {
		fmt.Fprintf(&b, "%s/%d;", c.id, c.weight)
	}
	return b.String()
}

// own acquires shard i, runs its work for as long as it is owned, and
// releases it.
func (mg *manager) own(i int) {
	defer mg.wg.Done()
	defer mg.signal()
	mp := mg.mp
	h, err := mg.acquire(i)
	mg.mu.Lock()
	mg.inflight--
	sl := &mg.slots[i]
	if h == nil {
		sl.st = idle
		if err != nil {
			sl.retryAt = time.Now().Add(time.Second)
		}
		mg.mu.Unlock()
		return
	}
	wctx, cancel := context.WithCancelCause(mg.base)
	sl.st, sl.cancel = owned, cancel
	if mg.stopping {
		cancel(context.Cause(mg.base))
	}
	mg.mu.Unlock()
	m := mp.s.Metrics()
	m.ShardOwned(mp.sp.Name(), 1)
	m.ShardEvent(mp.sp.Name(), metrics.ShardAcquired)
	sh := &Shard{name: mp.names[i], index: i, h: h}
	go func() {
		select {
		case <-h.Done():
			if err := h.Lost(); err != nil {
				cancel(err)
			}
		case <-wctx.Done():
		}
	}()
	for {
		err := mg.work(wctx, sh)
		if wctx.Err() != nil {
			break
		}
		mp.s.Logger().Warn("coord shard work returned while the shard is owned; calling it again", "kind", kind,
			"name", mp.sp.Name(), "shard", sh.name, "token", h.Rev(), "error", err, "after", mp.opts.restart)
		t := time.NewTimer(mp.opts.restart)
		select {
		case <-t.C:
		case <-wctx.Done():
		}
		t.Stop()
		mg.mu.Lock()
		stopping := mg.stopping
		mg.mu.Unlock()
		if wctx.Err() != nil || stopping {
			break // Run is ending: the shard is about to be released
		}
	}
	cancel(nil)
	lost := h.Lost() != nil
	if !lost {
		lost = !mg.release(h)
	}
	m.ShardOwned(mp.sp.Name(), -1)
	if lost {
		m.ShardEvent(mp.sp.Name(), metrics.ShardLost)
	} else {
		m.ShardEvent(mp.sp.Name(), metrics.ShardReleased)
	}
	mg.mu.Lock()
	sl.st, sl.cancel = idle, nil
	mg.mu.Unlock()
}

// acquire takes shard i: one Txn, made only while this process is still
// a member and a participant. It returns nil (and why, when it failed
// rather than found the shard taken) when it did not get it.
func (mg *manager) acquire(i int) (*hold.Hold, error) {
	mp := mg.mp
	cfg := &hold.Config{Kind: kind, Names: []string{mp.sp.Name()}, Label: fmt.Sprintf("%s shard %q", mg.label, mp.names[i]),
		Noun: "shard", Named: true, Errors: hold.Errors{Lost: ErrLost, NotHeld: errReleased}}
	h := hold.New(mp.s, cfg, keys.Record{Value: mg.me}, hold.Key{Key: mp.okeys[i], Watch: watch.MirrorOf{Hub: mp.hub, Base: mp.sp.Base()}})
	created, err := h.Create(mg.base, hold.Spec{If: []clientv3.Cmp{mp.mem.IsOwner(), mg.part.IsOwner()[0]}})
	if err == nil && created.Failed() {
		// Taken (the mirror had not shown it yet), or this member is no
		// longer one: look again once the mirror is past this answer.
		h.Abandon(mg.base)
		mg.mu.Lock()
		mg.slots[i].notBefore = created.At
		mg.mu.Unlock()
		return nil, nil
	}
	if err == nil {
		err = h.Grant()
	}
	if err != nil {
		h.Abandon(mg.base)
		if mg.base.Err() == nil {
			mp.s.Logger().Debug("coord shard acquisition failed", "kind", kind, "name", mp.sp.Name(), "shard", mp.names[i], "error", err)
		}
		return nil, err
	}
	return h, nil
}

// release lets a drained shard go. It reports false when the shard
// turned out lost. A release etcd cannot take now is retried in the
// background (the key, still there, keeps anyone else from the shard
// meanwhile) until it lands or the session ends.
func (mg *manager) release(h *hold.Hold) bool {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	_, err := h.Release(ctx)
	cancel()
	if err == nil {
		return true
	}
	if errors.Is(err, ErrLost) || mg.mp.s.Err() != nil {
		return false
	}
	go func() {
		backoff := 50 * time.Millisecond
		for h.Held() && mg.mp.s.Err() == nil {
			select {
			case <-mg.mp.s.Done():
				return
			case <-time.After(backoff):
			}
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			_, err := h.Release(ctx)
			cancel()
			if err == nil || errors.Is(err, ErrLost) {
				return
			}
			backoff = min(2*backoff, time.Second)
		}
	}()
	return true
}
