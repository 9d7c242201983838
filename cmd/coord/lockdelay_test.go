package main_test

import (
	"strings"
	"testing"
)

// --lock-delay takes whole seconds; anything else is a usage error, and
// a lock taken with one is released as cleanly as without.
func TestLockDelayFlag(t *testing.T) {
	t.Parallel()
	n := name(t)
	for _, bad := range []string{"500ms", "1.5s", "-1s", "2h"} {
		if _, stderr, code := coord(t, "", "lock", "--lock-delay", bad, n, "--", "true"); code != 2 || !strings.Contains(stderr, "lock-delay") {
			t.Errorf("--lock-delay %s: exit %d, stderr %q; want 2 saying why", bad, code, stderr)
		}
	}
	if _, stderr, code := coord(t, "", "lock", "--lock-delay", "5s", n, "--", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exit %d, want the child's 3; stderr %q", code, stderr)
	}
	if kvs := keysUnder(t, "coord/lock/"+n+"/"); len(kvs) != 0 {
		t.Errorf("keys left after a clean run with a lock-delay: %v", kvs)
	}
}
