package leakcheck

import (
	"testing"
	"time"
)

func blockedUntil(ch chan struct{}) { <-ch }

func TestLeftover(t *testing.T) {
	release := make(chan struct{})
	go blockedUntil(release)
	time.Sleep(10 * time.Millisecond)
	if left := Leftover(50*time.Millisecond, "leakcheck.blockedUntil"); len(left) != 1 {
		t.Fatalf("Leftover while blocked = %d goroutines, want 1", len(left))
	}
	close(release)
	if left := Leftover(2*time.Second, "leakcheck.blockedUntil"); len(left) != 0 {
		t.Fatalf("Leftover after release = %q, want none", left)
	}
}
