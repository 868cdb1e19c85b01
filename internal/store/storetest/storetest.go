// Package storetest is the conformance suite every store.Store backend
// passes. A backend's test calls Run with a function that opens a fresh,
// empty store:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { ... })
//	}
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"gatehouse/internal/store"
)

// Compactor is store.Compactor, kept under its old name.
type Compactor = store.Compactor

// timeout bounds every wait of the suite.
const timeout = 10 * time.Second

// Run runs the conformance suite, and the sub-tests of each optional
// capability the store implements (Capabilities/...). open must return a
// new, empty store; the suite closes it, and open may also register its
// own cleanup (Close must tolerate being called twice).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"GetNotFound", testGetNotFound},
		{"PutGetDelete", testPutGetDelete},
		{"ListPrefix", testListPrefix},
		{"ListPaging", testListPaging},
		{"ListRev", testListRev},
		{"TxnAtomic", testTxnAtomic},
		{"TxnConditions", testTxnConditions},
		{"TxnNoOps", testTxnNoOps},
		{"RevisionsIncrease", testRevisionsIncrease},
		{"Copies", testCopies},
		{"WatchFromNow", testWatchFromNow},
		{"WatchReplay", testWatchReplay},
		{"WatchFromListRev", testWatchFromListRev},
		{"WatchReplayUnderLoad", testWatchReplayUnderLoad},
		{"WatchTxnBatch", testWatchTxnBatch},
		{"WatchCancel", testWatchCancel},
		{"Close", testClose},
		{"Concurrent", testConcurrent},
		{"CASCounter", testCASCounter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
	t.Run("Capabilities", func(t *testing.T) {
		probe := open(t)
		_ = probe.Close()
		t.Logf("%T implements %v", probe, capabilityNames(probe))
		for _, c := range capabilities {
			if !c.has(probe) {
				continue
			}
			t.Run(c.name, func(t *testing.T) {
				s := open(t)
				t.Cleanup(func() { _ = s.Close() })
				c.fn(t, s)
			})
		}
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

var kvOpts = cmpopts.EquateEmpty()

func put(t *testing.T, s store.Store, key, value string) int64 {
	t.Helper()
	rev, err := store.PutKV(ctxT(t), s, key, []byte(value))
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return rev
}

func txn(t *testing.T, s store.Store, conds []store.Cond, ops ...store.Op) int64 {
	t.Helper()
	rev, err := s.Txn(ctxT(t), conds, ops)
	if err != nil {
		t.Fatalf("txn %v: %v", ops, err)
	}
	return rev
}

func curRev(t *testing.T, s store.Store) int64 {
	t.Helper()
	rev, err := s.Rev(ctxT(t))
	if err != nil {
		t.Fatalf("Rev: %v", err)
	}
	return rev
}

// recv returns the next response on ch, failing the test if none comes in
// time or the channel is closed.
func recv(t *testing.T, ch <-chan store.WatchResponse) store.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed, want a response")
		}
		return r
	case <-time.After(timeout):
		t.Fatal("no watch response in time")
	}
	panic("unreachable")
}

// waitClosed drains ch until it is closed and returns what it drained.
func waitClosed(t *testing.T, ch <-chan store.WatchResponse) []store.WatchResponse {
	t.Helper()
	var got []store.WatchResponse
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return got
			}
			got = append(got, r)
		case <-deadline:
			t.Fatal("watch channel not closed in time")
		}
	}
}

func putEv(key, value string, rev int64) store.Event {
	return store.Event{Type: store.EventPut, KV: store.KV{Key: key, Value: []byte(value), ModRev: rev}}
}

func delEv(key string, rev int64) store.Event {
	return store.Event{Type: store.EventDelete, KV: store.KV{Key: key, ModRev: rev}}
}

func testGetNotFound(t *testing.T, s store.Store) {
	put(t, s, "a/b", "x")
	for _, key := range []string{"a", "a/", "a/bc", "missing"} {
		t.Run(key, func(t *testing.T) {
			_, err := s.Get(ctxT(t), key)
			if !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q) error = %v, want ErrNotFound", key, err)
			}
		})
	}
}

