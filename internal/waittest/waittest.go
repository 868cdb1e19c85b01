// Package waittest waits in tests for a condition that other goroutines
// or processes bring about: one polling loop, with a generous bound for a
// loaded machine and a backoff, instead of a sleep loop in every package.
package waittest

import (
	"testing"
	"time"
)

// DefaultWithin bounds a wait when the caller has no bound of its own:
// generous, because a test on a loaded machine (two cores, several suites
// under the race detector) can take many times its usual time; a wait
// that holds returns as soon as it does.
const DefaultWithin = 20 * time.Second

// Until polls cond until it holds, and fails the test naming what it
// waited for when within passes first (DefaultWithin when within is 0).
// It polls at 1 ms at first, backing off to 50 ms.
func Until(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, cond) {
		t.Fatalf("timed out after %s waiting for %s", orDefault(within), what)
	}
}

// Poll is Until without a test: it reports whether cond held within the
// bound.
func Poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(orDefault(within))
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	return true
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultWithin
	}
	return d
}
