package queue_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tracker watches handlers: no message handled by two claims at once, and
// how often each was handled and finished well.
type tracker struct {
	t       *testing.T
	mu      sync.Mutex
	running map[string]int64 // message id → claim token handling it
	ok      map[string]int   // handler returned nil
	runs    map[string]int
	overlap []string
}

func newTracker(t *testing.T) *tracker {
	return &tracker{t: t, running: map[string]int64{}, ok: map[string]int{}, runs: map[string]int{}}
}

func (k *tracker) start(m *queue.Message) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if tok, busy := k.running[m.ID]; busy {
		k.overlap = append(k.overlap, fmt.Sprintf("%s by tokens %d and %d", m.ID, tok, m.Token()))
	}
	k.running[m.ID] = m.Token()
	k.runs[m.ID]++
}

func (k *tracker) end(m *queue.Message, ok bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.running, m.ID)
	if ok {
		k.ok[m.ID]++
	}
}

// outcome is a pseudo-random fate for one attempt of one message, the
// same in every run.
func outcome(id string, attempt int) int {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", id, attempt)
	return int(h.Sum32() % 100)
}

// A pool of 8 workers over 2,000 messages whose handler fails 10% of the
// time and panics 1% (and always, for 1 message in 200, half of them by
// panicking): every message is acked exactly once or dead-lettered with
// its reason and last error, none is lost, and none is handled by two
// live claims at once.
func TestConsumePoolFailuresAndPanics(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 200*time.Second)
	name := qname(t, "pool")
	const n = 2000
	q := queue.New(srv.Client(), name, queue.WithConfig(queue.Config{MaxAttempts: 3,
		Backoff: queue.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond, Jitter: 0.5}}))
	var ids []string
	for i := 0; i < n; i += 50 {
		var batch []queue.Entry
		for j := i; j < i+50; j++ {
			batch = append(batch, queue.Entry{Payload: []byte(fmt.Sprint(j))})
		}
		got, err := q.EnqueueBatch(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	k := newTracker(t)
	var handled atomic.Int64
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 2)
	// Two processes' worth of consumers: two sessions of 4 workers.
	for range 2 {
		s := newSession(t)
		go func() {
			done <- q.Consume(cctx, s, func(ctx context.Context, m *queue.Message) error {
				k.start(m)
				fate := outcome(m.ID, m.Attempt)
				var i int
				fmt.Sscan(string(m.Payload), &i)
				switch i % 200 {
				case 7:
					fate = 0 // always panics
				case 13:
					fate = 5 // always fails
				}
				switch {
				case fate < 1:
					k.end(m, false)
					panic("the handler broke")
				case fate < 11:
					k.end(m, false)
					return errors.New("the handler failed")
				}
				k.end(m, true)
				handled.Add(1)
				return nil
			}, queue.WithWorkers(4), queue.WithBatch(4))
		}()
	}
	// Wait until every message is acked or dead.
	// Generous: on a quiet machine it takes a few seconds, under -race
	// on a loaded 2-core one over a minute.
	deadline := time.Now().Add(150 * time.Second)
	for {
		st, err := q.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Ready+st.Claimed+st.Delayed == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done within 150s: %+v", st)
		}
		select {
		case err := <-done:
			t.Fatalf("Consume returned %v with %+v left", err, st)
		case <-time.After(20 * time.Millisecond): // polling the queue's counts, with a deadline
		}
	}
	stop()
	for range 2 {
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Consume = %v, want context.Canceled", err)
		}
	}
	dead, err := q.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	isDead := map[string]queue.DeadLetter{}
	for _, d := range dead {
		isDead[d.ID] = d
		if d.Attempts != 3 || (d.Reason != queue.ReasonMaxAttempts && d.Reason != queue.ReasonPanic) || d.LastError == "" || len(d.Claimed) != 3 || d.Died.IsZero() {
			t.Errorf("dead letter %s: attempts %d, reason %q, last error %q, %d claim times, died %v", d.ID, d.Attempts, d.Reason, d.LastError, len(d.Claimed), d.Died)
		}
		if d.Reason == queue.ReasonPanic && !strings.Contains(d.LastError, "panic: the handler broke") {
			t.Errorf("dead letter %s died of a panic but says %q", d.ID, d.LastError)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range k.overlap {
		t.Errorf("handled by two claims at once: %s", o)
	}
	for _, id := range ids {
		_, d := isDead[id]
		switch {
		case d && k.ok[id] != 0:
			t.Errorf("message %s acked and dead", id)
		case !d && k.ok[id] != 1:
			t.Errorf("message %s acked %d times, want exactly once", id, k.ok[id])
		}
	}
	t.Logf("%d messages: %d acked, %d dead (%d handler runs)", n, handled.Load(), len(dead), func() (r int) {
		for _, v := range k.runs {
			r += v
		}
		return
	}())
	if len(dead) < 2*n/200 || int(handled.Load())+len(dead) != n {
		t.Fatalf("%d acked and %d dead of %d", handled.Load(), len(dead), n)
	}
}

// Shutting down mid-run loses nothing: messages claimed and not started
// go back to their place (their attempt not counted), and the running
// ones, once the drain timeout passes, are given back at once, claimable
// by another consumer long before the session's TTL would have freed them.
func TestConsumeShutdownGivesBackAtOnce(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	name := qname(t, "shutdown")
	q := queue.New(srv.Client(), name)
	const n = 20
	for i := range n {
		enqueue(t, q, fmt.Sprint(i))
	}
	s, err := session.New(ctx, srv.Client(), session.WithTTL(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	started := make(chan *queue.Message, n)
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, s, func(ctx context.Context, m *queue.Message) error {
			started <- m
			<-ctx.Done() // a handler that runs until it is cut off
			return ctx.Err()
		}, queue.WithWorkers(4), queue.WithBatch(8), queue.WithDrainTimeout(200*time.Millisecond))
	}()
	var running []*queue.Message
	for range 4 {
		select {
		case m := <-started:
			running = append(running, m)
		case <-time.After(10 * time.Second):
			t.Fatal("the workers did not start")
		}
	}
	stop()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Consume = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return within 10s of its ctx ending (drain timeout 200ms)")
	}
	for _, m := range running {
		select {
		case <-m.Done():
		default:
			t.Errorf("message %s still claimed after Consume returned", m.ID)
		}
	}
	// Another consumer gets all 20 now, the session of the first still
	// alive (TTL 60s): 4 on their second attempt, the rest on their first.
	s2 := newSession(t)
	seen := map[string]int{}
	for range n {
		m := claim(t, q, s2, 5*time.Second)
		seen[m.ID] = m.Attempt
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range running {
		if seen[m.ID] != 2 {
			t.Errorf("message %s cut off at attempt 1 came back at attempt %d", m.ID, seen[m.ID])
		}
	}
	second := 0
	for _, a := range seen {
		if a == 2 {
			second++
		}
	}
	if len(seen) != n || second != len(running) {
		t.Fatalf("claimed %d messages, %d on a second attempt; want %d and %d", len(seen), second, n, len(running))
	}
}

// Bad options are ErrInvalid, before anything is claimed.
func TestConsumeBadInput(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 10*time.Second)
	q := queue.New(srv.Client(), qname(t, "bad"))
	s := newSession(t)
	h := func(context.Context, *queue.Message) error { return nil }
	for _, c := range []struct {
		what string
		err  error
	}{
		{"zero workers", q.Consume(ctx, s, h, queue.WithWorkers(0))},
		{"batch too big", q.Consume(ctx, s, h, queue.WithBatch(queue.MaxBatch+1))},
		{"negative drain", q.Consume(ctx, s, h, queue.WithDrainTimeout(-time.Second))},
		{"negative claim timeout", q.Consume(ctx, s, h, queue.WithClaimTimeout(-time.Second))},
		{"nil handler", q.Consume(ctx, s, nil)},
		{"nil session", q.Consume(ctx, nil, h)},
	} {
		if !errors.Is(c.err, queue.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.what, c.err)
		}
	}
	if _, err := q.ClaimN(ctx, s, 0); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("ClaimN(0): %v", err)
	}
}

