package console

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coord-go/coord/inspect"
	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
)

// pageData is what the templates render: one snapshot of the cache, cut
// to the console's rows.
type pageData struct {
	Root    string
	Actions bool
	CSRF    string
	Version uint64
	Updated string
	Err     string
	Msg     string
	Total   int
	Kinds   []kindView
}

type kindView struct {
	Kind, Title string
	Prims       []primView
	More        int
}

type primView struct {
	Kind, Name, Anchor string
	Info               []infoView
	HolderRole         string
	WaiterRole         string
	Holders, Waiters   []memberView
	HoldersMore        int
	WaitersMore        int
	Release            bool // its holders can be force-released
	Queue              bool
	Dead               []deadView
	DeadMore           int
	DeadErr            string
	Schedule           bool
	Paused             bool
	Actions            bool
	CSRF               string
}

type infoView struct{ Key, Value string }

type memberView struct {
	Pos     int
	Token   int64
	Owner   string
	Lease   string // hex, as etcdctl prints it
	Since   string
	Age     string
	Detail  string
	Key     string
	Release bool
}

type deadView struct {
	ID, Reason, LastError, Died, Payload string
	Attempts                             int
}

var titles = map[string]string{
	keys.KindBarrier: "Barriers", keys.KindDouble: "Double barriers", keys.KindElection: "Elections",
	keys.KindGroup: "Groups", keys.KindLatch: "Latches", keys.KindLock: "Locks", keys.KindQueue: "Queues",
	keys.KindRateLimit: "Rate limits", keys.KindRWLock: "Read-write locks", keys.KindSchedule: "Schedules",
	keys.KindSemaphore: "Semaphores", keys.KindShard: "Shard maps",
}

// kindOrder is the order of the page's sections: what operators look
// for first (who holds the locks, who leads), then the rest, and any kind
// inspect learns later at the end.
func kindOrder() []string {
	out := []string{keys.KindLock, keys.KindRWLock, keys.KindElection, keys.KindSemaphore, keys.KindQueue, keys.KindSchedule,
		keys.KindGroup, keys.KindShard, keys.KindRateLimit, keys.KindBarrier, keys.KindDouble, keys.KindLatch}
	seen := map[string]bool{}
	for _, k := range out {
		seen[k] = true
	}
	for _, k := range inspect.Kinds() {
		if !seen[k] {
			out = append(out, k)
		}
	}
	return out
}

// releasable are the kinds whose holders an operator may force-release.
var releasable = map[string]bool{keys.KindLock: true, keys.KindRWLock: true, keys.KindSemaphore: true, keys.KindElection: true}

var funcs = template.FuncMap{}

func (c *Console) data(snap *snapshot, msg string) pageData {
	d := pageData{Root: c.o.root, Actions: c.o.actions, CSRF: c.csrf, Version: snap.version, Msg: msg, Total: len(snap.items)}
	if !snap.at.IsZero() {
		d.Updated = snap.at.UTC().Format("15:04:05.000 UTC")
	}
	if snap.err != nil {
		d.Err = snap.err.Error()
	}
	now := time.Now()
	byKind := map[string][]*item{}
	for _, it := range snap.items {
		byKind[it.p.Kind] = append(byKind[it.p.Kind], it)
	}
	for _, kind := range kindOrder() {
		its := byKind[kind]
		kv := kindView{Kind: kind, Title: titles[kind]}
		if kv.Title == "" {
			kv.Title = kind
		}
		for i, it := range its {
			if i == c.o.rows {
				kv.More = len(its) - i
				break
			}
			kv.Prims = append(kv.Prims, c.prim(it, now))
		}
		d.Kinds = append(d.Kinds, kv)
	}
	return d
}

