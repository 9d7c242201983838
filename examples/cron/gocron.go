package main

import (
	"context"
	"errors"
	"time"

	coordgocron "github.com/coord-go/coord/contrib/gocron"
	"github.com/coord-go/coord/election"
	"github.com/coord-go/coord/session"
	"github.com/go-co-op/gocron/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// lockerScheduler runs the job on a gocron scheduler that locks it with
// coord. It returns when ctx or the session ends.
func lockerScheduler(ctx context.Context, s *session.Session, id string, c config, out *output) error {
	locker := coordgocron.NewLocker(s)
	err := every(ctx, s.Done(), c, gocron.WithDistributedLocker(locker), func(ctx context.Context, tick time.Time) {
		if m := locker.Held(c.name); m != nil {
			job(ctx, s.Client(), c, id, tick, m.Token(), m.IsOwner(), out)
		}
	})
	return errors.Join(err, s.Err()) // s.Err says why, when the session ended
}

// electorScheduler runs the job on a gocron scheduler that runs jobs only
// while this replica leads the coord election for the job.
func electorScheduler(ctx context.Context, cli *clientv3.Client, id string, c config, out *output) error {
	e := coordgocron.NewElector(cli, c.name, id, election.WithTTL(c.ttl))
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ectx) }()
	err := every(ctx, ectx.Done(), c, gocron.WithDistributedElector(e), func(ctx context.Context, tick time.Time) {
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

// every runs fn every c.every on a gocron scheduler with opt, starting
// at the next multiple of c.every so that every replica's ticks line up,
// until ctx ends or stop closes.
func every(ctx context.Context, stop <-chan struct{}, c config, opt gocron.SchedulerOption, fn func(context.Context, time.Time)) error {
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
