package etcdtest

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// KillAll crashes the whole cluster at once: every running member is
// killed in parallel, without handing over leadership, as a power cut or
// an operator's `kill -9` of every member would (process members get
// SIGKILL; embedded ones are hard-stopped, their connections cut). What
// the members had committed stays in their data directories; RestartAll
// brings the cluster back from there.
func (c *Cluster) KillAll() {
	var wg sync.WaitGroup
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); m.stop(true) }()
	}
	wg.Wait()
}

// RestartAll starts every stopped member again from its data directory,
// all at once (no single member of a cluster that lost every member can
// elect a leader on its own), and waits until each serves requests and
// the members agree on a leader.
func (c *Cluster) RestartAll() error {
	var stopped []*member
	for _, m := range c.members {
		if !m.running() {
			stopped = append(stopped, m)
		}
	}
	for _, m := range stopped {
		if err := m.start(false, false); err != nil {
			return err
		}
	}
	errs := make([]error, len(stopped))
	var wg sync.WaitGroup
	for i, m := range stopped {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = m.waitReady(60 * time.Second) }()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("etcdtest: restart all: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for c.Leader() < 0 {
		if time.Now().After(deadline) {
			return errors.New("etcdtest: restart all: the members agree on no leader after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
