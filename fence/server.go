package fence

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// ServerOption configures Middleware and the server interceptors.
type ServerOption func(*server)

// WithRequestResource makes Middleware take a request's resource from f
// (its path, say) instead of the Coord-Fence-Resource header, so that a
// client cannot name another resource than the one it writes.
func WithRequestResource(f func(*http.Request) string) ServerOption {
	return func(s *server) { s.httpResource = f }
}

// WithMethodResource makes the server interceptors take a call's
// resource from f (given its full method name) instead of the
// coord-fence-resource metadata.
func WithMethodResource(f func(ctx context.Context, method string) string) ServerOption {
	return func(s *server) { s.grpcResource = f }
}

// server is the checking side shared by Middleware and the interceptors.
type server struct {
	store        Store
	httpResource func(*http.Request) string
	grpcResource func(context.Context, string) string
	serial       serial
}

func newServer(store Store, opts []ServerOption) *server {
	s := &server{store: store}
	for _, o := range opts {
		o(s)
	}
	return s
}

// errNoToken is wrapped when a request carries no token at all.
var errNoToken = errors.New("no fencing token")

// admit checks resource and token and, when they pass, returns holding
// the resource's turn, with the context the handler runs with: the caller
// runs the request's handler and then calls done. The turn is what makes
// the check and the handler's writes one step as far as this process
// goes: without it a request with token 5 that passed its check could
// still write after one with token 6. A newer token that arrives while
// an older one's handler runs cancels that handler's context (its cause
// wraps ErrStale) and takes its turn once the handler returns, so a
// stream left open by an old holder never blocks its successor.
func (s *server) admit(ctx context.Context, resource string, token int64) (hctx context.Context, done func(), err error) {
	if s.store == nil {
		return nil, nil, fmt.Errorf("%w: nil Store", ErrUnavailable)
	}
	if err := valid(resource, token); err != nil {
		return nil, nil, err
	}
	t, err := s.serial.lock(ctx, resource, token)
	if errors.Is(err, ErrStale) {
		return nil, nil, err
	}
	if err != nil {
		return nil, nil, fmt.Errorf("fence: resource %q: %w: %w", resource, ErrUnavailable, err)
	}
	if err := s.store.Advance(ctx, resource, token); err != nil {
		s.serial.unlock(resource, t)
		if errors.Is(err, ErrStale) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
			return nil, nil, err
		}
		// A store of the caller's own: whatever it failed with, the
		// token was not accepted.
		return nil, nil, fmt.Errorf("fence: resource %q: %w: %w", resource, ErrUnavailable, err)
	}
	hctx, done = s.serial.run(ctx, resource, t, token)
	return NewContext(hctx, resource, token), done, nil
}

// serial gives each resource one turn at a time, in this process.
type serial struct {
	mu    sync.Mutex
	turns map[string]*turn
}

type turn struct {
	ch     chan struct{} // holds a value while taken
	refs   int
	token  int64                   // the token of the turn's holder
	cancel context.CancelCauseFunc // its handler's context
}

// lock waits for resource's turn. A token older than the one whose
// handler runs now (which the store accepted) is stale at once, without
// waiting; a newer one cancels that handler.
func (s *serial) lock(ctx context.Context, resource string, token int64) (*turn, error) {
	s.mu.Lock()
	if s.turns == nil {
		s.turns = map[string]*turn{}
	}
	t := s.turns[resource]
	if t == nil {
		t = &turn{ch: make(chan struct{}, 1)}
		s.turns[resource] = t
	}
	if t.cancel != nil && token < t.token {
		s.mu.Unlock()
		return nil, &StaleError{Resource: resource, Token: token, Highest: t.token}
	}
	t.refs++
	if t.cancel != nil && token > t.token {
		t.cancel(&StaleError{Resource: resource, Token: t.token, Highest: token})
	}
	s.mu.Unlock()
	select {
	case t.ch <- struct{}{}:
		return t, nil
	case <-ctx.Done():
		s.release(resource, t)
		return nil, ctx.Err()
	}
}

// run marks t's turn as running token's handler, and returns the
// handler's context and what ends the turn.
func (s *serial) run(ctx context.Context, resource string, t *turn, token int64) (context.Context, func()) {
	hctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	t.token, t.cancel = token, cancel
	s.mu.Unlock()
	return hctx, func() {
		cancel(nil)
		s.unlock(resource, t)
	}
}

// unlock ends a turn.
func (s *serial) unlock(resource string, t *turn) {
	s.mu.Lock()
	t.cancel = nil
	s.mu.Unlock()
	<-t.ch
	s.release(resource, t)
}

func (s *serial) release(resource string, t *turn) {
	s.mu.Lock()
	if t.refs--; t.refs == 0 {
		delete(s.turns, resource)
	}
	s.mu.Unlock()
}
