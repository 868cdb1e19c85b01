package store

import (
	"context"
	"testing"
	"time"
)

// TestApplied: Wait returns at once for an applied revision, blocks until
// Advance reaches its revision (not before), ignores a lower Advance, and
// gives up when its context ends.
func TestApplied(t *testing.T) {
	var a Applied
	ctx := context.Background()
	if !a.Wait(ctx, 0) {
		t.Fatal("Wait(0) on the zero value = false, want true")
	}
	a.Advance(5)
	a.Advance(3)
	if a.Rev() != 5 || !a.Wait(ctx, 5) {
		t.Fatalf("after Advance(5), Advance(3): Rev %d, want 5 and Wait(5) true", a.Rev())
	}

	done := make(chan bool, 1)
	go func() { done <- a.Wait(ctx, 8) }()
	a.Advance(7) // not yet
	select {
	case <-done:
		t.Fatal("Wait(8) returned after Advance(7)")
	case <-time.After(50 * time.Millisecond):
	}
	a.Advance(9)
	if !<-done {
		t.Fatal("Wait(8) = false after Advance(9), want true")
	}

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if a.Wait(short, 100) {
		t.Fatal("Wait(100) = true with nothing applied past 9")
	}
}
