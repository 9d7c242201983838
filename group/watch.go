package group

import (
	"context"
	"sync"

	"github.com/coord-go/coord/internal/watch"
)

// Watch returns a channel that receives the group's members now, then a
// new View after every change: a member joined, left (by Leave, or with
// its session's lease), or changed its metadata. Each view is complete
// and stamped with the revision it is exact at, and says what changed
// since the one before (Joined, Left, Updated).
//
// It follows the process's one shared mirror of the group, which applies
// etcd's events one revision at a time, so every change is its own view:
// none is merged into the next, and a slow receiver gets them all, in
// order (they are queued, never dropped). After a compaction, a broken
// stream or a member failover the mirror reloads, and the next view says
// what changed across the gap: every member that joined or left across
// it is in Joined or Left. (A member whose whole membership fell inside
// the gap was never visible to anyone reading the group, and is not.)
//
// The channel closes when ctx ends, or earlier only when etcd refuses to
// let the client read the group (a missing permission) or the client is
// closed; that cause is logged at error level. A Group made with bad
// arguments closes it at once.
func (g *Group) Watch(ctx context.Context) <-chan View {
	ch := make(chan View)
	if g.err != nil {
		close(ch)
		return ch
	}
	go g.watch(ctx, ch)
	return ch
}

func (g *Group) watch(ctx context.Context, out chan<- View) {
	defer close(out)
	m := g.hub.Mirror(g.sp.Base())
	defer m.Release()
	var q viewQueue
	q.signal = make(chan struct{}, 1)
	var last map[string]Member // by id: the members of the last view queued
	stop := m.Listen(func(v *watch.View, c watch.Change) {
		if c.Err != nil {
			q.fail(c.Err)
			return
		}
		if last != nil && !c.Reloaded && len(c.Events) == 0 {
			return
		}
		cur := viewOf(g.sp, v)
		nv := View{Rev: v.Rev(), Members: cur}
		next := make(map[string]Member, len(cur))
		for _, mem := range cur {
			next[mem.ID] = mem
			old, ok := last[mem.ID]
			switch {
			case !ok || old.Token != mem.Token:
				if ok {
					nv.Left = append(nv.Left, old) // left and joined again
				}
				nv.Joined = append(nv.Joined, mem)
			case !sameMeta(old.Meta, mem.Meta):
				nv.Updated = append(nv.Updated, mem)
			}
		}
		for id, old := range last {
			if _, ok := next[id]; !ok {
				nv.Left = append(nv.Left, old)
			}
		}
		if last != nil && len(nv.Joined)+len(nv.Left)+len(nv.Updated) == 0 {
			return // a change of no member (a rewrite with the same metadata)
		}
		sortMembers(nv.Left)
		last = next
		q.push(nv)
	})
	defer stop()
	for {
		v, err := q.pop(ctx)
		if err != nil {
			if ctx.Err() == nil {
				g.logger.Error("coord group: watching stopped", "kind", kind, "name", g.sp.Name(), "error", err)
			}
			return
		}
		select {
		case out <- v:
		case <-ctx.Done():
			return
		}
	}
}

func sameMeta(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// viewQueue holds the views a listener made and the receiver has not
// taken yet.
type viewQueue struct {
	mu     sync.Mutex
	views  []View
	err    error
	signal chan struct{}
}

func (q *viewQueue) push(v View) {
	q.mu.Lock()
	q.views = append(q.views, v)
	q.mu.Unlock()
	q.wake()
}

func (q *viewQueue) fail(err error) {
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
	q.wake()
}

func (q *viewQueue) wake() {
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *viewQueue) pop(ctx context.Context) (View, error) {
	for {
		q.mu.Lock()
		if len(q.views) > 0 {
			v := q.views[0]
			q.views[0] = View{}
			q.views = q.views[1:]
			q.mu.Unlock()
			return v, nil
		}
		err := q.err
		q.mu.Unlock()
		if err != nil {
			return View{}, err
		}
		select {
		case <-q.signal:
		case <-ctx.Done():
			return View{}, ctx.Err()
		}
	}
}
