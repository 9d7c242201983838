package keys

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest name, in bytes before escaping, that a
// primitive accepts.
const MaxNameLen = 512

// DefaultRoot is the root prefix used when a session sets none.
const DefaultRoot = "coord/"

// ErrInvalidName is wrapped by every name validation error.
var ErrInvalidName = errors.New("invalid name")

// Kinds of primitive. Each owns its own subtree below the root.
const (
	KindLock      = "lock"
	KindRWLock    = "rwlock"
	KindElection  = "election"
	KindSemaphore = "semaphore"
	KindBarrier   = "barrier"
	KindDouble    = "dbarrier"
	KindLatch     = "latch"
	KindQueue     = "queue"
	KindSession   = "session"
	KindSchedule  = "schedule"
	KindGroup     = "group"
	KindShard     = "shard"
	KindRateLimit = "ratelimit"
	KindFence     = "fence"
)

// Kinds lists every kind, each of which is a reserved root segment.
var Kinds = []string{KindLock, KindRWLock, KindElection, KindSemaphore, KindBarrier,
	KindDouble, KindLatch, KindQueue, KindSession, KindSchedule, KindGroup, KindShard,
	KindRateLimit, KindFence}

// ValidateName reports why name cannot be used, or nil.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: name is empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name %.32q... is %d bytes, over the %d-byte limit", ErrInvalidName, name, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name %q is not valid UTF-8", ErrInvalidName, name)
	}
	return nil
}

// NormalizeRoot validates a root prefix and makes sure it ends in '/', so
// that roots "app" and "app2" cannot overlap either.
//
// No segment of a root may be a kind ("lock", "queue", ...): the keys of
// root R all start with R+kind+"/", so a second root nested inside R's
// keyspace would have to go through one of R's kind segments. Refusing
// those segments makes overlapping roots impossible rather than merely
// discouraged: "coord/" and "coord/lock/" can never both be in use, and a
// Mutex under one never sees the other's keys in its line.
func NormalizeRoot(root string) (string, error) {
	if root == "" {
		return "", fmt.Errorf("%w: root prefix is empty", ErrInvalidName)
	}
	if !utf8.ValidString(root) {
		return "", fmt.Errorf("%w: root prefix %q is not valid UTF-8", ErrInvalidName, root)
	}
	if len(root) > MaxNameLen {
		return "", fmt.Errorf("%w: root prefix is %d bytes, over the %d-byte limit", ErrInvalidName, len(root), MaxNameLen)
	}
	if !strings.HasSuffix(root, "/") {
		root += "/"
	}
	for _, seg := range strings.Split(strings.TrimSuffix(root, "/"), "/") {
		if slices.Contains(Kinds, seg) {
			return "", fmt.Errorf("%w: root prefix %q has the segment %q, which coord reserves for its %s keys (a root inside another root's keyspace)", ErrInvalidName, root, seg, seg)
		}
	}
	return root, nil
}

// Escape maps a name to a form with no '/' in it. It is injective: '%' is
// escaped too, so "a/b" (a%2Fb) and the literal "a%2Fb" (a%252Fb) differ.
// Control characters are escaped so keys stay readable in etcdctl.
func Escape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '/' || c == '%' || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Unescape reverses Escape. It is used by introspection to show names.
// It accepts only what Escape writes (two upper-case hex digits after each
// '%', and every byte Escape would escape escaped), so that no two
// segments read as the same name: a hand-written key such as "a%2fb" or
// "a/b" is an error, not a second spelling of "a/b".
func Unescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		hi, lo := -1, -1
		if i+2 < len(s) {
			hi, lo = upperHex(s[i+1]), upperHex(s[i+2])
		}
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("%w: bad escape in %q", ErrInvalidName, s)
		}
		b.WriteByte(byte(hi<<4 | lo))
		i += 2
	}
	name := b.String()
	if Escape(name) != s {
		return "", fmt.Errorf("%w: %q is not an escaped name", ErrInvalidName, s)
	}
	return name, nil
}

// upperHex is the value of an upper-case hex digit, or -1.
func upperHex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// Space is the key subtree of one named primitive.
type Space struct {
	kind, name string
	base       string // <root><kind>/<escaped>/
}

// New validates name and returns its subtree under root (already
// normalized by NormalizeRoot).
func New(root, kind, name string) (Space, error) {
	if err := ValidateName(name); err != nil {
		return Space{}, fmt.Errorf("%s %w", kind, err)
	}
	return Space{kind: kind, name: name, base: root + kind + "/" + Escape(name) + "/"}, nil
}

// Name is the user's name, unescaped.
func (s Space) Name() string { return s.name }

// Kind is the primitive kind.
func (s Space) Kind() string { return s.kind }

// Base is the prefix every key of this primitive starts with.
func (s Space) Base() string { return s.base }

// Part is the prefix of one part, such as the waiters "w/": every key of
// the part starts with it and no key of another part or name does.
func (s Space) Part(part string) string { return s.base + part + "/" }

// Key is the key of one member id inside a part.
func (s Space) Key(part, id string) string { return s.base + part + "/" + id }

// Single is a key that stands alone in the space, such as "capacity".
func (s Space) Single(leaf string) string { return s.base + leaf }

// RangeEnd returns the etcd range end that covers exactly the keys
// starting with prefix.
func RangeEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return "\x00"
}

// ID returns the id of a member key: a session's lease in 16 hex digits,
// then a per-session sequence number, so two holders on one session never
// share a key (etcd issue 11360).
func ID(lease int64, seq uint64) string {
	return fmt.Sprintf("%016x-%d", lease, seq)
}
