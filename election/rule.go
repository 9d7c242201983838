package election

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/internal/watch"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Rule is how an election picks its next leader when the leadership is
// vacant or handed over. The zero Rule is FIFO: the candidate that has
// waited longest. It is stored with the election, so every candidate
// picks alike (see WithRule and SetRule).
type Rule struct {
	// Priority makes the candidate of highest priority (WithPriority) the
	// next leader, the longest waiting among equals.
	Priority bool `json:"priority,omitempty"`
	// Preempt, with Priority, asks a leader to step aside (Asked closes;
	// Run hands over once its work has stopped) when a candidate of higher
	// priority campaigns. The handover is graceful: the leader's work ends
	// before its successor's begins.
	Preempt bool `json:"preempt,omitempty"`
}

func (r Rule) encode() string {
	b, _ := json.Marshal(r)
	return string(b)
}

// ruleIn reads the election's rule in a mirror of it: FIFO when none is
// stored (or the stored one cannot be read: a rule only orders the line,
// it never decides safety).
func ruleIn(v *watch.View, sp keys.Space) Rule {
	var r Rule
	if e := v.Get(sp.Single("rule")); e != nil {
		json.Unmarshal(e.Value, &r)
	}
	return r
}

// Candidate is one candidate of an election, as Candidates lists it.
type Candidate struct {
	// ID names the candidate for Transfer and RequestTransfer.
	ID       string
	Value    string
	Priority int
	Meta     map[string]string
	// Token is the create revision of the candidate's key: its place in
	// line. (A leader's fencing token is Leader.Token.)
	Token int64
	// Since is when the candidate campaigned.
	Since time.Time
	// Lease is the candidate's session lease.
	Lease int64
	// Leader says it leads now.
	Leader bool
	// Observer says it follows and is listed but never leads (Follow).
	Observer bool
}

func candidateOf(e *watch.Entry, sp keys.Space) Candidate {
	rec, err := e.Record()
	c := Candidate{ID: strings.TrimPrefix(e.Key, sp.Part("c")), Token: e.CreateRev, Lease: e.Lease}
	if err != nil {
		c.Value = string(e.Value) // not written by coord: its raw value
		return c
	}
	c.Value, c.Priority, c.Meta, c.Since, c.Observer = rec.Value, rec.Prio, rec.Meta, rec.Since, rec.Observer
	return c
}

// better reports whether a should lead before b under r.
func better(r Rule, a, b Candidate) bool {
	if r.Priority && a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Token < b.Token
}

// electNext is the candidate r picks next in a mirror of the election,
// leaving out exclude (the leader handing over): the best candidate that
// is not an observer, or nil when there is none.
func electNext(v *watch.View, sp keys.Space, r Rule, exclude string) *watch.Entry {
	var best *watch.Entry
	var bc Candidate
	v.Line("c").Each(func(e *watch.Entry) bool {
		if e.Key == exclude {
			return true
		}
		c := candidateOf(e, sp)
		if c.Observer {
			return true
		}
		if best == nil || better(r, c, bc) {
			best, bc = e, c
		}
		// Under FIFO the first one found is the oldest: done.
		return r.Priority
	})
	return best
}

// leaderIn is the leader in a mirror of the election: the candidate the
// leader key names, with the key's mod revision as token; nobody when the
// key is missing or names a candidate that is gone.
func leaderIn(v *watch.View, sp keys.Space) (Leader, *watch.Entry) {
	l := v.Get(sp.Single("leader"))
	if l == nil {
		return Leader{}, nil
	}
	c := v.Get(string(l.Value))
	if c == nil || !strings.HasPrefix(c.Key, sp.Part("c")) {
		return Leader{}, nil
	}
	return Leader{Value: candidateOf(c, sp).Value, Token: l.ModRev}, c
}

// findCandidate finds the target of a transfer: by ID, or else by a value
// no other candidate has. The leader itself and observers cannot be one.
func findCandidate(v *watch.View, sp keys.Space, to, self string) (*watch.Entry, error) {
	if e := v.Get(sp.Key("c", to)); e != nil {
		if e.Key == self || candidateOf(e, sp).Observer {
			return nil, fmt.Errorf("%w: %s cannot be handed the leadership", ErrNoCandidate, to)
		}
		return e, nil
	}
	var found []*watch.Entry
	v.Line("c").Each(func(e *watch.Entry) bool {
		if c := candidateOf(e, sp); c.Value == to && e.Key != self && !c.Observer {
			found = append(found, e)
		}
		return true
	})
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("%w: %q", ErrNoCandidate, to)
	case 1:
		return found[0], nil
	}
	return nil, fmt.Errorf("%w: %d candidates have the value %q: name one by its ID", ErrNoCandidate, len(found), to)
}

