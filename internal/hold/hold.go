package hold

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/internal/span"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// cleanupTimeout bounds the first, synchronous attempt of a release or an
// abandon that runs after the caller's context is gone.
const cleanupTimeout = 5 * time.Second

// Errors are the sentinels a primitive reports through its holds, so that
// the lifecycle's errors match the primitive's documented ones.
type Errors struct {
	// Lost is wrapped when the key was taken away: deleted by someone
	// else, or gone with the session's lease (then session.ErrExpired is
	// wrapped too).
	Lost error
	// NotHeld is returned by Release on a hold already released.
	NotHeld error
}

// Config describes the holds of one primitive.
type Config struct {
	Kind string
	// Names are the primitive's names, for metrics and logs (a MultiMutex
	// has several).
	Names []string
	// Label names the primitive in errors and logs: `lock "backup"`.
	Label string
	// Noun is what a hold is called in log messages ("lock",
	// "leadership", "permit", "claim"): "coord lock lost". Default: Kind.
	Noun   string
	Errors Errors
	// OnGrant and OnEnd, when set, run after a grant and after the hold
	// ends having been granted (lost: taken away rather than released),
	// for a primitive's own metrics (the leader gauge, permits held).
	OnGrant func(h *Hold)
	OnEnd   func(h *Hold, lost bool)
	// StrictRetry makes a retried Release that finds the key gone count
	// as a loss unless the session's lease is verified alive: for a queue
	// claim, "acked" must be true, not likely. Locks and permits give a
	// retried release the benefit of the doubt: the caller stopped
	// relying on the key when it asked to release it.
	StrictRetry bool
	// Delay, when positive, is the primitive's lock-delay (whole seconds,
	// see CheckDelay): the next grant after a hold of the name ended
	// without its owner letting it go waits that long (see delay.go).
	// Primitives that set it grant through Admit.
	Delay time.Duration
	// Named says the hold's key is named by the primitive (a group
	// member's id, a shard's owner key) rather than unique to the hold:
	// another holder may own a key of that name before or after this one.
	// New then gives the record a unique Hold id; Create tells this
	// hold's own key from another's by its value, and reports a key that
	// another holder owns as Taken; Release and Abandon delete the key
	// only while it is this hold's (a plain delete could remove a
	// successor's). A named hold has one key, and is retired with Abandon,
	// never AbandonIf.
	Named bool
}

type state int

const (
	asking    state = iota // not yet granted
	held                   // granted: a loss now is reported
	releasing              // the owner's release is under way
	released               // let go by its owner
	lost                   // taken away while held
	abandoned              // given up before it was granted
)

// Hold is one acquisition's keys (one, or a MultiMutex's one per name):
// created together in one Txn, owned by one session, unique to this
// acquisition (so no retried, late or repeated operation can ever touch
// another acquisition's key), and released or retired by its owner. It is
// safe for concurrent use.
type Hold struct {
	s     *lease.Session
	cfg   *Config
	keys  []string
	watch []Watcher
	rec   keys.Record

	mu         sync.Mutex
	rev        int64 // create revision: the fencing token
	ambiguous  bool  // a create was sent whose outcome is unknown
	st         state
	retried    bool          // a Release is being retried
	cause      error         // why it was lost
	refined    chan struct{} // closed once cause is final
	done       chan struct{} // closed when lost or let go
	stopWatch  func()
	asked      time.Time
	start      time.Time
	waiting    bool // counted in the waiting gauge, from Create to Grant or Abandon
	releasedAt int64
	span       *span.Span // the hold's span while held and traced (trace.go)
	lostAt     time.Time  // when a loss was seen

	// The lock-delay's part (Config.Delay > 0): a mark per key, the bases
	// they live under, and what the last Create learned.
	marks     []string
	bases     []string
	quiet     bool  // the Create saw no mark but its own and no pending delay
	createdAt int64 // the revision of the Create's answer
}

// Key is one key of a hold and where its loss is seen: the primitive's
// mirror, or the feed of its range.
type Key struct {
	Key   string
	Watch Watcher
}

