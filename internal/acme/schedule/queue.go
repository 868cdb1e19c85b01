package schedule

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"iter"
	"math"
	"slices"
	"sync"
	"time"
)

// Queue is the renewal schedule: one next-renewal time per hostname, ordered
// soonest first. It is safe for concurrent use.
//
// It is compact: each name is stored once, in one byte arena, and found
// through an open-addressing hash table of 32-bit ids with one tag byte per
// slot; the order is an indexed binary heap of 8-byte entries (a 32-bit id
// and the time as 32-bit Unix seconds). A million names of 27 bytes cost
// about 58 bytes each, 55 MiB in all (TestQueueMemory measures it; Bytes
// reports the same estimate for the capacity registry).
//
// Times have one-second resolution and are clamped to the range of unsigned
// 32-bit Unix seconds (1970 to 2106): anything earlier is due at once.
//
// # Restarts
//
// Two ways bring a queue back after a restart. Encode writes a snapshot
// (about 33 bytes per name) and Decode reads it back. Or Load rebuilds the
// queue from the stored certificates: for each name, RenewAt with its
// NotBefore, NotAfter and stored ARI window and the random source
// Seeded(name, NotBefore), which gives exactly the time computed before the
// restart (and on every other node), so no name falls due just because it
// was redrawn. Names waiting for a retry after a failure are then Set to
// their stored retry time; that is not derivable from the certificate.
type Queue struct {
	mu sync.Mutex // guards everything below

	heap  []entry  // min-heap by (at, name)
	pos   []int32  // by id: index in heap, or -1 when the id is free
	off   []uint32 // by id: offset in arena of the name (uvarint length, bytes)
	arena []byte
	dead  int      // arena bytes of removed names, reclaimed by compact
	free  []uint32 // ids to reuse
	table []uint32 // open addressing, linear probing: ids
	ctrl  []uint8  // by slot: ctrlEmpty, ctrlDeleted or the name's tag
	used  int      // slots not empty (live and deleted)
	seed  maphash.Seed
}

type entry struct {
	at uint32 // Unix seconds
	id uint32
}

// MaxNameLen is the longest name a Queue accepts; Set panics beyond it.
// DNS names are at most 253 bytes.
const MaxNameLen = 1 << 16

// New returns an empty queue.
func New() *Queue {
	return &Queue{table: make([]uint32, 16), ctrl: make([]uint8, 16), seed: maphash.MakeSeed()}
}

func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// nameBytes returns the stored name of id (a view into the arena).
func (q *Queue) nameBytes(id uint32) []byte {
	o := int(q.off[id])
	if n := q.arena[o]; n < 0x80 { // names shorter than 128 bytes: one length byte
		return q.arena[o+1 : o+1+int(n)]
	}
	n, w := binary.Uvarint(q.arena[o:])
	return q.arena[o+w : o+w+int(n)]
}

// Control bytes of the hash table.
const (
	ctrlEmpty   = 0
	ctrlDeleted = 1
)

// tagOf is the control byte of an occupied slot: 2..255, from the hash's top
// bits, so that a probe compares a name only when its tag matches.
func tagOf(h uint64) uint8 { return uint8(2 + (h>>56)%254) }

// find returns the table slot holding name (found), or the slot where it
// would be inserted, and the name's tag.
func (q *Queue) find(name string) (slot int, id uint32, tag uint8, found bool) {
	h := maphash.String(q.seed, name)
	return q.probe(h, func(b []byte) bool { return string(b) == name })
}

// findBytes is find for a name in a byte slice.
func (q *Queue) findBytes(name []byte) (slot int, id uint32, tag uint8, found bool) {
	h := maphash.Bytes(q.seed, name)
	return q.probe(h, func(b []byte) bool { return bytes.Equal(b, name) })
}

func (q *Queue) probe(h uint64, eq func([]byte) bool) (slot int, id uint32, tag uint8, found bool) {
	tag = tagOf(h)
	mask := len(q.table) - 1
	ins := -1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		switch c := q.ctrl[i]; c {
		case ctrlEmpty:
			if ins < 0 {
				ins = i
			}
			return ins, 0, tag, false
		case ctrlDeleted:
			if ins < 0 {
				ins = i
			}
		case tag:
			if id := q.table[i]; eq(q.nameBytes(id)) {
				return i, id, tag, true
			}
		}
	}
}

