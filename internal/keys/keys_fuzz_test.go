package keys_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/coord-go/coord/internal/keys"
)

// FuzzName: New accepts exactly the names ValidateName accepts, refuses
// the others with ErrInvalidName (never a panic), and a name is read back
// from its keys: the escaped segment after root and kind unescapes to it,
// and a member key's mark maps back to the key.
func FuzzName(f *testing.F) {
	for _, s := range []string{"a", "a/b", "%", "%2F", "%2f", "a%", "\x00", "\x7f", "é", "bad\xff", "", strings.Repeat("x", keys.MaxNameLen+1)} {
		f.Add(s, "00000000000000ab-3")
	}
	f.Fuzz(func(t *testing.T, name, id string) {
		sp, err := keys.New(keys.DefaultRoot, keys.KindLock, name)
		if verr := keys.ValidateName(name); verr != nil {
			if err == nil || !errors.Is(err, keys.ErrInvalidName) || !errors.Is(verr, keys.ErrInvalidName) {
				t.Fatalf("New(%q) = %v, ValidateName = %v; want ErrInvalidName from both", name, err, verr)
			}
			return
		}
		if err != nil {
			t.Fatalf("New(%q) refuses a valid name: %v", name, err)
		}
		seg, ok := strings.CutPrefix(sp.Base(), keys.DefaultRoot+keys.KindLock+"/")
		if !ok || !strings.HasSuffix(seg, "/") || strings.Count(seg, "/") != 1 {
			t.Fatalf("name %q has base %q, not <root><kind>/<one segment>/", name, sp.Base())
		}
		back, err := keys.Unescape(strings.TrimSuffix(seg, "/"))
		if err != nil || back != name || sp.Name() != name {
			t.Fatalf("name %q reads back from its key as %q (%v)", name, back, err)
		}
		if id == "" || strings.Contains(id, "/") {
			return
		}
		k := sp.Key("w", id)
		mark, base, ok := keys.MarkOf(k)
		if !ok || base != sp.Base() {
			t.Fatalf("MarkOf(%q) = %q, %q, %v; want its base %q", k, mark, base, ok, sp.Base())
		}
		if got, ok := keys.Marked(mark, sp.Base()); !ok || got != k {
			t.Fatalf("Marked(MarkOf(%q)) = %q, %v", k, got, ok)
		}
	})
}

// FuzzUnescape: any stored segment unescapes with an error or to the one
// name whose escape it is, so two keys never read as the same name
// (introspection shows names it reads from keys written by anyone).
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{"a", "a%2Fb", "a%2fb", "%", "%2", "%zz", "%+1", "% 1", "%-1", "a/b", "%41", "%25", "\x01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		name, err := keys.Unescape(s)
		if err != nil {
			if !errors.Is(err, keys.ErrInvalidName) {
				t.Fatalf("Unescape(%q): %v, not ErrInvalidName", s, err)
			}
			return
		}
		if esc := keys.Escape(name); esc != s {
			t.Fatalf("Unescape(%q) = %q, whose escape is %q: two segments read as one name", s, name, esc)
		}
	})
}
