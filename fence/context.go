package fence

import "context"

type ctxKey struct{}

type fenced struct {
	resource string
	token    int64
}

// NewContext returns a copy of ctx carrying resource and token: the
// client side (Transport, the client interceptors) sends them with the
// requests made with it, in place of its own, and the server side
// (Middleware, the server interceptors) hands the checked pair to the
// handler this way.
func NewContext(ctx context.Context, resource string, token int64) context.Context {
	return context.WithValue(ctx, ctxKey{}, fenced{resource, token})
}

// FromContext returns the resource and token ctx carries, if any: in a
// handler behind Middleware or a server interceptor, the pair that was
// checked (to fence the handler's own SQL writes with Check, say).
func FromContext(ctx context.Context) (resource string, token int64, ok bool) {
	f, ok := ctx.Value(ctxKey{}).(fenced)
	return f.resource, f.token, ok
}

// tokenOf is what a client side sends: ctx's pair, else its own.
func tokenOf(ctx context.Context, resource string, token func() int64) (string, int64, error) {
	if r, t, ok := FromContext(ctx); ok {
		return r, t, valid(r, t)
	}
	var t int64
	if token != nil {
		t = token()
	}
	return resource, t, valid(resource, t)
}