// put stores id in slot (returned by find for a missing name).
func (q *Queue) put(slot int, id uint32, tag uint8) {
	if q.ctrl[slot] == ctrlEmpty {
		q.used++
	}
	q.ctrl[slot] = tag
	q.table[slot] = id
}

// deleteSlot marks slot deleted, or empty when the probe chain ends there
// (with the deleted slots just before it).
func (q *Queue) deleteSlot(slot int) {
	mask := len(q.table) - 1
	if q.ctrl[(slot+1)&mask] != ctrlEmpty {
		q.ctrl[slot] = ctrlDeleted
		return
	}
	q.ctrl[slot] = ctrlEmpty
	q.used--
	// The table always has an empty slot (makeRoom), so this ends.
	for slot = (slot - 1) & mask; q.ctrl[slot] == ctrlDeleted; slot = (slot - 1) & mask {
		q.ctrl[slot] = ctrlEmpty
		q.used--
	}
}

// makeRoom keeps the table at most 3/4 used (live names and tombstones)
// before one more insertion, rehashing to drop tombstones and doubling when
// live names alone pass 5/8.
func (q *Queue) makeRoom() {
	size := len(q.table)
	if (q.used+1)*4 <= size*3 {
		return
	}
	live := len(q.heap) + 1
	for live*8 > size*5 {
		size *= 2
	}
	q.rehash(size)
}

func (q *Queue) rehash(size int) {
	q.table = make([]uint32, size)
	q.ctrl = make([]uint8, size)
	q.used = 0
	mask := size - 1
	for _, e := range q.heap {
		h := maphash.Bytes(q.seed, q.nameBytes(e.id))
		i := int(h) & mask
		for q.ctrl[i] != ctrlEmpty {
			i = (i + 1) & mask
		}
		q.put(i, e.id, tagOf(h))
	}
}

func (q *Queue) less(a, b entry) bool {
	if a.at != b.at {
		return a.at < b.at
	}
	return bytes.Compare(q.nameBytes(a.id), q.nameBytes(b.id)) < 0
}

func (q *Queue) swap(i, j int) {
	q.heap[i], q.heap[j] = q.heap[j], q.heap[i]
	q.pos[q.heap[i].id] = int32(i)
	q.pos[q.heap[j].id] = int32(j)
}

func (q *Queue) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !q.less(q.heap[i], q.heap[p]) {
			return
		}
		q.swap(i, p)
		i = p
	}
}

func (q *Queue) down(i int) {
	n := len(q.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && q.less(q.heap[r], q.heap[l]) {
			m = r
		}
		if !q.less(q.heap[m], q.heap[i]) {
			return
		}
		q.swap(i, m)
		i = m
	}
}

// removeAt takes heap index i out of the heap.
func (q *Queue) removeAt(i int) entry {
	e := q.heap[i]
	last := len(q.heap) - 1
	if i != last {
		q.swap(i, last)
	}
	q.heap = q.heap[:last]
	if i < last {
		q.down(i)
		q.up(i)
	}
	return e
}

// appendName stores name in the arena and returns a new or reused id.
func appendName[S string | []byte](q *Queue, name S) uint32 {
	if len(name) > MaxNameLen {
		panic("schedule: name longer than MaxNameLen")
	}
	if len(q.arena)+len(name)+binary.MaxVarintLen32 > math.MaxUint32 {
		panic("schedule: name arena full")
	}
	o := uint32(len(q.arena))
	q.arena = binary.AppendUvarint(q.arena, uint64(len(name)))
	q.arena = append(q.arena, name...)
	var id uint32
	if n := len(q.free); n > 0 {
		id = q.free[n-1]
		q.free = q.free[:n-1]
		q.off[id] = o
	} else {
		id = uint32(len(q.off))
		q.off = append(q.off, o)
		q.pos = append(q.pos, -1)
	}
	return id
}

// release frees id (already out of the heap and the table).
func (q *Queue) release(id uint32) {
	b := q.nameBytes(id)
	q.dead += len(b) + uvarintLen(len(b))
	q.pos[id] = -1
	q.free = append(q.free, id)
	q.compactMaybe()
}

func uvarintLen(n int) int {
	w := 1
	for n >= 0x80 {
		n >>= 7
		w++
	}
	return w
}