// A handler stuck past the claim timeout (ignoring its ctx) loses its
// message to another worker at once, its session alive for a minute; a
// handler that extends its claim keeps it; Extend outside a timeout is
// ErrInvalid; a message whose every attempt times out dies with
// ReasonTimeout.
func TestConsumeClaimTimeout(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	name := qname(t, "timeout")
	q := queue.New(srv.Client(), name, queue.WithConfig(queue.Config{MaxAttempts: 2,
		Backoff: queue.Backoff{Min: time.Millisecond, Max: time.Millisecond}}))
	stuck, long, doomed := enqueue(t, q, "stuck"), enqueue(t, q, "long"), enqueue(t, q, "doomed")
	s, err := session.New(ctx, srv.Client(), session.WithTTL(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := make(chan struct{}) // lets the stuck handlers return at the end
	var mu sync.Mutex
	attempts := map[string][]int{}
	var timeoutCause, extendAfter error
	acked := make(chan string, 10)
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, s, func(ctx context.Context, m *queue.Message) error {
			mu.Lock()
			attempts[m.ID] = append(attempts[m.ID], m.Attempt)
			mu.Unlock()
			switch {
			case m.ID == long:
				// Four times the timeout, extended as it goes.
				for range 8 {
					if err := m.Extend(time.Second); err != nil {
						return err
					}
					select {
					case <-time.After(100 * time.Millisecond): // the job's work
					case <-ctx.Done():
						return ctx.Err()
					}
				}
			case m.ID == doomed || m.Attempt == 1:
				<-ctx.Done()
				mu.Lock()
				timeoutCause = context.Cause(ctx)
				mu.Unlock()
				<-release // stuck: it ignores its cancelled ctx
				mu.Lock()
				extendAfter = m.Extend(time.Second)
				mu.Unlock()
				return nil
			}
			acked <- m.ID
			return nil
		}, queue.WithWorkers(6), queue.WithClaimTimeout(200*time.Millisecond))
	}()
	got := map[string]bool{}
	for len(got) < 2 {
		select {
		case id := <-acked:
			got[id] = true
		case <-time.After(20 * time.Second):
			t.Fatalf("acked %v within 20s, want the stuck and the long message (session TTL 60s)", got)
		}
	}
	if !got[stuck] || !got[long] {
		t.Fatalf("acked %v", got)
	}
	waitFor(t, 20*time.Second, "the doomed message dead-lettered", func() bool {
		dl, err := q.DeadLetter(ctx, doomed)
		return err == nil && dl.Reason == queue.ReasonTimeout
	})
	close(release)
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if a := attempts[stuck]; len(a) != 2 || a[1] != 2 {
		t.Errorf("stuck message attempts %v, want [1 2]", a)
	}
	if a := attempts[long]; len(a) != 1 {
		t.Errorf("extended message attempts %v, want one", a)
	}
	if !errors.Is(timeoutCause, queue.ErrClaimTimeout) {
		t.Errorf("stuck handler's ctx cause %v, want ErrClaimTimeout", timeoutCause)
	}
	if !errors.Is(extendAfter, queue.ErrClaimTimeout) {
		t.Errorf("Extend after the timeout: %v, want ErrClaimTimeout", extendAfter)
	}
	m := claimAfterEnqueue(t, q, s)
	if err := m.Extend(time.Second); !errors.Is(err, queue.ErrInvalid) {
		t.Errorf("Extend on a Claim's message: %v, want ErrInvalid", err)
	}
}

