package keys_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/coord-go/coord/internal/keys"
)

func TestNamesNeverShareKeys(t *testing.T) {
	names := []string{"a", "a/b", "ab", "a-b", "a/", "a%2Fb", "a%", "b", "a/b/c", "a b"}
	root, _ := keys.NormalizeRoot("coord")
	for _, x := range names {
		for _, y := range names {
			if x == y {
				continue
			}
			sx, err := keys.New(root, keys.KindLock, x)
			if err != nil {
				t.Fatal(err)
			}
			sy, _ := keys.New(root, keys.KindLock, y)
			if strings.HasPrefix(sy.Key("w", "1"), sx.Base()) {
				t.Errorf("key of %q falls inside the range of %q: %s", y, x, sy.Key("w", "1"))
			}
		}
	}
}

func TestInvalidNames(t *testing.T) {
	cases := map[string]string{
		"":                                     "empty",
		strings.Repeat("x", keys.MaxNameLen+1): "over the 512-byte limit",
		"bad\xffutf8":                          "not valid UTF-8",
	}
	for name, want := range cases {
		_, err := keys.New("coord/", keys.KindLock, name)
		if !errors.Is(err, keys.ErrInvalidName) || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%q) = %v, want ErrInvalidName saying %q", name, err, want)
		}
	}
	if _, err := keys.New("coord/", keys.KindLock, strings.Repeat("x", keys.MaxNameLen)); err != nil {
		t.Errorf("512-byte name rejected: %v", err)
	}
}

func TestRoot(t *testing.T) {
	r, err := keys.NormalizeRoot("app")
	if err != nil || r != "app/" {
		t.Fatalf("NormalizeRoot(app) = %q, %v", r, err)
	}
	if _, err := keys.NormalizeRoot(""); !errors.Is(err, keys.ErrInvalidName) {
		t.Fatalf("empty root accepted: %v", err)
	}
}

func TestRangeEnd(t *testing.T) {
	if got := keys.RangeEnd("a/"); got != "a0" {
		t.Fatalf("RangeEnd(a/) = %q", got)
	}
	if got := keys.RangeEnd("a\xff"); got != "b" {
		t.Fatalf("RangeEnd(a\\xff) = %q", got)
	}
}

// FuzzNoOverlap checks that for any two distinct valid names, neither's
// keys fall inside the other's prefix, and that escaping round-trips.
func FuzzNoOverlap(f *testing.F) {
	for _, s := range []string{"a", "a/b", "ab", "a-b", "a/", "%", "%2F", "/"} {
		f.Add(s, s+"/")
	}
	f.Fuzz(func(t *testing.T, x, y string) {
		if keys.ValidateName(x) != nil || keys.ValidateName(y) != nil {
			return
		}
		ex := keys.Escape(x)
		if strings.Contains(ex, "/") || !utf8.ValidString(ex) {
			t.Fatalf("escape(%q) = %q", x, ex)
		}
		if back, err := keys.Unescape(ex); err != nil || back != x {
			t.Fatalf("unescape(escape(%q)) = %q, %v", x, back, err)
		}
		if x == y {
			return
		}
		sx, _ := keys.New("coord/", keys.KindLock, x)
		sy, _ := keys.New("coord/", keys.KindLock, y)
		if strings.HasPrefix(sy.Base(), sx.Base()) || strings.HasPrefix(sx.Base(), sy.Base()) {
			t.Fatalf("names %q and %q overlap: %q vs %q", x, y, sx.Base(), sy.Base())
		}
	})
}

func TestRootsCannotNest(t *testing.T) {
	for _, bad := range []string{"coord/lock/", "coord/lock", "app/queue/x/", "semaphore", "a/session/b"} {
		if _, err := keys.NormalizeRoot(bad); !errors.Is(err, keys.ErrInvalidName) || !strings.Contains(err.Error(), "reserves") {
			t.Errorf("NormalizeRoot(%q) = %v, want ErrInvalidName saying the segment is reserved", bad, err)
		}
	}
	for _, good := range []string{"coord/", "app/coord/", "locks/", "team-a/lockservice/"} {
		if _, err := keys.NormalizeRoot(good); err != nil {
			t.Errorf("NormalizeRoot(%q) = %v", good, err)
		}
	}
}

// FuzzRootsDisjoint checks that any two distinct valid roots give key
// spaces in which no primitive key of one is inside the other's subtree
// of any kind.
func FuzzRootsDisjoint(f *testing.F) {
	f.Add("coord/", "coord/x/", "w")
	f.Add("a/", "a/b/", "lock")
	f.Fuzz(func(t *testing.T, r1, r2, name string) {
		a, err1 := keys.NormalizeRoot(r1)
		b, err2 := keys.NormalizeRoot(r2)
		if err1 != nil || err2 != nil || a == b || keys.ValidateName(name) != nil {
			return
		}
		for _, k1 := range keys.Kinds {
			for _, k2 := range keys.Kinds {
				s1, _ := keys.New(a, k1, name)
				s2, _ := keys.New(b, k2, name)
				if strings.HasPrefix(s2.Key("w", "1"), a+k1+"/") || strings.HasPrefix(s1.Key("w", "1"), b+k2+"/") {
					t.Fatalf("roots %q and %q overlap: %s / %s", a, b, s1.Key("w", "1"), s2.Key("w", "1"))
				}
			}
		}
	})
}

func TestMarkOf(t *testing.T) {
	sp, _ := keys.New("coord/", keys.KindLock, "a/b")
	k := sp.Key("w", "00000000000000ab-3")
	mark, base, ok := keys.MarkOf(k)
	if !ok || base != sp.Base() || mark != sp.Base()+"x/w/00000000000000ab-3" {
		t.Fatalf("MarkOf(%s) = %s, %s, %v", k, mark, base, ok)
	}
	if back, ok := keys.Marked(mark, sp.Base()); !ok || back != k {
		t.Fatalf("Marked(%s) = %s, %v", mark, back, ok)
	}
	// Not marks of this base: a member key, a single key, another name's mark.
	other, _ := keys.New("coord/", keys.KindLock, "a")
	om, _, _ := keys.MarkOf(other.Key("w", "1"))
	for _, k := range []string{k, sp.Single("delay"), om, sp.Part("x")} {
		if _, ok := keys.Marked(k, sp.Base()); ok {
			t.Errorf("Marked(%s) under %s: true", k, sp.Base())
		}
	}
	// A single key reads as a member of a shorter base, never of its own.
	if _, b, ok := keys.MarkOf(sp.Single("leader")); ok && b == sp.Base() {
		t.Errorf("MarkOf(single key) under its own base")
	}
}
