package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/demo"
	"gatehouse/internal/store/etcd/etcdtest"
)

// fleet is several Gatehouse nodes sharing one in-process etcd cluster, a
// key-encryption key and a test CA.
type fleet struct {
	etcd  *etcdtest.Cluster
	nodes []*testNode
}

// startFleet starts an etcd cluster of etcdMembers and n nodes over it.
func startFleet(t *testing.T, etcdMembers, n int) *fleet {
	t.Helper()
	return startFleetWith(t, etcdMembers, n, "")
}

// startFleetWith is startFleet with more configuration (top-level YAML
// sections) for every node.
func startFleetWith(t *testing.T, etcdMembers, n int, extra string) *fleet {
	t.Helper()
	f := &fleet{etcd: etcdtest.Start(t, etcdMembers)}
	shared := t.TempDir()
	ca, err := demo.LoadOrCreateCA(shared)
	if err != nil {
		t.Fatal(err)
	}
	pools := twoPools(t)
	var eps []string
	for _, ep := range f.etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	tail := fmt.Sprintf(`store:
  etcd:
    endpoints: [%s]
    prefix: /fleet-test
    request_timeout: 1s
    dial_timeout: 2s
tls:
  kek_file: %s
%s%s`, strings.Join(eps, ", "), filepath.Join(shared, "kek"), pools, extra)
	for range n {
		tn := startTestNode(t, tail)
		tn.ca = ca
		tn.roots.AddCert(ca.Cert)
		f.nodes = append(f.nodes, tn)
	}
	return f
}