func testPutGetDelete(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev := put(t, s, "k", "v1")
	got, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(got, store.KV{Key: "k", Value: []byte("v1"), ModRev: rev}, kvOpts); diff != "" {
		t.Errorf("Get after put (-got +want):\n%s", diff)
	}
	rev2 := put(t, s, "k", "")
	got, err = s.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if diff := cmp.Diff(got, store.KV{Key: "k", ModRev: rev2}, kvOpts); diff != "" {
		t.Errorf("Get after empty put (-got +want):\n%s", diff)
	}
	drev, err := store.DeleteKey(ctx, s, "k")
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if drev <= rev2 {
		t.Errorf("delete rev = %d, want > %d", drev, rev2)
	}
	if _, err := s.Get(ctx, "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after delete error = %v, want ErrNotFound", err)
	}
	// Deleting an absent key is not an error and changes nothing.
	if _, err := store.DeleteKey(ctx, s, "k"); err != nil {
		t.Errorf("delete of absent key: %v", err)
	}
	if got := curRev(t, s); got != drev {
		t.Errorf("Rev after deleting an absent key = %d, want %d (unchanged)", got, drev)
	}
}

func keysOf(kvs []store.KV) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func testListPrefix(t *testing.T, s store.Store) {
	for _, k := range []string{"a/b", "a/b/c", "a/b/d", "a/bc", "a/bc/x", "a/c", "b", "a/b0", "a/b."} {
		put(t, s, k, "v-"+k)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"a/b/", []string{"a/b/c", "a/b/d"}},
		{"a/bc/", []string{"a/bc/x"}},
		{"a/b", []string{"a/b", "a/b.", "a/b/c", "a/b/d", "a/b0", "a/bc", "a/bc/x"}},
		{"", []string{"a/b", "a/b.", "a/b/c", "a/b/d", "a/b0", "a/bc", "a/bc/x", "a/c", "b"}},
		{"z/", nil},
		{"a/c", []string{"a/c"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("prefix=%q", tc.prefix), func(t *testing.T) {
			kvs, _, err := s.List(ctxT(t), tc.prefix, "", 0)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if diff := cmp.Diff(keysOf(kvs), tc.want, kvOpts); diff != "" {
				t.Errorf("keys (-got +want):\n%s", diff)
			}
			for _, kv := range kvs {
				if got, want := string(kv.Value), "v-"+kv.Key; got != want {
					t.Errorf("value of %q = %q, want %q", kv.Key, got, want)
				}
				if kv.ModRev <= 0 {
					t.Errorf("ModRev of %q = %d, want > 0", kv.Key, kv.ModRev)
				}
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	var want []string
	for i := range 25 {
		k := fmt.Sprintf("p/%03d", i)
		want = append(want, k)
		put(t, s, k, "v")
	}
	put(t, s, "o", "outside")
	put(t, s, "p0", "outside")
	put(t, s, "p", "outside")

	for _, limit := range []int{1, 7, 25, 100} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			var got []string
			after, pages := "", 0
			for {
				kvs, _, err := s.List(ctxT(t), "p/", after, limit)
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				if len(kvs) > limit {
					t.Fatalf("page of %d keys, limit %d", len(kvs), limit)
				}
				if len(kvs) == 0 {
					break
				}
				pages++
				got = append(got, keysOf(kvs)...)
				after = kvs[len(kvs)-1].Key
				if pages > 100 {
					t.Fatal("paging does not end")
				}
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("paged keys (-got +want):\n%s", diff)
			}
			if wantPages := (25 + limit - 1) / limit; pages != wantPages {
				t.Errorf("pages = %d, want %d", pages, wantPages)
			}
		})
	}

	tests := []struct {
		name, after string
		limit       int
		want        []string
	}{
		{"after before prefix", "o", 2, []string{"p/000", "p/001"}},
		{"after a missing key", "p/0105", 2, []string{"p/011", "p/012"}},
		{"after the last", "p/024", 0, nil},
		{"after beyond prefix", "q", 0, nil},
		{"no limit", "p/020", 0, []string{"p/021", "p/022", "p/023", "p/024"}},
		{"negative limit", "p/022", -1, []string{"p/023", "p/024"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			kvs, _, err := s.List(ctxT(t), "p/", tc.after, tc.limit)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			if diff := cmp.Diff(keysOf(kvs), tc.want, kvOpts); diff != "" {
				t.Errorf("keys (-got +want):\n%s", diff)
			}
		})
	}
}

func testListRev(t *testing.T, s store.Store) {
	put(t, s, "l/a", "1")
	rev := put(t, s, "other", "2")
	_, got, err := s.List(ctxT(t), "l/", "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got != rev {
		t.Errorf("List rev = %d, want %d (the store revision, not the newest key's)", got, rev)
	}
	_, got, err = s.List(ctxT(t), "nothing/", "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if got != rev {
		t.Errorf("empty List rev = %d, want %d", got, rev)
	}
}

func testTxnAtomic(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	put(t, s, "t/old", "x")
	before := curRev(t, s)
	rev := txn(t, s, nil, store.Put("t/a", []byte("1")), store.Put("t/b", []byte("2")), store.Delete("t/old"))
	if rev <= before {
		t.Errorf("txn rev = %d, want > %d", rev, before)
	}
	if got := curRev(t, s); got != rev {
		t.Errorf("Rev = %d, want %d", got, rev)
	}
	kvs, _, err := s.List(ctx, "t/", "", 0)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	want := []store.KV{{Key: "t/a", Value: []byte("1"), ModRev: rev}, {Key: "t/b", Value: []byte("2"), ModRev: rev}}
	if diff := cmp.Diff(kvs, want, kvOpts); diff != "" {
		t.Errorf("after txn (-got +want):\n%s", diff)
	}
}

func testTxnConditions(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	// Each case gets its own present key, written at rev, and its own target.
	tests := []struct {
		name     string
		conds    func(present string, rev int64) []store.Cond
		conflict bool
	}{
		{"absent holds", func(string, int64) []store.Cond { return []store.Cond{store.Absent("c/missing")} }, false},
		{"absent fails", func(p string, _ int64) []store.Cond { return []store.Cond{store.Absent(p)} }, true},
		{"modrev holds", func(p string, rev int64) []store.Cond { return []store.Cond{{Key: p, ModRev: rev}} }, false},
		{"modrev stale", func(p string, rev int64) []store.Cond { return []store.Cond{{Key: p, ModRev: rev - 1}} }, true},
		{"modrev future", func(p string, rev int64) []store.Cond { return []store.Cond{{Key: p, ModRev: rev + 1000}} }, true},
		{"modrev on absent", func(_ string, rev int64) []store.Cond { return []store.Cond{{Key: "c/missing", ModRev: rev}} }, true},
		{"one of two fails", func(p string, rev int64) []store.Cond {
			return []store.Cond{{Key: p, ModRev: rev}, store.Absent(p)}
		}, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			present, target := fmt.Sprintf("c/present%d", i), fmt.Sprintf("c/target%d", i)
			rev := put(t, s, present, "v")
			put(t, s, "c/unrelated", "bump the revision")
			before := curRev(t, s)
			got, err := s.Txn(ctx, tc.conds(present, rev), []store.Op{store.Put(target, []byte("x")), store.Delete(present)})
			if tc.conflict {
				if !errors.Is(err, store.ErrConflict) {
					t.Fatalf("Txn error = %v, want ErrConflict", err)
				}
				if _, err := s.Get(ctx, target); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("Get(%q) after failed txn: error = %v, want ErrNotFound", target, err)
				}
				if _, err := s.Get(ctx, present); err != nil {
					t.Errorf("%s deleted by a failed txn: %v", present, err)
				}
				if r := curRev(t, s); r != before {
					t.Errorf("Rev after failed txn = %d, want %d", r, before)
				}
				return
			}
			if err != nil {
				t.Fatalf("Txn: %v", err)
			}
			if got <= before {
				t.Errorf("rev = %d, want > %d", got, before)
			}
			if kv, err := s.Get(ctx, target); err != nil || kv.ModRev != got {
				t.Errorf("Get(%q) = %+v, %v; want ModRev %d", target, kv, err, got)
			}
			if _, err := s.Get(ctx, present); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Get(%q) after txn deleting it: error = %v, want ErrNotFound", present, err)
			}
		})
	}
}

