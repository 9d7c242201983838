package schedule_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/coord-go/coord/etcdtest"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/schedule"
	"github.com/coord-go/coord/session"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPauseResumeTrigger pauses a running schedule for the fleet (its
// ticks are skipped as paused, and nothing runs), triggers a run while
// paused (it runs once, at once), and resumes it.
func TestPauseResumeTrigger(t *testing.T) {
	t.Parallel()
	w := newWorld(at(0).Add(100 * time.Millisecond))
	f := newFleet(t, w, schedule.Every(time.Second), schedule.WithSkewTolerance(100*time.Millisecond))
	f.join("a", fixed(0))
	f.join("b", fixed(-50*time.Millisecond))
	runTo(t, f, 1)
	f.idle(t)
	ctl := schedule.New(srv.Client(), f.name, f.spec)
	ctx := etcdtest.Context(t, 10*time.Second)
	if err := ctl.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	runTo(t, f, 2)
	runTo(t, f, 3)
	if n := len(f.ran()); n != 1 {
		t.Fatalf("%d runs while paused, want only tick 1's", n)
	}
	st := f.status(t)
	if !st.Paused || st.Skipped[schedule.SkipPaused] != 2 {
		t.Fatalf("status %+v: want paused, 2 ticks skipped as paused", st)
	}
	if err := ctl.Trigger(ctx); err != nil {
		t.Fatal(err)
	}
	until(t, 10*time.Second, "the triggered run", f.changed, func() bool { return len(f.ran()) == 2 })
	if r := f.ran()[1]; !r.tick.Trigger || r.tick.Seq != 2 {
		t.Errorf("triggered run %+v", r.tick)
	}
	f.idle(t)
	if err := ctl.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	runTo(t, f, 4)
	until(t, 10*time.Second, "tick 4 run", f.changed, func() bool { return len(f.ran()) == 3 })
	if r := f.ran()[2]; !r.tick.Time.Equal(at(4)) {
		t.Errorf("after resume ran %v, want tick 4", r.tick.Time)
	}
	if st := f.status(t); st.Paused || st.Triggered || st.Runs != 3 || len(st.Replicas) != 2 {
		t.Errorf("status %+v", st)
	}
}

// TestBadInput: every bad argument is a documented sentinel, from Run and
// from the control methods, and leaves no key behind.
func TestBadInput(t *testing.T) {
	t.Parallel()
	cli := srv.Client()
	root := "bad-" + etcdtest.Name(t) + "/"
	ctx := etcdtest.Context(t, 20*time.Second)
	s, err := session.New(ctx, cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	every := schedule.Every(time.Second)
	in := schedule.WithPrefix(root)
	fn := func(context.Context, schedule.Tick) error { return nil }
	for _, tc := range []struct {
		what  string
		sched *schedule.Schedule
		want  error
	}{
		{"empty name", schedule.New(cli, "", every, in), schedule.ErrInvalid},
		{"bad UTF-8 name", schedule.New(cli, "\xff", every, in), keys.ErrInvalidName},
		{"zero interval", schedule.New(cli, "x", schedule.Every(0), in), schedule.ErrInvalidSpec},
		{"negative interval", schedule.New(cli, "x", schedule.Every(-time.Second), in), schedule.ErrInvalidSpec},
		{"zero spec", schedule.New(cli, "x", schedule.Spec{}, in), schedule.ErrInvalidSpec},
		{"bad cron", schedule.New(cli, "x", schedule.Cron("61 * * * *"), in), schedule.ErrInvalidSpec},
		{"six fields", schedule.New(cli, "x", schedule.Cron("0 0 * * * *"), in), schedule.ErrInvalidSpec},
		{"@every", schedule.New(cli, "x", schedule.Cron("@every 1m"), in), schedule.ErrInvalidSpec},
		{"never fires", schedule.New(cli, "x", schedule.Cron("0 0 30 2 *"), in), schedule.ErrInvalidSpec},
		{"empty cron", schedule.New(cli, "x", schedule.Cron(""), in), schedule.ErrInvalidSpec},
		{"unknown CRON_TZ", schedule.New(cli, "x", schedule.Cron("CRON_TZ=Mars/Olympus 0 3 * * *"), in), schedule.ErrUnknownTimeZone},
		{"CRON_TZ alone", schedule.New(cli, "x", schedule.Cron("CRON_TZ="), in), schedule.ErrUnknownTimeZone},
		{"unknown WithTimeZone", schedule.New(cli, "x", schedule.Cron("0 3 * * *"), in, schedule.WithTimeZone("Nowhere/Town")), schedule.ErrUnknownTimeZone},
		{"nil client", schedule.New(nil, "x", every, in), schedule.ErrInvalid},
		{"bad history", schedule.New(cli, "x", every, in, schedule.WithHistory(0)), schedule.ErrInvalid},
		{"negative jitter", schedule.New(cli, "x", every, in, schedule.WithJitter(-1)), schedule.ErrInvalid},
		{"bad policy", schedule.New(cli, "x", every, in, schedule.WithOverlap(9)), schedule.ErrInvalid},
		{"nil clock", schedule.New(cli, "x", every, in, schedule.WithClock(nil)), schedule.ErrInvalid},
		{"bad root", schedule.New(cli, "x", every, schedule.WithPrefix("a/lock/")), schedule.ErrInvalid},
		{"other root than the session", schedule.New(cli, "x", every), schedule.ErrInvalid},
	} {
		if err := tc.sched.Run(ctx, s, fn); !errors.Is(err, tc.want) {
			t.Errorf("%s: Run: %v, want %v", tc.what, err, tc.want)
		}
		if tc.what == "other root than the session" {
			continue
		}
		for op, f := range map[string]func(context.Context) error{"Pause": tc.sched.Pause, "Trigger": tc.sched.Trigger} {
			if err := f(ctx); !errors.Is(err, tc.want) {
				t.Errorf("%s: %s: %v, want %v", tc.what, op, err, tc.want)
			}
		}
	}
	ok := schedule.New(cli, "never-ran", every, in)
	for op, f := range map[string]func(context.Context) error{"Pause": ok.Pause, "Resume": ok.Resume, "Trigger": ok.Trigger} {
		if err := f(ctx); !errors.Is(err, schedule.ErrNotFound) {
			t.Errorf("%s on a schedule never run: %v, want ErrNotFound", op, err)
		}
	}
	if _, err := ok.History(ctx); !errors.Is(err, schedule.ErrNotFound) {
		t.Errorf("History of a schedule never run: %v", err)
	}
	if err := ok.Run(ctx, nil, fn); !errors.Is(err, schedule.ErrInvalid) {
		t.Errorf("nil session: %v", err)
	}
	if err := ok.Run(ctx, s, nil); !errors.Is(err, schedule.ErrInvalid) {
		t.Errorf("nil fn: %v", err)
	}
	closed, err := session.New(ctx, cli, session.WithPrefix(root))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if err := ok.Run(ctx, closed, fn); !errors.Is(err, session.ErrClosed) {
		t.Errorf("closed session: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ok.Run(cctx, s, fn); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	resp, err := cli.Get(ctx, root+keys.KindSchedule+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d schedule keys left behind by bad input", resp.Count)
	}
}

// TestCronSpec checks ticks of cron specs in zones, and Every's alignment.
func TestCronSpec(t *testing.T) {
	t.Parallel()
	from := time.Date(2030, 3, 30, 23, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		spec schedule.Spec
		want time.Time
	}{
		{schedule.Cron("0 3 * * *"), time.Date(2030, 3, 31, 3, 0, 0, 0, time.UTC)},
		// Berlin moves to summer time at 02:00 on 31 March 2030: 03:00 CEST is 01:00 UTC.
		{schedule.Cron("CRON_TZ=Europe/Berlin 0 3 * * *"), time.Date(2030, 3, 31, 1, 0, 0, 0, time.UTC)},
		{schedule.Cron("@hourly"), time.Date(2030, 3, 31, 0, 0, 0, 0, time.UTC)},
		{schedule.Every(7 * time.Minute), time.Unix(0, (from.UnixNano()/int64(7*time.Minute)+1)*int64(7*time.Minute))},
	} {
		if err := tc.spec.Err(); err != nil {
			t.Fatal(err)
		}
		if got := tc.spec.Next(from); !got.Equal(tc.want) {
			t.Errorf("%v: next after %v is %v, want %v", tc.spec, from, got, tc.want)
		}
		again, err := schedule.ParseSpec(tc.spec.String())
		if err != nil || !again.Next(from).Equal(tc.want) {
			t.Errorf("%v does not read back from %q: %v", tc.spec, tc.spec.String(), err)
		}
	}
}
