package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

func TestAll(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var want []string
	for i := range 10 {
		k := fmt.Sprintf("p/%02d", i)
		put(t, st, k, "v")
		want = append(want, k)
	}
	put(t, st, "q", "v")
	ctx := context.Background()
	for _, pageSize := range []int{0, 1, 3, 5, 10, 11} {
		t.Run(fmt.Sprint("page", pageSize), func(t *testing.T) {
			var got []string
			for kv, err := range store.All(ctx, st, "p/", pageSize) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, kv.Key)
			}
			if d := cmp.Diff(got, want); d != "" {
				t.Errorf("keys (-got +want):\n%s", d)
			}
		})
	}
	t.Run("break", func(t *testing.T) {
		n := 0
		for range store.All(ctx, st, "p/", 3) {
			n++
			if n == 4 {
				break
			}
		}
		if n != 4 {
			t.Errorf("stopped after %d, want 4", n)
		}
	})
	t.Run("error", func(t *testing.T) {
		st.Close()
		var errs []error
		for _, err := range store.All(ctx, st, "p/", 3) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], store.ErrClosed) {
			t.Errorf("errors = %v, want one ErrClosed", errs)
		}
	})
}
