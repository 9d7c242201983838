package keys

import "strings"

// The keys of a lock-delay (see internal/hold), under the base of a
// primitive that has one turned on. No primitive uses these names for
// anything else.
const (
	// PartMark is the part of the marks: one persistent key (on no
	// lease) per hold, created with the hold's key and deleted with it by
	// its owner. A mark whose key is gone is a hold that ended without its
	// owner letting it go: its lease expired or was revoked, or its key
	// was deleted by someone else.
	PartMark = "x"
	// LeafDelay is the pending lock-delay: a key on a lease of the
	// delay's length, which the next holder waits to see expire.
	LeafDelay = "delay"
)

// MarkOf returns the mark of a member key <base><part>/<id>, and the
// base it reads the key as having: callers that know their base compare
// it (a single key <base><leaf> reads as a member of a shorter base). ok
// is false for a key with no part and id.
func MarkOf(key string) (mark, base string, ok bool) {
	slash := strings.LastIndexByte(key, '/')
	if slash <= 0 || slash == len(key)-1 {
		return "", "", false
	}
	part := strings.LastIndexByte(key[:slash], '/')
	if part < 0 {
		return "", "", false
	}
	base = key[:part+1]
	return base + PartMark + "/" + key[part+1:], base, true
}

// Marked returns the member key a mark of base stands for, or false for a
// key that is not a mark of base.
func Marked(mark, base string) (string, bool) {
	rest, ok := strings.CutPrefix(mark, base+PartMark+"/")
	if !ok || !strings.Contains(rest, "/") {
		return "", false
	}
	return base + rest, true
}
