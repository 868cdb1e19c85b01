package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/proxy"
)

// drained reports whether tn's proxy has pool's member addr drained.
func drained(tn *testNode, pool, addr string) bool {
	for _, p := range tn.Proxy().Pools() {
		if p.Name == pool {
			for _, m := range p.Members {
				if m.Address == addr {
					return m.Drained
				}
			}
		}
	}
	return false
}

func poolMembers(tn *testNode, pool string) []proxy.MemberStatus {
	for _, p := range tn.Proxy().Pools() {
		if p.Name == pool {
			return p.Members
		}
	}
	return nil
}

// TestFleetDrain drains a member through one node of a three-node fleet
// over a three-member etcd cluster: every node follows within a second
// (measured, reported), a drain that would empty a pool is refused with
// its numbers, a node started later loads the drain, and undrain restores
// the member everywhere.
func TestFleetDrain(t *testing.T) {
	f := startFleet(t, 3, 3)
	n0 := f.nodes[0]
	ms := poolMembers(n0, "a")
	a1, a2 := ms[0].Address, ms[1].Address
	b1 := poolMembers(n0, "b")[0].Address

	start := time.Now()
	out, err := statusCLI(t, n0, "drain", "--member", a1, "--pool", "a", "--timeout", "10s")
	if err != nil {
		t.Fatalf("drain: %v\n%s", err, out)
	}
	if !strings.Contains(out, "drained a "+a1) || !strings.Contains(out, "drained: no request in flight") {
		t.Errorf("drain output:\n%s", out)
	}
	for i, tn := range f.nodes {
		deadline := time.Now().Add(5 * time.Second)
		for !drained(tn, "a", a1) {
			if time.Now().After(deadline) {
				t.Fatalf("node %d did not follow the drain", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	t.Logf("all three nodes follow the drain %s after the command began", time.Since(start))

	// Traffic on every node goes to a2 only.
	cert := n0.addCert("app.uni-a.test")
	for i, tn := range f.nodes {
		waitServed(t, tn, "app.uni-a.test", cert.Cert.Serial, 5*time.Second)
		c := tn.httpClient(true)
		for range 6 {
			code, body := get(t, c, "https://app.uni-a.test/")
			if code != http.StatusOK || body != "a2" {
				t.Fatalf("node %d answered from %q while a1 is drained", i, body)
			}
		}
		// An idle HTTP/2 connection would hold a node's stop.
		c.CloseIdleConnections()
	}

	// Draining the last member of a pool is refused, naming the pool.
	_, err = n0.client.Drain(t.Context(), admin.DrainRequest{Member: a2})
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict ||
		!strings.Contains(ae.Message, `pool "a" would have no healthy member: 1 of 2 members healthy now (weight 1 of 2), 1 would be drained`) {
		t.Fatalf("drain of the last member: %v", err)
	}
	out, err = statusCLI(t, n0, "drain", "--member", b1)
	if err == nil || !strings.Contains(err.Error(), `pool "b" would have no healthy member`) {
		t.Fatalf("CLI drain of b's only member: %v\n%s", err, out)
	}
	if drained(n0, "a", a2) || drained(n0, "b", b1) {
		t.Fatal("a refused drain was applied")
	}
	// The capacity row of pool a shows the drained member.
	res, err := n0.client.Limits(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range res {
		if r.Name == "pool_unavailable:a" {
			found = true
			if r.Usage != 1 || r.Limit != 2 {
				t.Errorf("pool_unavailable:a = %d of %d, want 1 of 2", r.Usage, r.Limit)
			}
		}
	}
	if !found {
		t.Error("no capacity row for pool a")
	}

	// A node (re)started now loads the drain from the store.
	f.nodes[2].stop()
	f.nodes[2].done <- nil // for the cleanup's stop
	n3 := startTestNode(t, fleetTail(t, f))
	if !drained(n3, "a", a1) {
		t.Error("a node started after the drain does not have it")
	}

	// Undrain: every node takes a1 again.
	if out, err := statusCLI(t, n0, "undrain", "--member", a1); err != nil || !strings.Contains(out, "undrained a "+a1) {
		t.Fatalf("undrain: %v\n%s", err, out)
	}
	for i, tn := range []*testNode{f.nodes[0], f.nodes[1], n3} {
		deadline := time.Now().Add(5 * time.Second)
		for drained(tn, "a", a1) {
			if time.Now().After(deadline) {
				t.Fatalf("node %d did not follow the undrain", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// fleetTail is the configuration tail of f's nodes.
func fleetTail(t *testing.T, f *fleet) string {
	var eps []string
	for _, ep := range f.etcd.Endpoints() {
		eps = append(eps, fmt.Sprintf("%q", ep))
	}
	n0 := f.nodes[0]
	var pools strings.Builder
	pools.WriteString("pools:\n")
	for _, p := range n0.cfg.Pools {
		fmt.Fprintf(&pools, "  - name: %s\n    members: [", p.Name)
		for i, m := range p.Members {
			if i > 0 {
				pools.WriteString(", ")
			}
			fmt.Fprintf(&pools, "{address: %q}", m.Address)
		}
		pools.WriteString("]\n")
	}
	return fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /fleet-test\n    request_timeout: 1s\n    dial_timeout: 2s\ntls:\n  kek_file: %s\n%s",
		strings.Join(eps, ", "), n0.cfg.TLS.KEKFile, pools.String())
}

// TestDrainCLITimeoutAndBadInput: the drain command ends at its timeout
// naming the member that still has a request in flight, then reports the
// member drained once the request finished; bad API input is refused with
// the field named and changes nothing.
func TestDrainCLITimeoutAndBadInput(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	ms := poolMembers(tn, "a")
	a1, a2 := ms[0].Address, ms[1].Address

	// A long request on each member of a.
	c := tn.httpClient(false)
	defer c.CloseIdleConnections()
	done := make(chan string, 2)
	for range 2 {
		go func() {
			code, body := get(t, c, "https://app.uni-a.test/?sleep=2500ms")
			done <- fmt.Sprint(code, " ", body)
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := poolMembers(tn, "a")
		if m[0].InFlight == 1 && m[1].InFlight == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("long requests not in flight: %+v", m)
		}
		time.Sleep(5 * time.Millisecond)
	}
	out, err := statusCLI(t, tn, "drain", "--member", a1, "--timeout", "600ms")
	if err == nil || !strings.Contains(err.Error(), "still busy: a "+a1+": 1 in flight") {
		t.Fatalf("drain with a request in flight: %v\n%s", err, out)
	}
	if !strings.Contains(out, "a "+a1+": 1 in flight") {
		t.Errorf("no progress line:\n%s", out)
	}
	for range 2 {
		if got := <-done; got != "200 a1" && got != "200 a2" {
			t.Errorf("a long request during the drain: %s", got)
		}
	}
	// Running it again waits for the connections and ends.
	out, err = statusCLI(t, tn, "drain", "--member", a1, "--timeout", "10s")
	if err != nil || !strings.Contains(out, "already drained") || !strings.Contains(out, "drained: no request in flight") {
		t.Fatalf("second drain: %v\n%s", err, out)
	}

	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	token := strings.TrimSpace(string(tok))
	hc := tn.adminHTTP(adminCA)
	for _, tt := range []struct {
		body any
		want string
	}{
		{map[string]any{"member": a2, "upgrade_grace": "soon"}, "upgrade_grace"},
		{map[string]any{"pool": "a"}, "name a zone or a member"},
		{map[string]any{"member": a2, "zonee": "x"}, "unknown field"},
		{map[string]any{"member": "10.9.9.9:1"}, "no member matches"},
	} {
		b, _ := json.Marshal(tt.body)
		req, _ := http.NewRequest(http.MethodPost, "https://"+tn.Addr("admin")+"/v1/drain", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 || !strings.Contains(string(msg), tt.want) {
			t.Errorf("POST /v1/drain %v: %d %s, want a 4xx with %q", tt.body, resp.StatusCode, msg, tt.want)
		}
	}
	if drained(tn, "a", a2) {
		t.Error("refused input drained a2")
	}
}
