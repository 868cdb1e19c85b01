package acme

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/acme/budget"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

const ledgerAccount = "https://ca.test/directory"

// ledgerNode is one node's view of the budgets: its ledger, followed from
// the store as Manager.Run does.
type ledgerNode struct {
	led    *ledger
	follow *store.Follower
}

func startLedger(t *testing.T, st store.Store, now func() time.Time) *ledgerNode {
	t.Helper()
	bud := budget.New(budget.Limits{OrdersPer3h: 10, CertsPerDomainPer7d: 3, DuplicatesPer7d: 5, FailedValidationsPerNameHour: 2}, now)
	m := &Manager{st: st, bud: bud, log: slog.New(slog.DiscardHandler), now: now}
	m.led = &ledger{st: st, bud: bud, log: m.log, now: now}
	ctx, cancel := context.WithCancel(context.Background())
	n := &ledgerNode{led: m.led, follow: m.followLedger(ctx)}
	t.Cleanup(func() { cancel(); n.follow.Stop() })
	return n
}

func (n *ledgerNode) usage() map[string]int64 {
	out := map[string]int64{}
	for _, u := range n.led.bud.Usage() {
		out[u.Name] = u.Used
	}
	return out
}

// waitUsage waits until the node counts want of budget (watch delivery).
func (n *ledgerNode) waitUsage(t *testing.T, budgetName string, want int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := n.usage()[budgetName]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d used, want %d (all: %v)", budgetName, got, want, n.usage())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func spendSome(t *testing.T, n *ledgerNode, now time.Time) {
	t.Helper()
	ctx := context.Background()
	for range 3 {
		n.led.spend(ctx, ledgerOrder, now, ledgerEvent{Account: ledgerAccount})
	}
	n.led.spend(ctx, ledgerCertificate, now, ledgerEvent{Account: ledgerAccount, Names: []string{"a.uni-d.edu"}})
	n.led.spend(ctx, ledgerCertificate, now, ledgerEvent{Account: ledgerAccount, Names: []string{"b.uni-d.edu"}})
	n.led.spend(ctx, ledgerFailure, now, ledgerEvent{Names: []string{"c.uni-d.edu"}})
}

// TestLedgerSurvivesRestart: budgets spent before a restart still hold
// after it (the bolt store keeps the events), and the sweep drops only
// the events outside their windows.
func TestLedgerSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.db")
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }

	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a := startLedger(t, st, now)
	spendSome(t, a, now())
	a.waitUsage(t, budget.Orders, 3)
	a.waitUsage(t, budget.CertsPerDomain, 2) // both names under uni-d.edu
	a.waitUsage(t, budget.FailedValidations, 1)
	// A third certificate for the domain fills its budget of 3: the next
	// new order for it waits.
	a.led.spend(context.Background(), ledgerCertificate, now(), ledgerEvent{Account: ledgerAccount, Names: []string{"d.uni-d.edu"}})
	a.waitUsage(t, budget.CertsPerDomain, 3)
	if wait, reason := a.led.bud.Check(ledgerAccount, []string{"e.uni-d.edu"}); wait <= 0 || !strings.Contains(reason, budget.CertsPerDomain) {
		t.Fatalf("before the restart: wait %v, reason %q; want held by %s", wait, reason, budget.CertsPerDomain)
	}
	a.follow.Stop()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st2.Close() })
	b := startLedger(t, st2, now)
	if got := b.usage(); got[budget.Orders] != 3 || got[budget.CertsPerDomain] != 3 || got[budget.FailedValidations] != 1 {
		t.Fatalf("after the restart: usage %v, want orders 3, certificates per domain 3, failed validations 1", got)
	}
	if wait, reason := b.led.bud.Check(ledgerAccount, []string{"e.uni-d.edu"}); wait <= 0 || !strings.Contains(reason, budget.CertsPerDomain) {
		t.Fatalf("after the restart: wait %v, reason %q; want still held by %s", wait, reason, budget.CertsPerDomain)
	}

	// Two days on: the orders (3 h window) and the failure (1 h) are
	// outside their windows and kept time, the certificates (7 days) not.
	clock.Add(int64(2 * 24 * time.Hour))
	n, err := b.led.sweep(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 {
		t.Fatalf("sweep removed %d records, want 4 (3 orders, 1 failure)", n)
	}
	kvs, _, err := st2.List(context.Background(), ledgerPrefix, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(kvs) != 3 {
		t.Fatalf("%d records left, want the 3 certificates", len(kvs))
	}
	for _, kv := range kvs {
		if kind, _, ok := parseLedgerKey(kv.Key); !ok || kind != ledgerCertificate {
			t.Fatalf("left record %q is not a certificate", kv.Key)
		}
	}
}

// TestLedgerUnreadableRecordSkipped: a damaged record neither stops the
// replay nor counts.
func TestLedgerUnreadableRecordSkipped(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	at := time.Now()
	for _, kv := range [][2]string{
		{ledgerKey(ledgerOrder, at), "{not json"},
		{ledgerPrefix + "o/not-a-time", `{"a":"x"}`},
		{ledgerKey(ledgerOrder, at), `{"a":"` + ledgerAccount + `"}`},
	} {
		if _, err := store.PutKV(ctx, st, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	n := startLedger(t, st, time.Now)
	if got := n.usage()[budget.Orders]; got != 1 {
		t.Fatalf("orders used %d, want 1 (two unreadable records skipped)", got)
	}
}

// TestLedgerFleet: on a three-member etcd, an order spent by one node
// counts on the other, and a budget one node exhausts holds the other
// node's next order.
func TestLedgerFleet(t *testing.T) {
	c := etcdtest.Start(t, 3)
	open := func(endpoints []string) store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := etcd.Open(ctx, etcd.Options{Endpoints: endpoints, Prefix: "/gh", RequestTimeout: 5 * time.Second, HealthInterval: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a := startLedger(t, open(c.Endpoints()[:1]), time.Now)
	b := startLedger(t, open(c.Endpoints()[1:]), time.Now)
	ctx := context.Background()
	for range 6 {
		a.led.spend(ctx, ledgerOrder, time.Now(), ledgerEvent{Account: ledgerAccount})
	}
	for range 4 {
		b.led.spend(ctx, ledgerOrder, time.Now(), ledgerEvent{Account: ledgerAccount})
	}
	a.waitUsage(t, budget.Orders, 10)
	b.waitUsage(t, budget.Orders, 10)
	// Ten orders of ten: node B's next order waits, though B placed four.
	if wait, reason := b.led.bud.Check(ledgerAccount, []string{"new.uni-e.edu"}); wait <= 0 || !strings.Contains(reason, budget.Orders) {
		t.Fatalf("node B: wait %v, reason %q; want held by %s", wait, reason, budget.Orders)
	}
	// The CA's rateLimited answer seen by A holds B's account too.
	until := time.Now().Add(time.Hour)
	a.led.spend(ctx, ledgerRateLimited, time.Now(), ledgerEvent{Account: "other-account", Until: until.Unix()})
	deadline := time.Now().Add(20 * time.Second)
	for {
		wait, reason := b.led.bud.Check("other-account", []string{"x.uni-f.edu"})
		if wait > 50*time.Minute && strings.Contains(reason, budget.RateLimited) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B never saw A's rateLimited answer: wait %v, reason %q", wait, reason)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
