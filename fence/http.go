package fence

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// The headers of a fenced HTTP request, and of its refusal.
const (
	// TokenHeader carries the writer's fencing token, in decimal.
	TokenHeader = "Coord-Fence-Token"
	// ResourceHeader names the resource the request writes.
	ResourceHeader = "Coord-Fence-Resource"
	// HighestHeader, on a 409 refusal, is the highest token seen for the
	// resource.
	HighestHeader = "Coord-Fence-Highest"
)

// Transport is an http.RoundTripper that sends a fencing token and its
// resource with every request (TokenHeader, ResourceHeader), for a
// server behind Middleware: a holder's client, so that its writes are
// refused once a newer holder wrote.
//
//	m := lock.NewMutex(s, "orders")
//	client := &http.Client{Transport: &fence.Transport{Resource: "orders", Token: m.Token}}
//
// A request whose context carries a pair (NewContext) sends that one
// instead. A request with no token to send (Token returns 0: the lock is
// not held) is not sent at all: RoundTrip returns an error wrapping
// ErrInvalid. A stale token comes back as the server's 409 response,
// with HighestHeader set.
type Transport struct {
	// Base sends the requests; http.DefaultTransport when nil.
	Base http.RoundTripper
	// Resource is the resource the requests write.
	Resource string
	// Token returns the token to send: the holder's Token method.
	Token func() int64
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resource, token, err := tokenOf(req.Context(), t.Resource, t.Token)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("fence: request not sent: %w", err)
	}
	r := req.Clone(req.Context())
	r.Header.Set(TokenHeader, strconv.FormatInt(token, 10))
	r.Header.Set(ResourceHeader, resource)
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Middleware returns middleware that lets a request through only if its
// fencing token (TokenHeader) is not older than the highest store has
// seen for its resource (ResourceHeader, or WithRequestResource), and
// records it as the highest. It answers, with a plain-text body that
// says why:
//
//   - 428 Precondition Required: the request carries no token;
//   - 400 Bad Request: a token that is not a positive number, or a bad
//     resource name;
//   - 409 Conflict: a stale token (HighestHeader says the highest seen);
//   - 503 Service Unavailable: the store failed, so staleness is unknown
//     and the request is refused all the same (fail closed).
//
// The handler finds the checked pair with FromContext. Requests of one
// resource run their handlers one at a time in this process, so the
// check and the handler's writes are not reordered; wrap only the
// handlers that write. A request with a newer token cancels the context
// of a handler still running with an older one (context.Cause wraps
// ErrStale) and runs once that handler has returned. Several server replicas sharing a store (SQLStore,
// EtcdStore) each order their own requests, but two replicas can still
// run a 5 and a 6 at once: where the writes land in a database, fence
// them there too, with Check in their own transaction.
func Middleware(store Store, opts ...ServerOption) func(http.Handler) http.Handler {
	s := newServer(store, opts)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			resource := r.Header.Get(ResourceHeader)
			if s.httpResource != nil {
				resource = s.httpResource(r)
			}
			raw := r.Header.Get(TokenHeader)
			if raw == "" {
				http.Error(w, fmt.Sprintf("fence: %v: the request has no %s header", errNoToken, TokenHeader), http.StatusPreconditionRequired)
				return
			}
			token, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				http.Error(w, fmt.Sprintf("fence: %v: %s %q is not a number", ErrInvalid, TokenHeader, raw), http.StatusBadRequest)
				return
			}
			ctx, done, err := s.admit(r.Context(), resource, token)
			if err != nil {
				var stale *StaleError
				code := http.StatusServiceUnavailable
				switch {
				case errors.As(err, &stale):
					code = http.StatusConflict
					w.Header().Set(HighestHeader, strconv.FormatInt(stale.Highest, 10))
				case errors.Is(err, ErrInvalid):
					code = http.StatusBadRequest
				default:
					err = fmt.Errorf("%w; write refused", err)
				}
				http.Error(w, err.Error(), code)
				return
			}
			defer done()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}
