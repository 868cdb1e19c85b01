package main

import (
	"strings"
	"testing"
)

// TestCLIRefusesPlainHTTPAdmin checks that the CLI sends nothing to an
// http:// admin URL, from the flag or the environment, and says why.
func TestCLIRefusesPlainHTTPAdmin(t *testing.T) {
	want := "http:// would send the admin token in clear; the admin API serves HTTPS only: use https://127.0.0.1:9443"
	for _, args := range [][]string{
		{"cert", "list", "--admin", "http://127.0.0.1:9443", "--token", "0123456789abcdef0123"},
		{"limits", "--admin", "http://127.0.0.1:9443", "--token", "0123456789abcdef0123"},
	} {
		out, err := runCLI(t, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("gatehouse %s: err = %v (output %q), want it to contain %q", strings.Join(args, " "), err, out, want)
		}
	}
	t.Setenv("GATEHOUSE_ADMIN", "http://127.0.0.1:9443")
	t.Setenv("GATEHOUSE_TOKEN", "0123456789abcdef0123")
	if _, err := runCLI(t, "incident", "list"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("gatehouse incident list with GATEHOUSE_ADMIN=http://…: err = %v, want it to contain %q", err, want)
	}
}