// New returns a hold on ks, to be created with rec as their value.
func New(s *lease.Session, cfg *Config, rec keys.Record, ks ...Key) *Hold {
	if rec.Since.IsZero() {
		rec.Since = time.Now()
	}
	if cfg.Named && rec.Hold == "" {
		rec.Hold = s.NextID()
	}
	h := &Hold{s: s, cfg: cfg, rec: rec, done: make(chan struct{}), asked: time.Now()}
	for _, k := range ks {
		h.keys = append(h.keys, k.Key)
		h.watch = append(h.watch, k.Watch)
		if cfg.Delay > 0 {
			if mark, base, ok := keys.MarkOf(k.Key); ok {
				h.marks = append(h.marks, mark)
				if !slices.Contains(h.bases, base) {
					h.bases = append(h.bases, base)
				}
			}
		}
	}
	return h
}

// Key returns the hold's (first) etcd key.
func (h *Hold) Key() string { return h.keys[0] }

// Keys returns every key of the hold.
func (h *Hold) Keys() []string { return h.keys }

// Rev returns the key's create revision (the fencing token), 0 before it
// was created.
func (h *Hold) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Record returns the value the key was created with.
func (h *Hold) Record() keys.Record { return h.rec }

// Session returns the owning session.
func (h *Hold) Session() *lease.Session { return h.s }

// IsOwner returns one compare per key that together hold while every key
// exists as this hold created it; before creation, compares that never
// hold (no key has a negative create revision).
func (h *Hold) IsOwner() []clientv3.Cmp {
	rev := h.Rev()
	out := make([]clientv3.Cmp, len(h.keys))
	for i, k := range h.keys {
		if rev > 0 {
			out[i] = clientv3.Compare(clientv3.CreateRevision(k), "=", rev)
		} else {
			out[i] = clientv3.Compare(clientv3.CreateRevision(k), "<", 0)
		}
	}
	return out
}

// Rewrite returns the op that rewrites the hold's first key with rec, on
// the session's lease, for a Txn of the primitive's own guarded by
// IsOwner (unguarded, a rewrite could bring back a key the hold lost):
// for a holder that publishes what it holds now, such as the permits a
// rate limiter's process has reserved. A zero rec.Since keeps the
// creation's. Record still returns the value the key was created with.
func (h *Hold) Rewrite(rec keys.Record) clientv3.Op {
	if rec.Since.IsZero() {
		rec.Since = h.rec.Since
	}
	return clientv3.OpPut(h.keys[0], rec.Encode(), clientv3.WithLease(h.s.Lease()))
}

// Spec is a primitive's part of a Txn the lifecycle runs: its own
// compares, the ops to run with the lifecycle's when they hold, and the
// reads to run when they do not.
type Spec struct {
	If   []clientv3.Cmp
	Then []clientv3.Op
	Else []clientv3.Op
}

// Created is what Create learned.
type Created struct {
	Rev int64 // the key's create revision
	At  int64 // the revision of the Txn that answered
	// Then holds spec.Then's responses when this attempt created the key.
	// When an earlier attempt whose answer was lost had created it
	// (Existed), they are not available.
	Then    []*pb.ResponseOp
	Existed bool
	// Else holds spec.Else's responses when spec.If failed, or the key
	// was Taken: the key was not created.
	Else []*pb.ResponseOp
	// Taken says, for a named hold (Config.Named), that the key exists
	// and is another holder's: nothing was created.
	Taken bool
}

// Failed reports whether spec.If failed (nothing was created).
func (c Created) Failed() bool { return c.Rev == 0 }

// Create creates the hold's keys, on the session's lease, in one Txn with
// the primitive's spec:
//
//	If(fence, keys absent, spec.If...)
//	Then(put keys, spec.Then...)
//	Else(read fence, read first key, spec.Else...)
//
// Top-level compares and ops only: etcd before 3.5.26 and 3.6.9 does not
// check permissions on the ops of a nested Txn. The fence turns away this
// create if it reaches etcd after the hold was abandoned (see
// lease.Fence). A transient failure is retried while ctx and the session
// live; because the key must be absent, a retry never creates it twice,
// and one that finds it created by an earlier attempt (whose answer was
// lost) says so (Existed). On any other error the outcome is unknown: the
// caller must Abandon the hold, which then also moves the fence.
func (h *Hold) Create(ctx context.Context, spec Spec) (Created, error) {
	return CreateAll(ctx, []*Hold{h}, spec)
}

