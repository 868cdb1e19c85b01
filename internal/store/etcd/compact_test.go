package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

func TestCompactOnceKeepsRetention(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, nil)
	ctx := ctxT(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	opts := etcd.CompactionOptions{Retention: 2 * time.Hour, Now: func() time.Time { return now }}
	put := func(v string) int64 {
		rev, err := store.PutKV(ctx, s, "k", []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	r0 := put("0")
	r1 := put("1")
	steps := []struct {
		name    string
		advance time.Duration
		want    int64 // revision compacted to, 0 for none
	}{
		{"first mark", 0, 0},
		{"an hour later: nothing is old enough", time.Hour, 0},
		{"two hours after the first mark", time.Hour, r1},
		{"same marks again: nothing new to compact", 0, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			now = now.Add(st.advance)
			got, err := s.CompactOnce(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if got != st.want {
				t.Errorf("CompactOnce = %d, want %d", got, st.want)
			}
			put(st.name)
		})
	}
	// A watch from before the compaction must relist; one from the
	// compacted revision resumes.
	for _, tc := range []struct {
		from    int64
		wantErr error
	}{
		{r0 - 1, store.ErrCompacted},
		{r1, nil},
	} {
		wctx, cancel := context.WithCancel(ctx)
		resp := <-s.Watch(wctx, "k", tc.from)
		cancel()
		if !errors.Is(resp.Err, tc.wantErr) {
			t.Errorf("watch from %d: first response error %v, want %v", tc.from, resp.Err, tc.wantErr)
		}
	}
}

func TestGetSerializable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, nil)
	ctx := ctxT(t)
	rev, err := store.PutKV(ctx, s, "a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key     string
		want    string
		wantErr error
	}{
		{"a", "1", nil},
		{"missing", "", store.ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			// A member may lag the write for a moment: poll.
			deadline := time.Now().Add(5 * time.Second)
			for {
				kv, err := s.GetSerializable(ctx, tc.key)
				if errors.Is(err, tc.wantErr) && string(kv.Value) == tc.want && (tc.wantErr != nil || kv.ModRev == rev) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("GetSerializable(%q) = %q at %d, %v; want %q at %d, %v", tc.key, kv.Value, kv.ModRev, err, tc.want, rev, tc.wantErr)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
