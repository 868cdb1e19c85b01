package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestQueueBasics(t *testing.T) {
	q := New()
	if _, ok := q.Next(); ok {
		t.Fatal("Next on an empty queue reports a time")
	}
	if q.Remove("x") {
		t.Fatal("Remove of a missing name reports true")
	}
	q.Set("c.example", t0.Add(3*time.Second))
	q.Set("a.example", t0.Add(1*time.Second))
	q.Set("b.example", t0.Add(2*time.Second))
	q.Set("a.example", t0.Add(5*time.Second)) // move later
	if q.Len() != 3 {
		t.Fatalf("Len = %d, want 3", q.Len())
	}
	if next, _ := q.Next(); !next.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("Next = %v, want b's time", next)
	}
	if at, ok := q.Get("a.example"); !ok || !at.Equal(t0.Add(5*time.Second)) {
		t.Fatalf("Get(a) = %v %v", at, ok)
	}
	if got := q.PopDue(t0.Add(time.Second), 10, nil); len(got) != 0 {
		t.Fatalf("PopDue before anything is due = %v", got)
	}
	if got := q.PopDue(t0.Add(10*time.Second), 0, nil); len(got) != 0 {
		t.Fatalf("PopDue with max 0 = %v", got)
	}
	got := q.PopDue(t0.Add(3*time.Second), 10, []string{"kept"})
	if diff := cmp.Diff(got, []string{"kept", "b.example", "c.example"}); diff != "" {
		t.Fatalf("PopDue (-got +want):\n%s", diff)
	}
	if !q.Remove("a.example") || q.Remove("a.example") {
		t.Fatal("Remove of a present name, then again")
	}
	if q.Len() != 0 {
		t.Fatalf("Len = %d after popping and removing all", q.Len())
	}
	// Before 1970 and after 2106 are clamped, not wrapped.
	q.Set("old", time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC))
	q.Set("far", time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
	if got := q.PopDue(t0, 10, nil); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("PopDue with a time before 1970 = %v", got)
	}
}

// refQueue is the obvious reference: a map, sorted on demand.
type refQueue map[string]int64

func (r refQueue) sorted() []string {
	names := make([]string, 0, len(r))
	for n := range r {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int {
		if r[a] != r[b] {
			if r[a] < r[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	return names
}

func TestQueueAgainstReference(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 99))
			q, ref := New(), refQueue{}
			names := make([]string, 3000)
			for i := range names {
				// Long names so that removals trigger arena compaction.
				names[i] = fmt.Sprintf("%s.h%d.example", strings.Repeat("x", r.IntN(120)), i)
			}
			now := int64(1_000_000)
			for op := 0; op < 60000; op++ {
				name := names[r.IntN(len(names))]
				switch k := r.IntN(10); {
				case k < 5:
					at := now + r.Int64N(600) - 100
					q.Set(name, time.Unix(at, 0))
					ref[name] = at
				case k < 7:
					_, want := ref[name]
					delete(ref, name)
					if got := q.Remove(name); got != want {
						t.Fatalf("op %d: Remove(%q) = %v, want %v", op, name, got, want)
					}
				case k < 9:
					now += r.Int64N(20)
					max := r.IntN(8)
					var want []string
					for _, n := range ref.sorted() {
						if len(want) == max || ref[n] > now {
							break
						}
						want = append(want, n)
					}
					for _, n := range want {
						delete(ref, n)
					}
					got := q.PopDue(time.Unix(now, 0), max, nil)
					if !slices.Equal(got, want) {
						t.Fatalf("op %d: PopDue = %q, want %q", op, got, want)
					}
				default:
					at, ok := q.Get(name)
					want, wok := ref[name]
					if ok != wok || (ok && at.Unix() != want) {
						t.Fatalf("op %d: Get(%q) = %v %v, want %v %v", op, name, at.Unix(), ok, want, wok)
					}
				}
				if q.Len() != len(ref) {
					t.Fatalf("op %d: Len = %d, want %d", op, q.Len(), len(ref))
				}
				if op%1000 == 0 {
					checkInvariants(t, q, ref)
				}
			}
			checkInvariants(t, q, ref)
		})
	}
}