// waitServed polls tn until it serves a certificate for sni with the given
// serial, and returns how long that took.
func waitServed(t *testing.T, tn *testNode, sni, serial string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < within {
		leaf, err := tn.handshake(sni)
		if err == nil && leaf.SerialNumber.Text(16) == serial {
			return time.Since(start)
		}
		if err == nil {
			err = fmt.Errorf("served serial %s", leaf.SerialNumber.Text(16))
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s not served with serial %s within %v: %v", sni, serial, within, last)
	return 0
}

// TestFleetPropagation adds, replaces and removes certificates through
// one node and checks that every node serves the change within a second.
func TestFleetPropagation(t *testing.T) {
	f := startFleet(t, 3, 3)
	for i, via := range f.nodes {
		name := fmt.Sprintf("n%d.fleet.test", i)
		res := via.addCert(name)
		for j, tn := range f.nodes {
			d := waitServed(t, tn, name, res.Cert.Serial, time.Second)
			t.Logf("added on node %d, served by node %d after %v", i, j, d)
		}
	}
	// A session ticket from node 1 resumes on the others: the fleet shares
	// its ticket keys through etcd.
	for j, tn := range f.nodes[1:] {
		for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			cache := tls.NewLRUClientSessionCache(2)
			if f.nodes[0].resumes(t, "n0.fleet.test", cache, v) {
				t.Fatal("first handshake on node 1 resumed")
			}
			if !tn.resumes(t, "n0.fleet.test", cache, v) {
				t.Errorf("TLS %x: a ticket from node 1 did not resume on node %d", v, j+2)
			}
		}
	}
	// A replacement through node 2 and a removal through node 3.
	repl := f.nodes[1].addCert("n0.fleet.test")
	for _, tn := range f.nodes {
		waitServed(t, tn, "n0.fleet.test", repl.Cert.Serial, time.Second)
	}
	if err := f.nodes[2].client.RemoveCert(context.Background(), repl.Cert.ID); err != nil {
		t.Fatal(err)
	}
	for j, tn := range f.nodes {
		deadline := time.Now().Add(time.Second)
		for {
			if _, err := tn.handshake("n0.fleet.test"); err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d still serves n0.fleet.test a second after its removal", j)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// The local bundle cache a fleet node keeps is a limit like any other.
	res, err := f.nodes[1].client.Limits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range res {
		if r.Name == "local_bundle_cache" {
			found = true
			if r.Limit != 512<<20 || r.Usage < 0 || r.Usage > r.Limit {
				t.Errorf("local_bundle_cache = %+v, want usage within a limit of 512MiB", r)
			}
		}
	}
	if !found {
		t.Error("limits of a fleet node have no local_bundle_cache resource")
	}
}

// resumes makes one HTTP/1.1 request on a new TLS connection to tn with the
// client session cache and reports whether the handshake resumed a session.
func (tn *testNode) resumes(t *testing.T, sni string, cache tls.ClientSessionCache, maxVersion uint16) bool {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tn.Addr("https"), &tls.Config{
		ServerName: sni, RootCAs: tn.roots, ClientSessionCache: cache, MaxVersion: maxVersion, NextProtos: []string{"http/1.1"},
	})
	if err != nil {
		t.Fatalf("handshake with %s: %v", sni, err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	if _, err := io.ReadAll(conn); err != nil { // reads the TLS 1.3 tickets too
		t.Fatalf("reading the response for %s: %v", sni, err)
	}
	return conn.ConnectionState().DidResume
}

// TestFleetMemberDown stops one of three etcd members: nodes keep serving
// and still accept writes that every node then serves.
func TestFleetMemberDown(t *testing.T) {
	f := startFleet(t, 3, 2)
	before := f.nodes[0].addCert("before.fleet.test")
	for _, tn := range f.nodes {
		waitServed(t, tn, "before.fleet.test", before.Cert.Serial, time.Second)
	}
	f.etcd.Stop(0)
	after := f.nodes[1].addCertRetry("after.fleet.test")
	for j, tn := range f.nodes {
		waitServed(t, tn, "before.fleet.test", before.Cert.Serial, time.Second)
		d := waitServed(t, tn, "after.fleet.test", after.Cert.Serial, 3*time.Second)
		t.Logf("with a member down: node %d served the new certificate after %v", j, d)
	}
}

// addCertRetry is addCert that tolerates the one refusal a write may get
// while the client moves off a member that just stopped.
func (tn *testNode) addCertRetry(names ...string) admin.CertResponse {
	tn.t.Helper()
	certPEM, keyPEM, err := tn.ca.Issue(names...)
	if err != nil {
		tn.t.Fatal(err)
	}
	var lastErr error
	for range 3 {
		res, err := tn.client.AddCert(context.Background(), certPEM, keyPEM)
		if err == nil {
			return res
		}
		lastErr = err
	}
	tn.t.Fatalf("AddCert(%v) with a quorum up: %v", names, lastErr)
	return admin.CertResponse{}
}

// TestFleetEtcdDown stops the whole etcd cluster: nodes serve what they
// have, report the store unreachable, refuse writes with 503, and after
// etcd returns accept writes again and follow each other's changes.
func TestFleetEtcdDown(t *testing.T) {
	f := startFleet(t, 3, 2)
	res := f.nodes[0].addCert("cached.fleet.test")
	for _, tn := range f.nodes {
		waitServed(t, tn, "cached.fleet.test", res.Cert.Serial, time.Second)
	}
	f.etcd.StopAll()

	for j, tn := range f.nodes {
		if _, err := tn.handshake("cached.fleet.test"); err != nil {
			t.Errorf("node %d with etcd down: handshake: %v", j, err)
		}
	}
	certPEM, keyPEM, err := f.nodes[1].ca.Issue("refused.fleet.test")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.nodes[1].client.AddCert(context.Background(), certPEM, keyPEM)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.Code != "store_unavailable" {
		t.Errorf("AddCert with etcd down: error = %v, want 503 store_unavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("AddCert with etcd down took %v, want about the request timeout (1s)", d)
	}
	// Each node notices at its next probe (every 2s) or failed call.
	for j, tn := range f.nodes {
		if got := waitUnreachable(t, tn, 1, 5*time.Second); got.Level != "critical" {
			t.Errorf("node %d: limits with etcd down: %+v, want usage 1, critical", j, got)
		}
	}

	f.etcd.RestartAll()
	back := f.nodes[1].addCertRetry("back.fleet.test")
	for j, tn := range f.nodes {
		d := waitServed(t, tn, "back.fleet.test", back.Cert.Serial, 5*time.Second)
		t.Logf("after etcd returned: node %d served a new certificate after %v", j, d)
	}
	for j, tn := range f.nodes {
		waitUnreachable(t, tn, 0, 5*time.Second)
		t.Logf("node %d reports etcd reachable again", j)
	}
}

// waitUnreachable polls the limits of tn until store_unreachable has the
// given usage, and returns that resource.
func waitUnreachable(t *testing.T, tn *testNode, usage int64, within time.Duration) capacity.Resource {
	t.Helper()
	deadline := time.Now().Add(within)
	var last capacity.Resource
	for {
		limits, err := tn.client.Limits(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range limits {
			if r.Name == "store_unreachable" {
				last = r
			}
		}
		if last.Name == "" {
			t.Fatal("limits has no store_unreachable resource")
		}
		if last.Usage == usage {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("store_unreachable = %+v after %v, want usage %d", last, within, usage)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
