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
