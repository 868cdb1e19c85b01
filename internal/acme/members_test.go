package acme

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestRendezvousSpread: names spread evenly over the nodes, and when a
// node goes only its names move.
func TestRendezvousSpread(t *testing.T) {
	nodes := []string{"3f1c0a9e2b7d4c61", "a07be3d915c24f88", "5d2e8c4b1a9f0e37"}
	const n = 30000
	count := map[string]int{}
	for i := range n {
		name := fmt.Sprintf("shop.tenant%d.test", i)
		o := Owner(nodes, name)
		count[o]++
		if o2 := Owner(nodes[:2], name); o != nodes[2] && o2 != o {
			t.Fatalf("%s moved from %s to %s when %s left", name, o, o2, nodes[2])
		}
	}
	for _, id := range nodes {
		if c := count[id]; c < n/3*9/10 || c > n/3*11/10 {
			t.Errorf("node %s owns %d of %d names, want within 10%% of %d", id, c, n, n/3)
		}
	}
	t.Logf("owners of %d names: %v", n, count)
}

// TestMembersStale: a node's record counts while it changes; once it has
// not changed for memberStale every name falls to the live nodes, and a
// deleted record is gone at once.
func TestMembersStale(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ms := &members{self: "self-node", now: clock, seen: map[string]time.Time{}, hash: map[string]uint64{}}
	put := func(id string) {
		ms.Apply([]store.WatchResponse{{Events: []store.Event{{Type: store.EventPut, KV: store.KV{Key: membersPrefix + id, Value: []byte(`{"at":"2026-12-03T08:00:00Z"}`)}}}}})
	}
	put("other-node")
	ids := []string{"self-node", "other-node"}
	mine, theirs := 0, 0
	for i := range 200 {
		name := fmt.Sprintf("n%d.test", i)
		if got, want := ms.owner(name), Owner(ids, name); got != want {
			t.Fatalf("owner of %s: %s, want %s", name, got, want)
		}
		if ms.owner(name) == "self-node" {
			mine++
		} else {
			theirs++
		}
	}
	if mine == 0 || theirs == 0 || len(ms.live()) != 2 {
		t.Fatalf("with two live nodes: %d names here, %d there, live %v", mine, theirs, ms.live())
	}
	advance(memberStale - time.Second)
	put("other-node") // still beating
	advance(memberStale - time.Second)
	if len(ms.live()) != 2 {
		t.Fatalf("a node that beat %v ago is not live: %v", memberStale-time.Second, ms.live())
	}
	advance(2 * time.Second) // its record is now older than memberStale
	for i := range 200 {
		if o := ms.owner(fmt.Sprintf("n%d.test", i)); o != "self-node" {
			t.Fatalf("name owned by stale node %s", o)
		}
	}
	put("other-node")
	if len(ms.live()) != 2 {
		t.Fatal("a node that beats again is not live again")
	}
	ms.Apply([]store.WatchResponse{{Events: []store.Event{{Type: store.EventDelete, KV: store.KV{Key: membersPrefix + "other-node"}}}}})
	if live := ms.live(); len(live) != 1 || live[0] != "self-node" {
		t.Fatalf("after the record's deletion live is %v", live)
	}
}

// TestMembersFleet: two ordering nodes on a three-member etcd see each
// other through their records; one that stops removes its record and the
// other sees itself alone.
func TestMembersFleet(t *testing.T) {
	c := etcdtest.Start(t, 3)
	start := func(st store.Store) (*Manager, context.CancelFunc, chan struct{}) {
		m := &Manager{st: st, log: slog.New(slog.DiscardHandler), now: time.Now, members: newMembers(st, time.Now)}
		if m.members == nil {
			t.Fatal("no membership on etcd")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { m.runMembers(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return m, cancel, done
	}
	a, stopA, doneA := start(openEtcd(t, c.Endpoints()[:1]))
	b, _, _ := start(openEtcd(t, c.Endpoints()[1:]))
	waitLive := func(m *Manager, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if _, live := m.Fleet(); len(live) == want {
				return
			}
			if time.Now().After(deadline) {
				_, live := m.Fleet()
				t.Fatalf("live ordering nodes %v, want %d", live, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLive(a, 2)
	waitLive(b, 2)
	selfA, _ := a.Fleet()
	selfB, _ := b.Fleet()
	if selfA == selfB || selfA == "" {
		t.Fatalf("node ids %q and %q", selfA, selfB)
	}
	stopA()
	<-doneA
	waitLive(b, 1) // at once: A removed its record as it stopped
	if _, err := b.st.Get(context.Background(), membersPrefix+selfA); err == nil {
		t.Error("node A's record is still in the store after it stopped")
	}
}