func testTxnNoOps(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev := put(t, s, "n", "v")
	got, err := s.Txn(ctx, nil, nil)
	if err != nil || got != rev {
		t.Errorf("Txn with no ops = %d, %v; want %d, nil", got, err, rev)
	}
	got, err = s.Txn(ctx, []store.Cond{{Key: "n", ModRev: rev}}, nil)
	if err != nil || got != rev {
		t.Errorf("Txn with a holding condition and no ops = %d, %v; want %d, nil", got, err, rev)
	}
	if _, err := s.Txn(ctx, []store.Cond{store.Absent("n")}, nil); !errors.Is(err, store.ErrConflict) {
		t.Errorf("Txn with a failing condition and no ops: error = %v, want ErrConflict", err)
	}
	if _, err := s.Txn(ctx, nil, []store.Op{store.Put("", []byte("v"))}); err == nil {
		t.Error("Txn putting the empty key succeeded, want an error")
	}
}

func testRevisionsIncrease(t *testing.T, s store.Store) {
	last := curRev(t, s)
	for i := range 20 {
		var rev int64
		if i%3 == 2 {
			rev = txn(t, s, nil, store.Delete(fmt.Sprintf("r/%d", i-1)))
		} else {
			rev = put(t, s, fmt.Sprintf("r/%d", i), "v")
		}
		if rev <= last {
			t.Fatalf("write %d: rev %d, want > %d", i, rev, last)
		}
		last = rev
	}
}

