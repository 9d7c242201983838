package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func init() {
	register("demo", "three replicas elect a leader, share cron and a work queue, survive a crash", runDemo)
}

const demoHelp = `[--ticks 6]

Starts an embedded etcd in this process and three simulated replicas, each
with its own client and session, as three processes would have. Every tick
(one second) all of them try the cron job, which runs on exactly one; the
elected leader enqueues work, which all of them share. Then the leader
crashes while working on a message (its client is cut off, nothing is
released): a follower takes over once the dead leader's lease expires, and
the message it held is delivered again to a live replica. Nothing to
install; it exits within about 15 seconds.`

const (
	demoTTL     = 2 * time.Second // the smallest lease the embedded etcd grants
	demoTick    = time.Second
	demoJob     = 700 * time.Millisecond // how long "work" on a message takes
	demoPerTick = 3                      // messages the leader enqueues per tick
	demoCronKey = "demo/cron/last-tick"
)

// demo is the shared state of one run of the story.
type demo struct {
	out      io.Writer
	start    time.Time
	mu       sync.Mutex // serializes output
	eps      []string
	enqueued atomic.Int64
	acked    atomic.Int64
	redeliv  atomic.Int64
	cronRuns sync.Map // tick -> replica
	cronDups atomic.Int64
}

func (d *demo) say(who, format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "[%5.1fs] %-10s %s\n", time.Since(d.start).Seconds(), who, fmt.Sprintf(format, a...))
}

// replica is one simulated process.
type replica struct {
	d      *demo
	name   string
	cli    *clientv3.Client
	s      *session.Session
	q      *queue.Queue
	cancel context.CancelFunc
	dead   atomic.Bool
	lead   atomic.Pointer[context.Context] // the leadership's ctx while leading
	claim  atomic.Pointer[string]          // the message being worked on
	ticks  chan int
	tick   atomic.Int64 // the last tick this replica finished handling
	wg     sync.WaitGroup
}

func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", demoHelp, stderr)
	ticks := fs.Int("ticks", 6, "how many cron ticks to run (the crash comes after the third)")
	if code := parse(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 || *ticks < 4 {
		return usageErr(fs, stderr, "demo: takes no arguments, and --ticks of at least 4")
	}
	d := &demo{out: stdout, start: time.Now()}
	if err := d.run(*ticks); err != nil {
		return fail(stderr, "demo: %v", err)
	}
	return 0
}

