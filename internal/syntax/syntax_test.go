package syntax

import (
	"testing"
	"time"
)

// TestDuration: Go durations and whole days parse; negative, fractional
// days and words are refused.
func TestDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"200ms": 200 * time.Millisecond, "1.5s": 1500 * time.Millisecond,
		" 2m ": 2 * time.Minute, "30d": 30 * 24 * time.Hour, "0d": 0,
	} {
		if got, err := Duration(in); err != nil || got != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1s", "-2d", "1.5d", "soon", "5"} {
		if got, err := Duration(in); err == nil {
			t.Errorf("Duration(%q) = %v, want an error", in, got)
		}
	}
}

// TestRouteHost: exact names, one-label wildcards and "*" are accepted;
// the rest is refused with a message quoting the input.
func TestRouteHost(t *testing.T) {
	for _, ok := range []string{"*", "example.com", "A-b_c.Example.test", "*.example.com", "localhost"} {
		if err := RouteHost(ok); err != nil {
			t.Errorf("RouteHost(%q) = %v", ok, err)
		}
	}
	for in, want := range map[string]string{
		"":              "is required",
		"*.com":         `"*.com" is not a valid wildcard (use *.example.com)`,
		"a..b":          `"a..b" is not a valid hostname`,
		"-a.example":    `"-a.example" is not a valid hostname`,
		"a.*.example":   `"a.*.example" is not a valid hostname`,
		"ex ample.test": `"ex ample.test" is not a valid hostname`,
	} {
		if err := RouteHost(in); err == nil || err.Error() != want {
			t.Errorf("RouteHost(%q) = %v, want %q", in, err, want)
		}
	}
}

// TestHostname: label and total length limits hold.
func TestHostname(t *testing.T) {
	long := make([]byte, 64)
	for i := range long {
		long[i] = 'a'
	}
	if Hostname(string(long) + ".test") {
		t.Error("a 64-byte label was accepted")
	}
	if !Hostname(string(long[:63]) + ".test.") {
		t.Error("a 63-byte label with a trailing dot was refused")
	}
}