func (c *Console) prim(it *item, now time.Time) primView {
	p := it.p
	v := primView{Kind: p.Kind, Name: p.Name, Anchor: p.Kind + "-" + keys.Escape(p.Name), Release: c.o.actions && releasable[p.Kind],
		Queue: p.Kind == keys.KindQueue, Schedule: p.Kind == keys.KindSchedule, Actions: c.o.actions, CSRF: c.csrf}
	v.HolderRole, v.WaiterRole = roles(p)
	ks := make([]string, 0, len(p.Info))
	for k := range p.Info {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		v.Info = append(v.Info, infoView{k, p.Info[k]})
	}
	v.Paused = strings.HasPrefix(p.Info["state"], "paused")
	members := func(ms []inspect.Member, holders bool) ([]memberView, int) {
		var out []memberView
		for i, m := range ms {
			if i == c.o.rows {
				return out, len(ms) - i
			}
			out = append(out, member(i+1, m, now, holders && v.Release && m.Lease != 0, p.Kind))
		}
		return out, 0
	}
	v.Holders, v.HoldersMore = members(p.Holders, true)
	v.Waiters, v.WaitersMore = members(p.Waiters, false)
	if v.Queue {
		dead, _ := strconv.Atoi(p.Info["dead"])
		for _, dl := range it.dead {
			v.Dead = append(v.Dead, deadLetter(dl))
		}
		v.DeadMore = max(0, dead-len(v.Dead))
		if it.derr != nil {
			v.DeadErr = it.derr.Error()
		}
	}
	return v
}

func member(pos int, m inspect.Member, now time.Time, release bool, kind string) memberView {
	v := memberView{Pos: pos, Token: m.Token, Owner: m.Owner, Key: m.Key, Release: release}
	if m.Lease != 0 {
		v.Lease = strconv.FormatInt(m.Lease, 16)
	}
	if !m.Since.IsZero() {
		v.Since = m.Since.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		v.Age = age(now.Sub(m.Since))
	}
	switch {
	case kind == keys.KindSemaphore || m.Weight > 1:
		v.Detail = fmt.Sprintf("%d permits", max(m.Weight, 1))
	case m.Value != "":
		v.Detail = clip(m.Value, 80)
	}
	if kind == keys.KindElection && m.Priority != 0 {
		v.Detail = strings.TrimSpace(v.Detail + " priority " + strconv.Itoa(m.Priority))
	}
	if m.Observer {
		v.Detail = strings.TrimSpace(v.Detail + " (observer)")
	}
	return v
}

func deadLetter(dl queue.DeadLetter) deadView {
	v := deadView{ID: dl.ID, Reason: dl.Reason, LastError: clip(dl.LastError, 200), Attempts: dl.Attempts, Payload: clip(string(dl.Payload), 80)}
	if !dl.Died.IsZero() {
		v.Died = dl.Died.UTC().Format(time.DateTime)
	}
	return v
}

// age says how long ago, as the page's script does while it stays open:
// "42s", "3m07s", "5h02m", "3d04h".
func age(d time.Duration) string {
	s := max(int64(d/time.Second), 0)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%02dh", s/86400, s%86400/3600)
}

// clip cuts s to n bytes, on a rune boundary, and shows that it did;
// invalid UTF-8 (a binary payload) is shown as its length.
func clip(s string, n int) string {
	if !utf8.ValidString(s) {
		return fmt.Sprintf("(%d bytes of binary)", len(s))
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// roles names a primitive's holders and waiters as coord status does,
// and a semaphore's and a rate limit's by what they hold.
func roles(p inspect.Primitive) (holder, waiter string) {
	switch p.Kind {
	case keys.KindSemaphore:
		return "permit", "waiter"
	case keys.KindRateLimit:
		return "reserver", "waiter"
	}
	return inspect.Roles(p)
}

// messages are what a page says after an action (?ok=op): fixed texts,
// so that a link cannot make the page say anything else.
var messages = map[string]string{
	"release": "Released: the holder's lease was revoked.",
	"redrive": "Re-drove the dead letter: it is ready again.",
	"discard": "Discarded the dead letter.",
	"pause":   "Paused the schedule.",
	"resume":  "Resumed the schedule.",
	"trigger": "Triggered a run of the schedule.",
}

// page serves the whole page, rendered from the cache.
func (c *Console) page(w http.ResponseWriter, r *http.Request) {
	snap := c.cache.wait(r.Context())
	if snap == nil {
		return
	}
	c.render(w, "page", c.data(snap, messages[r.URL.Query().Get("ok")]))
}

// state serves the part of the page that changes, for the page's script.
func (c *Console) state(w http.ResponseWriter, r *http.Request) {
	snap := c.cache.wait(r.Context())
	if snap == nil {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, "state", c.data(snap, ""))
}

func (c *Console) render(w http.ResponseWriter, name string, data any) {
	var b bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&b, name, data); err != nil {
		c.o.log.Error("console: render", "template", name, "err", err)
		http.Error(w, "console: render failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}
