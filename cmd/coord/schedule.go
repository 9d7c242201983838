package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coord-go/coord/schedule"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func init() {
	register("schedule", "list schedules, show a history, pause, resume or trigger one (list|history|pause|resume|trigger)", runSchedule)
}

const scheduleHelp = `usage: coord schedule SUBCOMMAND [NAME] [flags]

subcommands:
  list                 every schedule under the root: spec, state, replicas, runs, last and next tick
  history NAME         the schedule's recorded runs, newest first
  pause NAME           pause the schedule for the whole fleet: its ticks are skipped until resume
  resume NAME          end a pause
  trigger NAME         run the schedule once, now, on one replica (even while paused)

Schedules are package schedule's; their replicas run in your programs.
pause, resume and trigger exit 1 for a schedule no replica ever ran.

Run 'coord schedule SUBCOMMAND -h' for its flags.
`

func runSchedule(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, scheduleHelp)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	sub, ok := map[string]func([]string, io.Writer, io.Writer) int{
		"list": scheduleList, "history": scheduleHistory,
		"pause": scheduleControl("pause"), "resume": scheduleControl("resume"), "trigger": scheduleControl("trigger"),
	}[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "coord schedule: unknown subcommand %q; run 'coord schedule -h' for usage\n", args[0])
		return exitUsage
	}
	return sub(args[1:], stdout, stderr)
}

// scheduleFlags are the flags every schedule subcommand shares.
type scheduleFlags struct {
	conn   connFlags
	prefix string
	out    outputFlag
}

// open parses args, checks them and connects; want is 0 or 1 (NAME).
func (f *scheduleFlags) open(fs *flagSet, args []string, want int) (name string, cli *clientv3.Client, code int) {
	f.conn.register(fs)
	registerPrefix(fs, &f.prefix)
	f.out.register(fs)
	pos, argv, code := splitArgs(fs, args)
	switch {
	case code >= 0:
		return "", nil, code
	case len(argv) > 0:
		return "", nil, usageErr(fs, fs.stderr, "takes no command after --")
	case len(pos) != want && want == 1:
		return "", nil, usageErr(fs, fs.stderr, "want NAME, got %d arguments", len(pos))
	case len(pos) != want:
		return "", nil, usageErr(fs, fs.stderr, "takes no arguments, got %d", len(pos))
	}
	if want == 1 {
		name = pos[0]
		if code := checkName(fs, name); code >= 0 {
			return "", nil, code
		}
	}
	if code := checkRoot(fs, f.prefix); code >= 0 {
		return "", nil, code
	}
	if code := f.out.check(fs); code >= 0 {
		return "", nil, code
	}
	if err := f.conn.check(); err != nil {
		return "", nil, usageErr(fs, fs.stderr, "%v", err)
	}
	cli, err := f.conn.client()
	if err != nil {
		return "", nil, fail(fs.stderr, "schedule: %v", err)
	}
	return name, cli, -1
}

func (f *scheduleFlags) timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), f.conn.dialTimeout+10*time.Second)
}

// sched is a handle for reading and steering a schedule: the spec given
// here matters only to Run, which the command never calls.
func (f *scheduleFlags) sched(cli *clientv3.Client, name string) *schedule.Schedule {
	return schedule.New(cli, name, schedule.Every(time.Minute), schedule.WithPrefix(f.prefix))
}

// statusJSON is one schedule in list -o json.
type scheduleJSON struct {
	Name      string           `json:"name"`
	Spec      string           `json:"spec"`
	Paused    bool             `json:"paused"`
	PausedBy  string           `json:"paused_by,omitempty"`
	Triggered bool             `json:"triggered"`
	Last      *time.Time       `json:"last_tick,omitempty"`
	Next      *time.Time       `json:"next_tick,omitempty"`
	Runs      int64            `json:"runs"`
	Skipped   map[string]int64 `json:"skipped"`
	Running   []runJSON        `json:"running"`
	Replicas  []string         `json:"replicas"`
}

