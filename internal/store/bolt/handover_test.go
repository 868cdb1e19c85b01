package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/internal/store"
)

// TestWaitWritableWaitsForTheOldProcess is the binary upgrade's hand-over:
// the new process's read-only store becomes writable only once the old
// process's handle is closed, and stays read-only (with ctx's error) while
// it is held.
func TestWaitWritableWaitsForTheOldProcess(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	old, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKV(ctx, old, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := old.ReopenReadOnly(); err != nil {
		t.Fatalf("old ReopenReadOnly: %v", err)
	}
	next := openT(t, path, Options{ReadOnly: true, SkipCheck: true})

	// While the old handle holds the file, the wait ends with ctx.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = next.WaitWritable(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !next.ReadOnly() {
		t.Fatalf("WaitWritable while the file is held: err %v, read-only %v; want DeadlineExceeded and still read-only", err, next.ReadOnly())
	}

	done := make(chan error, 1)
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	go func() { done <- next.WaitWritable(wctx) }()
	if err := old.Close(); err != nil {
		t.Fatalf("closing the old handle: %v", err)
	}
	start := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("WaitWritable after the old handle closed: %v", err)
	}
	t.Logf("writable %s after the old handle closed", time.Since(start).Round(time.Millisecond))
	if next.ReadOnly() {
		t.Fatal("ReadOnly() = true after WaitWritable returned nil")
	}
	if _, err := store.PutKV(ctx, next, "b", []byte("2")); err != nil {
		t.Fatalf("put after the hand-over: %v", err)
	}
	if kv, err := next.Get(ctx, "a"); err != nil || string(kv.Value) != "1" {
		t.Fatalf("Get a after the hand-over = %q, %v; want 1", kv.Value, err)
	}
	// Already writable: at once.
	if err := next.WaitWritable(ctx); err != nil {
		t.Fatalf("WaitWritable on a writable store: %v", err)
	}
}