// CreateAll is Create for several holds of one session in one Txn (a
// queue's batch of claims): every hold's keys are created together, with
// spec, or none are. Each hold then lives on its own (Grant, Done,
// Release, Abandon). The fencing tokens are all the Txn's revision. The
// holds must be new and on one session.
func CreateAll(ctx context.Context, hs []*Hold, spec Spec) (Created, error) {
	h := hs[0]
	for _, x := range hs {
		x.mu.Lock()
		w := x.waiting
		x.waiting = true
		x.mu.Unlock()
		if !w {
			x.gauge(1)
		}
	}
	nput := 0 // the holds' keys and marks, before spec.Then's responses
	for _, x := range hs {
		nput += len(x.keys) + len(x.marks)
	}
	setAmbiguous := func() {
		for _, x := range hs {
			x.mu.Lock()
			x.ambiguous = true
			x.mu.Unlock()
		}
	}
	created := func(rev, at int64) {
		for _, x := range hs {
			x.created(rev, at, false)
		}
	}
	cli := h.s.Client()
	backoff := 10 * time.Millisecond
	for {
		fence := h.s.FenceRev()
		cmps, then, els := createOps(hs, spec)
		resp, err := cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
		if err != nil {
			setAmbiguous()
			if etcderr.Transient(err) && ctx.Err() == nil && h.s.Err() == nil {
				sleep(ctx, backoff)
				backoff = min(2*backoff, 500*time.Millisecond)
				continue
			}
			return Created{}, h.wrap(h.sessionCause(err))
		}
		if resp.Succeeded {
			// Each hold's lock-delay reads are at the end, in order.
			end := len(resp.Responses)
			for i := len(hs) - 1; i >= 0; i-- {
				hs[i].created(resp.Header.Revision, resp.Header.Revision, hs[i].quietIn(resp.Responses[:end]))
				end -= 2 * len(hs[i].bases)
			}
			return Created{Rev: resp.Header.Revision, At: resp.Header.Revision, Then: resp.Responses[nput:end]}, nil
		}
		if own := resp.Responses[1].GetResponseRange().Kvs; len(own) > 0 {
			if h.cfg.Named && (string(own[0].Value) != h.rec.Encode() || own[0].Lease != int64(h.s.Lease())) {
				return Created{At: resp.Header.Revision, Taken: true, Else: resp.Responses[2:]}, nil
			}
			// An earlier attempt of these holds created them: only they
			// ever use their keys, and they were created together (a
			// named key: only its hold writes its value, which carries
			// the hold's unique id).
			created(own[0].CreateRevision, resp.Header.Revision)
			return Created{Rev: own[0].CreateRevision, At: resp.Header.Revision, Existed: true}, nil
		}
		if h.s.Learn(resp.Responses[0].GetResponseRange().Kvs, fence) {
			continue // the fence moved (another hold retired a key): retry at once
		}
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			// The marker is gone with the lease: the session is lost.
			return Created{}, h.wrap(h.sessionCause(rpctypes.ErrLeaseNotFound))
		}
		return Created{At: resp.Header.Revision, Else: resp.Responses[2:]}, nil
	}
}

// createOps is the create Txn as CreateAll sends it, with the fence as
// the session knows it now. With a lock-delay it also puts each key's
// mark (on no lease, so it outlives a lost lease) and, after the
// primitive's ops, reads whether anything but the hold's own marks or a
// pending delay is there (see delay.go).
func createOps(hs []*Hold, spec Spec) (cmps []clientv3.Cmp, then, els []clientv3.Op) {
	h := hs[0]
	cmps = []clientv3.Cmp{h.s.Fence()}
	for _, x := range hs {
		val := x.rec.Encode()
		for _, k := range x.keys {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
			then = append(then, clientv3.OpPut(k, val, clientv3.WithLease(x.s.Lease())))
		}
		for _, m := range x.marks {
			then = append(then, clientv3.OpPut(m, markValue(x.cfg.Delay)))
		}
	}
	cmps = append(cmps, spec.If...)
	then = append(then, spec.Then...)
	for _, x := range hs {
		then = append(then, x.delayReads()...)
	}
	own := clientv3.OpGet(h.keys[0], clientv3.WithKeysOnly())
	if h.cfg.Named {
		own = clientv3.OpGet(h.keys[0]) // its value says whose it is
	}
	els = append([]clientv3.Op{h.s.FenceRead(), own}, spec.Else...)
	return cmps, then, els
}

