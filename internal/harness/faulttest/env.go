package faulttest

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/lease"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Client is one simulated process: its own etcd client behind its own
// proxies, so faults can be aimed at it alone, and one session shared by
// all its workers (holds of every kind, a queue Consume pool), as the README
// advises: what one worker does on the session (a failed claim's cleanup,
// say) must never touch what another holds.
type Client struct {
	ID  int
	P   etcdtest.Proxies
	Cli *clientv3.Client
	TTL time.Duration // its sessions' TTL; 0: the scenario's

	mu      sync.Mutex
	pending time.Duration // a pause to take at the next Stall
	paused  chan struct{} // closed when that pause is over

	smu  sync.Mutex
	sess *session.Session
}

// Session returns the process's live session, making a new one when the
// last was lost or closed (every worker of the process then moves to it).
func (c *Client) Session(ctx context.Context, e *Env) (*session.Session, error) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.sess != nil && c.sess.Err() == nil {
		return c.sess, nil
	}
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	ttl := e.TTL
	if c.TTL > 0 {
		ttl = c.TTL
	}
	s, err := session.New(sctx, c.Cli, session.WithTTL(ttl), session.WithPrefix(e.Root))
	if err != nil {
		return nil, err
	}
	if c.sess != nil {
		c.sess.Close()
	}
	c.sess = s
	return s, nil
}

// Renewed returns the process's live session's lease and the send time
// of its last acknowledged renewal (zero values without one).
func (c *Client) Renewed() (clientv3.LeaseID, time.Time) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.sess == nil || c.sess.Err() != nil {
		return 0, time.Time{}
	}
	return c.sess.Lease(), lease.Of(c.sess).Renewed()
}

// Crash ends the process's session as a dying process would lose it:
// everything every worker holds goes with it.
func (c *Client) Crash(s *session.Session) {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.sess == s {
		s.Close()
	}
}

// CloseSession closes the process's session at the end of a scenario.
func (c *Client) CloseSession() {
	c.smu.Lock()
	defer c.smu.Unlock()
	if c.sess != nil {
		c.sess.Close()
		c.sess = nil
	}
}

// Stall is where a workload's process can be paused: right after it
// acquired something and right before its fenced write, the worst moment
// for a GC pause or a SIGSTOP. A pause ordered with PauseAtNextStall is
// taken here: the client's traffic is blackholed and the goroutine stops
// for the pause's length. (Go cannot stop one goroutine's clock, so the
// session's timers run on; what is paused is the application code, which
// is exactly what fencing must protect against.)
func (c *Client) Stall(e *Env) {
	c.mu.Lock()
	d, done := c.pending, c.paused
	c.pending = 0
	c.mu.Unlock()
	if d == 0 {
		return
	}
	call := time.Now()
	c.P.Blackhole()
	time.Sleep(d)
	c.P.Restore()
	e.Hist.Add(Op{Client: c.ID, Kind: "nemesis", Op: "pause", Call: call, Return: time.Now()})
	close(done)
}

// PauseAtNextStall orders a pause of d at the client's next Stall and
// returns a channel closed when the pause is over.
func (c *Client) PauseAtNextStall(d time.Duration) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = d
	c.paused = make(chan struct{})
	return c.paused
}

// Env is one scenario's world.
type Env struct {
	T       testing.TB
	Cluster *etcdtest.Cluster
	Admin   *clientv3.Client
	Clients []*Client
	Root    string
	TTL     time.Duration
	Seed    int64
	Hist    *History
	Log     *EventLog
	Stats   *Stats

	rmu  sync.Mutex
	rand *rand.Rand
}

// Rand returns a pseudo-random int in [0, n), from the scenario's seed.
func (e *Env) Rand(n int) int {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	return e.rand.Intn(n)
}

// Op is one recorded operation.
type Op struct {
	Client  int
	Kind    string // "lock", "rlock", "sem", "elect", "queue", "barrier"
	Name    string
	Op      string // "acquire", "write", "release", "lost", ...
	Call    time.Time
	Return  time.Time
	Rev     int64 // header revision of the deciding etcd response, when there is one
	Token   int64
	Outcome string // "ok", "rejected", "fail", "timeout"
	Detail  string
}

func (o Op) String() string {
	return fmt.Sprintf("c%d %s/%s %s tok=%d rev=%d %s %s [%s..%s]", o.Client, o.Kind, o.Name, o.Op,
		o.Token, o.Rev, o.Outcome, o.Detail, o.Call.Format("15:04:05.000"), o.Return.Format("15:04:05.000"))
}

// History is the ordered record of every operation in a scenario.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add records op.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of every op so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...)
}

// Dump renders the history, for a failure report.
func (h *History) Dump() string {
	var b strings.Builder
	for _, o := range h.Ops() {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// Stats counts what a scenario did.
type Stats struct {
	mu         sync.Mutex
	Ops        int
	Faults     map[string]int
	Violations []string
	Figures    map[string][]time.Duration
	// Porcupine is the outside checker's verdict on the histories.
	Porcupine Verdicts
}

func newStats() *Stats {
	return &Stats{Faults: map[string]int{}, Figures: map[string][]time.Duration{}}
}

// Fault counts one injected fault.
func (s *Stats) Fault(kind string) {
	s.mu.Lock()
	s.Faults[kind]++
	s.mu.Unlock()
}

// Violation records a broken invariant.
func (s *Stats) Violation(format string, a ...any) {
	s.mu.Lock()
	s.Violations = append(s.Violations, fmt.Sprintf(format, a...))
	s.mu.Unlock()
}

// Figure records a measured duration under a name.
func (s *Stats) Figure(name string, d time.Duration) {
	s.mu.Lock()
	s.Figures[name] = append(s.Figures[name], d)
	s.mu.Unlock()
}

func (s *Stats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var faults []string
	for k, v := range s.Faults {
		faults = append(faults, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(faults)
	var figs []string
	for k, v := range s.Figures {
		lo, hi := v[0], v[0]
		for _, d := range v {
			lo, hi = min(lo, d), max(hi, d)
		}
		figs = append(figs, fmt.Sprintf("%s: n=%d %v..%v", k, len(v), lo.Round(time.Millisecond), hi.Round(time.Millisecond)))
	}
	sort.Strings(figs)
	return fmt.Sprintf("ops=%d faults=[%s] violations=%d porcupine[%s] %s", s.Ops, strings.Join(faults, " "), len(s.Violations), s.Porcupine, strings.Join(figs, "; "))
}
