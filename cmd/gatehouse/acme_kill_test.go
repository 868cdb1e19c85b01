package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
)

// TestACMEOrderingNodeKilled: the node ordering a name is killed (SIGKILL,
// a separate process: no release of its lock, no last write) while the CA
// holds its finalize; another node takes the name over once the lock's
// lease ends and completes it. One certificate is installed for the name.
func TestACMEOrderingNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and waits out a 10 s lease; skipped with -short")
	}
	bin := gatehouseBinary(t)
	ca, base, acmeSection := acmeFleetConfig(t, "/acme-kill", "http-01")

	// Node C answers the CA's validations and takes the admin calls; it
	// has no acme: section and never orders.
	nc := startTestNode(t, base)
	ca.SetPorts(portOf(t, nc.Addr("http")), portOf(t, nc.Addr("https")))

	// The CA holds the first finalize until its client goes away. The
	// body is read first: only then does the server notice a closed
	// connection and end the request's context.
	var finalizes atomic.Int32
	held, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the CA's Close, which waits for handlers
	ca.SetFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/finalize-order/") || finalizes.Add(1) != 1 {
			return false
		}
		_, _ = io.Copy(io.Discard, r.Body)
		close(held)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	})

	// Node A: a separate process, the only one ordering at first.
	dirA := t.TempDir()
	cfgA := filepath.Join(dirA, "gatehouse.yaml")
	doc := fmt.Sprintf("data_dir: %s\nlisteners:\n  https: {address: \"127.0.0.1:0\"}\n  http: {address: \"127.0.0.1:0\"}\n  admin: {address: \"127.0.0.1:0\"}\n%s%s", dirA, base, acmeSection)
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
	if _, err := nc.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Tenant: "uni-k", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		showLog()
		t.Fatal("node A's order never reached finalize")
	}
	if h, _ := nc.client.GetHostname(ctx, name); h.State != hostnames.Issuing {
		t.Errorf("state while node A's order is held: %q, want issuing", h.State)
	}

	// Node B joins while A holds the name's lock: it must wait.
	nb := startTestNode(t, base+acmeSection)
	waitFleet(t, 2, nb) // node B sees node A's ordering record, live
	time.Sleep(2 * time.Second)
	if _, _, busy := nb.ACME().Orders(); busy == 0 {
		t.Log("node B has not met the lock yet (it schedules the name at its next attempt)")
	}
	if ok, failed, _ := nb.ACME().Orders(); ok+failed != 0 {
		t.Fatalf("node B ordered (%d ok, %d failed) while node A held the lock", ok, failed)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	killed := time.Now()
	h := waitStateSkipFailed(t, nc.client, name, hostnames.Active, 60*time.Second)
	took := time.Since(killed)
	t.Logf("node B completed the name %v after node A was killed (lock lease 10 s)", took.Round(time.Millisecond))
	if took > 40*time.Second {
		t.Errorf("takeover took %v, want within the 10 s lease plus the retry margin", took)
	}
	if _, live := nb.ACME().Fleet(); len(live) != 1 {
		t.Errorf("node B sees %d live ordering nodes after node A was killed, want itself only", len(live))
	}
	if ok, _, _ := nb.ACME().Orders(); ok != 1 || ca.Orders() != 2 {
		t.Errorf("node B completed %d orders, the CA saw %d; want 1 and 2 (A's abandoned one and B's)", ok, ca.Orders())
	}
	// One certificate installed for the name, served by every live node.
	list, err := nc.client.Lookup(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != h.CertID {
		t.Errorf("certificates for %s: %+v, want exactly the hostname's %s", name, list, h.CertID)
	}
	roots, _ := ca.Roots()
	for _, n := range []*testNode{nb, nc} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := verifiedHandshake(n.Addr("https"), name, roots)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served: %v", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
