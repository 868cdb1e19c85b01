package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/acme"
	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestACMEFleetKilledOrderer: the node ordering a name is a separate
// process, killed (SIGKILL, no chance to release its lock) while the CA
// holds its finalize request. Another node completes the name once the
// dead node's lease and in-progress mark have run out, and exactly one
// certificate for the name is installed and served.
func TestACMEFleetKilledOrderer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits out an order lease (~25s); skipped with -short")
	}
	bin := gatehouseBinary(t)
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
    prefix: /acme-kill
    request_timeout: 2s
    dial_timeout: 2s
tls:
  kek_file: %s
%s`, strings.Join(eps, ", "), filepath.Join(shared, "kek"), twoPools(t))
	acmeSection := fmt.Sprintf("acme:\n  directories: [%q]\n  ca_file: %s\n  challenges: [http-01, tls-alpn-01]\n", ca.URL(), caFile)

	// The CA holds the first finalize until node A is gone.
	var finalizes atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	ca.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/finalize-order/") || finalizes.Add(1) != 1 {
			return false
		}
		close(held)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})

	// Node C answers the CA's validations and never orders.
	validator := startTestNode(t, base)
	ca.SetPorts(portOf(t, validator.srv.Addr("http")), portOf(t, validator.srv.Addr("https")))

	// Node A: a separate process, the only one ordering at first.
	dirA := t.TempDir()
	cfgA := filepath.Join(dirA, "gatehouse.yaml")
	doc := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: "127.0.0.1:0"}
  http: {address: "127.0.0.1:0"}
  status: {address: "127.0.0.1:0"}
  admin: {address: "127.0.0.1:0"}
%s%s`, dirA, base, acmeSection)
	if err := os.WriteFile(cfgA, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgA)
	logA, err := os.Create(filepath.Join(dirA, "node.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logA.Close()
	cmd.Stdout, cmd.Stderr = logA, logA
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	showLog := func() {
		b, _ := os.ReadFile(filepath.Join(dirA, "node.log"))
		t.Logf("node A log:\n%s", b)
	}

	ctx := context.Background()
	name := "killed.uni-k.test"
	if _, err := validator.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-exited:
		showLog()
		t.Fatal("node A exited")
	case <-time.After(60 * time.Second):
		showLog()
		t.Fatal("node A's order did not reach finalize")
	}
	if h, _ := validator.client.GetHostname(ctx, name); h.State != hostnames.Issuing {
		t.Errorf("state while node A's order is held: %q, want issuing", h.State)
	}

	// Node B joins, then A dies mid-order without releasing its lock.
	survivor := startTestNode(t, base+acmeSection)
	waitFleet(t, 2, survivor) // node B sees node A's record, live
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	releaseOnce.Do(func() { close(release) })
	within := acme.TakeoverAfter + acme.OrderLease + 30*time.Second
	h := waitStateSkipFailed(t, survivor.client, name, hostnames.Active, within)
	took := time.Since(killed)
	t.Logf("node B completed %s %v after node A was killed (order lease %v, takeover after %v from the order's start)",
		name, took.Round(time.Millisecond), acme.OrderLease, acme.TakeoverAfter)

	if _, live := survivor.acme.Fleet(); len(live) != 1 {
		t.Errorf("node B sees %d live ordering nodes after node A was killed, want itself only", len(live))
	}
	ok, _, busy := survivor.acme.Orders()
	if ok != 1 || ca.Orders() != 2 {
		t.Errorf("node B completed %d orders (found the name locked %d times), CA saw %d; want 1 and 2 (the abandoned one and the completed one)",
			ok, busy, ca.Orders())
	}
	// Exactly one certificate for the name: the one the hostname names.
	infos, err := survivor.client.Lookup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, in := range infos {
		ids = append(ids, in.ID)
	}
	if len(infos) != 1 || infos[0].ID != h.CertID {
		t.Errorf("certificates for %s: %v; want exactly one, %s", name, ids, h.CertID)
	} else if info, err := survivor.client.GetCert(ctx, h.CertID); err != nil || info.Source != "acme" {
		t.Errorf("certificate %s: source %q (%v), want acme", h.CertID, info.Source, err)
	}
	roots, _ := ca.Roots()
	for i, n := range []*testNode{validator, survivor} {
		leaf, err := verifiedHandshake(n.srv.Addr("https"), name, roots)
		if err != nil {
			t.Errorf("node %d does not serve %s: %v", i, name, err)
			continue
		}
		if got := fmt.Sprintf("%x", leaf.SerialNumber); got != h.Serial {
			t.Errorf("node %d serves serial %s for %s, want %s", i, got, name, h.Serial)
		}
	}
}
