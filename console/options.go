package console

import (
	"fmt"
	"log/slog"

	"github.com/coord-go/coord/internal/keys"
)

// Option configures New.
type Option func(*options) error

type options struct {
	root    string
	actions bool
	log     *slog.Logger
	rows    int
}

// WithPrefix sets the root the console shows (default "coord/"): the root
// your programs give session.WithPrefix. An invalid root is an error from
// New.
func WithPrefix(root string) Option {
	return func(o *options) error {
		r, err := keys.NormalizeRoot(root)
		if err != nil {
			return err
		}
		o.root = r
		return nil
	}
}

// WithActions turns the console's actions on or off (default off: a
// read-only page that refuses every POST with 403). With actions on, an
// operator can re-drive or discard a dead letter, pause, resume or
// trigger a schedule, and force-release a holder by revoking its lease.
func WithActions(on bool) Option {
	return func(o *options) error {
		o.actions = on
		return nil
	}
}

// WithLogger sets where the console writes its audit lines (one per
// action, naming who did what to which key and token) and the errors it
// meets following etcd. The default is slog.Default(), so that audit
// lines are never silently dropped; nil is an error.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("console: nil logger")
		}
		o.log = l
		return nil
	}
}

// WithRows sets how many members (holders, waiters, candidates), dead
// letters and primitives of one kind a page lists (default 20); the rest
// are counted ("and 12 more"). It must be between 1 and 1000.
func WithRows(n int) Option {
	return func(o *options) error {
		if n < 1 || n > 1000 {
			return fmt.Errorf("console: rows %d not in [1, 1000]", n)
		}
		o.rows = n
		return nil
	}
}
