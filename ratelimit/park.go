package ratelimit

import "sync"

// spot is where one goroutine of the limiter waits, and what wakes it:
// a grant, a change of the shared state, a timer, the caller's ctx, the
// session's end. Every wait of the package goes through one, so that a
// simulated clock can be told, exactly, when everything is waiting on it
// (see track).
type spot struct {
	once  sync.Once
	ch    chan struct{}
	track func(int)
}

func (l *Limiter) newSpot() *spot { return &spot{ch: make(chan struct{}), track: l.track} }

// wake wakes the spot's goroutine, once; later calls do nothing.
func (s *spot) wake() {
	s.once.Do(func() {
		if s.track != nil {
			s.track(1)
		}
		close(s.ch)
	})
}

// park blocks until wake.
func (s *spot) park() {
	if s.track != nil {
		s.track(-1)
	}
	<-s.ch
}
