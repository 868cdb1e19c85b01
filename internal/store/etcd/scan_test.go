package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

func TestScan(t *testing.T) {
	c := etcdtest.Start(t, 1)
	defer etcd.SetScanPageSize(7)()
	for _, tc := range []struct {
		name    string
		streams bool
	}{
		{"range stream", true},
		{"pages at one revision", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, c, nil)
			if !tc.streams {
				s.DisableStreams()
			}
			ctx := ctxT(t)
			var want []string
			var ops []store.Op
			for i := range 50 {
				k := fmt.Sprintf("in/%03d", i)
				want = append(want, k+"="+k)
				ops = append(ops, store.Put(k, []byte(k)))
			}
			ops = append(ops, store.Put("inx", []byte("outside")), store.Put("a", []byte("outside")))
			if _, err := s.Txn(ctx, nil, ops); err != nil {
				t.Fatal(err)
			}
			before, err := s.Rev(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			var wrote int64
			rev, err := s.Scan(ctx, "in/", func(k, v []byte) error {
				got = append(got, string(k)+"="+string(v))
				if wrote == 0 {
					// A write during the scan is not part of it.
					if wrote, err = store.PutKV(ctx, s, "in/999", []byte("late")); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				t.Fatalf("Scan: %v", err)
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("scanned keys (-got +want):\n%s", diff)
			}
			if rev != before {
				t.Errorf("scan revision %d, want %d (the write during it was at %d)", rev, before, wrote)
			}

			stop := errors.New("enough")
			n := 0
			_, err = s.Scan(ctx, "in/", func(k, v []byte) error {
				if n++; n == 3 {
					return stop
				}
				return nil
			})
			if !errors.Is(err, stop) || n != 3 {
				t.Errorf("Scan with fn failing at key 3: %d keys, err %v; want 3 keys and fn's error", n, err)
			}
		})
	}
}

func TestScanUnavailable(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, func(o *etcd.Options) { o.RequestTimeout = 300 * time.Millisecond })
	ctx := ctxT(t)
	if _, err := s.Identity(ctx); err != nil {
		t.Fatalf("Identity: %v", err)
	}
	c.StopAll()
	_, err := s.Scan(ctx, "", func(k, v []byte) error { return nil })
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Scan with the cluster down: %v, want ErrUnavailable", err)
	}
}

func TestIdentity(t *testing.T) {
	c1 := etcdtest.Start(t, 1)
	c2 := etcdtest.Start(t, 1)
	ctx := ctxT(t)
	id := func(c *etcdtest.Cluster, prefix string) string {
		s := open(t, c, func(o *etcd.Options) { o.Prefix = prefix })
		got, err := s.Identity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	a, again, otherPrefix, otherCluster := id(c1, "/a/"), id(c1, "/a/"), id(c1, "/b/"), id(c2, "/a/")
	if a != again {
		t.Errorf("identity of one cluster and prefix changed: %q then %q", a, again)
	}
	if a == otherPrefix || a == otherCluster {
		t.Errorf("identities not distinct: %q, other prefix %q, other cluster %q", a, otherPrefix, otherCluster)
	}
}

func TestWatchProgress(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, nil)
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	from, err := store.PutKV(ctx, s, "p/a", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKV(ctx, s, "p/b", []byte("2")); err != nil {
		t.Fatal(err)
	}
	// Writes outside the prefix advance the revision without events.
	last, err := store.PutKV(ctx, s, "q", []byte("3"))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.WatchProgress(ctx, "p/", from-1)
	var events int
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			if len(r.Events) > 0 {
				events += len(r.Events)
				continue
			}
			if r.Rev < last {
				continue
			}
			if events != 2 {
				t.Errorf("progress at %d after %d events, want 2", r.Rev, events)
			}
			return
		case <-tick.C:
			if err := s.RequestProgress(ctx); err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatalf("no progress report up to revision %d (events %d)", last, events)
		}
	}
}
