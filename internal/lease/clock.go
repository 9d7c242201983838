package lease

import "time"

// The deadline is a lower bound on when the server may expire the lease,
// so it must only ever be compared on the monotonic clock: a wall clock
// stepped forward by NTP or an operator would end a healthy session
// (false loss), one stepped back would keep trusting a lease the server
// has expired (late loss). Every instant the deadline is made of comes
// from s.now and keeps its monotonic reading (no Round(0), UTC, Unix or
// time.Unix on this path), and every comparison goes through since and
// until, which Go then makes on that reading. Config.now lets a test
// step the wall clock under a live session and prove it.

// since is time.Since on the session's clock.
func (s *Session) since(t time.Time) time.Duration { return s.now().Sub(t) }

// until is time.Until on the session's clock.
func (s *Session) until(t time.Time) time.Duration { return t.Sub(s.now()) }