func claimAfterEnqueue(t *testing.T, q *queue.Queue, s *session.Session) *queue.Message {
	t.Helper()
	enqueue(t, q, "plain")
	return claim(t, q, s, 5*time.Second)
}

// A message claimed ahead of a free worker whose claim ends while it
// waits (here its claim key is deleted behind the consumer's back) is not
// handed to a handler: a handler starts only on a claim that still holds,
// never after another claim of the same message could have been granted.
func TestClaimedAheadRunsOnlyOnALiveClaim(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t, 60*time.Second)
	name := qname(t, "ahead")
	q := queue.New(srv.Client(), name)
	for i := range 3 {
		enqueue(t, q, fmt.Sprintf("m%d", i))
	}
	s := newSession(t)
	claimPrefix := "coord/queue/" + name + "/c/"
	claims := func() map[string]int64 { // message id -> create revision of its claim key
		resp, err := srv.Client().Get(ctx, claimPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, kv := range resp.Kvs {
			id, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), claimPrefix), "/")
			out[id] = kv.CreateRevision
		}
		return out
	}
	first := make(chan *queue.Message, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	var started []string
	var stale []string
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- q.Consume(cctx, s, func(hctx context.Context, m *queue.Message) error {
			if tok, ok := claims()[m.ID]; !ok || tok != m.Token() {
				mu.Lock()
				stale = append(stale, fmt.Sprintf("%s (token %d)", m.Payload, m.Token()))
				mu.Unlock()
			}
			mu.Lock()
			started = append(started, string(m.Payload))
			n := len(started)
			mu.Unlock()
			if n == 1 {
				first <- m
				<-release
			}
			return nil
		}, queue.WithWorkers(1), queue.WithBatch(4))
	}()
	m := <-first
	// The other two are claimed ahead while the one worker is busy.
	eventually(t, 10*time.Second, "two messages claimed ahead", func() bool { return len(claims()) == 3 })
	before := claims()
	var victim string
	var victimTok int64
	for id, tok := range before {
		if id != m.ID {
			victim, victimTok = id, tok
			break
		}
	}
	resp, err := srv.Client().Get(ctx, claimPrefix+victim+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("claim key of %s: %v %v", victim, resp, err)
	}
	if _, err := srv.Client().Delete(ctx, string(resp.Kvs[0].Key)); err != nil {
		t.Fatal(err)
	}
	// The consumer sees the claim gone and the message put back, and
	// claims it again (a new claim), while the first handler still runs.
	eventually(t, 10*time.Second, "the message claimed again", func() bool {
		tok, ok := claims()[victim]
		return ok && tok != victimTok
	})
	close(release)
	eventually(t, 10*time.Second, "all three handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(started) >= 3
	})
	stop()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(stale) > 0 {
		t.Fatalf("handlers started on claims that had ended: %v (all starts: %v)", stale, started)
	}
}
