// Package cache is the HTTP response cache of the edge: a shared cache in
// the sense of RFC 9111, held in memory and bounded in bytes.
//
// A Cache maps a key (the proxy uses scheme, host, path and query) to the
// stored variants of one resource, selected by the request fields their
// Vary names. Keys are spread over shards, each with its own lock, so
// lookups of different keys do not contend; a lookup takes one shard's
// read lock. Memory is accounted per entry (body, header and overhead)
// against one limit for the whole cache; storing past it evicts entries
// with the CLOCK algorithm (an approximation of least recently used: a
// lookup sets an entry's reference bit, eviction clears set bits and takes
// the first entry whose bit is clear). New entries start with the bit
// clear, as in SIEVE, so that entries nobody asked for again go first and
// a scan of many one-time objects does not push out the popular ones.
//
// Entry holds the freshness rules: its age and lifetime (RFC 9111,
// section 4.2), whether it is fresh, whether it may stand in for an error
// (stale-if-error, RFC 5861), and its refresh by a 304. Storable says
// whether a response may be stored at all, ParseCacheControl reads the
// directives.
//
// Join coalesces concurrent misses of one key, so that one request goes
// to the member while the others wait for what it stores.
package cache

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// maxVariants bounds the variants stored under one key; storing one more
// drops the oldest.
const maxVariants = 8

// DefaultShards is the number of shards of a Cache.
const DefaultShards = 32

// Cache is a bounded in-memory store of responses. It is safe for
// concurrent use.
type Cache struct {
	seed   maphash.Seed
	shards []shard
	mask   uint64
	limit  atomic.Int64
	used   atomic.Int64
	// hand picks the shard the next eviction starts from.
	hand atomic.Uint64
}

// shard is one lock's worth of keys.
type shard struct {
	mu sync.RWMutex // mu guards items, ring, hand and flights
	// items maps a key to its variants.
	items map[string]*item
	// ring holds every item in CLOCK order; hand is the next to look at.
	ring    []*item
	hand    int
	flights map[string]*flight
	_       [64]byte // keep shards' locks on their own cache lines
}

// item is the stored variants of one key.
type item struct {
	key      string
	variants []*Entry // oldest first
	size     int64
	idx      int         // position in the shard's ring
	ref      atomic.Bool // set by lookups, cleared by the CLOCK hand
}

// flight is a miss being fetched by one request while others wait.
type flight struct {
	done chan struct{}
}

// New returns a Cache that holds at most maxBytes of entries.
func New(maxBytes int64) *Cache {
	c := &Cache{seed: maphash.MakeSeed(), shards: make([]shard, DefaultShards), mask: DefaultShards - 1}
	for i := range c.shards {
		c.shards[i].items = make(map[string]*item)
		c.shards[i].flights = make(map[string]*flight)
	}
	c.limit.Store(maxBytes)
	return c
}

func (c *Cache) shard(key string) *shard {
	return &c.shards[maphash.String(c.seed, key)&c.mask]
}

// Lookup returns the stored variant of key that matches the request
// fields req, or nil; known reports whether key has any variant (a miss
// with known set is a Vary miss). A hit marks the entry recently used.
func (c *Cache) Lookup(key string, req map[string][]string) (e *Entry, known bool) {
	s := c.shard(key)
	s.mu.RLock()
	it := s.items[key]
	if it != nil {
		known = true
		// Newest first: a replaced variant is the one to serve.
		for i := len(it.variants) - 1; i >= 0; i-- {
			if v := it.variants[i]; v.Matches(req) {
				e = v
				break
			}
		}
		if e != nil && !it.ref.Load() {
			it.ref.Store(true)
		}
	}
	s.mu.RUnlock()
	return e, known
}

