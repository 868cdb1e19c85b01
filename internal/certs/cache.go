package certs

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
)

// cache holds decoded certificates by bundle ID, bounded in bytes (an
// estimate of each entry's memory). It is sharded; each shard evicts with the
// CLOCK algorithm, so a hit takes only a shard read lock and sets a flag.
type cache struct {
	shards []cacheShard
	mask   uint32
	limit  atomic.Int64
}

type cacheEntry struct {
	id   string
	cert *tls.Certificate
	size int64
	ref  atomic.Bool // set on every hit; cleared as the clock hand passes
	slot int         // position in the shard's ring; guarded by the shard's mu
}

type cacheShard struct {
	mu    sync.RWMutex
	m     map[string]*cacheEntry // mu guards m, ring, hand, bytes
	ring  []*cacheEntry
	hand  int
	bytes int64
	limit int64

	hits, misses atomic.Uint64
	_            [32]byte
}

// minShardBytes is the smallest share of the limit worth a shard of its own.
const minShardBytes = 1 << 20

func newCache(limit int64) *cache {
	n := 16
	for n > 1 && limit/int64(n) < minShardBytes {
		n /= 2
	}
	c := &cache{shards: make([]cacheShard, n), mask: uint32(n - 1)}
	c.limit.Store(limit)
	for i := range c.shards {
		c.shards[i].m = make(map[string]*cacheEntry)
		c.shards[i].limit = limit / int64(n)
	}
	return c
}

func (c *cache) shard(id string) *cacheShard {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return &c.shards[h&c.mask]
}

// get returns the cached certificate of bundle id, counting a hit or a miss.
func (c *cache) get(id string) *tls.Certificate {
	sh := c.shard(id)
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	if e == nil {
		sh.misses.Add(1)
		return nil
	}
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	sh.hits.Add(1)
	return e.cert
}

// add caches cert under id with the given size estimate, evicting others as
// needed. An entry larger than a shard's share of the limit is not cached.
// setLimit changes the byte bound, evicting entries to meet a lower one.
// The number of shards stays what the first limit made it.
func (c *cache) setLimit(limit int64) {
	c.limit.Store(limit)
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.limit = limit / int64(len(c.shards))
		sh.evictLocked(0)
		sh.mu.Unlock()
	}
}

// evictLocked evicts entries until size more bytes fit under the limit.
func (sh *cacheShard) evictLocked(size int64) {
	for sh.bytes+size > sh.limit && len(sh.ring) > 0 {
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
		e := sh.ring[sh.hand]
		if e.ref.Swap(false) {
			sh.hand++
			continue
		}
		sh.removeLocked(e)
	}
}

func (c *cache) add(id string, cert *tls.Certificate, size int64) {
	sh := c.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if old := sh.m[id]; old != nil {
		sh.removeLocked(old)
	}
	if size > sh.limit {
		return
	}
	sh.evictLocked(size)
	e := &cacheEntry{id: id, cert: cert, size: size, slot: len(sh.ring)}
	sh.ring = append(sh.ring, e)
	sh.m[id] = e
	sh.bytes += size
}

// remove drops id from the cache.
func (c *cache) remove(id string) {
	sh := c.shard(id)
	sh.mu.Lock()
	if e := sh.m[id]; e != nil {
		sh.removeLocked(e)
	}
	sh.mu.Unlock()
}

func (sh *cacheShard) removeLocked(e *cacheEntry) {
	delete(sh.m, e.id)
	last := len(sh.ring) - 1
	sh.ring[e.slot] = sh.ring[last]
	sh.ring[e.slot].slot = e.slot
	sh.ring[last] = nil
	sh.ring = sh.ring[:last]
	sh.bytes -= e.size
}

// stats sums the shards' counters.
func (c *cache) stats() (bytes, entries int64, hits, misses uint64) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		bytes += sh.bytes
		entries += int64(len(sh.m))
		sh.mu.RUnlock()
		hits += sh.hits.Load()
		misses += sh.misses.Load()
	}
	return
}

// certSize estimates the memory a decoded certificate holds: its DER, the
// parsed leaf and the private key with its precomputed values. Measured for
// ECDSA P-256 leaves of about 450 bytes with one intermediate: 4.0 KB each,
// of which the parsed leaf is 2.4 KB (about 5.5 times its DER).
func certSize(cert *tls.Certificate, keyType string) int64 {
	const overhead = 1024 // entry, map slot, ring slot, tls.Certificate
	n := int64(overhead)
	for _, der := range cert.Certificate {
		n += int64(len(der))
	}
	if len(cert.Certificate) > 0 {
		n += 11 * int64(len(cert.Certificate[0])) / 2 // parsed leaf
	}
	switch keyFamily(keyType) {
	case "rsa":
		var bits int64 = 2048
		if k, ok := cert.PrivateKey.(interface{ Size() int }); ok {
			bits = int64(k.Size()) * 8
		}
		n += bits / 8 * 12 // n, d, primes, CRT values and their precomputed forms
	case "ecdsa":
		n += 512
	default:
		n += 128
	}
	return n
}

// peek returns the cached certificate of id without counting or marking it.
func (c *cache) peek(id string) *tls.Certificate {
	sh := c.shard(id)
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	if e := sh.m[id]; e != nil {
		return e.cert
	}
	return nil
}
