package certs

import (
	"crypto/tls"
	"fmt"
	"testing"
)

func TestCacheBoundedInBytes(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		size  int64
		n     int
	}{
		{"one shard", 64 << 10, 3000, 200},
		{"many shards", 32 << 20, 300 << 10, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCache(tt.limit)
			for i := range tt.n {
				c.add(fmt.Sprintf("%020d", i), &tls.Certificate{}, tt.size)
				if bytes, _, _, _ := c.stats(); bytes > tt.limit {
					t.Fatalf("after %d adds the cache holds %d bytes, over its limit of %d", i+1, bytes, tt.limit)
				}
			}
			bytes, entries, _, _ := c.stats()
			if bytes != entries*tt.size {
				t.Errorf("bytes = %d, want entries*size = %d", bytes, entries*tt.size)
			}
			if min := tt.limit / 2; bytes < min {
				t.Errorf("cache holds %d bytes; want it to use at least %d of its %d", bytes, min, tt.limit)
			}
		})
	}
}

func TestCacheClockKeepsHotEntries(t *testing.T) {
	c := newCache(10 * 1000) // one shard, room for 10 entries of 1000 bytes
	hot := fmt.Sprintf("%020d", 0)
	c.add(hot, &tls.Certificate{}, 1000)
	for i := 1; i < 100; i++ {
		if c.get(hot) == nil {
			t.Fatalf("hot entry evicted after %d other adds", i-1)
		}
		c.add(fmt.Sprintf("%020d", i), &tls.Certificate{}, 1000)
	}
	c.remove(hot)
	if c.get(hot) != nil {
		t.Error("removed entry still cached")
	}
	if c.peek(fmt.Sprintf("%020d", 99)) == nil {
		t.Error("latest entry not cached")
	}
	c.add("too-big", &tls.Certificate{}, 20*1000)
	if c.peek("too-big") != nil {
		t.Error("an entry larger than the cache was cached")
	}
	_, _, hits, misses := c.stats()
	if hits != 99 || misses != 1 {
		t.Errorf("hits, misses = %d, %d; want 99, 1", hits, misses)
	}
}
