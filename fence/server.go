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
// the resource's turn: the caller runs the request's handler and then
// calls done. The turn is what makes the check and the handler's writes
// one step as far as this process goes: without it a request with token
// 5 that passed its check could still write after one with token 6.
func (s *server) admit(ctx context.Context, resource string, token int64) (done func(), err error) {
	if s.store == nil {
		return nil, fmt.Errorf("%w: nil Store", ErrUnavailable)
	}
	if err := valid(resource, token); err != nil {
		return nil, err
	}
	done, err = s.serial.lock(ctx, resource)
	if err != nil {
		return nil, fmt.Errorf("fence: resource %q: %w: %w", resource, ErrUnavailable, err)
	}
	if err := s.store.Advance(ctx, resource, token); err != nil {
		done()
		if errors.Is(err, ErrStale) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) {
			return nil, err
		}
		// A store of the caller's own: whatever it failed with, the
		// token was not accepted.
		return nil, fmt.Errorf("fence: resource %q: %w: %w", resource, ErrUnavailable, err)
	}
	return done, nil
}

// serial gives each resource one turn at a time, in this process.
type serial struct {
	mu    sync.Mutex
	turns map[string]*turn
}

type turn struct {
	ch   chan struct{} // holds a value while taken
	refs int
}

func (s *serial) lock(ctx context.Context, resource string) (func(), error) {
	s.mu.Lock()
	if s.turns == nil {
		s.turns = map[string]*turn{}
	}
	t := s.turns[resource]
	if t == nil {
		t = &turn{ch: make(chan struct{}, 1)}
		s.turns[resource] = t
	}
	t.refs++
	s.mu.Unlock()
	release := func() {
		s.mu.Lock()
		if t.refs--; t.refs == 0 {
			delete(s.turns, resource)
		}
		s.mu.Unlock()
	}
	select {
	case t.ch <- struct{}{}:
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
	return func() { <-t.ch; release() }, nil
}
