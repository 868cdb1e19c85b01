package status

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// failingList is a store whose List fails while fail is above zero,
// counting down.
type failingList struct {
	store.Store
	fail  atomic.Int32
	lists atomic.Int32
}

func (f *failingList) List(ctx context.Context, prefix, startAfter string, limit int) ([]store.KV, int64, error) {
	f.lists.Add(1)
	if f.fail.Add(-1) >= 0 {
		return nil, 0, fmt.Errorf("listing %q: refused for the test: %w", prefix, store.ErrUnavailable)
	}
	return f.Store.List(ctx, prefix, startAfter, limit)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestReloadAfterCompactionRetried loses the portal's watch (its consumer
// falls behind, which the store reports as compaction), makes the reload
// that follows fail twice, and checks that the portal logs each failure,
// retries until the reload succeeds and then follows other nodes' changes
// again, instead of watching on from where it stood.
func TestReloadAfterCompactionRetried(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "status.db"), bolt.Options{WatchQueue: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fl := &failingList{Store: st}
	var logs lockedBuffer
	p := New(testStatus, nil, nil, Options{Store: fl, Interval: time.Hour, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	other := New(testStatus, nil, nil, Options{Store: st, Interval: time.Hour})
	if err := other.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	// Hold the portal while more changes arrive than its watch may queue.
	p.mu.Lock()
	for i := range 20 {
		if _, err := store.PutKV(ctx, st, fmt.Sprintf("%sfiller/%02d", KeyPrefix, i), []byte("{}")); err != nil {
			p.mu.Unlock()
			t.Fatal(err)
		}
	}
	fl.fail.Store(2)
	listsBefore := fl.lists.Load()
	p.mu.Unlock()

	if _, err := other.SetOverride(ctx, "EU01/Web app", OverrideRequest{Status: Partial, Reason: "slow logins"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got string
		for _, c := range p.Components() {
			if c.Region+"/"+c.Name == "EU01/Web app" {
				got = c.Status
			}
		}
		if got == Partial && strings.Contains(logs.String(), "following status records again") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the portal never saw the other node's override (status %q); log:\n%s", got, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	log := logs.String()
	if n := fl.lists.Load() - listsBefore; n < 3 {
		t.Errorf("%d listings after the watch was lost, want at least 3 (two failed)", n)
	}
	for _, want := range []struct {
		line string
		n    int
	}{
		{"relisting status records", 1},
		{"following status records: listing failed; retrying", 2},
		{"following status records again", 1},
	} {
		if got := strings.Count(log, want.line); got != want.n {
			t.Errorf("%d lines %q, want %d; log:\n%s", got, want.line, want.n, log)
		}
	}
}
