package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestACMEFleet runs three nodes on a three-member etcd. Nodes 0 and 1
// order certificates; the CA validates against node 2 only, which has no
// acme: section and never orders: every validation lands on a node that
// did not place the order, answered from the store.
func TestACMEFleet(t *testing.T) {
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
	ca.SetPorts(portOf(t, nodes[2].srv.Addr("http")), portOf(t, nodes[2].srv.Addr("https")))
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
				if _, err = verifiedHandshake(n.srv.Addr("https"), name, roots); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("node %d does not serve %s: %v", i, name, err)
			}
		}
	}
	ok0, failed0, busy0 := nodes[0].acme.Orders()
	ok1, failed1, busy1 := nodes[1].acme.Orders()
	if ca.Orders() != int64(len(names)) || ok0+ok1 != uint64(len(names)) || failed0+failed1 != 0 {
		t.Errorf("CA orders %d, node 0 ordered %d (failed %d), node 1 %d (failed %d); want exactly one order per name (%d)",
			ca.Orders(), ok0, failed0, ok1, failed1, len(names))
	}
	if nodes[2].acme != nil {
		t.Error("node 2 has an ACME manager")
	}
	t.Logf("orders: node 0 %d, node 1 %d; found locked by the other node: %d, %d", ok0, ok1, busy0, busy1)
}
