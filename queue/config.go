package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrConfigMismatch is returned when a Queue's options (WithConfig,
// WithMaxAttempts, WithBackoff, WithDeadRetention) disagree with the
// settings stored with the queue: every producer, consumer and tool of a
// queue works to one set of settings, changed for all by SetConfig.
var ErrConfigMismatch = errors.New("queue: settings differ from the queue's stored settings")

// Config is a queue's settings, stored with the queue (under
// <root>queue/<name>/config) so that every consumer, `coord queue` and
// `coord status` apply the same ones.
type Config struct {
	// MaxAttempts moves a message to the dead-letter list once it has
	// been claimed that many times without an Ack (at its last Nack or
	// failure, or when a consumer died holding its last attempt). 0 means
	// retry forever.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Backoff is how long a failed message waits before it is claimable
	// again, when its handler does not say (see RetryAfter).
	Backoff Backoff `json:"backoff"`
	// DeadRetention is how long a dead letter is kept before consumers
	// discard it; 0 keeps dead letters until they are re-driven or
	// discarded.
	DeadRetention time.Duration `json:"dead_retention,omitempty"`
}

// Backoff is an exponential backoff with jitter: attempt n waits
// Min·2^(n-1), at most Max, give or take Jitter of it.
type Backoff struct {
	Min    time.Duration `json:"min"`
	Max    time.Duration `json:"max"`
	Jitter float64       `json:"jitter"` // 0..1: the fraction of the delay drawn at random
}

// DefaultConfig is the settings of a queue that stored none: retry
// forever, waiting 1 s after the first failure, doubling to at most
// 5 min, with 20% jitter; keep dead letters.
var DefaultConfig = Config{Backoff: Backoff{Min: time.Second, Max: 5 * time.Minute, Jitter: 0.2}}

// Delay returns how long the attempt-th failure (1 for the first) waits.
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Min
	for i := 1; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.Jitter > 0 && d > 0 {
		j := float64(d) * b.Jitter
		d += time.Duration(j * (2*rand.Float64() - 1))
	}
	return max(d, 0)
}

func (c Config) validate() error {
	switch {
	case c.MaxAttempts < 0:
		return fmt.Errorf("%w: max attempts %d is negative", ErrInvalid, c.MaxAttempts)
	case c.Backoff.Min < 0 || c.Backoff.Max < 0:
		return fmt.Errorf("%w: backoff %v..%v is negative", ErrInvalid, c.Backoff.Min, c.Backoff.Max)
	case c.Backoff.Max < c.Backoff.Min:
		return fmt.Errorf("%w: backoff max %v is under its min %v", ErrInvalid, c.Backoff.Max, c.Backoff.Min)
	case c.Backoff.Jitter < 0 || c.Backoff.Jitter > 1:
		return fmt.Errorf("%w: backoff jitter %v is outside 0..1", ErrInvalid, c.Backoff.Jitter)
	case c.DeadRetention < 0:
		return fmt.Errorf("%w: dead-letter retention %v is negative", ErrInvalid, c.DeadRetention)
	}
	return nil
}

// wanted is what a Queue's options say of the stored settings: only the
// fields an option set are compared.
type wanted struct {
	cfg                             Config
	attempts, backoff, retention, _ bool
}

func (w wanted) any() bool { return w.attempts || w.backoff || w.retention }

// agrees reports whether stored has every setting w asks for.
func (w wanted) agrees(stored Config) bool {
	return (!w.attempts || stored.MaxAttempts == w.cfg.MaxAttempts) &&
		(!w.backoff || stored.Backoff == w.cfg.Backoff) &&
		(!w.retention || stored.DeadRetention == w.cfg.DeadRetention)
}

// over returns base with w's settings applied.
func (w wanted) over(base Config) Config {
	if w.attempts {
		base.MaxAttempts = w.cfg.MaxAttempts
	}
	if w.backoff {
		base.Backoff = w.cfg.Backoff
	}
	if w.retention {
		base.DeadRetention = w.cfg.DeadRetention
	}
	return base
}

// WithConfig makes the Queue use c: stored with the queue by its first
// user, and ErrConfigMismatch from every method when the stored settings
// differ (change them with SetConfig).
func WithConfig(c Config) Option {
	return func(o *options) {
		if err := c.validate(); err != nil {
			o.err = err
		}
		o.want = wanted{cfg: c, attempts: true, backoff: true, retention: true}
	}
}

// WithBackoff is WithConfig for the backoff alone.
func WithBackoff(b Backoff) Option {
	return func(o *options) {
		if err := (Config{Backoff: b}).validate(); err != nil {
			o.err = err
		}
		o.want.cfg.Backoff, o.want.backoff = b, true
	}
}

