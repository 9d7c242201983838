package inspect

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Render writes ps as a readable report: one block per primitive, its
// facts, its holders and its waiters in order.
func Render(w io.Writer, ps []Primitive) {
	if len(ps) == 0 {
		fmt.Fprintln(w, "nothing in use")
		return
	}
	now := time.Now()
	for _, p := range ps {
		var info []string
		for k, v := range p.Info {
			info = append(info, k+"="+v)
		}
		sort.Strings(info)
		fmt.Fprintf(w, "%s %q", p.Kind, p.Name)
		if len(info) > 0 {
			fmt.Fprintf(w, "  %s", strings.Join(info, " "))
		}
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		row := func(role string, i int, m Member) {
			since := ""
			if !m.Since.IsZero() {
				since = "for " + now.Sub(m.Since).Round(time.Millisecond).String()
			}
			ttl := "no lease"
			if m.TTLLeft >= 0 {
				ttl = "ttl " + m.TTLLeft.String()
			}
			extra := m.Value
			if m.Weight > 0 {
				extra = fmt.Sprintf("weight %d", m.Weight)
			}
			fmt.Fprintf(tw, "  %s\t%d\ttoken %d\t%s\t%s\t%s\t%s\t%s\n", role, i+1, m.Token, orDash(m.Owner), ttl, since, extra, m.Key)
		}
		for i, m := range p.Holders {
			row("holder", i, m)
		}
		for i, m := range p.Waiters {
			row("waiter", i, m)
		}
		tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
