package gocron

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/coord-go/coord/election"
	gocron "github.com/go-co-op/gocron/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNotLeader is returned by IsLeader while this replica does not lead,
// which makes gocron skip the run.
var ErrNotLeader = errors.New("coord gocron: not the leader")

// Elector is a gocron.Elector on a coord election: only the scheduler of
// the replica that leads runs jobs. Run keeps it campaigning. See the
// package doc for what it promises at a handover.
type Elector struct {
	cli      *clientv3.Client
	name, id string
	opts     []election.Option
	token    atomic.Int64
}

var _ gocron.Elector = (*Elector)(nil)

// NewElector returns an Elector for the election called name, in which
// this replica campaigns as id. It does nothing until Run.
func NewElector(cli *clientv3.Client, name, id string, opts ...election.Option) *Elector {
	return &Elector{cli: cli, name: name, id: id, opts: opts}
}

// Run campaigns until ctx ends, again with a new session after every loss
// (see election.Run), and returns ctx's error or election.Run's.
func (e *Elector) Run(ctx context.Context) error {
	return election.Run(ctx, e.cli, e.name, e.id, func(ctx context.Context) error {
		token, _ := election.TokenFrom(ctx)
		e.token.Store(token)
		defer e.token.Store(0)
		<-ctx.Done()
		return nil
	}, e.opts...)
}

// IsLeader returns nil while this replica leads, else ErrNotLeader.
func (e *Elector) IsLeader(context.Context) error {
	if e.token.Load() == 0 {
		return ErrNotLeader
	}
	return nil
}

// Token returns the leadership's fencing token, 0 while not leading.
func (e *Elector) Token() int64 { return e.token.Load() }
