package bolt

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"gatehouse/internal/store"
)

// A second Store on the same file stands in for the new process of an
// upgrade: bbolt's flock is per open file, so it conflicts within one
// process as it does between two.

func TestReadOnlyRefusesWrites(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s := openT(t, path, Options{})
	if _, err := store.PutKV(ctx, s, "a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.ReopenReadOnly(); err != nil {
		t.Fatalf("ReopenReadOnly: %v", err)
	}
	if !s.ReadOnly() {
		t.Fatal("ReadOnly() = false after ReopenReadOnly")
	}
	writes := []struct {
		name string
		do   func() error
	}{
		{"put", func() error { _, err := store.PutKV(ctx, s, "b", []byte("2")); return err }},
		{"delete", func() error { _, err := store.DeleteKey(ctx, s, "a"); return err }},
		{"compact", func() error { return s.Compact(ctx, 1) }},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			err := w.do()
			if !errors.Is(err, ErrReadOnly) || !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("%s on a read-only store: err = %v, want ErrReadOnly wrapping store.ErrUnavailable", w.name, err)
			}
		})
	}
	kv, err := s.Get(ctx, "a")
	if err != nil || string(kv.Value) != "1" {
		t.Fatalf("Get on a read-only store = %q, %v; want 1", kv.Value, err)
	}
	if _, err := s.Get(ctx, "b"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get of the refused put: err = %v, want ErrNotFound", err)
	}
	// A no-op transaction only reads.
	if _, err := s.Txn(ctx, []store.Cond{{Key: "a", ModRev: kv.ModRev}}, nil); err != nil {
		t.Fatalf("condition check on a read-only store: %v", err)
	}
	if err := s.ReopenWritable(); err != nil {
		t.Fatalf("ReopenWritable: %v", err)
	}
	if _, err := store.PutKV(ctx, s, "b", []byte("2")); err != nil {
		t.Fatalf("put after ReopenWritable: %v", err)
	}
}

