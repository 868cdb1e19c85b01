package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/capacity"
)

// reloadHTTPS rewrites the node's https listener line and reloads.
func (tn *testNode) reloadHTTPS(line string) {
	tn.t.Helper()
	orig, err := os.ReadFile(tn.cfgPath)
	if err != nil {
		tn.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(orig), "\n") {
		if strings.HasPrefix(l, "  https: ") {
			l = "  https: " + line
		}
		out = append(out, l)
	}
	if err := os.WriteFile(tn.cfgPath, []byte(strings.Join(out, "\n")), 0o600); err != nil {
		tn.t.Fatal(err)
	}
	if err := tn.client.Reload(context.Background()); err != nil {
		tn.t.Fatalf("reload with https %s: %v", line, err)
	}
}

// tlsFrom completes a handshake for app.uni-a.test from a local address.
func (tn *testNode) tlsFrom(local string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	raw, err := d.Dial("tcp", tn.Addr("https"))
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, &tls.Config{ServerName: "app.uni-a.test", RootCAs: tn.roots, NextProtos: []string{"http/1.1"}})
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	raw.SetDeadline(time.Time{})
	tn.t.Cleanup(func() { c.Close() })
	return c, nil
}

func (tn *testNode) mustTLSFrom(local string) *tls.Conn {
	tn.t.Helper()
	c, err := tn.tlsFrom(local)
	if err != nil {
		tn.t.Fatalf("handshake from %q: %v", local, err)
	}
	return c
}

func (tn *testNode) wantRefusedFrom(local string) {
	tn.t.Helper()
	c, err := tn.tlsFrom(local)
	if err == nil {
		c.Close()
		tn.t.Fatalf("handshake from %q succeeded; want a refusal", local)
	}
	if !strings.Contains(err.Error(), "tls: internal error") {
		tn.t.Fatalf("handshake from %q: %v; want the TLS internal_error alert at once", local, err)
	}
}

// roundTrip sends one GET on an open connection.
func roundTrip(t *testing.T, c *tls.Conn) int {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.uni-a.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on a connection opened before the reload: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func (tn *testNode) resources() map[string]capacity.Resource {
	tn.t.Helper()
	res, err := tn.client.Limits(context.Background())
	if err != nil {
		tn.t.Fatal(err)
	}
	m := map[string]capacity.Resource{}
	for _, r := range res {
		m[r.Name] = r
	}
	return m
}

// waitOpen waits until the node counts n open HTTPS connections.
func (tn *testNode) waitOpen(n int64) {
	tn.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		open, _ := tn.Connections("https")
		if open == n {
			return
		}
		if time.Now().After(deadline) {
			tn.t.Fatalf("open https connections = %d, want %d", open, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestConnectionLimitFollowsReload: at max_connections a new client gets an
// immediate TLS alert (Go's client and openssl s_client), counted in
// `gatehouse limits` and the metrics; raising the limit by a reload admits
// the next client, lowering it refuses new ones and closes none; the
// per-client cap holds one loopback address while another is served.
func TestConnectionLimitFollowsReload(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	tn.client.CloseIdleConnections()
	tn.reloadHTTPS(`{address: "127.0.0.1:0", max_connections: 2, max_queued: -1, per_client: {max_connections: -1}}`)

	a, b := tn.mustTLSFrom(""), tn.mustTLSFrom("")
	tn.waitOpen(2)
	tn.wantRefusedFrom("")
	openssl := requireTool(t, "openssl")
	cmd := exec.Command(openssl, "s_client", "-connect", tn.Addr("https"), "-servername", "app.uni-a.test", "-brief")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "alert internal error") {
		t.Errorf("openssl s_client at the limit: want the internal error alert, got:\n%s", out)
	}
	res := tn.resources()
	if r := res["https_connections"]; r.Usage != 2 || r.Limit != 2 {
		t.Errorf("https_connections = %+v, want 2 of 2", r)
	}
	if r := res["https_connections_refused"]; r.Usage != 2 {
		t.Errorf("https_connections_refused = %+v, want 2", r)
	}
	var buf bytes.Buffer
	printLimits(&buf, tn.mustLimits())
	for _, row := range []string{"https_connections_refused", "https_connection_queue", "https_connections_queued", "https_connections_per_client"} {
		if !strings.Contains(buf.String(), row) {
			t.Errorf("gatehouse limits lacks %s:\n%s", row, buf.String())
		}
	}
	if m := tn.metrics(); !strings.Contains(m, `gatehouse_listener_connections_refused_total{listener="https",reason="max_connections"} 2`) {
		t.Errorf("metrics lack the refusals:\n%s", grepLines(m, "gatehouse_listener"))
	}

	// Raise: the next client is admitted.
	tn.reloadHTTPS(`{address: "127.0.0.1:0", max_connections: 3, max_queued: -1, per_client: {max_connections: -1}}`)
	c := tn.mustTLSFrom("")
	tn.waitOpen(3)
	// Lower below usage: new clients are refused, open ones keep working.
	tn.reloadHTTPS(`{address: "127.0.0.1:0", max_connections: 1, max_queued: -1, per_client: {max_connections: -1}}`)
	tn.wantRefusedFrom("")
	for i, conn := range []*tls.Conn{a, b, c} {
		if code := roundTrip(t, conn); code != 200 {
			t.Errorf("connection %d after lowering the limit: %d", i+1, code)
		}
	}
	a.Close()
	b.Close()
	c.Close()
	tn.waitOpen(0)

	// Per client address: 127.0.0.2 may hold one connection, 127.0.0.3 is
	// served beside it.
	tn.reloadHTTPS(`{address: "127.0.0.1:0", max_connections: 10, per_client: {max_connections: 1}}`)
	tn.mustTLSFrom("127.0.0.2")
	tn.wantRefusedFrom("127.0.0.2")
	tn.mustTLSFrom("127.0.0.3")
	if r := tn.resources()["https_connections_per_client"]; r.Usage != 1 || r.Limit != 1 {
		t.Errorf("https_connections_per_client = %+v, want 1 of 1", r)
	}
	if m := tn.metrics(); !strings.Contains(m, `gatehouse_listener_connections_refused_total{listener="https",reason="per_client_connections"} 1`) {
		t.Errorf("metrics lack the per-client refusal:\n%s", grepLines(m, "gatehouse_listener"))
	}
}

func (tn *testNode) mustLimits() []capacity.Resource {
	res, err := tn.client.Limits(context.Background())
	if err != nil {
		tn.t.Fatal(err)
	}
	return res
}

// metrics reads the node's Prometheus metrics through the admin API.
func (tn *testNode) metrics() string {
	tn.t.Helper()
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	req, _ := http.NewRequest("GET", "https://"+tn.Addr("admin")+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := tn.adminHTTP(adminCA).Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
