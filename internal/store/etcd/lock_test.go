package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestTryLock: one holder at a time across stores (nodes); released by
// Unlock, and by the lease's expiry when the holder's store closes without
// unlocking (a node that died).
func TestTryLock(t *testing.T) {
	c := etcdtest.Start(t, 1)
	a := open(t, c, nil)
	b, err := etcd.Open(context.Background(), etcd.Options{Endpoints: c.Endpoints(), Prefix: a.Prefix(), RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	la, err := a.TryLock(ctx, "acme/x.test", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryLock(ctx, "acme/x.test", time.Second); !errors.Is(err, etcd.ErrLocked) {
		t.Fatalf("second holder: %v, want ErrLocked", err)
	}
	lo, err := b.TryLock(ctx, "acme/other.test", time.Second)
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	if err := lo.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.TryLock(ctx, "acme/x.test", time.Second)
	if err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	// b goes away without unlocking: its lease expires and a takes over.
	b.Close()
	select {
	case <-lb.Lost():
	case <-time.After(10 * time.Second):
		t.Error("lock not reported lost after its store closed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := a.TryLock(ctx, "acme/x.test", time.Second)
		if err == nil {
			l.Unlock(ctx)
			break
		}
		if !errors.Is(err, etcd.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("after the holder died: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