// TestHandover walks the upgrade protocol: the old store turns read-only,
// the new one opens read-only beside it, the old one closes (its process
// exits) and the new one becomes writable, with watches intact.
func TestHandover(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	old := openT(t, path, Options{})
	rev, err := store.PutKV(ctx, old, "certs/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := Open(path, Options{ReadOnly: true, OpenTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only open beside a writable store: err = %v, want ErrLocked", err)
	}
	if err := old.ReopenReadOnly(); err != nil {
		t.Fatal(err)
	}
	nu := openT(t, path, Options{ReadOnly: true, OpenTimeout: 100 * time.Millisecond})
	if _, err := Open(path, Options{OpenTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("writable open beside two read-only stores: err = %v, want ErrLocked", err)
	}
	for name, s := range map[string]*Store{"old": old, "new": nu} {
		kv, err := s.Get(ctx, "certs/a")
		if err != nil || string(kv.Value) != "1" || kv.ModRev != rev {
			t.Fatalf("%s store: Get = %+v, %v; want value 1 at revision %d", name, kv, err, rev)
		}
	}
	// The old process still holds the file: the new one stays read-only.
	if err := nu.ReopenWritable(); !errors.Is(err, ErrLocked) {
		t.Fatalf("ReopenWritable while the old store is open: err = %v, want ErrLocked", err)
	}
	if !nu.ReadOnly() {
		t.Fatal("the new store became writable while the old one held the file")
	}
	if kv, err := nu.Get(ctx, "certs/a"); err != nil || string(kv.Value) != "1" {
		t.Fatalf("read after a refused ReopenWritable = %+v, %v", kv, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := nu.Watch(wctx, "certs/", 0)

	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nu.ReopenWritable(); err != nil {
		t.Fatalf("ReopenWritable after the old store closed: %v", err)
	}
	next, err := store.PutKV(ctx, nu, "certs/b", []byte("2"))
	if err != nil {
		t.Fatalf("write after the hand-over: %v", err)
	}
	if next != rev+1 {
		t.Fatalf("revision after the hand-over = %d, want %d", next, rev+1)
	}
	select {
	case r := <-w:
		got := []string{}
		for _, e := range r.Events {
			got = append(got, fmt.Sprintf("%s=%s@%d", e.KV.Key, e.KV.Value, e.KV.ModRev))
		}
		if diff := cmp.Diff(got, []string{fmt.Sprintf("certs/b=2@%d", next)}); diff != "" || r.Err != nil {
			t.Fatalf("watch after the hand-over (-got +want):\n%s err %v", diff, r.Err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch saw no event after the hand-over")
	}
}

// TestReopenUnderLoad toggles the store between read-only and writable
// while readers and writers run: no read fails, every write either commits
// or is refused with ErrReadOnly, and exactly the acknowledged writes are in
// the file, which passes bbolt's structure check.
func TestReopenUnderLoad(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKV(ctx, s, "fixed", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var (
		stop                        atomic.Bool
		reads, readErrs             atomic.Int64
		acked                       sync.Map // key → struct{}
		refused, otherErrs, ackedN  atomic.Int64
		wg                          sync.WaitGroup
		firstReadErr, firstWriteErr atomic.Value
	)
	for range 3 {
		wg.Go(func() {
			for !stop.Load() {
				if _, err := s.Get(ctx, "fixed"); err != nil {
					readErrs.Add(1)
					firstReadErr.CompareAndSwap(nil, err)
				}
				reads.Add(1)
			}
		})
	}
	for g := range 3 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := fmt.Sprintf("w/%d/%d", g, i)
				_, err := store.PutKV(ctx, s, key, []byte("v"))
				switch {
				case err == nil:
					acked.Store(key, struct{}{})
					ackedN.Add(1)
				case errors.Is(err, ErrReadOnly):
					refused.Add(1)
				default:
					otherErrs.Add(1)
					firstWriteErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	// Each writable phase lasts until a write commits in it, so that the
	// writers take part however the goroutines are scheduled.
	waitCommit := func(i int) {
		before := ackedN.Load()
		deadline := time.Now().Add(10 * time.Second)
		for ackedN.Load() == before {
			if time.Now().After(deadline) {
				stop.Store(true)
				wg.Wait()
				t.Fatalf("toggle %d: no write committed within 10s of the store being writable", i)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 20 {
		waitCommit(i)
		if err := s.ReopenReadOnly(); err != nil {
			t.Fatalf("toggle %d: ReopenReadOnly: %v", i, err)
		}
		if err := s.ReopenWritable(); err != nil {
			t.Fatalf("toggle %d: ReopenWritable: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := readErrs.Load(); n > 0 {
		t.Errorf("%d of %d reads failed during reopens; first: %v", n, reads.Load(), firstReadErr.Load())
	}
	if n := otherErrs.Load(); n > 0 {
		t.Errorf("%d writes failed with something other than ErrReadOnly; first: %v", n, firstWriteErr.Load())
	}
	if ackedN.Load() == 0 {
		t.Fatal("no write committed during the test")
	}
	t.Logf("%d reads, %d writes committed, %d refused", reads.Load(), ackedN.Load(), refused.Load())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen with the full structure check, and compare contents.
	s = openT(t, path, Options{CheckMaxBytes: -1})
	kvs, _, err := s.List(ctx, "w/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var stored, want []string
	for _, kv := range kvs {
		stored = append(stored, kv.Key)
	}
	acked.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	if diff := cmp.Diff(stored, want, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
		t.Fatalf("keys in the file vs acknowledged writes (-got +want):\n%s", diff)
	}
}

// TestReopenCatchesUp checks that revisions written by another process
// while this store had the file closed reach its watches when it reopens.
func TestReopenCatchesUp(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "store.db")
	s := openT(t, path, Options{})
	if _, err := store.PutKV(ctx, s, "k/a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.Watch(wctx, "k/", 0)
	if err := s.ReopenReadOnly(); err != nil {
		t.Fatal(err)
	}
	// Release the file as if this process had no handle, let another
	// writer change it, then take the read-only handle back.
	s.dbMu.Lock()
	if err := s.db.Close(); err != nil {
		t.Fatal(err)
	}
	other, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rev, err := store.PutKV(ctx, other, "k/b", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	o := s.opts
	o.ReadOnly = true
	if s.db, err = openDB(path, o); err != nil {
		t.Fatal(err)
	}
	s.dbMu.Unlock()

	if err := s.ReopenWritable(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-w:
		if r.Err != nil || r.Rev != rev || len(r.Events) != 1 || r.Events[0].KV.Key != "k/b" {
			t.Fatalf("watch after catch-up = %+v, want k/b at revision %d", r, rev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watch missed the revision written meanwhile")
	}
	if got, err := s.Rev(ctx); err != nil || got != rev {
		t.Fatalf("Rev after catch-up = %d, %v; want %d", got, err, rev)
	}
}
