package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coord-go/coord/internal/keys"
	"github.com/coord-go/coord/queue"
	"github.com/coord-go/coord/schedule"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrReadOnly is what a read-only console answers every POST with (403).
var ErrReadOnly = errors.New("console: read-only: actions are not enabled")

// errForbidden is a POST that failed the same-origin checks.
var errForbidden = errors.New("console: cross-origin or stale form: reload the page and try again")

// confirmText is the confirmation page of an action that needs one.
type confirmText struct {
	Root, Title, Text, Button string
	Fields                    []infoView
}

// action runs one operator action: POST only, same-origin only (the
// browser's Sec-Fetch-Site and Origin, and this console's form token),
// and only when actions are enabled. Destructive ones (force release,
// discard) first answer with a confirmation page that posts again with
// confirm=yes. Every action done is one audit line.
func (c *Console) action(w http.ResponseWriter, r *http.Request) {
	if !c.o.actions {
		c.fail(w, http.StatusForbidden, "Actions are disabled", ErrReadOnly)
		return
	}
	if err := c.cop.Check(r); err != nil {
		c.fail(w, http.StatusForbidden, "Refused", errForbidden)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, http.StatusBadRequest, "Bad form", err)
		return
	}
	f := r.PostForm
	if subtle.ConstantTimeCompare([]byte(f.Get("csrf")), []byte(c.csrf)) != 1 {
		c.fail(w, http.StatusForbidden, "Refused", errForbidden)
		return
	}
	op, kind, name := f.Get("op"), f.Get("kind"), f.Get("name")
	if err := keys.ValidateName(name); err != nil {
		c.fail(w, http.StatusBadRequest, "Bad name", err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	confirmed := f.Get("confirm") == "yes"
	var err error
	switch {
	case op == "release" && releasable[kind]:
		if !confirmed {
			c.confirm(w, f, "Force-release "+kind+" "+strconv.Quote(name),
				fmt.Sprintf("This revokes the lease %s of the holder of %s (token %s). Everything that session holds is released at once, under every name, and its owner learns it lost them only when its session ends: make sure it is stuck or gone.",
					f.Get("lease"), f.Get("key"), f.Get("token")), "Revoke the lease")
			return
		}
		err = c.release(ctx, r, kind, name, f)
	case (op == "redrive" || op == "discard") && kind == keys.KindQueue:
		if op == "discard" && !confirmed {
			c.confirm(w, f, "Discard a dead letter of queue "+strconv.Quote(name),
				"This deletes the dead letter "+f.Get("id")+" and its payload for good.", "Discard it")
			return
		}
		q := queue.New(c.cli, name, queue.WithPrefix(c.o.root))
		if op == "redrive" {
			err = q.Redrive(ctx, f.Get("id"))
		} else {
			err = q.Discard(ctx, f.Get("id"))
		}
		c.audit(r, op, err, "kind", kind, "name", name, "id", f.Get("id"))
	case (op == "pause" || op == "resume" || op == "trigger") && kind == keys.KindSchedule:
		s := schedule.New(c.cli, name, schedule.Every(time.Minute), schedule.WithPrefix(c.o.root))
		switch op {
		case "pause":
			err = s.Pause(ctx)
		case "resume":
			err = s.Resume(ctx)
		default:
			err = s.Trigger(ctx)
		}
		c.audit(r, op, err, "kind", kind, "name", name)
	default:
		c.fail(w, http.StatusBadRequest, "Unknown action", fmt.Errorf("console: no action %q for a %s", op, kind))
		return
	}
	if err != nil {
		c.fail(w, http.StatusConflict, "The action failed", err)
		return
	}
	// Back to the page (Post/Redirect/Get), which says what was done.
	http.Redirect(w, r, "./?ok="+url.QueryEscape(op)+"#"+url.PathEscape(kind+"-"+keys.Escape(name)), http.StatusSeeOther)
}

// errChanged is a force release of a holder that is no longer the one
// the operator saw.
var errChanged = errors.New("console: the holder changed since the page was shown: nothing was revoked")

// release revokes the lease of the holder the operator saw: the key must
// still be on that lease and, but for an election (whose token is the
// leader mark's), at that token, so that a release never hits a holder
// that came after.
func (c *Console) release(ctx context.Context, r *http.Request, kind, name string, f url.Values) error {
	key := f.Get("key")
	sp, err := keys.New(c.o.root, kind, name)
	if err != nil {
		return err
	}
	token, _ := strconv.ParseInt(f.Get("token"), 10, 64)
	lease, perr := strconv.ParseInt(f.Get("lease"), 16, 64)
	if !strings.HasPrefix(key, sp.Base()) || perr != nil || lease == 0 {
		return fmt.Errorf("console: %q is not a held key of %s %q", key, kind, name)
	}
	resp, err := c.cli.Get(ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease != lease || (kind != keys.KindElection && resp.Kvs[0].CreateRevision != token) {
		c.audit(r, "release", errChanged, "kind", kind, "name", name, "key", key, "token", token, "lease", f.Get("lease"))
		return errChanged
	}
	_, err = c.cli.Revoke(ctx, clientv3.LeaseID(lease))
	c.audit(r, "release", err, "kind", kind, "name", name, "key", key, "token", token, "lease", f.Get("lease"))
	return err
}

// audit writes the line that says who did what.
func (c *Console) audit(r *http.Request, op string, err error, attrs ...any) {
	who := []any{"remote", r.RemoteAddr}
	if u, _, ok := r.BasicAuth(); ok {
		who = append(who, "user", u)
	}
	attrs = append(append([]any{"action", op, "root", c.o.root}, who...), attrs...)
	if err != nil {
		c.o.log.Warn("console: action failed", append(attrs, "err", err)...)
		return
	}
	c.o.log.Info("console: action", attrs...)
}

func (c *Console) confirm(w http.ResponseWriter, f url.Values, title, text, button string) {
	d := confirmText{Root: c.o.root, Title: title, Text: text, Button: button}
	for _, k := range []string{"csrf", "op", "kind", "name", "key", "token", "lease", "id"} {
		if v := f.Get(k); v != "" {
			d.Fields = append(d.Fields, infoView{k, v})
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, "confirm", d)
}

func (c *Console) fail(w http.ResponseWriter, code int, title string, err error) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	c.render(w, "result", confirmText{Root: c.o.root, Title: title, Text: err.Error()})
}
