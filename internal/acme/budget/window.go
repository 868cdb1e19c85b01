package budget

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// window is one sliding-window budget: per key, the times of the events
// inside the window, ascending, as Unix seconds rounded up (so an event never
// leaves its window early). At most bound events are kept per key: the
// newest, which are all that the limit and the wait need.
//
// Most keys hold one or two events (a name's certificate, a domain's), so
// those are packed into the map's value; keys with more spill into big.
type window struct {
	span    uint32 // seconds
	limit   int
	bound   int
	keys    map[string]uint64   // two events packed (older low, newer high; 0: none), or spill
	big     map[string][]uint32 // keys holding more than two events
	ops     int                 // records since the last sweep
	scratch [2]uint32
}

const spill = math.MaxUint64

func newWindow(span time.Duration, limit int) window {
	bound := limit
	if bound < 1 {
		bound = 64 // disabled: counted for Usage, up to this many
	}
	return window{
		span: uint32(span / time.Second), limit: limit, bound: bound,
		keys: map[string]uint64{}, big: map[string][]uint32{},
	}
}

// get returns key's events; a packed key's are in w.scratch, valid until the
// next get.
func (w *window) get(key string) []uint32 {
	v, ok := w.keys[key]
	if !ok {
		return nil
	}
	if v == spill {
		return w.big[key]
	}
	w.scratch = [2]uint32{uint32(v), uint32(v >> 32)}
	if w.scratch[1] == 0 {
		return w.scratch[:1]
	}
	return w.scratch[:2]
}

// put stores key's events (none: the key is dropped).
func (w *window) put(key string, evs []uint32) {
	switch len(evs) {
	case 0:
		delete(w.keys, key)
		delete(w.big, key)
		return
	case 1:
		w.keys[key] = uint64(evs[0])
	case 2:
		w.keys[key] = uint64(evs[0]) | uint64(evs[1])<<32
	default:
		w.keys[key] = spill
		w.big[key] = evs
		return
	}
	delete(w.big, key)
}

func ceilSec(t time.Time) uint32 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	if s < 0 {
		return 0
	}
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

func secTime(s uint32) time.Time { return time.Unix(int64(s), 0) }

// horizon is the oldest second still inside the window at now: an event at
// second t counts while t > now - span.
func (w *window) horizon(now time.Time) uint32 {
	n := now.Unix() - int64(w.span)
	if n < 0 {
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// live returns key's events inside the window, dropping the others (and the
// key when none is left). The slice may be w.scratch.
func (w *window) live(key string, now time.Time) []uint32 {
	evs := w.get(key)
	if evs == nil {
		return nil
	}
	h := w.horizon(now)
	i := 0
	for i < len(evs) && evs[i] <= h {
		i++
	}
	if i > 0 {
		evs = slices.Delete(evs, 0, i)
		w.put(key, evs)
	}
	return evs
}

// record adds an event for key at at. An event already outside the window
// (a replayed old record) is not kept.
func (w *window) record(key string, at, now time.Time) {
	w.sweepMaybe(now)
	t := max(ceilSec(at), 1) // 0 marks an empty packed slot
	if t <= w.horizon(now) {
		return
	}
	evs := w.live(key, now)
	i, _ := slices.BinarySearch(evs, t)
	if len(evs) >= w.bound {
		if i == 0 {
			return // not newer than every kept event: it cannot change the answer
		}
		evs = slices.Delete(evs, 0, 1) // drop the oldest
		i--
	}
	if len(evs) >= 2 && cap(evs) == 2 && &evs[0] == &w.scratch[0] {
		evs = append(make([]uint32, 0, 4), evs...) // spilling: off the scratch array
	}
	w.put(key, slices.Insert(evs, i, t))
}

// sweepMaybe drops expired keys once per as many records as there are keys,
// so that keys never touched again do not stay (amortized O(1) per record).
func (w *window) sweepMaybe(now time.Time) {
	w.ops++
	if w.ops < len(w.keys)+1024 {
		return
	}
	w.ops = 0
	for k := range w.keys {
		w.live(k, now)
	}
}

// wait is how long until key can take one more event under the limit.
func (w *window) wait(key string, now time.Time) (time.Duration, int) {
	evs := w.live(key, now)
	if w.limit <= 0 || len(evs) < w.limit {
		return 0, len(evs)
	}
	// len(evs) - limit + 1 events must leave: the one at len(evs)-limit
	// leaves last, at its time + span.
	leaves := secTime(evs[len(evs)-w.limit] + w.span)
	return leaves.Sub(now), len(evs)
}

// hold folds key's wait into h.
func (w *window) hold(h *hold, budget, kind, key string, now time.Time) {
	d, used := w.wait(key, now)
	if d <= 0 {
		return
	}
	h.max(d, str(budget), func() string {
		return fmt.Sprintf("%s: %s %q used %d of %d in the last %s; admitted in %s",
			budget, kind, key, used, w.limit, spanString(w.span), d.Round(time.Second))
	})
}

func spanString(s uint32) string {
	d := time.Duration(s) * time.Second
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return fmt.Sprintf("%dh", d/time.Hour)
}

// busiest walks every key, drops the expired ones and returns the key with
// the most events (the smallest key among equals).
func (w *window) busiest(name string, limit int, now time.Time) Usage {
	u := Usage{Name: name, Limit: int64(max(limit, 0))}
	w.ops = 0
	for k := range w.keys {
		n := int64(len(w.live(k, now)))
		if n > u.Used || (n == u.Used && n > 0 && k < u.Key) {
			u.Used, u.Key = n, k
		}
	}
	return u
}
