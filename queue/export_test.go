package queue

// HeadReads reports, for the tests, how many head reads of q's queue the
// process parsed and how many of them covered more than 2*HorizonKeys ready
// messages (each such read costs the server a visit of every one).
func HeadReads(q *Queue) (reads, wide int64) {
	h := q.headHorizon()
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reads, h.wide
}

// HorizonKeys is how many ready messages a head read covers at most,
// but for the reads that place the horizon.
const HorizonKeys = horizonKeys