func testCopies(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	in := []byte("original")
	if _, err := s.Txn(ctx, nil, []store.Op{store.Put("cp", in)}); err != nil {
		t.Fatal(err)
	}
	copy(in, "MUTATED!")
	kv, err := s.Get(ctx, "cp")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(kv.Value); got != "original" {
		t.Errorf("after mutating the input: Get = %q, want %q", got, "original")
	}
	copy(kv.Value, "MUTATED!")
	kv2, err := s.Get(ctx, "cp")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(kv2.Value); got != "original" {
		t.Errorf("after mutating a Get result: Get = %q, want %q", got, "original")
	}
	kvs, _, err := s.List(ctx, "cp", "", 0)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("List = %v, %v", kvs, err)
	}
	copy(kvs[0].Value, "MUTATED!")
	kv3, err := s.Get(ctx, "cp")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(kv3.Value); got != "original" {
		t.Errorf("after mutating a List result: Get = %q, want %q", got, "original")
	}

	// Two watchers get values they may each modify.
	w1 := s.Watch(ctx, "cw", 0)
	w2 := s.Watch(ctx, "cw", 0)
	put(t, s, "cw", "shared")
	r1, r2 := recv(t, w1), recv(t, w2)
	if len(r1.Events) != 1 || len(r2.Events) != 1 {
		t.Fatalf("responses %+v, %+v; want one event each", r1, r2)
	}
	copy(r1.Events[0].KV.Value, "XXXXXX")
	if got := string(r2.Events[0].KV.Value); got != "shared" {
		t.Errorf("second watcher's value = %q after the first modified its own, want %q", got, "shared")
	}
}

func testWatchFromNow(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	put(t, s, "w/before", "old")
	ch := s.Watch(ctx, "w/", 0)
	r1 := put(t, s, "w/a", "1")
	put(t, s, "x/b", "other prefix")
	put(t, s, "w", "not under w/")
	r2 := put(t, s, "w/c", "3")
	r3, err := store.DeleteKey(ctx, s, "w/a")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.WatchResponse{
		{Rev: r1, Events: []store.Event{putEv("w/a", "1", r1)}},
		{Rev: r2, Events: []store.Event{putEv("w/c", "3", r2)}},
		{Rev: r3, Events: []store.Event{delEv("w/a", r3)}},
	}
	var got []store.WatchResponse
	for range want {
		got = append(got, recv(t, ch))
	}
	if diff := cmp.Diff(got, want, kvOpts, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("responses (-got +want):\n%s", diff)
	}
}

