package certs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestExpiry(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	start := time.Now()
	var offset atomic.Int64 // clock offset from real time
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	m := startManager(t, st, Options{Now: now})
	day := 24 * time.Hour
	ids := map[string]string{}
	for name, life := range map[string]time.Duration{
		"soon.test":  3 * day,
		"month.test": 20 * day,
		"later.test": 90 * day,
		"ends.test":  2*day + time.Hour,
	} {
		info, _, err := m.Add(context.Background(), p.leaf(t, leafSpec{names: []string{name, "www." + name}, notAfter: start.Add(life)}).certPEM,
			p.leaf(t, leafSpec{}).keyPEM)
		if err == nil {
			t.Fatalf("mismatched key accepted for %s: %+v", name, info)
		}
		l := p.leaf(t, leafSpec{names: []string{name, "www." + name}, notAfter: start.Add(life)})
		ids[name] = mustAdd(t, m, l).ID
	}
	got := m.ExpiryCounts()
	want := ExpiryCounts{Expired: 0, Within7Days: 2, Within30Days: 3, Total: 4}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("ExpiryCounts (-got +want):\n%s", diff)
	}

	// Two and a half days later "ends.test" has expired.
	offset.Store(int64(2*day + 12*time.Hour))
	got = m.ExpiryCounts()
	want = ExpiryCounts{Expired: 1, Within7Days: 1, Within30Days: 2, Total: 4}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("ExpiryCounts later (-got +want):\n%s", diff)
	}
	list, err := m.Expiring(context.Background(), 30*day, 0)
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, in := range list {
		order = append(order, in.ID+" "+in.Status)
	}
	wantOrder := []string{ids["ends.test"] + " expired", ids["soon.test"] + " expiring", ids["month.test"] + " expiring"}
	if diff := cmp.Diff(order, wantOrder); diff != "" {
		t.Fatalf("Expiring order (-got +want):\n%s", diff)
	}
	if list, _ := m.Expiring(context.Background(), 30*day, 1); len(list) != 1 {
		t.Fatalf("limit 1 returned %d", len(list))
	}
}
