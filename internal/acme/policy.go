package acme

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// The renewal and retry policy. These are the simplest correct versions
// of the policy; internal/acme/schedule replaces them when it lands.

// window is a renewal window suggested by the CA (ARI, RFC 9773).
type window struct{ Start, End time.Time }

// renewAt is when a certificate valid from notBefore to notAfter is
// renewed: a random time inside the CA's window when it gave one,
// otherwise when a third of its lifetime remains (half for lifetimes of
// ten days or less), minus up to 1% of the lifetime of jitter so that
// certificates issued together do not renew together.
func renewAt(notBefore, notAfter time.Time, ari *window, r *rand.Rand) time.Time {
	if ari != nil && ari.End.After(ari.Start) {
		return ari.Start.Add(time.Duration(r.Int64N(int64(ari.End.Sub(ari.Start)))))
	}
	life := notAfter.Sub(notBefore)
	left := life / 3
	if life <= 10*24*time.Hour {
		left = life / 2
	}
	at := notAfter.Add(-left)
	if j := int64(life / 100); j > 0 {
		at = at.Add(-time.Duration(r.Int64N(j)))
	}
	return at
}

// emergency reports whether a certificate is within the last 1/20 of its
// lifetime: it must be renewed now, whatever the window says.
func emergency(notBefore, notAfter, now time.Time) bool {
	return notAfter.Sub(now) <= notAfter.Sub(notBefore)/20
}

// backoff is the wait before retry number attempt (1 = after the first
// failure): one minute doubling up to six hours, with ±10% jitter.
func backoff(attempt int, r *rand.Rand) time.Duration {
	d := time.Minute
	for i := 1; i < attempt && d < 6*time.Hour; i++ {
		d *= 2
	}
	d = min(d, 6*time.Hour)
	return d - d/10 + time.Duration(r.Int64N(int64(d/5)+1))
}

// queue holds the next due time of each name: a min-heap with an index.
type queue struct {
	h   dueHeap
	pos map[string]int
}

type due struct {
	name string
	at   int64 // unix nanoseconds
}

type dueHeap struct {
	items []due
	pos   map[string]int
}

func (h dueHeap) Len() int           { return len(h.items) }
func (h dueHeap) Less(i, j int) bool { return h.items[i].at < h.items[j].at }
func (h dueHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	h.pos[h.items[i].name] = i
	h.pos[h.items[j].name] = j
}
func (h *dueHeap) Push(x any) {
	d := x.(due)
	h.pos[d.name] = len(h.items)
	h.items = append(h.items, d)
}
func (h *dueHeap) Pop() any {
	d := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	delete(h.pos, d.name)
	return d
}

func newQueue() *queue {
	pos := map[string]int{}
	return &queue{h: dueHeap{pos: pos}, pos: pos}
}

// Set makes name due at at (replacing its previous time).
func (q *queue) Set(name string, at time.Time) {
	if i, ok := q.pos[name]; ok {
		q.h.items[i].at = at.UnixNano()
		heap.Fix(&q.h, i)
		return
	}
	heap.Push(&q.h, due{name: name, at: at.UnixNano()})
}

// Remove forgets name.
func (q *queue) Remove(name string) bool {
	i, ok := q.pos[name]
	if ok {
		heap.Remove(&q.h, i)
	}
	return ok
}

// PopDue removes and appends to dst up to max names due at now.
func (q *queue) PopDue(now time.Time, max int, dst []string) []string {
	n := now.UnixNano()
	for len(q.h.items) > 0 && q.h.items[0].at <= n && max > 0 {
		dst = append(dst, heap.Pop(&q.h).(due).name)
		max--
	}
	return dst
}

// Next returns the earliest due time.
func (q *queue) Next() (time.Time, bool) {
	if len(q.h.items) == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, q.h.items[0].at), true
}

// Len returns the number of names queued.
func (q *queue) Len() int { return len(q.h.items) }
