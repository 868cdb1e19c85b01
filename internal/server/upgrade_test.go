package server

import (
	"errors"
	"testing"
	"time"
)

// TestUpgradeUndoesFailedPrepare: a Prepare that fails may have done part
// of its work (the node pauses its status leadership, then fails to turn
// its store read-only); Abort must run so that the node does not stay
// half handed over, with nobody deciding the status portal.
func TestUpgradeUndoesFailedPrepare(t *testing.T) {
	u, err := NewUpgrader(UpgradeOptions{Timeout: time.Second})
	if err != nil {
		t.Skipf("binary upgrades unavailable here: %v", err)
	}
	defer u.Stop()
	select {
	case <-u.ParentExited():
	case <-time.After(5 * time.Second):
		t.Fatal("a process without a parent never reported its parent gone")
	}
	prepareErr := errors.New("store file held by another process")
	var aborted int
	err = u.Upgrade(Handover{
		Prepare: func() error { return prepareErr },
		Abort:   func() { aborted++ },
	})
	if !errors.Is(err, prepareErr) {
		t.Errorf("Upgrade = %v, want the Prepare error", err)
	}
	if aborted != 1 {
		t.Errorf("Abort ran %d times after Prepare failed, want 1", aborted)
	}
}
