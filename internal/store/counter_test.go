package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// listOnly hides the store's Scanner, so that counting pages with List.
type listOnly struct{ store.Store }

// TestReadCounter checks a counter initialized from a count of its prefix
// (with and without Scan), stored in a write's transaction, and that a
// second writer holding the old condition loses.
func TestReadCounter(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for i := range 25 {
		if _, err := store.PutKV(ctx, st, fmt.Sprintf("items/%02d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []store.Store{st, listOnly{st}} {
		c, err := store.ReadCounter(ctx, s, "counters/items", "items/")
		if err != nil || c.Value != 25 || c.Cond != store.Absent("counters/items") {
			t.Fatalf("uninitialized counter = %+v, %v; want 25 from a count, absent", c, err)
		}
	}
	a, _ := store.ReadCounter(ctx, st, "counters/items", "items/")
	b, _ := store.ReadCounter(ctx, st, "counters/items", "items/")
	if _, err := st.Txn(ctx, []store.Cond{a.Cond}, []store.Op{store.Put("items/25", nil), a.Op(a.Value + 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Txn(ctx, []store.Cond{b.Cond}, []store.Op{store.Put("items/26", nil), b.Op(b.Value + 1)}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second writer on the old counter: %v, want ErrConflict", err)
	}
	c, err := store.ReadCounter(ctx, st, "counters/items", "items/")
	if err != nil || c.Value != 26 || c.Cond.ModRev == 0 {
		t.Fatalf("counter = %+v, %v; want 26, stored", c, err)
	}
	if _, err := store.PutKV(ctx, st, "counters/bad", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ReadCounter(ctx, st, "counters/bad", "items/"); err == nil {
		t.Fatal("a counter that is not a number was read")
	}
}
