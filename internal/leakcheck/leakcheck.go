// Package leakcheck fails a package's test run when goroutines outlive its
// tests. Use it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m, "internal/proxy.(") }
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Wait is how long leftover goroutines get to finish after the tests.
const Wait = 5 * time.Second

// Main runs the tests, then fails the run if goroutines are left whose
// stacks contain one of markers; with no markers, any goroutine other than
// the caller's and the runtime's signal loop counts.
func Main(m *testing.M, markers ...string) {
	code := m.Run()
	if code == 0 {
		if left := Leftover(Wait, markers...); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines outlived the tests\n%s\n", len(left), strings.Join(left, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Leftover polls for up to wait until no matching goroutine is left, and
// returns the stacks of those still there.
func Leftover(wait time.Duration, markers ...string) []string {
	deadline := time.Now().Add(wait)
	for {
		left := matching(markers)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func matching(markers []string) []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var left []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 || strings.TrimSpace(g) == "" {
			continue // the caller's own goroutine
		}
		if len(markers) == 0 {
			if !strings.Contains(g, "os/signal.") {
				left = append(left, g)
			}
			continue
		}
		for _, mk := range markers {
			if strings.Contains(g, mk) {
				left = append(left, g)
				break
			}
		}
	}
	return left
}
