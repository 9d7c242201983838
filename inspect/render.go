package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coord-go/coord/internal/keys"
)

// Render writes ps as one table with a header row: a row per holder and
// waiter, in line order, and a row with the primitive's own facts
// (capacity, mode, queue depths) where it has any. Columns:
//
//	KIND NAME ROLE TOKEN OWNER TTL AGE DETAIL KEY
//
// ROLE says what the member is to the primitive in its own words (an
// election's leader and candidates, a lock's holder and waiters), TOKEN is
// its fencing token, OWNER the host:pid of its session, TTL the time left
// on its lease, AGE how long ago it asked (known for locks only), DETAIL
// a candidate's value or the permits asked for.
func Render(w io.Writer, ps []Primitive) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "nothing in use")
		return
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tNAME\tROLE\tTOKEN\tOWNER\tTTL\tAGE\tDETAIL\tKEY")
	for _, p := range ps {
		name := fmt.Sprintf("%q", p.Name)
		if info := infoText(p.Info); info != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t\t\t\t\t%s\t\n", p.Kind, name, info)
		}
		holder, waiter := Roles(p)
		row := func(role string, m Member) {
			age := "-"
			if !m.Since.IsZero() {
				age = now.Sub(m.Since).Round(100 * time.Millisecond).String()
			}
			ttl := "-"
			if m.TTLLeft >= 0 {
				ttl = m.TTLLeft.String()
			}
			detail := m.Value
			if m.Weight > 0 {
				detail = fmt.Sprintf("weight %d", m.Weight)
			} else if detail != "" {
				detail = fmt.Sprintf("%q", detail)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Kind, name, role, m.Token, orDash(m.Owner), ttl, age, detail, m.Key)
		}
		for _, m := range p.Holders {
			row(holder, m)
		}
		for i, m := range p.Waiters {
			row(fmt.Sprintf("%s %d", waiter, i+1), m)
		}
	}
	tw.Flush()
}

// Roles names a primitive's holders and waiters as coord status shows
// them: "leader" and "candidate" for an election, "claim" for a queue,
// "holder" and "waiter" where nothing more fitting applies.
func Roles(p Primitive) (holder, waiter string) {
	switch p.Kind {
	case keys.KindElection:
		return "leader", "candidate"
	case keys.KindRWLock:
		if p.Info["mode"] == "read" {
			return "reader", "waiter"
		}
		return "writer", "waiter"
	case keys.KindDouble:
		return "participant", "waiter"
	case keys.KindQueue:
		return "claim", "waiter"
	case keys.KindSchedule:
		return "run", "replica"
	case keys.KindGroup:
		return "member", "waiter"
	case keys.KindShard:
		return "owner", "waiter"
	}
	return "holder", "waiter"
}

func infoText(info map[string]string) string {
	var out []string
	for k, v := range info {
		out = append(out, strings.ReplaceAll(k, " ", "_")+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