// readElection reads the election's keys once, for Leader and Candidates.
func readElection(ctx context.Context, cli *clientv3.Client, sp keys.Space) (leader Leader, cands []Candidate, err error) {
	base := sp.Base()
	resp, err := cli.Get(ctx, base, clientv3.WithRange(keys.RangeEnd(base)))
	if err != nil {
		return Leader{}, nil, fmt.Errorf("election %q: %w", sp.Name(), etcderr.Explain(cli, err))
	}
	byKey := map[string]*mvccpb.KeyValue{}
	var rule Rule
	var leaderKV *mvccpb.KeyValue
	for _, kv := range resp.Kvs {
		switch k := string(kv.Key); {
		case strings.HasPrefix(k, sp.Part("c")):
			byKey[k] = kv
		case k == sp.Single("leader"):
			leaderKV = kv
		case k == sp.Single("rule"):
			json.Unmarshal(kv.Value, &rule)
		}
	}
	leaderCand := ""
	if leaderKV != nil {
		if kv, ok := byKey[string(leaderKV.Value)]; ok {
			leaderCand = string(kv.Key)
			leader.Token = leaderKV.ModRevision
		}
	}
	for _, kv := range byKey {
		e := &watch.Entry{Key: string(kv.Key), CreateRev: kv.CreateRevision, Lease: kv.Lease, Value: kv.Value}
		c := candidateOf(e, sp)
		c.Leader = e.Key == leaderCand
		if c.Leader {
			leader.Value = c.Value
		}
		cands = append(cands, c)
	}
	// In the order the rule would elect them: the leader, the others by
	// the rule, observers last.
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.Leader != b.Leader {
			return a.Leader
		}
		if a.Observer != b.Observer {
			return b.Observer
		}
		return better(rule, a, b)
	})
	return leader, cands, nil
}

// readLeader reads the leader once.
func readLeader(ctx context.Context, cli *clientv3.Client, sp keys.Space) (Leader, error) {
	l, _, err := readElection(ctx, cli, sp)
	if err != nil {
		return Leader{}, err
	}
	if l.Token == 0 {
		return Leader{}, fmt.Errorf("election %q: %w", sp.Name(), ErrNoLeader)
	}
	return l, nil
}

// SetRule stores r as the election's rule, for every candidate from now
// on (WithRule's check then expects it). The current leader keeps leading;
// r picks the next one.
func (e *Election) SetRule(ctx context.Context, r Rule) error {
	if e.err != nil {
		return e.err
	}
	return setRule(ctx, e.s.Client(), e.sp, r)
}

func setRule(ctx context.Context, cli *clientv3.Client, sp keys.Space, r Rule) error {
	if r.Preempt && !r.Priority {
		return fmt.Errorf("election %q: %w: preemption needs the priority rule", sp.Name(), ErrInvalid)
	}
	if _, err := cli.Put(ctx, sp.Single("rule"), r.encode()); err != nil {
		return fmt.Errorf("election %q: set rule: %w", sp.Name(), etcderr.Explain(cli, err))
	}
	return nil
}

// checkRule makes sure the stored rule is this Election's (storing it if
// there is none yet), once per Election value.
func (e *Election) checkRule(ctx context.Context) error {
	e.mu.Lock()
	done := e.ruleChecked || e.rule == nil
	e.mu.Unlock()
	if done {
		return nil
	}
	if e.rule.Preempt && !e.rule.Priority {
		return fmt.Errorf("election %q: %w: preemption needs the priority rule", e.name, ErrInvalid)
	}
	key, want := e.sp.Single("rule"), e.rule.encode()
	resp, err := e.s.Client().Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, want)).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return fmt.Errorf("election %q: rule: %w", e.name, etcderr.Explain(e.s.Client(), err))
	}
	if !resp.Succeeded {
		var stored Rule
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) > 0 {
			json.Unmarshal(kvs[0].Value, &stored)
		}
		if stored != *e.rule {
			return fmt.Errorf("election %q: %w: stored %+v, this candidate's %+v", e.name, ErrRuleMismatch, stored, *e.rule)
		}
	}
	e.mu.Lock()
	e.ruleChecked = true
	e.mu.Unlock()
	return nil
}

// validCampaign checks a campaign's options.
func validCampaign(o campaignOptions) error {
	if o.prio < MinPriority || o.prio > MaxPriority {
		return fmt.Errorf("%w: priority %d is outside [%d, %d]", ErrInvalid, o.prio, MinPriority, MaxPriority)
	}
	n := 0
	for k, v := range o.meta {
		n += len(k) + len(v)
	}
	if n > MaxMetaBytes {
		return fmt.Errorf("%w: metadata of %d bytes, over the %d-byte limit", ErrInvalid, n, MaxMetaBytes)
	}
	return nil
}