func testWatchReplay(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	var revs []int64
	for i := range 6 {
		revs = append(revs, put(t, s, fmt.Sprintf("h/%d", i), fmt.Sprint(i)))
		put(t, s, fmt.Sprintf("other/%d", i), "x")
	}
	dr, err := store.DeleteKey(ctx, s, "h/0")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "h/", revs[2])
	var want []store.WatchResponse
	for i := 3; i < 6; i++ {
		want = append(want, store.WatchResponse{Rev: revs[i], Events: []store.Event{putEv(fmt.Sprintf("h/%d", i), fmt.Sprint(i), revs[i])}})
	}
	want = append(want, store.WatchResponse{Rev: dr, Events: []store.Event{delEv("h/0", dr)}})
	var got []store.WatchResponse
	for range want {
		got = append(got, recv(t, ch))
	}
	if diff := cmp.Diff(got, want, kvOpts, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("replayed responses (-got +want):\n%s", diff)
	}
	// Then live, with nothing repeated in between.
	live := put(t, s, "h/live", "L")
	if diff := cmp.Diff(recv(t, ch), store.WatchResponse{Rev: live, Events: []store.Event{putEv("h/live", "L", live)}}, kvOpts, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("live response after replay (-got +want):\n%s", diff)
	}
}

func testWatchFromListRev(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	put(t, s, "f/a", "1")
	_, rev, err := s.List(ctx, "f/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, "f/", rev)
	next := put(t, s, "f/b", "2")
	if diff := cmp.Diff(recv(t, ch), store.WatchResponse{Rev: next, Events: []store.Event{putEv("f/b", "2", next)}}, kvOpts, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("first response after List (-got +want):\n%s", diff)
	}
}

// testWatchReplayUnderLoad starts watches from past revisions while a writer
// keeps writing, and checks that each sees every later revision exactly
// once, in order.
func testWatchReplayUnderLoad(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const writes = 300
	var (
		mu   sync.Mutex
		revs []int64
	)
	for i := range 50 {
		revs = append(revs, put(t, s, fmt.Sprintf("u/%d", i), "v"))
	}
	writerDone := make(chan error, 1)
	go func() {
		for i := 50; i < writes; i++ {
			rev, err := store.PutKV(ctx, s, fmt.Sprintf("u/%d", i), []byte("v"))
			if err != nil {
				writerDone <- err
				return
			}
			mu.Lock()
			revs = append(revs, rev)
			mu.Unlock()
		}
		writerDone <- nil
	}()
	type watch struct {
		from int64
		ch   <-chan store.WatchResponse
	}
	var watches []watch
	for i := range 5 {
		mu.Lock()
		from := revs[len(revs)-1-i*7]
		mu.Unlock()
		watches = append(watches, watch{from, s.Watch(ctx, "u/", from)})
	}
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	for _, w := range watches {
		var want []int64
		for _, r := range revs {
			if r > w.from {
				want = append(want, r)
			}
		}
		var got []int64
		for len(got) < len(want) {
			r := recv(t, w.ch)
			if r.Err != nil {
				t.Fatalf("watch from %d: %v", w.from, r.Err)
			}
			got = append(got, r.Rev)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("watch from %d: revisions (-got +want):\n%s", w.from, diff)
		}
	}
}

func testWatchTxnBatch(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	put(t, s, "b/0", "zero")
	ch := s.Watch(ctx, "b/", 0)
	rev := txn(t, s, nil, store.Put("b/2", []byte("two")), store.Delete("b/0"), store.Put("x/1", []byte("elsewhere")), store.Put("b/1", []byte("one")))
	want := store.WatchResponse{Rev: rev, Events: []store.Event{putEv("b/2", "two", rev), delEv("b/0", rev), putEv("b/1", "one", rev)}}
	if diff := cmp.Diff(recv(t, ch), want, kvOpts, cmpopts.EquateErrors()); diff != "" {
		t.Errorf("response of a txn (-got +want):\n%s", diff)
	}
}

func testWatchCancel(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(ctxT(t))
	ch := s.Watch(ctx, "", 0)
	put(t, s, "k", "v")
	recv(t, ch)
	cancel()
	for _, r := range waitClosed(t, ch) {
		if r.Err == nil && len(r.Events) == 0 {
			t.Errorf("empty response %+v", r)
		}
	}
	// The store still works.
	put(t, s, "k2", "v")
}

func testWatchCompacted(t *testing.T, s store.Store) {
	c := s.(store.Compactor)
	ctx := ctxT(t)
	var revs []int64
	for i := range 5 {
		revs = append(revs, put(t, s, fmt.Sprintf("z/%d", i), "v"))
	}
	if err := c.Compact(ctx, revs[2]); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	got := waitClosed(t, s.Watch(ctx, "z/", revs[0]))
	if len(got) != 1 || !errors.Is(got[0].Err, store.ErrCompacted) {
		t.Errorf("watch from a compacted revision: got %+v, want one response with ErrCompacted", got)
	}
	ch := s.Watch(ctx, "z/", revs[2])
	for _, want := range revs[3:] {
		if r := recv(t, ch); r.Err != nil || r.Rev != want {
			t.Errorf("watch from the compaction revision: got rev %d err %v, want rev %d", r.Rev, r.Err, want)
		}
	}
}

func testClose(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	rev := put(t, s, "k", "v")
	live := s.Watch(ctx, "", 0)
	replaying := s.Watch(ctx, "", rev-1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for name, ch := range map[string]<-chan store.WatchResponse{"live": live, "replaying": replaying} {
		for _, r := range waitClosed(t, ch) {
			if r.Err != nil && !errors.Is(r.Err, store.ErrClosed) {
				t.Errorf("%s watch: final error %v, want none or ErrClosed", name, r.Err)
			}
		}
	}
	calls := map[string]func() error{
		"Get":  func() error { _, err := s.Get(ctx, "k"); return err },
		"List": func() error { _, _, err := s.List(ctx, "", "", 0); return err },
		"Txn":  func() error { _, err := store.PutKV(ctx, s, "k", []byte("v")); return err },
		"Rev":  func() error { _, err := s.Rev(ctx); return err },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: error = %v, want ErrClosed", name, err)
		}
	}
	for _, r := range waitClosed(t, s.Watch(ctx, "", 0)) {
		if !errors.Is(r.Err, store.ErrClosed) {
			t.Errorf("Watch after Close: response %+v, want none or ErrClosed", r)
		}
	}
}

func testConcurrent(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const writers, perWriter = 4, 40
	watch := s.Watch(ctx, "cc/", 0)
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	stop := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("cc/%d/%03d", w, i)
				if _, err := store.PutKV(ctx, s, key, bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
					errs <- err
					return
				}
				if _, err := s.Get(ctx, key); err != nil {
					errs <- fmt.Errorf("Get(%q) right after its put: %w", key, err)
					return
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				kvs, _, err := s.List(ctx, "cc/", "", 0)
				if err != nil {
					errs <- err
					return
				}
				if !slices.IsSortedFunc(kvs, func(a, b store.KV) int { return strings.Compare(a.Key, b.Key) }) {
					errs <- errors.New("List result not sorted")
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	kvs, _, err := s.List(ctx, "cc/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != writers*perWriter {
		t.Errorf("List after concurrent writes: %d keys, want %d", len(kvs), writers*perWriter)
	}
	last := int64(0)
	for n := 0; n < writers*perWriter; {
		r := recv(t, watch)
		if r.Err != nil {
			t.Fatalf("watch: %v", r.Err)
		}
		if r.Rev <= last {
			t.Fatalf("watch: rev %d after %d", r.Rev, last)
		}
		last = r.Rev
		n += len(r.Events)
	}
}

func testCASCounter(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	const workers, increments = 2, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				for {
					n, cond := 0, store.Absent("counter")
					kv, err := s.Get(ctx, "counter")
					switch {
					case errors.Is(err, store.ErrNotFound):
					case err != nil:
						errs <- err
						return
					default:
						if _, err := fmt.Sscan(string(kv.Value), &n); err != nil {
							errs <- err
							return
						}
						cond = store.Cond{Key: "counter", ModRev: kv.ModRev}
					}
					_, err = s.Txn(ctx, []store.Cond{cond}, []store.Op{store.Put("counter", []byte(fmt.Sprint(n+1)))})
					if errors.Is(err, store.ErrConflict) {
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	kv, err := s.Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(kv.Value), fmt.Sprint(workers*increments); got != want {
		t.Errorf("counter = %s, want %s", got, want)
	}
}
