package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// MinInterval is the shortest interval Every accepts.
const MinInterval = time.Millisecond

// Spec says when a schedule ticks: a fixed interval (Every) or a cron
// expression (Cron). Every replica computes the same ticks from it, so
// it depends on nothing but the time: not on when a replica started.
type Spec struct {
	every time.Duration
	expr  string             // the cron expression as given
	sched *cron.SpecSchedule // parsed, with its location
	zoned bool               // the expression named its own time zone
	err   error
}

// Every ticks every d, at the multiples of d since the Unix epoch (UTC):
// Every(time.Minute) ticks at every whole minute, Every(24*time.Hour) at
// midnight UTC. d must be at least MinInterval.
func Every(d time.Duration) Spec {
	if d < MinInterval {
		return Spec{every: d, err: fmt.Errorf("%w: interval %v is under %v", ErrInvalidSpec, d, MinInterval)}
	}
	return Spec{every: d}
}

// cronParser reads the standard five fields (minute, hour, day of month,
// month, day of week) and the descriptors @yearly, @monthly, @weekly,
// @daily, @midnight and @hourly.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Cron ticks when the standard five-field cron expression expr matches
// ("*/5 * * * *", "0 3 * * MON-FRI", "@daily"), in UTC unless expr starts
// with CRON_TZ=<zone> (or TZ=<zone>) or the schedule is given
// WithTimeZone. Zones are IANA names loaded with time.LoadLocation; a
// zone's daylight-saving changes are followed (a 02:30 tick is skipped
// on a day that has no 02:30). "@every D" is refused: its ticks depend
// on when each replica started, so replicas would disagree; use Every.
//
// Parsing is done by github.com/robfig/cron/v3, the parser gocron and
// Kubernetes CronJobs use.
func Cron(expr string) Spec {
	s := Spec{expr: expr}
	rest := strings.TrimSpace(expr)
	loc := time.UTC
	if zone, after, ok := cutZone(rest); ok {
		l, err := time.LoadLocation(zone)
		if err != nil || zone == "" || strings.EqualFold(zone, "local") {
			s.err = fmt.Errorf("%w: %q in cron expression %q", ErrUnknownTimeZone, zone, expr)
			return s
		}
		loc, rest, s.zoned = l, after, true
	}
	if strings.HasPrefix(rest, "@every") {
		s.err = fmt.Errorf("%w: %q: @every depends on when each replica started; use schedule.Every", ErrInvalidSpec, expr)
		return s
	}
	if rest == "" {
		s.err = fmt.Errorf("%w: empty cron expression", ErrInvalidSpec)
		return s
	}
	parsed, err := cronParser.Parse(rest)
	if err != nil {
		s.err = fmt.Errorf("%w: cron expression %q: %v", ErrInvalidSpec, expr, err)
		return s
	}
	sched, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		s.err = fmt.Errorf("%w: cron expression %q is not a calendar schedule", ErrInvalidSpec, expr)
		return s
	}
	sched.Location = loc
	s.sched = sched
	if s.Next(time.Now()).IsZero() {
		s.err = fmt.Errorf("%w: cron expression %q never fires", ErrInvalidSpec, expr)
	}
	return s
}

// cutZone splits "CRON_TZ=Europe/Berlin 0 3 * * *" into the zone and the
// rest.
func cutZone(expr string) (zone, rest string, ok bool) {
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if after, found := strings.CutPrefix(expr, p); found {
			zone, rest, _ = strings.Cut(after, " ")
			return zone, strings.TrimSpace(rest), true
		}
	}
	return "", expr, false
}

// in returns the spec in loc, unless its expression named its own zone.
func (s Spec) in(loc *time.Location) Spec {
	if s.sched == nil || s.zoned || loc == nil {
		return s
	}
	c := *s.sched
	c.Location = loc
	s.sched = &c
	return s
}

// Err returns why the spec cannot be scheduled, or nil.
func (s Spec) Err() error {
	if s.every == 0 && s.sched == nil && s.err == nil {
		return fmt.Errorf("%w: the zero Spec: use Every or Cron", ErrInvalidSpec)
	}
	return s.err
}

// String returns the spec as "every 1m0s" or as its cron expression, with
// its time zone.
func (s Spec) String() string {
	switch {
	case s.every > 0:
		return "every " + s.every.String()
	case s.sched != nil && !s.zoned:
		return "CRON_TZ=" + s.sched.Location.String() + " " + strings.TrimSpace(s.expr)
	}
	return strings.TrimSpace(s.expr)
}

// Next returns the first tick strictly after t, or the zero time if there
// is none (an invalid spec).
func (s Spec) Next(t time.Time) time.Time {
	switch {
	case s.err != nil:
		return time.Time{}
	case s.every > 0:
		n, d := t.UnixNano(), int64(s.every)
		q := n / d
		if n < 0 && n%d != 0 {
			q-- // floor, for times before the epoch
		}
		return time.Unix(0, (q+1)*d).In(t.Location())
	case s.sched != nil:
		return s.sched.Next(t)
	}
	return time.Time{}
}

// maxCount bounds how many ticks count walks through one by one (a cron
// spec after a long outage); past it the count is a lower bound.
const maxCount = 1 << 20

// count returns how many ticks fall in (a, b] and the latest of them (the
// zero time when none does).
func (s Spec) count(a, b time.Time) (n int64, latest time.Time) {
	if !b.After(a) {
		return 0, time.Time{}
	}
	if s.every > 0 {
		d := int64(s.every)
		first := s.Next(a)
		if first.After(b) {
			return 0, time.Time{}
		}
		n = (b.UnixNano()-first.UnixNano())/d + 1
		return n, time.Unix(0, first.UnixNano()+(n-1)*d)
	}
	for t := s.Next(a); !t.IsZero() && !t.After(b) && n < maxCount; t = s.Next(t) {
		n, latest = n+1, t
	}
	return n, latest
}

// oldest returns the first tick in [from, b] later than a, or the zero
// time.
func (s Spec) oldest(a, from, b time.Time) time.Time {
	if from.After(a) {
		a = from.Add(-time.Nanosecond)
	}
	if t := s.Next(a); !t.IsZero() && !t.After(b) {
		return t
	}
	return time.Time{}
}
