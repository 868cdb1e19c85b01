package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
)

// capabilities are the sub-tests of the optional store capabilities (see
// internal/store/capability.go). Run runs the ones the store implements; a
// backend pins what it implements with compile-time assertions
// (var _ store.Scanner = (*Store)(nil)), so that losing one fails the build
// rather than dropping its test.
var capabilities = []struct {
	name string
	has  func(store.Store) bool
	fn   func(t *testing.T, s store.Store)
}{
	{"Sizer", is[store.Sizer], testSizer},
	{"Scanner", is[store.Scanner], testScanner},
	{"ProgressWatcher", is[store.ProgressWatcher], testProgressWatcher},
	{"Remote", is[store.Remote], testRemote},
	{"SerializableGetter", is[store.SerializableGetter], testSerializableGetter},
	{"Compactor", is[store.Compactor], testWatchCompacted},
}

func is[T any](s store.Store) bool {
	_, ok := s.(T)
	return ok
}

func testSizer(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sz := s.(store.Sizer)
	before, err := sz.Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	for i := range 10 {
		put(t, s, fmt.Sprintf("size/%d", i), string(bytes.Repeat([]byte("v"), 1000)))
	}
	after, err := sz.Usage(ctx)
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	if after.Bytes <= 0 {
		t.Errorf("Usage.Bytes = %d after writes, want > 0", after.Bytes)
	}
	if after.QuotaBytes < 0 || (after.QuotaBytes > 0 && after.QuotaBytes < after.Bytes) {
		t.Errorf("Usage.QuotaBytes = %d with %d bytes used", after.QuotaBytes, after.Bytes)
	}
	if after.Keys != -1 && before.Keys != -1 && after.Keys != before.Keys+10 {
		t.Errorf("Usage.Keys = %d after 10 new keys, was %d", after.Keys, before.Keys)
	}
}

func testScanner(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sc := s.(store.Scanner)
	for i := range 25 {
		put(t, s, fmt.Sprintf("scan/%02d", i), fmt.Sprint("v", i))
	}
	put(t, s, "scan0", "outside")
	put(t, s, "scaN/1", "outside")
	want, listRev, err := s.List(ctx, "scan/", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []store.KV
	rev, err := sc.Scan(ctx, "scan/", func(key, value []byte) error {
		got = append(got, store.KV{Key: string(key), Value: bytes.Clone(value)})
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	if rev < listRev {
		t.Errorf("Scan revision %d is older than the List before it (%d)", rev, listRev)
	}
	for i := range want {
		want[i].ModRev = 0 // Scan does not report it
	}
	if d := cmp.Diff(got, want); d != "" {
		t.Errorf("Scan and List differ (-scan +list):\n%s", d)
	}

	stop := errors.New("stop")
	n := 0
	if _, err := sc.Scan(ctx, "scan/", func(key, value []byte) error {
		if n++; n == 3 {
			return stop
		}
		return nil
	}); !errors.Is(err, stop) {
		t.Errorf("Scan with fn failing: error = %v, want fn's", err)
	}
	if n != 3 {
		t.Errorf("Scan called fn %d times after it failed at the third", n)
	}

	var keys []string
	if _, err := sc.Scan(ctx, "nothing/", func(key, value []byte) error {
		keys = append(keys, string(key))
		return nil
	}); err != nil || len(keys) != 0 {
		t.Errorf("Scan of an empty prefix: keys %v, error %v", keys, err)
	}
}

func testProgressWatcher(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	pw := s.(store.ProgressWatcher)
	from := curRev(t, s)
	ch := pw.WatchProgress(ctx, "prog/", from)
	r1 := put(t, s, "prog/a", "1")
	put(t, s, "other/x", "2")
	last := put(t, s, "other/y", "3")
	got := recv(t, ch)
	for len(got.Events) == 0 && got.Err == nil {
		got = recv(t, ch) // an early progress report
	}
	if got.Err != nil || got.Rev != r1 || len(got.Events) != 1 || got.Events[0].KV.Key != "prog/a" {
		t.Fatalf("WatchProgress: got %+v, want the put of prog/a at %d", got, r1)
	}
	// Until a report covers the later writes outside the prefix.
	deadline := time.Now().Add(timeout)
	for {
		if err := pw.RequestProgress(ctx); err != nil {
			t.Fatalf("RequestProgress: %v", err)
		}
		select {
		case r := <-ch:
			if r.Err != nil || len(r.Events) != 0 {
				t.Fatalf("after RequestProgress: got %+v, want a progress report", r)
			}
			if r.Rev >= last {
				return
			}
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress report up to revision %d", last)
		}
	}
}

func testRemote(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	r := s.(store.Remote)
	put(t, s, "remote/a", "1")
	if !r.Reachable() {
		t.Error("Reachable = false right after a successful write")
	}
	id1, err := r.Identity(ctx)
	if err != nil || id1 == "" {
		t.Fatalf("Identity = %q, %v; want a name", id1, err)
	}
	id2, err := r.Identity(ctx)
	if err != nil || id2 != id1 {
		t.Errorf("Identity again = %q, %v; want %q", id2, err, id1)
	}
}

func testSerializableGetter(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	sg := s.(store.SerializableGetter)
	rev := put(t, s, "ser/a", "1")
	deadline := time.Now().Add(timeout)
	for {
		kv, err := sg.GetSerializable(ctx, "ser/a")
		if err == nil {
			if string(kv.Value) != "1" || kv.ModRev != rev || kv.Key != "ser/a" {
				t.Errorf("GetSerializable = %+v, want ser/a=1 at %d", kv, rev)
			}
			break
		}
		// A replica may lag the write by the replication delay.
		if !errors.Is(err, store.ErrNotFound) || time.Now().After(deadline) {
			t.Fatalf("GetSerializable: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := sg.GetSerializable(ctx, "ser/missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetSerializable of a missing key: error = %v, want ErrNotFound", err)
	}
}

// capabilityNames lists the capabilities s implements, for the test log.
func capabilityNames(s store.Store) []string {
	var out []string
	for _, c := range capabilities {
		if c.has(s) {
			out = append(out, c.name)
		}
	}
	return slices.Clip(out)
}
