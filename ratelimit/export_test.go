package ratelimit

// SetTracker makes l report to track whenever one of its goroutines (a
// caller in Wait, the reservation loop) starts waiting (-1) or is woken
// (+1), for a simulated clock that moves only when everything waits on
// it. Set it before l is used.
func SetTracker(l *Limiter, track func(int)) { l.track = track }

// SyncState tells a simulation whether l follows the shared state (and
// has loaded it), the mod revision of the state it knows, and the
// revision its mirror has shown it: every process that follows is caught
// up when it loaded and its seen is at least every process's known state
// revision.
func SyncState(l *Limiter) (active, loaded bool, stMod, seen int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active, l.loaded, l.stMod, l.seen
}

// Holdings is the permits l holds and has not granted.
func Holdings(l *Limiter) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, _ := l.holdings()
	return n
}
