package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

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
    prefix: /acme-fleet
    request_timeout: 2s
    dial_timeout: 2s
tls:
  kek_file: %s
%s`, strings.Join(eps, ", "), filepath.Join(shared, "kek"), twoPools(t))
	acmeSection := fmt.Sprintf("acme:\n  directories: [%q]\n  ca_file: %s\n  challenges: [http-01, tls-alpn-01]\n", ca.URL(), caFile)
	nodes := []*testNode{startTestNode(t, base+acmeSection), startTestNode(t, base+acmeSection), startTestNode(t, base)}
	ca.SetPorts(portOf(t, nodes[2].Addr("http")), portOf(t, nodes[2].Addr("https")))
	return nodes, ca
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
	// The node that found the name locked is the survivor.
	var orderer, survivor *testNode
	deadline := time.Now().Add(20 * time.Second)
	for orderer == nil && time.Now().Before(deadline) {
		_, _, busy0 := nodes[0].ACME().Orders()
		_, _, busy1 := nodes[1].ACME().Orders()
		switch {
		case busy0 > 0 && busy1 == 0:
			survivor, orderer = nodes[0], nodes[1]
		case busy1 > 0 && busy0 == 0:
			survivor, orderer = nodes[1], nodes[0]
		case busy0 > 0 && busy1 > 0:
			t.Fatalf("both nodes found the name locked (%d, %d)", busy0, busy1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if orderer == nil {
		t.Fatal("no node found the name locked")
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
	ok, _, _ := survivor.ACME().Orders()
	if ok != 1 || ca.Orders() != 2 {
		t.Errorf("survivor completed %d orders, CA saw %d; want 1 and 2 (the abandoned one and the completed one)", ok, ca.Orders())
	}
	roots, _ := ca.Roots()
	if _, err := verifiedHandshake(survivor.Addr("https"), name, roots); err != nil {
		t.Errorf("survivor does not serve %s: %v", name, err)
	}
	t.Logf("taken over and active %v after the ordering node stopped (serial %s)", time.Since(start).Round(time.Millisecond), h.Serial)
}
