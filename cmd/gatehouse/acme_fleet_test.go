package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/acme"
	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/store/etcd/etcdtest"
)

// startACMEFleet starts three nodes on a three-member etcd: nodes 0 and 1
// order certificates; the CA validates against node 2 only, which has no
// acme: section and never orders.
func startACMEFleet(t *testing.T) ([]*testNode, *acmetest.CA) {
	t.Helper()
	ca, base, acmeSection := acmeFleetConfig(t, "/acme-fleet", "http-01, tls-alpn-01")
	nodes := []*testNode{startTestNode(t, base+acmeSection), startTestNode(t, base+acmeSection), startTestNode(t, base)}
	ca.SetPorts(portOf(t, nodes[2].Addr("http")), portOf(t, nodes[2].Addr("https")))
	return nodes, ca
}

// acmeFleetConfig starts a three-member etcd and an ACME CA and returns
// the CA, the nodes' shared configuration (etcd under prefix, one KEK,
// two pools) and the acme: section offering challenges.
func acmeFleetConfig(t *testing.T, prefix, challenges string) (*acmetest.CA, string, string) {
	t.Helper()
	cluster := etcdtest.Start(t, 3)
	ca, err := acmetest.Start(acmetest.Options{Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ca.Close)
	shared := t.TempDir()
	caFile := filepath.Join(shared, "acme-ca.pem")
	if err := os.WriteFile(caFile, ca.ServerCAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, ep := range cluster.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	base := fmt.Sprintf(`store:
  etcd:
    endpoints: [%s]
    prefix: %s
    request_timeout: 2s
    dial_timeout: 2s
tls:
  kek_file: %s
%s`, strings.Join(eps, ", "), prefix, filepath.Join(shared, "kek"), twoPools(t))
	acmeSection := fmt.Sprintf("acme:\n  directories: [%q]\n  ca_file: %s\n  challenges: [%s]\n", ca.URL(), caFile, challenges)
	return ca, base, acmeSection
}

// TestACMEFleet: every validation lands on a node that did not place the
// order, answered from the store; exactly one order per name.
func TestACMEFleet(t *testing.T) {
	nodes, ca := startACMEFleet(t)
	ctx := context.Background()
	var names []string
	for i := range 6 {
		name := fmt.Sprintf("shop%d.uni-f.test", i)
		names = append(names, name)
		// Added through different nodes.
		if _, err := nodes[i%3].client.AddHostname(ctx, admin.HostnameRequest{Name: name, Tenant: "uni-f", Pool: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range names {
		waitState(t, nodes[2].client, name, hostnames.Active, 60*time.Second)
	}
	roots, _ := ca.Roots()
	for _, name := range names {
		for i, n := range nodes {
			deadline := time.Now().Add(10 * time.Second)
			var err error
			for time.Now().Before(deadline) {
				if _, err = verifiedHandshake(n.Addr("https"), name, roots); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("node %d does not serve %s: %v", i, name, err)
			}
		}
	}
	ok0, failed0, busy0 := nodes[0].ACME().Orders()
	ok1, failed1, busy1 := nodes[1].ACME().Orders()
	if ca.Orders() != int64(len(names)) || ok0+ok1 != uint64(len(names)) || failed0+failed1 != 0 {
		t.Errorf("CA orders %d, node 0 ordered %d (failed %d), node 1 %d (failed %d); want exactly one order per name (%d)",
			ca.Orders(), ok0, failed0, ok1, failed1, len(names))
	}
	if nodes[2].ACME() != nil {
		t.Error("node 2 has an ACME manager")
	}
	t.Logf("orders: node 0 %d, node 1 %d; found locked by the other node: %d, %d", ok0, ok1, busy0, busy1)
}

// TestACMEFleetTakeover stops the node that is ordering a name in the
// middle of its order (the CA holds its finalize request): the other node
// takes the lock once it is free and completes the name.
func TestACMEFleetTakeover(t *testing.T) {
	nodes, ca := startACMEFleet(t)
	var finalizes atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	ca.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/finalize-order/") || finalizes.Add(1) != 1 {
			return false
		}
		close(held)
		select { // the ordering node goes away
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})
	ctx := context.Background()
	name := "takeover.uni-f.test"
	if _, err := nodes[2].client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("no order reached finalize")
	}
	// The node with the open order is the orderer, the other the survivor.
	var orderer, survivor *testNode
	_, open0 := nodes[0].ACME().Deferred()
	_, open1 := nodes[1].ACME().Deferred()
	switch {
	case open0 == 1 && open1 == 0:
		orderer, survivor = nodes[0], nodes[1]
	case open1 == 1 && open0 == 0:
		orderer, survivor = nodes[1], nodes[0]
	default:
		t.Fatalf("open orders: node 0 %d, node 1 %d; want one on one node", open0, open1)
	}
	if h, _ := nodes[2].client.GetHostname(ctx, name); h.State != hostnames.Issuing {
		t.Errorf("state while the order is held: %q, want issuing", h.State)
	}
	orderer.client.CloseIdleConnections()
	orderer.cancel()
	select {
	case err := <-orderer.done:
		orderer.done <- err // for the cleanup's stop
	case <-time.After(30 * time.Second):
		t.Fatal("ordering node did not stop")
	}
	close(release)
	start := time.Now()
	h := waitStateSkipFailed(t, nodes[2].client, name, hostnames.Active, 60*time.Second)
	ok := waitOrders(survivor.ACME(), 1)
	if ok != 1 || ca.Orders() != 2 {
		t.Errorf("survivor completed %d orders, CA saw %d; want 1 and 2 (the abandoned one and the completed one)", ok, ca.Orders())
	}
	roots, _ := ca.Roots()
	if _, err := verifiedHandshake(survivor.Addr("https"), name, roots); err != nil {
		t.Errorf("survivor does not serve %s: %v", name, err)
	}
	t.Logf("taken over and active %v after the ordering node stopped (serial %s)", time.Since(start).Round(time.Millisecond), h.Serial)
}

// waitFleet waits until each of nodes sees want live ordering nodes and
// returns their ids.
func waitFleet(t *testing.T, want int, nodes ...*testNode) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		var ids []string
		for _, n := range nodes {
			self, live := n.ACME().Fleet()
			ids = append(ids, self)
			ok = ok && len(live) == want
		}
		if ok {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the nodes do not each see %d live ordering nodes within 20s", want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestACMEFleetSpread: the ordering nodes share the names by rendezvous
// hashing over their live records, each ordering exactly the names it
// owns; once a node stops, the other orders its share too.
func TestACMEFleetSpread(t *testing.T) {
	nodes, ca := startACMEFleet(t)
	ids := waitFleet(t, 2, nodes[0], nodes[1])
	ctx := context.Background()
	add := func(prefix string, n int) []string {
		var names []string
		for i := range n {
			name := fmt.Sprintf("%s%d.uni-s.test", prefix, i)
			names = append(names, name)
			if _, err := nodes[2].client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range names {
			waitState(t, nodes[2].client, name, hostnames.Active, 60*time.Second)
		}
		return names
	}
	names := add("spread", 12)
	want0 := 0
	for _, name := range names {
		if acme.Owner(ids, name) == ids[0] {
			want0++
		}
	}
	waitOrders(nil, len(names), nodes[0].ACME(), nodes[1].ACME())
	ok0, _, _ := nodes[0].ACME().Orders()
	ok1, _, _ := nodes[1].ACME().Orders()
	def0, _ := nodes[0].ACME().Deferred()
	def1, _ := nodes[1].ACME().Deferred()
	t.Logf("12 names: node 0 ordered %d (owns %d), node 1 %d; left to the owner: %d, %d times", ok0, want0, ok1, def0, def1)
	if ok0 != uint64(want0) || ok1 != uint64(len(names)-want0) || ca.Orders() != int64(len(names)) {
		t.Errorf("node 0 ordered %d, node 1 %d, the CA saw %d; want %d and %d (each its own names), %d", ok0, ok1, ca.Orders(), want0, len(names)-want0, len(names))
	}
	if ok0 == 0 || ok1 == 0 {
		t.Errorf("one node ordered nothing (%d, %d)", ok0, ok1)
	}
	if got := nodes[0].metric("gatehouse_acme_ordering_nodes"); got != "2" {
		t.Errorf("gatehouse_acme_ordering_nodes on node 0: %q, want 2", got)
	}
	if got := nodes[1].metric("gatehouse_acme_left_to_owner_total"); got == "" || mustAtoi(t, got) < int(def1) {
		t.Errorf("gatehouse_acme_left_to_owner_total on node 1: %q, want at least %d", got, def1)
	}

	// Node 0 stops: node 1 orders every name, node 0's share included.
	nodes[0].cancel()
	select {
	case err := <-nodes[0].done:
		nodes[0].done <- err // for the cleanup's stop
	case <-time.After(30 * time.Second):
		t.Fatal("node 0 did not stop")
	}
	waitFleet(t, 1, nodes[1])
	more := add("after", 12)
	share0 := 0
	for _, name := range more {
		if acme.Owner(ids, name) == ids[0] {
			share0++
		}
	}
	ok1b := waitOrders(nodes[1].ACME(), int(ok1)+len(more))
	t.Logf("after node 0 stopped: node 1 ordered %d of 12 more names, %d of them node 0's share", ok1b-ok1, share0)
	if ok1b-ok1 != uint64(len(more)) || share0 == 0 {
		t.Errorf("node 1 ordered %d of %d names after node 0 stopped (node 0 would have owned %d); want all, and some of node 0's", ok1b-ok1, len(more), share0)
	}
}

// waitOrders waits (up to 10 s) until m, or the nodes together, have
// completed want orders: a node counts an order just after it writes the
// hostname's new state. It returns m's count.
func waitOrders(m *acme.Manager, want int, nodes ...*acme.Manager) uint64 {
	if m != nil {
		nodes = append(nodes, m)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var sum uint64
		for _, n := range nodes {
			ok, _, _ := n.Orders()
			sum += ok
		}
		if sum >= uint64(want) {
			break
		}
	}
	if m == nil {
		return 0
	}
	ok, _, _ := m.Orders()
	return ok
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a count: %v", s, err)
	}
	return n
}
