package status

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// TestHandOverKeepsOneNodeRecord plays a binary upgrade on the embedded
// store: the old portal pauses and hands its node name over, the store
// turns read-only, the new portal starts under the same name, the old one
// closes without error (before, its withdrawal failed on the read-only
// store and left its record behind), and the new one publishes into the
// same record once the store is writable. Three upgrades leave one record;
// a clean stop leaves none.
func TestHandOverKeepsOneNodeRecord(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	clk := &clock{t: t0}
	h := &health{pools: map[string][]bool{"web": {true, true}, "mobile": {true}, "web-us": {true}}}
	records := func() map[string]time.Time {
		t.Helper()
		kvs, _, err := st.List(ctx, keyNodes, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]time.Time{}
		for _, kv := range kvs {
			var o observation
			if err := json.Unmarshal(kv.Value, &o); err != nil {
				t.Fatal(err)
			}
			out[kv.Key] = o.At
		}
		return out
	}
	start := func(node string) (*Portal, func()) {
		p := New(testStatus, nil, h.source, Options{Store: st, Now: clk.Now, Interval: time.Hour, Node: node})
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return p, lead(t, p)
	}
	cur, stop := start("edge-1-abc123")
	const key = keyNodes + "edge-1-abc123"
	if diff := cmp.Diff(records(), map[string]time.Time{key: t0}); diff != "" {
		t.Fatalf("records after start (-got +want):\n%s", diff)
	}
	for i := range 3 {
		// The old process: pause, hand over, store read-only.
		if err := cur.Pause(); err != nil {
			t.Fatal(err)
		}
		cur.HandOver()
		if err := st.ReopenReadOnly(); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
		next := New(testStatus, nil, h.source, Options{Store: st, Now: clk.Now, Interval: time.Hour, Node: cur.Node()})
		if err := next.Start(ctx); err != nil {
			t.Fatal(err)
		}
		cur.Tick() // a tick while draining publishes nothing
		stop()
		if err := cur.Close(); err != nil {
			t.Errorf("upgrade %d: closing the old process: %v", i+1, err)
		}
		// The old process has exited: the store is writable again.
		if err := st.ReopenWritable(); err != nil {
			t.Fatal(err)
		}
		cur, stop = next, lead(t, next)
		clk.Add(DefaultPublish)
		cur.Tick()
		if diff := cmp.Diff(records(), map[string]time.Time{key: clk.Now()}); diff != "" {
			t.Errorf("upgrade %d: records (-got +want):\n%s", i+1, diff)
		}
	}
	stop()
	if err := cur.Close(); err != nil {
		t.Fatal(err)
	}
	if got := records(); len(got) != 0 {
		t.Errorf("records after a clean stop: %v, want none", got)
	}
}

// TestHandOverUndoneByResume: a failed upgrade gives the name back; the
// node publishes again at its next tick and withdraws its record at close.
func TestHandOverUndoneByResume(t *testing.T) {
	f := newFixture(t, "", Options{Node: "edge-2-def456"})
	ctx := context.Background()
	f.p.HandOver()
	f.clock.Add(DefaultPublish)
	f.p.Tick()
	kv, err := f.st.Get(ctx, keyNodes+"edge-2-def456")
	if err != nil {
		t.Fatal(err)
	}
	var o observation
	json.Unmarshal(kv.Value, &o)
	if !o.At.Equal(t0) {
		t.Errorf("observation after the hand-over published at %v, want none since %v", o.At, t0)
	}
	f.p.Resume()
	f.clock.Add(time.Second)
	f.p.Tick()
	kv, _ = f.st.Get(ctx, keyNodes+"edge-2-def456")
	json.Unmarshal(kv.Value, &o)
	if !o.At.Equal(f.clock.Now()) {
		t.Errorf("observation after Resume at %v, want %v", o.At, f.clock.Now())
	}
}

// TestSilentNodeRecordsRemoved: records left by nodes that stopped without
// withdrawing them (killed, or upgraded by an older version) are deleted by
// the leader once silent for NodeRecordExpiry; a live node's stays.
func TestSilentNodeRecordsRemoved(t *testing.T) {
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, at := range map[string]time.Time{"gone-1": t0.Add(-48 * time.Hour), "gone-2": t0.Add(-NodeRecordExpiry - time.Second), "live": t0} {
		b, _ := json.Marshal(observation{Node: name, At: at})
		if _, err := store.PutKV(ctx, st, keyNodes+name, b); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	f := newFixture(t, dir, Options{Node: "leader"})
	publish := func(name string) { // the live node keeps publishing
		b, _ := json.Marshal(observation{Node: name, At: f.clock.Now()})
		if _, err := store.PutKV(ctx, f.st, keyNodes+name, b); err != nil {
			t.Fatal(err)
		}
	}
	names := func() []string {
		kvs, _, err := f.st.List(ctx, keyNodes, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, kv := range kvs {
			out = append(out, kv.Key[len(keyNodes):])
		}
		return out
	}
	f.clock.Add(DefaultHistoryFlush)
	publish("live")
	waitFor(t, "the live node's record", func() bool {
		f.p.mu.Lock()
		defer f.p.mu.Unlock()
		return f.p.nodes["live"] != nil && f.p.nodes["live"].latest.At.Equal(f.clock.Now())
	})
	f.p.Tick()
	if diff := cmp.Diff(names(), []string{"leader", "live"}); diff != "" {
		t.Errorf("node records after the leader's sweep (-got +want):\n%s", diff)
	}
}
