package certs

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// indexShards is the number of shards of the hostname index; a power of two.
const indexShards = 64

// entry is one bundle serving one hostname.
type entry struct {
	id       string
	keyType  string
	notAfter time.Time
	rank     uint8 // keyRank(keyType), cached
}

// index maps hostnames (and wildcard names as "*.example.com") to the bundles
// serving them. Lookups take one shard's read lock and return an immutable
// slice, ordered by preference: ECDSA before RSA before others, then the
// latest expiry first. Writers replace slices, never modify them.
type index struct {
	shards [indexShards]indexShard

	// cmu guards names, the number of index entries of each bundle.
	cmu     sync.Mutex
	names   map[string]int
	bundles atomic.Int64 // len(names)
	// changes counts writes to the index (put, remove, replace), so that a
	// snapshot is saved only when there is something new to save.
	changes atomic.Uint64
}

type indexShard struct {
	mu sync.RWMutex
	m  map[string][]entry // mu guards m
	_  [40]byte           // keep shards on separate cache lines
}

func newIndex() *index {
	ix := &index{names: make(map[string]int)}
	for i := range ix.shards {
		ix.shards[i].m = make(map[string][]entry)
	}
	return ix
}

// shardOf is FNV-1a over the name, reduced to a shard number.
func shardOf[T string | []byte](name T) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= 16777619
	}
	return h & (indexShards - 1)
}

// lookup returns the entries for name; the caller must not modify them.
func (ix *index) lookup(name string) []entry {
	sh := &ix.shards[shardOf(name)]
	sh.mu.RLock()
	es := sh.m[name]
	sh.mu.RUnlock()
	return es
}

// lookupBytes is lookup for a name held in a byte slice, without allocating.
func (ix *index) lookupBytes(name []byte) []entry {
	sh := &ix.shards[shardOf(name)]
	sh.mu.RLock()
	es := sh.m[string(name)]
	sh.mu.RUnlock()
	return es
}

func compareEntries(a, b entry) int {
	if c := cmp.Compare(a.rank, b.rank); c != 0 {
		return c
	}
	if c := b.notAfter.Compare(a.notAfter); c != 0 { // later expiry first
		return c
	}
	return cmp.Compare(a.id, b.id)
}

// put adds or updates the entry of e.id for name.
func (ix *index) put(name string, e entry) {
	ix.changes.Add(1)
	e.rank = keyRank(e.keyType)
	sh := &ix.shards[shardOf(name)]
	sh.mu.Lock()
	old := sh.m[name]
	es := make([]entry, 0, len(old)+1)
	added := true
	for _, o := range old {
		if o.id == e.id {
			added = false
			continue
		}
		es = append(es, o)
	}
	es = append(es, e)
	slices.SortFunc(es, compareEntries)
	sh.m[name] = es
	sh.mu.Unlock()
	if added {
		ix.count(e.id, +1)
	}
}

// remove drops the entry of id for name, if any.
func (ix *index) remove(name, id string) {
	ix.changes.Add(1)
	sh := &ix.shards[shardOf(name)]
	sh.mu.Lock()
	old := sh.m[name]
	i := slices.IndexFunc(old, func(o entry) bool { return o.id == id })
	if i >= 0 {
		if len(old) == 1 {
			delete(sh.m, name)
		} else {
			es := make([]entry, 0, len(old)-1)
			es = append(es, old[:i]...)
			es = append(es, old[i+1:]...)
			sh.m[name] = es
		}
	}
	sh.mu.Unlock()
	if i >= 0 {
		ix.count(id, -1)
	}
}

func (ix *index) count(id string, delta int) {
	ix.cmu.Lock()
	defer ix.cmu.Unlock()
	n := ix.names[id] + delta
	if n <= 0 {
		delete(ix.names, id)
	} else {
		ix.names[id] = n
	}
	ix.bundles.Store(int64(len(ix.names)))
}

// has reports whether bundle id has at least one index entry.
func (ix *index) has(id string) bool {
	ix.cmu.Lock()
	defer ix.cmu.Unlock()
	return ix.names[id] > 0
}

// nameCount returns how many names bundle id serves according to the index.
func (ix *index) nameCount(id string) int {
	ix.cmu.Lock()
	defer ix.cmu.Unlock()
	return ix.names[id]
}

// replaceAll swaps in a complete new content, shard by shard.
func (ix *index) replaceAll(all map[string][]entry) {
	b := newIndexBuilder(len(all))
	for name, es := range all {
		for _, e := range es {
			b.put(name, e)
		}
	}
	ix.replace(b)
}

// indexBuilder assembles a complete index content shard by shard, for
// replace. Start-up loads a million names through it: it sizes its maps
// from a hint, so they do not grow and rehash along the way.
type indexBuilder struct {
	parts [indexShards]map[string][]entry
	names map[string]int
}

func newIndexBuilder(hint int) *indexBuilder {
	b := &indexBuilder{names: make(map[string]int, hint)}
	for i := range b.parts {
		b.parts[i] = make(map[string][]entry, hint/indexShards)
	}
	return b
}

// add sets the entries of a name not yet in b; es holds distinct ids and
// b keeps it.
func (b *indexBuilder) add(name string, es []entry) {
	for i := range es {
		es[i].rank = keyRank(es[i].keyType)
		b.names[es[i].id]++
	}
	if len(es) > 1 {
		slices.SortFunc(es, compareEntries)
	}
	b.parts[shardOf(name)][name] = es
}

// put adds or updates the entry of e.id for name.
func (b *indexBuilder) put(name string, e entry) {
	e.rank = keyRank(e.keyType)
	part := b.parts[shardOf(name)]
	old := part[name]
	if len(old) == 0 {
		part[name] = []entry{e}
		b.names[e.id]++
		return
	}
	es := slices.DeleteFunc(old, func(o entry) bool { return o.id == e.id })
	if len(es) == len(old) {
		b.names[e.id]++
	}
	es = append(es, e)
	slices.SortFunc(es, compareEntries)
	part[name] = es
}

// remove drops the entry of id for name, if any.
func (b *indexBuilder) remove(name, id string) {
	part := b.parts[shardOf(name)]
	old := part[name]
	es := slices.DeleteFunc(old, func(o entry) bool { return o.id == id })
	if len(es) == len(old) {
		return
	}
	if len(es) == 0 {
		delete(part, name)
	} else {
		part[name] = es
	}
	if n := b.names[id] - 1; n <= 0 {
		delete(b.names, id)
	} else {
		b.names[id] = n
	}
}

// replace swaps in the content of b, shard by shard; b must not be used
// afterwards.
func (ix *index) replace(b *indexBuilder) {
	ix.changes.Add(1)
	for i := range ix.shards {
		sh := &ix.shards[i]
		sh.mu.Lock()
		sh.m = b.parts[i]
		sh.mu.Unlock()
	}
	ix.cmu.Lock()
	ix.names = b.names
	ix.bundles.Store(int64(len(b.names)))
	ix.cmu.Unlock()
}