// Store stores e under key, replacing the variant selected by the same
// request fields, and evicts other entries while the cache is over its
// limit. It reports false, storing nothing, for an entry larger than the
// whole limit.
func (c *Cache) Store(key string, e *Entry) bool {
	reserved := e.Size() + int64(len(key))
	if reserved > c.limit.Load() {
		return false
	}
	// Make room before storing: the bytes are accounted from here on, so
	// stored entries never add up to more than the limit, however many
	// stores run at once.
	c.used.Add(reserved)
	c.evict()
	s := c.shard(key)
	s.mu.Lock()
	delta := int64(0)
	it := s.items[key]
	if it == nil {
		it = &item{key: key, idx: len(s.ring)}
		s.items[key] = it
		s.ring = append(s.ring, it)
		delta += int64(len(key))
	}
	replaced := false
	for i, v := range it.variants {
		if v.sameVariant(e) {
			delta += e.Size() - v.Size()
			it.variants[i] = e
			replaced = true
			break
		}
	}
	if !replaced {
		if len(it.variants) >= maxVariants {
			delta -= it.variants[0].Size()
			it.variants[0] = nil
			it.variants = it.variants[1:]
		}
		it.variants = append(it.variants, e)
		delta += e.Size()
	}
	it.size += delta
	s.mu.Unlock()
	c.used.Add(delta - reserved) // delta <= reserved
	return true
}

// Delete removes every variant of key.
func (c *Cache) Delete(key string) {
	s := c.shard(key)
	s.mu.Lock()
	it := s.items[key]
	if it != nil {
		s.removeLocked(it)
	}
	s.mu.Unlock()
	if it != nil {
		c.used.Add(-it.size)
	}
}

// removeLocked takes it out of the shard's map and ring.
func (s *shard) removeLocked(it *item) {
	delete(s.items, it.key)
	last := len(s.ring) - 1
	moved := s.ring[last]
	s.ring[it.idx] = moved
	moved.idx = it.idx
	s.ring[last] = nil
	s.ring = s.ring[:last]
	if s.hand >= len(s.ring) {
		s.hand = 0
	}
}

// evict removes entries, shard after shard, until the cache is within
// its limit. It holds one shard's lock at a time. A shard whose entries
// were all referenced gives nothing on this visit (its bits are cleared
// for the next), so two rounds over the shards without an eviction mean
// the cache is empty.
func (c *Cache) evict() {
	idle := 0
	for c.used.Load() > c.limit.Load() && idle < 2*len(c.shards) {
		s := &c.shards[c.hand.Add(1)&c.mask]
		if n := s.evictOne(); n > 0 {
			c.used.Add(-n)
			idle = 0
		} else {
			idle++
		}
	}
}

// evictOne moves the shard's CLOCK hand over at most one turn, clearing
// reference bits, and removes the first item found without one,
// returning its size; 0 if there was none.
func (s *shard) evictOne() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range len(s.ring) {
		if s.hand >= len(s.ring) {
			s.hand = 0
		}
		it := s.ring[s.hand]
		if it.ref.Load() {
			it.ref.Store(false)
			s.hand++
			continue
		}
		s.removeLocked(it)
		return it.size
	}
	return 0
}

// SetLimit changes the byte limit, evicting entries to meet a lower one.
func (c *Cache) SetLimit(maxBytes int64) {
	c.limit.Store(maxBytes)
	c.evict()
}

// Usage returns the bytes the entries take and the limit.
func (c *Cache) Usage() (used, limit int64) { return c.used.Load(), c.limit.Load() }

// Len returns the number of keys stored.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.items)
		s.mu.RUnlock()
	}
	return n
}

// Join coalesces concurrent misses of key. The first caller leads: it
// gets done (and a nil wait), fetches the response, stores it if it may,
// and calls done, which is safe to call more than once. Callers while a
// leader is under way get wait (and a nil done), closed when the leader
// calls done; they then look key up again.
func (c *Cache) Join(key string) (wait <-chan struct{}, done func()) {
	s := c.shard(key)
	s.mu.Lock()
	if f := s.flights[key]; f != nil {
		s.mu.Unlock()
		return f.done, nil
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.mu.Unlock()
	var once sync.Once
	return nil, func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.flights, key)
			s.mu.Unlock()
			close(f.done)
		})
	}
}