// WithDeadRetention is WithConfig for the dead-letter retention alone.
func WithDeadRetention(d time.Duration) Option {
	return func(o *options) {
		if err := (Config{DeadRetention: d}).validate(); err != nil {
			o.err = err
		}
		o.want.cfg.DeadRetention, o.want.retention = d, true
	}
}

func (q *Queue) configKey() string { return q.sp.Single("config") }

// settings is the process's view of a queue's stored settings, shared by
// every Queue value of the process with that name and root, and kept
// current by the dispatcher's watch of the queue.
type settings struct {
	mu     sync.Mutex
	loaded bool
	cfg    Config
	mod    int64 // the config key's mod revision, 0 when none is stored
}

func (q *Queue) settings() *settings {
	return q.hub.Shared("queue settings "+q.sp.Base(), func() any { return &settings{} }).(*settings)
}

// observe takes a config key's value seen by a watch or a read.
func (st *settings) observe(val []byte, mod int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if mod < st.mod {
		return
	}
	c := DefaultConfig
	if len(val) > 0 {
		if err := json.Unmarshal(val, &c); err != nil {
			return // not written by coord: keep what we had
		}
	}
	st.cfg, st.mod, st.loaded = c, mod, true
}

// Config returns the queue's settings: the stored ones, or DefaultConfig
// when none are stored. The process follows them once it has a consumer
// of the queue; otherwise this is one read.
func (q *Queue) Config(ctx context.Context) (Config, error) {
	if q.err != nil {
		return Config{}, q.err
	}
	return q.config(ctx)
}

// config returns the settings this Queue works to: the process's copy,
// after checking once that this Queue's options agree (storing them when
// nothing is stored yet).
func (q *Queue) config(ctx context.Context) (Config, error) {
	st := q.settings()
	st.mu.Lock()
	c, loaded := st.cfg, st.loaded
	st.mu.Unlock()
	q.mu.Lock()
	checked := q.checked
	q.mu.Unlock()
	if loaded && checked {
		return c, nil
	}
	resp, err := q.cli.Get(ctx, q.configKey())
	if err != nil {
		return Config{}, fmt.Errorf("queue %q: settings: %w", q.sp.Name(), err)
	}
	var val []byte
	var mod int64
	if len(resp.Kvs) > 0 {
		val, mod = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
	}
	st.observe(val, mod)
	if w := q.opts.want; w.any() {
		if mod == 0 {
			// The first user stores its settings; a race with another
			// first user is settled by the compare.
			want := w.over(DefaultConfig)
			b, _ := json.Marshal(want)
			tr, err := q.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(q.configKey()), "=", 0)).
				Then(clientv3.OpPut(q.configKey(), string(b))).Else(clientv3.OpGet(q.configKey())).Commit()
			if err != nil {
				return Config{}, fmt.Errorf("queue %q: store settings: %w", q.sp.Name(), err)
			}
			if tr.Succeeded {
				st.observe(b, tr.Header.Revision)
			} else if kvs := tr.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				st.observe(kvs[0].Value, kvs[0].ModRevision)
			}
		}
		st.mu.Lock()
		stored := st.cfg
		st.mu.Unlock()
		if !w.agrees(stored) {
			return Config{}, fmt.Errorf("queue %q: %w: stored %s; this Queue's options ask for %s", q.sp.Name(), ErrConfigMismatch, describe(stored), describe(w.over(stored)))
		}
	}
	q.mu.Lock()
	q.checked = true
	q.mu.Unlock()
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.cfg, nil
}

// SetConfig changes the queue's stored settings for every producer and
// consumer (a consumer whose own options then disagree gets
// ErrConfigMismatch from its next call). It returns ErrInvalid for bad
// values.
func (q *Queue) SetConfig(ctx context.Context, c Config) error {
	if q.err != nil {
		return q.err
	}
	if err := c.validate(); err != nil {
		return fmt.Errorf("queue %q: %w", q.sp.Name(), err)
	}
	b, _ := json.Marshal(c)
	resp, err := q.cli.Put(ctx, q.configKey(), string(b))
	if err != nil {
		return fmt.Errorf("queue %q: set settings: %w", q.sp.Name(), err)
	}
	q.settings().observe(b, resp.Header.Revision)
	q.mu.Lock()
	q.checked = false
	q.mu.Unlock()
	return nil
}

func describe(c Config) string {
	s := fmt.Sprintf("max attempts %d, backoff %v..%v (jitter %.2f)", c.MaxAttempts, c.Backoff.Min, c.Backoff.Max, c.Backoff.Jitter)
	if c.DeadRetention > 0 {
		s += fmt.Sprintf(", dead letters kept %v", c.DeadRetention)
	}
	return s
}
