package schedule

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/etcderr"
	"github.com/coord-go/coord/internal/keys"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Status is what etcd holds about a schedule now.
type Status struct {
	Name string
	// Spec is the spec of the replica that decided last.
	Spec string
	// Paused is set while the schedule is paused, with who paused it and
	// when.
	Paused   bool
	PausedBy string
	PausedAt time.Time
	// Triggered reports a Trigger request that no replica ran yet.
	Triggered bool
	// Last is the latest tick decided (run or skipped); Next the one
	// after it, by Spec (zero if Spec does not parse).
	Last, Next time.Time
	// Runs counts the runs started; Skipped the ticks not run, by reason.
	Runs    int64
	Skipped map[string]int64
	// Running are the runs going now (or waiting for an earlier one).
	Running []Run
	// Replicas are the names of the replicas following the schedule.
	Replicas []string
}

// History returns the schedule's recorded runs, newest first: the last
// WithHistory of them, and any still going. A run whose replica's session
// ended before another replica recorded it is returned as Crashed. It
// returns ErrNotFound for a schedule that no replica ever ran.
func (s *Schedule) History(ctx context.Context) ([]Run, error) {
	_, hist, err := s.read(ctx)
	return hist, err
}

// Status returns the schedule's state. It returns ErrNotFound for a
// schedule that no replica ever ran.
func (s *Schedule) Status(ctx context.Context) (Status, error) {
	st, _, err := s.read(ctx)
	return st, err
}

func (s *Schedule) read(ctx context.Context) (Status, []Run, error) {
	if s.err != nil {
		return Status{}, nil, s.err
	}
	var kvs []*mvccpb.KeyValue
	err := scan(ctx, s.cli, s.sp.Base(), keys.RangeEnd(s.sp.Base()), func(kv *mvccpb.KeyValue) { kvs = append(kvs, kv) })
	if err != nil {
		return Status{}, nil, fmt.Errorf("%s: %w", s.label, err)
	}
	st, hist, ok := parseStatus(s.sp, kvs)
	if !ok {
		return Status{}, nil, fmt.Errorf("%s: %w", s.label, ErrNotFound)
	}
	return st, hist, nil
}

// List returns the status of every schedule under the root prefix
// (WithPrefix; other options are ignored) that a replica ever ran, by
// name. Its reads are bounded by the schedules' sizes: each keeps its
// state, its history and its live runs and replicas.
func List(ctx context.Context, cli *clientv3.Client, opts ...Option) ([]Status, error) {
	o := options{root: keys.DefaultRoot}
	for _, opt := range opts {
		opt(&o)
	}
	if cli == nil {
		return nil, fmt.Errorf("%w: nil etcd client", ErrInvalid)
	}
	root, err := keys.NormalizeRoot(o.root)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	pre := root + keys.KindSchedule + "/"
	var out []Status
	var cur keys.Space
	var kvs []*mvccpb.KeyValue
	flush := func() {
		if kvs != nil {
			if st, _, ok := parseStatus(cur, kvs); ok {
				out = append(out, st)
			}
		}
		kvs = nil
	}
	err = scan(ctx, cli, pre, keys.RangeEnd(pre), func(kv *mvccpb.KeyValue) {
		if kvs != nil && strings.HasPrefix(string(kv.Key), cur.Base()) {
			kvs = append(kvs, kv)
			return
		}
		flush()
		esc, _, _ := strings.Cut(strings.TrimPrefix(string(kv.Key), pre), "/")
		name, err := keys.Unescape(esc)
		if err != nil {
			return
		}
		if cur, err = keys.New(root, keys.KindSchedule, name); err != nil {
			return
		}
		kvs = []*mvccpb.KeyValue{kv}
	})
	if err != nil {
		return nil, fmt.Errorf("schedule: list: %w", err)
	}
	flush()
	return out, nil
}

// scan reads [from, end) a page at a time, at one revision.
func scan(ctx context.Context, cli *clientv3.Client, from, end string, fn func(*mvccpb.KeyValue)) error {
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(512)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := cli.Get(ctx, from, opts...)
		if err != nil {
			return etcderr.Explain(cli, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			fn(kv)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// parseStatus reads one schedule's keys; ok is false when it has no state.
func parseStatus(sp keys.Space, kvs []*mvccpb.KeyValue) (st Status, hist []Run, ok bool) {
	st.Name = sp.Name()
	runs := map[string]int64{} // run key -> create revision
	for _, kv := range kvs {
		if strings.HasPrefix(string(kv.Key), sp.Part(partRun)) {
			runs[string(kv.Key)] = kv.CreateRevision
		}
	}
	for _, kv := range kvs {
		k := string(kv.Key)
		switch {
		case k == sp.Single(leafState):
			s, err := decodeState(kv.Value)
			if err != nil {
				continue
			}
			ok = true
			st.Spec, st.Last, st.Runs, st.Skipped = s.Spec, s.Last, s.Seq, s.Skipped
			st.Triggered = s.Trigger != nil
			if s.Paused != nil {
				st.Paused, st.PausedBy, st.PausedAt = true, s.Paused.By, s.Paused.At
			}
			if spec, err := ParseSpec(s.Spec); err == nil && !s.Last.IsZero() {
				st.Next = spec.Next(s.Last)
			}
		case strings.HasPrefix(k, sp.Part(partHistory)):
			r, err := decodeRun(kv.Value)
			if err != nil {
				continue
			}
			if r.Outcome == Running {
				if rev, live := runs[r.Key]; live && rev == kv.ModRevision {
					r.Token = rev
					st.Running = append(st.Running, r)
				} else {
					r.Outcome, r.Token, r.Key = Crashed, kv.ModRevision, ""
					r.Error = fmt.Sprintf("the session of replica %s ended while the run was going (not yet recorded by another replica)", r.Replica)
				}
			}
			hist = append(hist, r)
		case strings.HasPrefix(k, sp.Part(partMember)):
			if rec, err := keys.DecodeRecord(kv.Value); err == nil {
				st.Replicas = append(st.Replicas, rec.Value)
			}
		}
	}
	slices.SortFunc(hist, func(a, b Run) int { return cmp.Compare(b.Seq, a.Seq) })
	slices.SortFunc(st.Running, func(a, b Run) int { return cmp.Compare(a.Seq, b.Seq) })
	slices.Sort(st.Replicas)
	return st, hist, ok
}

// ParseSpec reads a spec as Spec.String writes it: "every 1m0s", or a
// cron expression (with its CRON_TZ= zone).
func ParseSpec(s string) (Spec, error) {
	if d, ok := strings.CutPrefix(s, "every "); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return Spec{}, fmt.Errorf("%w: %q: %v", ErrInvalidSpec, s, err)
		}
		sp := Every(dur)
		return sp, sp.Err()
	}
	sp := Cron(s)
	return sp, sp.Err()
}