// checkInvariants checks the heap order, the position index, the table and
// the whole order against the reference.
func checkInvariants(t *testing.T, q *Queue, ref refQueue) {
	t.Helper()
	q.mu.Lock()
	for i, e := range q.heap {
		if q.pos[e.id] != int32(i) {
			t.Fatalf("pos[%d] = %d, want %d", e.id, q.pos[e.id], i)
		}
		if i > 0 && q.less(e, q.heap[(i-1)/2]) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
	inTable, used := 0, 0
	for i, c := range q.ctrl {
		if c != ctrlEmpty {
			used++
		}
		if c >= 2 {
			inTable++
			if q.pos[q.table[i]] < 0 {
				t.Fatalf("table holds freed id %d", q.table[i])
			}
		}
	}
	if used != q.used || used*4 > len(q.ctrl)*3 {
		t.Fatalf("table: %d slots used, counted %d, of %d", used, q.used, len(q.ctrl))
	}
	if inTable != len(q.heap) {
		t.Fatalf("table holds %d ids, heap %d", inTable, len(q.heap))
	}
	if q.dead*2 > len(q.arena) && q.dead >= 1<<16 {
		t.Fatalf("arena not compacted: %d of %d bytes dead", q.dead, len(q.arena))
	}
	q.mu.Unlock()
	for n, at := range ref {
		got, ok := q.Get(n)
		if !ok || got.Unix() != at {
			t.Fatalf("Get(%q) = %v %v, want %v", n, got.Unix(), ok, at)
		}
	}
}

func TestQueueLoad(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	q, ref := New(), refQueue{}
	q.Grow(0)
	for i := 0; i < 500; i++ { // some names already there, to be moved
		at := r.Int64N(1000)
		q.Set(hostname(i), time.Unix(at, 0))
		ref[hostname(i)] = at
	}
	q.Grow(2500)
	if len(q.table) < 4096 || cap(q.heap) < 3000 {
		t.Fatalf("Grow(2500) after 500 names: table %d, heap capacity %d", len(q.table), cap(q.heap))
	}
	q.Load(func(yield func(string, time.Time) bool) {
		for i := 250; i < 3000; i++ {
			at := r.Int64N(1000)
			ref[hostname(i%2000)] = at // names below 1000 come twice: the last wins
			if !yield(hostname(i%2000), time.Unix(at, 0)) {
				return
			}
		}
	})
	checkInvariants(t, q, ref)
	got := q.PopDue(time.Unix(1000, 0), q.Len()+1, nil)
	if diff := cmp.Diff(got, ref.sorted()); diff != "" {
		t.Errorf("order after Load (-got +want):\n%s", diff)
	}
}

func TestQueueConcurrent(t *testing.T) {
	q := New()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst []string
			for i := 0; i < 2000; i++ {
				name := fmt.Sprintf("g%d-%d.example", g, i%300)
				q.Set(name, t0.Add(time.Duration(i)*time.Second))
				if i%7 == 0 {
					q.Remove(name)
				}
				dst = q.PopDue(t0.Add(time.Duration(i/2)*time.Second), 3, dst[:0])
				q.Next()
				q.Len()
				q.Bytes()
			}
		}()
	}
	wg.Wait()
	q.mu.Lock()
	defer q.mu.Unlock()
	for i, e := range q.heap {
		if i > 0 && q.less(e, q.heap[(i-1)/2]) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

func hostname(i int) string { return fmt.Sprintf("www.customer%07d.example", i) }

// The schedule for a million names costs at most 64 MiB of heap, names
// included (100,000 names and the same budget per name under -race).
func TestQueueMemory(t *testing.T) {
	n := 1_000_000
	if raceEnabled {
		n = 100_000
	}
	limit := int64(64<<20) * int64(n) / 1_000_000
	before := heapInUse()
	q := New()
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < n; i++ {
		nb := t0.Add(-time.Duration(r.Int64N(int64(90 * day))))
		q.Set(hostname(i), RenewAt(nb, nb.Add(90*day), nil, r))
	}
	used := heapInUse() - before
	t.Logf("%d names: %.1f MiB of heap (%.1f bytes per name), Bytes() = %.1f MiB",
		n, float64(used)/(1<<20), float64(used)/float64(n), float64(q.Bytes())/(1<<20))
	if used > limit {
		t.Errorf("%d names use %d bytes of heap, want at most %d", n, used, limit)
	}
	if b := q.Bytes(); b < used*8/10 || b > used*12/10 {
		t.Errorf("Bytes() = %d, measured %d: estimate off by more than 20%%", b, used)
	}
	// The snapshot round-trips and the decoded queue is as compact.
	var buf bytes.Buffer
	if err := q.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %.1f MB", float64(buf.Len())/1e6)
	q = nil
	before = heapInUse()
	q2, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if used := heapInUse() - before; used > limit {
		t.Errorf("decoded queue uses %d bytes, want at most %d", used, limit)
	}
	if q2.Len() != n {
		t.Errorf("decoded Len = %d, want %d", q2.Len(), n)
	}
	runtime.KeepAlive(q)
}

func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func TestSnapshotRoundTrip(t *testing.T) {
	q := New()
	r := rand.New(rand.NewPCG(9, 10))
	for i := 0; i < 5000; i++ {
		q.Set(hostname(i), t0.Add(time.Duration(r.Int64N(int64(60*day)))))
	}
	for i := 0; i < 5000; i += 3 {
		q.Remove(hostname(i))
	}
	q.Set("", t0) // the empty name is a name like any other
	var buf bytes.Buffer
	if err := q.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	snap := buf.Bytes()
	q2, err := Decode(bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	far := t0.Add(100 * day)
	got, want := q2.PopDue(far, q2.Len()+1, nil), q.PopDue(far, q.Len()+1, nil)
	if diff := cmp.Diff(got, want); diff != "" {
		t.Fatalf("decoded order differs (-got +want):\n%s", diff)
	}

	// Every truncation and every flipped byte is refused with ErrSnapshot.
	for i := 0; i < len(snap); i += max(1, len(snap)/300) {
		if _, err := Decode(bytes.NewReader(snap[:i])); !errors.Is(err, ErrSnapshot) {
			t.Fatalf("truncated at %d: err = %v, want ErrSnapshot", i, err)
		}
		bad := bytes.Clone(snap)
		bad[i] ^= 0x41
		if _, err := Decode(bytes.NewReader(bad)); !errors.Is(err, ErrSnapshot) {
			t.Fatalf("byte %d flipped: err = %v, want ErrSnapshot", i, err)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	enc := func(body ...[]byte) []byte {
		b := []byte(snapshotMagic)
		for _, p := range body {
			b = append(b, p...)
		}
		return b
	}
	withCRC := func(b []byte) []byte {
		var buf bytes.Buffer
		buf.Write(b)
		c := crcOf(b)
		return append(buf.Bytes(), byte(c), byte(c>>8), byte(c>>16), byte(c>>24))
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"bad magic", []byte("GHRQ\x02\x00\x00\x00\x00\x00"), "bad magic"},
		{"huge count", withCRC(enc([]byte{0xff, 0xff, 0xff, 0xff, 0x7f})), "count"},
		{"count larger than the data", enc([]byte{5}), "truncated"},
		{"duplicate name", withCRC(enc([]byte{2, 1, 'a', 1, 1, 'a', 2})), "twice"},
		{"name too long", withCRC(enc([]byte{1, 0xff, 0xff, 0x7f})), "longer"},
		{"time out of range", withCRC(enc([]byte{1, 1, 'a', 0xff, 0xff, 0xff, 0xff, 0x7f})), "time"},
		{"bad checksum", append(enc([]byte{0}), 1, 2, 3, 4), "checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(bytes.NewReader(tc.in))
			if !errors.Is(err, ErrSnapshot) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Decode = %v, want ErrSnapshot mentioning %q", err, tc.want)
			}
		})
	}
	// A valid empty snapshot decodes.
	if q, err := Decode(bytes.NewReader(withCRC(enc([]byte{0})))); err != nil || q.Len() != 0 {
		t.Errorf("empty snapshot: %v, %v", q, err)
	}
}

func crcOf(b []byte) uint32 { return crc32.ChecksumIEEE(b) }

func FuzzDecode(f *testing.F) {
	q := New()
	q.Set("a.example", t0)
	q.Set("b.example", t0.Add(time.Hour))
	var buf bytes.Buffer
	q.Encode(&buf)
	f.Add(buf.Bytes())
	f.Add([]byte(snapshotMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		q, err := Decode(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("error not wrapping ErrSnapshot: %v", err)
			}
			return
		}
		var out bytes.Buffer
		if err := q.Encode(&out); err != nil {
			t.Fatal(err)
		}
		q2, err := Decode(&out)
		if err != nil {
			t.Fatalf("re-encoded snapshot does not decode: %v", err)
		}
		far := time.Unix(1<<32-1, 0)
		if diff := cmp.Diff(q2.PopDue(far, q2.Len(), nil), q.PopDue(far, q.Len(), nil)); diff != "" {
			t.Fatalf("round trip differs:\n%s", diff)
		}
	})
}
