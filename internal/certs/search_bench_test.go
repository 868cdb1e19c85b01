package certs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// BenchmarkSearchNames pages through a name index of 100,000 and 1,000,000
// hostnames in bbolt by a random prefix of 5 characters (1,000 names each) and a random
// cursor, 50 names a page, and reports the p50 and p99 of a page.
func BenchmarkSearchNames(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		st, err := bolt.Open(filepath.Join(b.TempDir(), "gatehouse.db"), bolt.Options{})
		if err != nil {
			b.Fatal(err)
		}
		entry := nameEntry{KeyType: "ecdsa-p256", NotAfter: time.Now().Add(60 * 24 * time.Hour)}.encode()
		ctx := context.Background()
		for i := 0; i < n; {
			ops := make([]store.Op, 0, 10_000)
			for ; i < n && len(ops) < cap(ops); i++ {
				ops = append(ops, store.Put(nameKey(fmt.Sprintf("h%07d.bench.test", i), fmt.Sprintf("%020x", i)), entry))
			}
			if _, err := st.Txn(ctx, nil, ops); err != nil {
				b.Fatal(err)
			}
		}
		m := NewManager(st, testKEK(b), Options{})
		b.Run(fmt.Sprintf("names=%d", n), func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				// A prefix matches 1,000 names; a cursor, when given, leaves
				// at least a page after it.
				prefix := fmt.Sprintf("h%04d", rand.IntN(n/1000))
				after := ""
				if rand.IntN(2) == 0 {
					after = fmt.Sprintf("%s%03d.bench.test", prefix, rand.IntN(900))
				}
				start := time.Now()
				got, _, err := m.SearchNames(ctx, prefix, after, 50)
				lat = append(lat, time.Since(start))
				if err != nil || len(got) != 50 {
					b.Fatalf("prefix %s after %q: %d names, %v", prefix, after, len(got), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
		st.Close()
	}
}