func (d *demo) run(ticks int) error {
	d.say("etcd", "starting an embedded etcd (in this process, in a temp dir)")
	srv, err := etcdtest.Start(etcdtest.WithoutFsync())
	if err != nil {
		return err
	}
	defer srv.Close()
	d.eps = srv.Endpoints()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := srv.Client().Put(ctx, demoCronKey, fmt.Sprintf("%04d", 0)); err != nil {
		return err
	}
	d.say("etcd", "serving on %s", d.eps[0])

	// The narrator watches the election like 'coord observe demo' would.
	ns, err := session.New(ctx, srv.Client(), session.WithTTL(demoTTL))
	if err != nil {
		return err
	}
	defer ns.Close()
	leaders := make(chan election.Leader, 16)
	go func() {
		for l := range election.New(ns, "demo").Observe(ctx) {
			leaders <- l
		}
	}()

	var reps []*replica
	for i := 1; i <= 3; i++ {
		r, err := d.startReplica(fmt.Sprintf("replica-%d", i))
		if err != nil {
			return err
		}
		defer r.stop()
		reps = append(reps, r)
	}
	d.say("demo", "3 replicas started; each has its own etcd client and session (lease TTL %s)", demoTTL)

	var killedAt time.Time
	var victim *replica
	ticker := time.NewTicker(demoTick)
	defer ticker.Stop()
	for n := 1; n <= ticks; {
		select {
		case l := <-leaders:
			if l.Token == 0 {
				d.say("election", "no leader")
			} else if !killedAt.IsZero() && victim != nil && l.Value != victim.name {
				d.say("election", "%s leads now (token %d), %.1fs after the crash: the dead leader's lease expired", l.Value, l.Token, time.Since(killedAt).Seconds())
			} else {
				d.say("election", "%s leads (token %d)", l.Value, l.Token)
			}
			continue
		case <-ticker.C:
		}
		d.say("clock", "tick %d", n)
		for _, r := range reps {
			if !r.dead.Load() {
				select {
				case r.ticks <- n:
				default:
				}
			}
		}
		if n == 3 {
			victim = d.leaderReplica(ctx, srv.Client(), reps)
			if victim == nil {
				return errors.New("no replica leads after three ticks")
			}
			// Crash only once the leader has enqueued this tick's work: an
			// Enqueue cut off in flight may have committed without saying
			// so, and the story's count of messages would be off by one.
			for wait := time.Now().Add(5 * time.Second); victim.tick.Load() < int64(n) && time.Now().Before(wait); {
				time.Sleep(10 * time.Millisecond)
			}
			id := d.waitClaim(victim)
			killedAt = time.Now()
			d.say("demo", "CRASH: %s, the leader, dies while working on %s: its client is cut off, nothing is released", victim.name, id)
			victim.crash()
		}
		n++
	}
	// Let every live replica finish the last tick (the leader enqueues its
	// work then), and the queue drain, including the message the crashed
	// replica held.
	d.say("demo", "no more ticks; waiting for the queue to drain")
	for _, r := range reps {
		for wait := time.Now().Add(10 * time.Second); !r.dead.Load() && r.tick.Load() < int64(ticks) && time.Now().Before(wait); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	q := queue.New(srv.Client(), "demo-work")
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := q.Len(ctx)
		if err != nil {
			return err
		}
		// Drained: the queue is empty and every Ack has returned to its
		// worker (an Ack applies before its answer arrives, and stopping
		// the replicas then would cancel the answer and lose the count).
		if n == 0 && d.acked.Load() >= d.enqueued.Load() {
			break
		}
		if time.Now().After(deadline) {
			if n == 0 {
				break // the check below says what went wrong
			}
			return fmt.Errorf("queue still holds %d messages", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, r := range reps {
		r.stop()
	}
	var ran, skipped []int
	for n := 1; n <= ticks; n++ {
		if _, ok := d.cronRuns.Load(n); ok {
			ran = append(ran, n)
		} else {
			skipped = append(skipped, n)
		}
	}
	d.say("demo", "done: %d messages enqueued, %d acked (%d redelivered after the crash), none lost", d.enqueued.Load(), d.acked.Load(), d.redeliv.Load())
	d.say("demo", "      the cron job ran once, never twice, in each of ticks %v, whoever was alive", ran)
	if len(skipped) > 0 {
		// A replica that dies holding the cron lock keeps it until its
		// lease runs out (demoTTL): the ticks in between are skipped, not
		// run twice. That is the lock doing its job.
		d.say("demo", "      ticks %v were skipped while the crashed replica's lock lease ran out", skipped)
	}
	if d.acked.Load() != d.enqueued.Load() || d.redeliv.Load() == 0 || d.cronDups.Load() > 0 || len(skipped) > 2 {
		return errors.New("the story did not go as it should (see above)")
	}
	return nil
}

// leaderReplica returns the replica that leads now.
func (d *demo) leaderReplica(ctx context.Context, cli *clientv3.Client, reps []*replica) *replica {
	for range 50 {
		for _, r := range reps {
			if l := r.lead.Load(); l != nil && (*l).Err() == nil {
				return r
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// waitClaim waits (a few seconds at most) until r works on a message, so
// the crash really strands one, and returns it.
func (d *demo) waitClaim(r *replica) string {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if id := r.claim.Load(); id != nil {
			return *id
		}
	}
	return "nothing"
}

func (d *demo) startReplica(name string) (*replica, error) {
	cli, err := etcdtest.NewClient(d.eps)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := session.New(ctx, cli, session.WithTTL(demoTTL))
	if err != nil {
		cancel()
		cli.Close()
		return nil, err
	}
	r := &replica{d: d, name: name, cli: cli, s: s, q: queue.New(cli, "demo-work"), cancel: cancel, ticks: make(chan int, 4)}
	r.wg.Go(func() {
		// election.Run: campaign, lead until the leadership is lost, again.
		_ = election.Run(ctx, cli, "demo", name, func(lctx context.Context) error {
			r.lead.Store(&lctx)
			<-lctx.Done()
			r.lead.Store(nil)
			return nil
		}, election.WithTTL(demoTTL))
	})
	r.wg.Go(func() { r.cron(ctx) })
	r.wg.Go(func() { r.work(ctx) })
	return r, nil
}

// cron runs at every tick on every replica; a lock and a fenced write make
// the job run once per tick across all of them.
func (r *replica) cron(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-r.ticks:
			r.cronTick(ctx, n)
			if l := r.lead.Load(); l != nil && (*l).Err() == nil {
				r.d.say(r.name, "as leader, enqueues \"job %d.1\" to \"job %d.%d\"", n, n, demoPerTick)
			}
			if l := r.lead.Load(); l != nil && (*l).Err() == nil {
				// Not on the leadership's ctx: a leadership lost while an
				// Enqueue is on its way would cancel a request that may
				// still land, and the count would no longer say what is
				// in the queue.
				ectx, cancel := context.WithTimeout(context.WithoutCancel(*l), 5*time.Second)
				for i := range demoPerTick {
					if _, err := r.q.Enqueue(ectx, fmt.Appendf(nil, "job %d.%d", n, i+1)); err == nil {
						r.d.enqueued.Add(1)
					}
				}
				cancel()
			}
			r.tick.Store(int64(n))
		}
	}
}

func (r *replica) cronTick(ctx context.Context, n int) {
	m := lock.NewMutex(r.s, "demo-cron")
	if err := m.TryLock(ctx); err != nil {
		return // another replica has the lock this moment: it runs the job
	}
	defer m.Unlock(context.WithoutCancel(ctx))
	tick := fmt.Sprintf("%04d", n)
	// The write is fenced on holding the lock, and on no one having run
	// this tick yet: a replica that gets the lock later in the tick skips.
	resp, err := r.cli.Txn(ctx).
		If(m.IsOwner(), clientv3.Compare(clientv3.Value(demoCronKey), "<", tick)).
		Then(clientv3.OpPut(demoCronKey, tick)).Commit()
	if err != nil || !resp.Succeeded || r.dead.Load() {
		return
	}
	if _, dup := r.d.cronRuns.LoadOrStore(n, r.name); dup {
		r.d.cronDups.Add(1)
	}
	r.d.say(r.name, "cron job for tick %d runs here (lock token %d)", n, m.Token())
}

// work claims messages and works on them until ctx ends.
func (r *replica) work(ctx context.Context) {
	for {
		m, err := r.q.Claim(ctx, r.s)
		if err != nil {
			return
		}
		what := fmt.Sprintf("%q", m.Payload)
		r.claim.Store(&what)
		if m.Attempt > 1 {
			r.d.redeliv.Add(1)
			r.d.say(r.name, "got %s again (attempt %d): its claim died with the crashed replica", what, m.Attempt)
		}
		select {
		case <-time.After(demoJob):
		case <-ctx.Done():
			return
		}
		r.claim.Store(nil)
		if r.dead.Load() {
			return
		}
		if err := m.Ack(ctx); err == nil {
			r.d.acked.Add(1)
			r.d.say(r.name, "did %s", what)
		}
	}
}

// crash simulates the process dying: the connection goes first, so
// nothing can be resigned, unlocked or acked; the lease expires on its own.
func (r *replica) crash() {
	r.dead.Store(true)
	r.cli.Close()
	r.cancel()
}

func (r *replica) stop() {
	if !r.dead.Swap(true) {
		r.cancel()
		r.wg.Wait()
		r.s.Close()
		r.cli.Close()
		return
	}
	r.wg.Wait()
}
