// Package lease is the implementation of session.Session, kept internal
// so that coord's primitives can use what a session must not show its
// users: the fence that turns away late creates (fence.go), Verify for a
// holder that found its key gone, and the registration that lets a
// primitive reach the implementation behind a *session.Session (Of).
//
// # Safety
//
// Done closes, and Err turns non-nil, at the earliest of: Close; the
// lease's revocation (seen within milliseconds through the marker watch);
// the server reporting the lease gone; the etcd client being closed; or
// the local deadline passing. The deadline is the send time of the last
// acknowledged renewal plus the TTL, less a margin, so it passes before
// the server can expire the lease. A Session is safe for concurrent use.
package lease

// unwrap is set once, by package session's init, to reach the *Session
// behind a *session.Session. It is the only package-level variable here:
// a link between two packages of this module, not state.
var unwrap func(any) *Session

// Register is called by package session to install unwrap.
func Register(f func(any) *Session) { unwrap = f }

// Of returns the implementation behind s, a *session.Session, or nil for
// a nil one.
func Of(s any) *Session { return unwrap(s) }
