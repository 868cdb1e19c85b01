package certs

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store/bolt"
)

func TestAddBatchRefusesWhatExceedsTheQuota(t *testing.T) {
	p := newPKI(t)
	const quota = 256 << 10
	st, err := bolt.Open(filepath.Join(t.TempDir(), "q.db"), bolt.Options{QuotaBytes: quota})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := startManager(t, st, Options{})
	items := func(prefix string, n int) []Item {
		out := make([]Item, n)
		for i := range out {
			l := p.leaf(t, leafSpec{names: []string{fmt.Sprintf("%s%d.quota.test", prefix, i)}})
			out[i] = Item{Source: fmt.Sprint(i), CertPEM: l.certPEM, KeyPEM: l.keyPEM}
		}
		return out
	}
	tests := []struct {
		name      string
		items     []Item
		wantQuota bool
	}{
		{"fits", items("small", 5), false},
		{"would exceed", items("big", 200), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := stateOf(t, st)
			results := m.AddBatch(context.Background(), tc.items)
			for _, r := range results {
				var qe *capacity.LimitError
				gotQuota := errors.As(r.Err, &qe) && qe.Storage()
				if gotQuota != tc.wantQuota {
					t.Fatalf("item %s: error %v, want a quota error: %v", r.Source, r.Err, tc.wantQuota)
				}
				if !tc.wantQuota {
					continue
				}
				if qe.Limit != quota || qe.Usage+qe.Adding <= quota || qe.Unit != "bytes" {
					t.Errorf("quota error %+v: want quota %d, crossed", qe, quota)
				}
				if msg := r.Err.Error(); !strings.Contains(msg, "of 256.0 KiB in use") || !strings.Contains(msg, "limits.store_quota") || !strings.Contains(msg, "--quota-backend-bytes") {
					t.Errorf("message %q lacks the numbers", msg)
				}
			}
			if tc.wantQuota {
				if got := stateOf(t, st); got != before {
					t.Errorf("store after a refused batch = %+v, want unchanged %+v", got, before)
				}
				t.Logf("refusal: %v", results[0].Err)
			}
		})
	}
}
