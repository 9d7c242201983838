package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/lock"
	"github.com/coord-go/coord/session"
	"github.com/go-co-op/gocron/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Locker is a gocron.Locker on coord locks: a job runs on the replica
// whose scheduler takes its lock, and is skipped by the others. A replica
// whose clock lags can still take the lock after the first has released
// it, so the job must check that its tick has not run yet (job does).
type Locker struct {
	s    *session.Session
	mu   sync.Mutex
	held map[string]*lock.Mutex
}

// NewLocker returns a Locker whose locks live on s.
func NewLocker(s *session.Session) *Locker {
	return &Locker{s: s, held: map[string]*lock.Mutex{}}
}

// Lock takes the lock called key (gocron passes the job's name) without
// waiting: lock.ErrLocked makes gocron skip this run. *lock.Mutex is a
// gocron.Lock as it is: gocron calls its Unlock after the run.
func (l *Locker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	m := lock.NewMutex(l.s, key)
	if err := m.TryLock(ctx); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.held[key] = m
	l.mu.Unlock()
	return m, nil
}

// Held returns the lock taken for key, so that the job can fence its
// writes with its IsOwner and Token.
func (l *Locker) Held(key string) *lock.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[key]
}

// errNotLeader makes gocron skip a run on a replica that does not lead.
var errNotLeader = errors.New("cron: not the leader")

// Elector is a gocron.Elector on a coord election: only the scheduler of
// the replica that leads runs jobs. Run keeps it campaigning.
type Elector struct{ token atomic.Int64 }

// IsLeader returns nil while this replica leads.
func (e *Elector) IsLeader(context.Context) error {
	if e.token.Load() == 0 {
		return errNotLeader
	}
	return nil
}

// Token is the fencing token of the leadership, or 0.
func (e *Elector) Token() int64 { return e.token.Load() }

// Run campaigns for name until ctx ends (see election.Run).
func (e *Elector) Run(ctx context.Context, cli *clientv3.Client, name, id string, opts ...election.Option) error {
	return election.Run(ctx, cli, name, id, func(ctx context.Context) error {
		token, _ := election.TokenFrom(ctx)
		e.token.Store(token)
		<-ctx.Done()
		e.token.Store(0)
		return nil
	}, opts...)
}

// lockerScheduler runs the job on a gocron scheduler that locks it with
// coord. It returns when ctx or the session ends.
func lockerScheduler(ctx context.Context, s *session.Session, id string, c config, out *output) error {
	locker := NewLocker(s)
	err := schedule(ctx, s.Done(), c, gocron.WithDistributedLocker(locker), func(ctx context.Context, tick time.Time) {
		if m := locker.Held(c.name); m != nil {
			job(ctx, s.Client(), c, id, tick, m.Token(), m.IsOwner(), out)
		}
	})
	return errors.Join(err, s.Err()) // s.Err says why, when the session ended
}

// electorScheduler runs the job on a gocron scheduler that runs jobs only
// while this replica leads the coord election for the job.
func electorScheduler(ctx context.Context, cli *clientv3.Client, id string, c config, out *output) error {
	var e Elector
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ectx, cli, c.name, id, election.WithTTL(c.ttl)) }()
	err := schedule(ctx, ectx.Done(), c, gocron.WithDistributedElector(&e), func(ctx context.Context, tick time.Time) {
		// No IsOwner here: a leader that lost its leadership since
		// IsLeader is fenced by its token alone.
		if token := e.Token(); token != 0 {
			job(ctx, cli, c, id, tick, token, clientv3.Cmp{}, out)
		}
	})
	cancel()
	if rerr := <-done; ctx.Err() == nil {
		return rerr
	}
	return err
}

// schedule runs fn every c.every on a gocron scheduler with opt, starting
// at the next multiple of c.every so that every replica's ticks line up,
// until ctx ends or stop closes.
func schedule(ctx context.Context, stop <-chan struct{}, c config, opt gocron.SchedulerOption, fn func(context.Context, time.Time)) error {
	sched, err := gocron.NewScheduler(opt)
	if err != nil {
		return err
	}
	start := time.Now().Truncate(c.every).Add(c.every)
	_, err = sched.NewJob(gocron.DurationJob(c.every),
		gocron.NewTask(func(ctx context.Context) { fn(ctx, time.Now().Truncate(c.every)) }),
		gocron.WithName(c.name),
		gocron.WithStartAt(gocron.WithStartDateTime(start)))
	if err != nil {
		return err
	}
	sched.Start()
	select {
	case <-ctx.Done():
	case <-stop:
	}
	return sched.Shutdown()
}