type runJSON struct {
	Seq      int64      `json:"seq"`
	Tick     time.Time  `json:"tick"`
	Attempt  int        `json:"attempt"`
	Trigger  bool       `json:"trigger,omitempty"`
	Replica  string     `json:"replica"`
	Token    int64      `json:"token"`
	Start    time.Time  `json:"start"`
	End      *time.Time `json:"end,omitempty"`
	Duration float64    `json:"duration_seconds"`
	Outcome  string     `json:"outcome"`
	Error    string     `json:"error,omitempty"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func toRunJSON(rs []schedule.Run) []runJSON {
	out := []runJSON{}
	for _, r := range rs {
		out = append(out, runJSON{Seq: r.Seq, Tick: r.Tick.UTC(), Attempt: r.Attempt, Trigger: r.Trigger, Replica: r.Replica,
			Token: r.Token, Start: r.Start.UTC(), End: timePtr(r.End), Duration: r.Duration().Seconds(), Outcome: string(r.Outcome), Error: r.Error})
	}
	return out
}

func scheduleList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schedule list", "[--prefix coord/] [-o text|json]\n\nLists every schedule a replica ever ran under the root: its spec (as the\nreplica that decided last runs it), state (active, paused, trigger pending),\nthe replicas following it now, runs started, runs going, ticks skipped by\nreason, and the last and next tick.", stderr)
	var f scheduleFlags
	_, cli, code := f.open(fs, args, 0)
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := f.timeout()
	defer cancel()
	sts, err := schedule.List(ctx, cli, schedule.WithPrefix(f.prefix))
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if f.out.json() {
		out := []scheduleJSON{}
		for _, st := range sts {
			j := scheduleJSON{Name: st.Name, Spec: st.Spec, Paused: st.Paused, PausedBy: st.PausedBy, Triggered: st.Triggered,
				Last: timePtr(st.Last), Next: timePtr(st.Next), Runs: st.Runs, Skipped: st.Skipped, Running: toRunJSON(st.Running), Replicas: st.Replicas}
			if j.Skipped == nil {
				j.Skipped = map[string]int64{}
			}
			if j.Replicas == nil {
				j.Replicas = []string{}
			}
			out = append(out, j)
		}
		return writeJSON(stdout, stderr, out)
	}
	if len(sts) == 0 {
		fmt.Fprintf(stdout, "no schedules under %s\n", f.prefix)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSPEC\tSTATE\tREPLICAS\tRUNS\tRUNNING\tSKIPPED\tLAST\tNEXT")
	for _, st := range sts {
		state := "active"
		if st.Paused {
			state = "paused"
		}
		if st.Triggered {
			state += ",triggered"
		}
		var skipped []string
		for _, r := range []string{schedule.SkipMissed, schedule.SkipOverlap, schedule.SkipPaused} {
			if n := st.Skipped[r]; n > 0 {
				skipped = append(skipped, fmt.Sprintf("%s=%d", r, n))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", st.Name, st.Spec, state, len(st.Replicas), st.Runs, len(st.Running),
			orDashS(strings.Join(skipped, ",")), fmtTime(st.Last), fmtTime(st.Next))
	}
	tw.Flush()
	return 0
}

func scheduleHistory(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("schedule history", "NAME [--prefix coord/] [-o text|json]\n\nPrints the schedule's recorded runs, newest first: sequence number, tick,\nattempt (2 for a re-run after a crash), replica, fencing token, start,\nduration, outcome (running, succeeded, failed, cancelled, crashed) and error.", stderr)
	var f scheduleFlags
	name, cli, code := f.open(fs, args, 1)
	if code >= 0 {
		return code
	}
	defer cli.Close()
	ctx, cancel := f.timeout()
	defer cancel()
	runs, err := f.sched(cli, name).History(ctx)
	if err != nil {
		return fail(stderr, "%v", err)
	}
	if f.out.json() {
		return writeJSON(stdout, stderr, toRunJSON(runs))
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTICK\tATTEMPT\tREPLICA\tTOKEN\tSTART\tDURATION\tOUTCOME\tERROR")
	for _, r := range runs {
		tick := fmtTime(r.Tick)
		if r.Trigger {
			tick += " (trigger)"
		}
		dur := "-"
		if !r.End.IsZero() {
			dur = r.Duration().Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Seq, tick, r.Attempt, r.Replica, r.Token, fmtTime(r.Start), dur, r.Outcome, orDashS(oneLine(r.Error)))
	}
	tw.Flush()
	return 0
}

func scheduleControl(verb string) func([]string, io.Writer, io.Writer) int {
	help := map[string]string{
		"pause":   "NAME [--prefix coord/]\n\nPauses the schedule for the whole fleet: its replicas skip every tick\n(counted as skipped: paused) until 'coord schedule resume NAME'. A run under\nway goes on. Exit 1 if no replica ever ran the schedule.",
		"resume":  "NAME [--prefix coord/]\n\nEnds a pause: the next tick runs as usual; ticks skipped while paused are\nnot caught up. Exit 1 if no replica ever ran the schedule.",
		"trigger": "NAME [--prefix coord/]\n\nAsks for one run now, outside the spec, even while paused: the first replica\nto see it runs it once (as the overlap policy allows). Exit 1 if no replica\never ran the schedule; with no replica running, the run waits for one.",
	}[verb]
	return func(args []string, stdout, stderr io.Writer) int {
		fs := newFlags("schedule "+verb, help, stderr)
		var f scheduleFlags
		name, cli, code := f.open(fs, args, 1)
		if code >= 0 {
			return code
		}
		defer cli.Close()
		ctx, cancel := f.timeout()
		defer cancel()
		s := f.sched(cli, name)
		var err error
		switch verb {
		case "pause":
			err = s.Pause(ctx)
		case "resume":
			err = s.Resume(ctx)
		case "trigger":
			err = s.Trigger(ctx)
		}
		if errors.Is(err, schedule.ErrNotFound) {
			return fail(stderr, "schedule %q: no replica ever ran it under %s", name, f.prefix)
		}
		if err != nil {
			return fail(stderr, "%v", err)
		}
		if f.out.json() {
			return writeJSON(stdout, stderr, map[string]string{"schedule": name, "done": verb})
		}
		past := map[string]string{"pause": "paused", "resume": "resumed", "trigger": "triggered"}[verb]
		fmt.Fprintf(stdout, "schedule %q %s\n", name, past)
		return 0
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

func orDashS(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
