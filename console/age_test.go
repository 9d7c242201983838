package console

import (
	"testing"
	"time"
)

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 42 * time.Second: "42s", 3*time.Minute + 7*time.Second: "3m07s",
		5*time.Hour + 2*time.Minute + 9*time.Second: "5h02m", 76 * time.Hour: "3d04h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}