// compactMaybe rewrites the arena when more than half of it is dead.
func (q *Queue) compactMaybe() {
	if q.dead < 1<<16 || q.dead*2 < len(q.arena) {
		return
	}
	arena := make([]byte, 0, len(q.arena)-q.dead)
	for id := range q.off {
		if q.pos[id] < 0 {
			continue
		}
		b := q.nameBytes(uint32(id))
		q.off[id] = uint32(len(arena))
		arena = binary.AppendUvarint(arena, uint64(len(b)))
		arena = append(arena, b...)
	}
	q.arena = arena
	q.dead = 0
}

// Set schedules name at at, inserting it or moving it.
func (q *Queue) Set(name string, at time.Time) {
	sec := unixSeconds(at)
	q.mu.Lock()
	defer q.mu.Unlock()
	q.makeRoom()
	slot, id, tag, ok := q.find(name)
	if ok {
		i := int(q.pos[id])
		q.heap[i].at = sec
		q.down(i)
		q.up(i)
		return
	}
	id = appendName(q, name)
	q.put(slot, id, tag)
	q.heap = append(q.heap, entry{at: sec, id: id})
	q.pos[id] = int32(len(q.heap) - 1)
	q.up(len(q.heap) - 1)
}

// Grow makes room for n more names without rehashing or copying as they
// are added: call it before a Load of a known number of names.
func (q *Queue) Grow(n int) {
	if n <= 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	need := len(q.heap) + n
	q.heap = slices.Grow(q.heap, n)
	q.pos = slices.Grow(q.pos, need-len(q.pos))
	q.off = slices.Grow(q.off, need-len(q.off))
	size := len(q.table)
	for need*8 > size*5 {
		size *= 2
	}
	if size > len(q.table) {
		q.rehash(size)
	}
}

// Load sets every name of entries to its time, as Set does, and orders the
// queue once at the end: rebuilding a million names from stored
// certificates costs one pass rather than a million heap insertions. A name
// given twice keeps its last time. The lock is held throughout.
func (q *Queue) Load(entries iter.Seq2[string, time.Time]) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for name, at := range entries {
		sec := unixSeconds(at)
		q.makeRoom()
		slot, id, tag, ok := q.find(name)
		if ok {
			q.heap[q.pos[id]].at = sec
			continue
		}
		id = appendName(q, name)
		q.put(slot, id, tag)
		q.pos[id] = int32(len(q.heap))
		q.heap = append(q.heap, entry{at: sec, id: id})
	}
	q.heapify()
}

func (q *Queue) heapify() {
	for i := len(q.heap)/2 - 1; i >= 0; i-- {
		q.down(i)
	}
}

// Get returns the time name is scheduled at.
func (q *Queue) Get(name string) (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, id, _, ok := q.find(name)
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(int64(q.heap[q.pos[id]].at), 0), true
}

// Remove takes name out of the schedule and reports whether it was there.
func (q *Queue) Remove(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	slot, id, _, ok := q.find(name)
	if !ok {
		return false
	}
	q.deleteSlot(slot)
	q.removeAt(int(q.pos[id]))
	q.release(id)
	return true
}

// PopDue removes up to max names scheduled at or before now, soonest first
// (names at the same second in byte order), appends them to dst and returns
// it. max <= 0 pops nothing: the caller sets the pace, so that a backlog
// (certificates loaded late, a window the CA moved back) drains at a rate it
// chooses rather than all at once.
func (q *Queue) PopDue(now time.Time, max int, dst []string) []string {
	lim := unixSeconds(now)
	q.mu.Lock()
	defer q.mu.Unlock()
	for n := 0; n < max && len(q.heap) > 0 && q.heap[0].at <= lim; n++ {
		e := q.removeAt(0)
		name := string(q.nameBytes(e.id))
		slot, _, _, _ := q.find(name)
		q.deleteSlot(slot)
		q.release(e.id)
		dst = append(dst, name)
	}
	return dst
}

// Next returns the soonest scheduled time, false when the queue is empty.
func (q *Queue) Next() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.heap) == 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(q.heap[0].at), 0), true
}

// Len returns the number of scheduled names.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.heap)
}

// Bytes estimates the queue's memory: the capacity of its arrays and arena.
// It is what the capacity registry shows for the schedule.
func (q *Queue) Bytes() int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return int64(cap(q.heap))*8 + int64(cap(q.pos))*4 + int64(cap(q.off))*4 +
		int64(cap(q.arena)) + int64(cap(q.free))*4 + int64(cap(q.table))*5 + 128
}