func (h *Hold) created(rev, at int64, quiet bool) {
	h.mu.Lock()
	h.rev, h.createdAt, h.quiet = rev, at, quiet
	h.mu.Unlock()
}

// sessionCause prefers the session's own error, or ErrExpired when etcd
// says the lease is gone, over the request's error.
func (h *Hold) sessionCause(err error) error {
	if serr := h.s.Err(); serr != nil {
		return serr
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		h.s.Verify(context.Background())
		if serr := h.s.Err(); serr != nil {
			return serr
		}
		return fmt.Errorf("%w: %w", lease.ErrExpired, err)
	}
	return etcderr.Explain(h.s.Client(), err)
}

func (h *Hold) wrap(err error) error { return fmt.Errorf("%s: %w", h.cfg.Label, err) }

// Grant confirms the grant against the session and makes the hold held.
// The answer that made the caller holder may have been held up in the
// network past the moment the lease could still be trusted (a partition
// that heals late delivers it all the same): a hold the session cannot
// vouch for now is never reported. On error the caller must Abandon.
func (h *Hold) Grant() error {
	if err := h.s.Vouch(); err != nil {
		return h.wrap(err)
	}
	h.mu.Lock()
	if h.st != asking {
		st, cause := h.st, h.cause
		h.mu.Unlock()
		if st == lost {
			return h.lossErr(cause)
		}
		return h.wrap(h.cfg.Errors.NotHeld)
	}
	h.st = held
	h.start = time.Now()
	rev := h.rev
	h.mu.Unlock()
	h.stopWaiting()
	m := h.s.Metrics()
	for _, n := range h.cfg.Names {
		m.Acquired(h.cfg.Kind, n, h.start.Sub(h.asked))
	}
	if h.cfg.OnGrant != nil {
		h.cfg.OnGrant(h)
	}
	h.s.Logger().Debug("coord "+h.cfg.noun()+" acquired", "kind", h.cfg.Kind, "name", h.cfg.Label, "token", rev,
		"lease", h.s.LeaseHex(), "waited", h.start.Sub(h.asked))
	return nil
}

// gauge adds delta to the waiting gauge of the hold's primitive.
func (h *Hold) gauge(delta int) {
	for _, n := range h.cfg.Names {
		h.s.Metrics().Waiting(h.cfg.Kind, n, delta)
	}
}

// stopWaiting takes the hold out of the waiting gauge, once.
func (h *Hold) stopWaiting() {
	h.mu.Lock()
	w := h.waiting
	h.waiting = false
	h.mu.Unlock()
	if w {
		h.gauge(-1)
	}
}

// Vouch returns nil if the hold can be trusted now: granted, not lost
// nor let go, and its session can vouch for its lease (see
// lease.Session.Vouch); else why not. A primitive that hands a hold to
// work later than its grant (a message claimed ahead of a free worker)
// checks again with it before the work starts, as Grant did then.
func (h *Hold) Vouch() error {
	if err := h.Lost(); err != nil {
		return err
	}
	if !h.Held() {
		return h.wrap(h.cfg.Errors.NotHeld)
	}
	if err := h.s.Vouch(); err != nil {
		return h.wrap(err)
	}
	return nil
}

// Held reports whether the hold is granted and not lost or let go (a
// release under way whose outcome is not known yet still holds).
func (h *Hold) Held() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st == held || h.st == releasing
}

// Start is when the hold was granted.
func (h *Hold) Start() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.start
}

// Asked is when the hold was asked for.
func (h *Hold) Asked() time.Time { return h.asked }

func (c *Config) noun() string {
	if c.Noun != "" {
		return c.Noun
	}
	return c.Kind
}
