package certs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// counterOf returns the bundle counter and the number of bundle records.
func counterOf(t *testing.T, st store.Store) (counter, bundles int64) {
	t.Helper()
	ctx := context.Background()
	kv, err := st.Get(ctx, counterKey)
	if err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	counter, err = strconv.ParseInt(string(kv.Value), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	bundles, err = store.CountPrefix(ctx, st, prefixBundles)
	if err != nil {
		t.Fatal(err)
	}
	return counter, bundles
}

func TestCounterStaysExact(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	ctx := context.Background()
	check := func(step string, want int64) {
		t.Helper()
		c, n := counterOf(t, st)
		if c != want || n != want {
			t.Fatalf("%s: counter %d, bundles %d; want both %d", step, c, n, want)
		}
	}
	a := mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"a.count.test"}}))
	check("add", 1)
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"a.count.test"}})) // replaces a entirely
	check("replace", 1)
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"b.count.test", "c.count.test"}}))
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"c.count.test"}})) // takes one name of two
	check("partial replace", 3)
	var items []Item
	for i := range 10 {
		l := p.leaf(t, leafSpec{names: []string{fmt.Sprintf("batch%d.count.test", i)}})
		items = append(items, Item{Source: fmt.Sprint(i), CertPEM: l.certPEM, KeyPEM: l.keyPEM})
	}
	l := p.leaf(t, leafSpec{names: []string{"b.count.test"}}) // replaces b's bundle's last name
	items = append(items, Item{Source: "b", CertPEM: l.certPEM, KeyPEM: l.keyPEM})
	for _, r := range m.AddBatch(ctx, items) {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	check("batch", 13)
	if _, err := m.Get(ctx, a.ID); err == nil {
		t.Fatal("replaced bundle still there")
	}
	infos, err := m.List(ctx, "", 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, infos[0].ID); err != nil {
		t.Fatal(err)
	}
	check("remove", 12)

	// A store written by a version that kept no counter: the first write
	// initializes it from a count.
	if _, err := store.DeleteKey(ctx, st, counterKey); err != nil {
		t.Fatal(err)
	}
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"after-upgrade.count.test"}}))
	check("initialized from a count", 13)
}

// TestCapHoldsAcrossManagers has two managers on one store (two nodes of
// a fleet) add concurrently under a cap: the counter in each transaction
// keeps the total at the cap exactly.
func TestCapHoldsAcrossManagers(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	const limit = 7
	ms := []*Manager{startManager(t, st, Options{MaxCertificates: limit}), startManager(t, st, Options{MaxCertificates: limit})}
	leaves := make([]testLeaf, 20)
	for i := range leaves {
		leaves[i] = p.leaf(t, leafSpec{names: []string{fmt.Sprintf("n%d.cap.test", i)}})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	added, refused := 0, 0
	for i, l := range leaves {
		wg.Go(func() {
			_, _, err := ms[i%2].Add(context.Background(), l.certPEM, l.keyPEM)
			var le *capacity.LimitError
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				added++
			case errors.As(err, &le):
				refused++
			case errors.Is(err, store.ErrConflict):
			default:
				t.Errorf("add: %v", err)
			}
		})
	}
	wg.Wait()
	c, n := counterOf(t, st)
	if n > limit || c != n || int64(added) != n {
		t.Fatalf("after concurrent adds: %d added, %d refused, counter %d, bundles %d; want at most %d, counter exact", added, refused, c, n, limit)
	}
	if n != limit {
		t.Errorf("only %d of %d installed", n, limit)
	}
}
