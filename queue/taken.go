package queue

// The consumers of one process share its dispatcher, and through it
// what they are claiming: without that, a process's fetchers (Consume
// with several, or several Claim loops on one session) all read the same
// head and all try its first messages, and all but one Txn fails, each
// failure bringing back a whole view. With it, a consumer tries only
// messages no other consumer of the process is trying, and ignores, in an
// older view, messages the process has claimed since: conflicts are left
// to consumers of other processes, which spread by lease (see pick).

// keepClaimed bounds the claims a process remembers, to tell views older
// than a claim from the message it took. A view older than that many
// claims is rare, and costs only a failed Txn.
const keepClaimed = 1024

// reserve chooses, with choose, what to claim from v among the messages no
// other consumer of the process is trying and that v does not show from
// before the process claimed them, and marks them as being tried. It
// returns nil when nothing in v is left to try, with a channel closed
// when another consumer's try that holds some of them ends (nil when v
// is only out of date: read the head again).
func (d *dispatcher) reserve(v *view, choose func([]candidate) []candidate) ([]candidate, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	avail := v.cands
	for i, c := range v.cands {
		if d.takenIn(v, c) {
			avail = make([]candidate, 0, len(v.cands))
			avail = append(avail, v.cands[:i]...)
			for _, c := range v.cands[i+1:] {
				if !d.takenIn(v, c) {
					avail = append(avail, c)
				}
			}
			break
		}
	}
	if len(avail) == 0 {
		for _, c := range v.cands {
			if _, ok := d.trying[c.key]; ok {
				if d.settled == nil {
					d.settled = make(chan struct{})
				}
				return nil, d.settled
			}
		}
		return nil, nil
	}
	cs := choose(avail)
	if d.trying == nil {
		d.trying = map[string]struct{}{}
	}
	for _, c := range cs {
		d.trying[c.key] = struct{}{}
	}
	return cs, nil
}

// takenIn reports whether another consumer of the process is trying c, or
// claimed it after v was read. d.mu held.
func (d *dispatcher) takenIn(v *view, c candidate) bool {
	if _, ok := d.trying[c.key]; ok {
		return true
	}
	rev, ok := d.claimed[c.key]
	return ok && v.rev < rev
}

// settle ends a reservation: claimed at rev when the claim landed (rev
// 0 when it did not). The consumers that found nothing but messages being
// tried look again: the try may have failed and left them, or succeeded
// and left more behind them.
func (d *dispatcher) settle(cs []candidate, rev int64) {
	d.mu.Lock()
	if d.settled != nil {
		close(d.settled)
		d.settled = nil
	}
	for _, c := range cs {
		delete(d.trying, c.key)
		if rev == 0 {
			continue
		}
		if d.claimed == nil {
			d.claimed = map[string]int64{}
		}
		if _, ok := d.claimed[c.key]; !ok {
			d.claimedOrder = append(d.claimedOrder, c.key)
		}
		d.claimed[c.key] = rev
	}
	for len(d.claimedOrder) > keepClaimed {
		delete(d.claimed, d.claimedOrder[0])
		d.claimedOrder = d.claimedOrder[1:]
	}
	d.mu.Unlock()
}
