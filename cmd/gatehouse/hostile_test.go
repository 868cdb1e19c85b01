package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileClientsNode drives the attacks of the hostile-client probe
// with real TLS clients at a real node whose member records every byte it
// receives: uploads reset by the client, malformed chunked bodies, a
// stalled body, another tenant's Host on a TLS session. The member stays
// up, the component stays operational with an error rate of 0, the
// stalled body gets 408 and its member connection is released, and the
// cross-tenant request gets 421 without reaching the other tenant.
func TestHostileClientsNode(t *testing.T) {
	var (
		mu       sync.Mutex
		received strings.Builder
		open     atomic.Int64
	)
	member := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/upload" {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				return
			}
		}
		io.WriteString(w, "tenant "+r.Host)
	}))
	member.Config.ConnState = func(c net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	member.Listener = recordingListener{member.Listener, func(p []byte) {
		mu.Lock()
		received.Write(p)
		mu.Unlock()
	}}
	member.Start()
	t.Cleanup(member.Close)
	got := func() string {
		mu.Lock()
		defer mu.Unlock()
		return received.String()
	}
	tn := startTestNode(t, fmt.Sprintf(`pools:
  - name: a
    members: [{address: %q}]
    health_check: {path: /health, interval: 1h, fall: 1, rise: 1}
  - name: b
    members: [{address: %q}]
routes:
  - {host: app.uni-a.test, pool: a, body_read_timeout: 300ms}
  - {host: app.uni-b.test, pool: b}
  - {host: shop.uni-a.test, pool: a}
  - {host: www.uni-a.test, pool: a}
status:
  hysteresis: 100ms
  error_rate: {window: 10s, min_requests: 5}
  components:
    - {name: Tenant A, region: EU01, pools: [a]}
    - {name: Tenant B, region: EU01, pools: [b]}
`, addrOf(member), addrOf(member)))
	tn.addCert("app.uni-a.test")
	tn.addCert("app.uni-b.test")
	tn.addCert("shop.uni-a.test", "www.uni-a.test")
	addr := tn.Addr("https")
	dial := func(sni string) *tls.Conn {
		c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, RootCAs: tn.roots, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(15 * time.Second))
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := tn.httpClient(true)
	normal := func() {
		t.Helper()
		if code, body := get(t, c, "https://app.uni-a.test/"); code != 200 || body != "tenant app.uni-a.test" {
			t.Errorf("normal request: %d %q", code, body)
		}
	}

	// Uploads reset by the client (SO_LINGER 0).
	for range 20 {
		conn := dial("app.uni-a.test")
		before := len(got())
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 100))
		waitUntil(t, "the member to receive the upload", func() bool { return len(got()) > before })
		tcp := conn.NetConn().(*net.TCPConn)
		tcp.SetLinger(0)
		tcp.Close()
		normal()
	}
	// Malformed chunked bodies: 400, never 502.
	for range 40 {
		conn := dial("app.uni-a.test")
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed chunked body: %d, want 400", res.StatusCode)
		}
	}
	if strings.Contains(got(), "zz") {
		t.Error("the malformed body reached the member")
	}
	// Headers and 10 of 1,000 body bytes, then silence: 408 after the
	// route's body read timeout, connection closed, member connection
	// released.
	{
		conn := dial("app.uni-a.test")
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nContent-Length: 1000\r\n\r\n0123456789")
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("stalled body: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusRequestTimeout || !res.Close {
			t.Errorf("stalled body: %d close=%v, want 408 and the connection closed", res.StatusCode, res.Close)
		}
		waitUntil(t, "the member connections of the attacks to be released", func() bool { return open.Load() <= 1 })
	}
	// Another tenant's Host on tenant A's session, three ways.
	for _, line := range []string{"GET / HTTP/1.1\r\nHost: app.uni-b.test", "GET https://app.uni-b.test/ HTTP/1.1\r\nHost: app.uni-a.test"} {
		conn := dial("app.uni-a.test")
		fmt.Fprintf(conn, "%s\r\n\r\n", line)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusMisdirectedRequest {
			t.Errorf("%q on app.uni-a.test's session: %d, want 421", line, res.StatusCode)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "https://app.uni-a.test/", nil)
	req.Host = "app.uni-b.test"
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("HTTP/%d :authority app.uni-b.test on app.uni-a.test's session: %d, want HTTP/2 421", res.ProtoMajor, res.StatusCode)
	}
	if strings.Contains(got(), "Host: app.uni-b.test") {
		t.Error("a cross-tenant request reached tenant B's pool")
	}
	// HTTP/2 coalescing: another name of the certificate that served the
	// session is served on it.
	req, _ = http.NewRequest(http.MethodGet, "https://shop.uni-a.test/", nil)
	req.Host = "www.uni-a.test"
	res, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 || res.TLS.ServerName != "shop.uni-a.test" || res.StatusCode != 200 || string(body) != "tenant www.uni-a.test" {
		t.Errorf("coalesced HTTP/%d request on %q's session: %d %q, want HTTP/2 200 from www.uni-a.test",
			res.ProtoMajor, res.TLS.ServerName, res.StatusCode, body)
	}
	// The tenant's own requests pass.
	for range 10 {
		normal()
	}
	if code, _ := get(t, c, "https://app.uni-b.test/"); code != 200 {
		t.Errorf("tenant B: %d", code)
	}

	for _, p := range tn.Proxy().Pools() {
		for _, m := range p.Members {
			if !m.Up {
				t.Errorf("pool %s: member %s is down", p.Name, m.Address)
			}
		}
		if p.Failures != 0 {
			t.Errorf("pool %s: %d failures counted for the status page, want 0", p.Name, p.Failures)
		}
	}
	errs := tn.Proxy().ClientErrors()
	if errs["bad_body"] != 40 || errs["reset"]+errs["aborted"] < 20 || errs["misdirected"] != 3 || errs["body_timeout"] != 1 {
		t.Errorf("client errors %v, want bad_body 40, reset+aborted ≥ 20, misdirected 3, body_timeout 1", errs)
	}
	waitStatuses(t, tn, map[string]string{"Tenant A": "operational", "Tenant B": "operational"})
	list, err := tn.client.StatusComponents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range list {
		if cs.ErrorRate != 0 {
			t.Errorf("component %s: error rate %v%% of %d requests, want 0", cs.Name, cs.ErrorRate, cs.Requests)
		}
	}
	// The metric is exposed.
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	mreq, _ := http.NewRequest("GET", "https://"+tn.Addr("admin")+"/metrics", nil)
	mreq.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	mres, err := tn.adminHTTP(adminCA).Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mres.Body)
	mres.Body.Close()
	metrics := string(mbody)
	if !strings.Contains(metrics, `gatehouse_client_errors_total{reason="bad_body"} 40`) {
		t.Errorf("metrics lack gatehouse_client_errors_total{reason=\"bad_body\"} 40:\n%s", grepLines(metrics, "client_errors"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recordingListener hands every byte read from its connections to rec.
type recordingListener struct {
	net.Listener
	rec func([]byte)
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{c, l.rec}, nil
}

type recordingConn struct {
	net.Conn
	rec func([]byte)
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rec(p[:n])
	return n, err
}

// TestMaxConnsPerMemberReload: pools[].max_conns_per_member follows a
// reload: the next requests are held to the new value, and `gatehouse
// limits` (backend_connections) shows it.
func TestMaxConnsPerMemberReload(t *testing.T) {
	var cur, peak atomic.Int64
	var release atomic.Pointer[chan struct{}]
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-*release.Load():
		case <-time.After(10 * time.Second):
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(slow.Close)
	tail := func(max int) string {
		return fmt.Sprintf(`pools:
  - name: a
    members: [{address: %q}]
    max_conns_per_member: %d
routes:
  - {host: app.uni-a.test, pool: a}
`, addrOf(slow), max)
	}
	tn := startTestNode(t, tail(1))
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(true)
	// burst holds six concurrent requests at the member until want of
	// them have arrived (and a moment longer, for any over the limit), and
	// returns the most that were there at once.
	burst := func(want int64) int64 {
		peak.Store(0)
		ch := make(chan struct{})
		release.Store(&ch)
		var wg sync.WaitGroup
		for range 6 {
			wg.Go(func() {
				if code, _ := get(t, c, "https://app.uni-a.test/"); code != 200 {
					t.Errorf("status %d", code)
				}
			})
		}
		waitUntil(t, fmt.Sprintf("%d requests at the member", want), func() bool { return cur.Load() >= want })
		time.Sleep(100 * time.Millisecond)
		p := peak.Load()
		close(ch)
		wg.Wait()
		return p
	}
	backendLimit := func() int64 {
		res, err := tn.client.Limits(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			if r.Name == "backend_connections" {
				return r.Limit
			}
		}
		t.Fatal("no backend_connections in gatehouse limits")
		return 0
	}
	if p := burst(1); p != 1 {
		t.Errorf("max_conns_per_member 1: %d concurrent requests at the member", p)
	}
	if l := backendLimit(); l != 1 {
		t.Errorf("gatehouse limits: backend_connections limit %d, want 1", l)
	}

	doc, _ := os.ReadFile(tn.cfgPath)
	os.WriteFile(tn.cfgPath, []byte(strings.Replace(string(doc), "max_conns_per_member: 1", "max_conns_per_member: 3", 1)), 0o600)
	if err := tn.client.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l := backendLimit(); l != 3 {
		t.Errorf("after reload: backend_connections limit %d, want 3", l)
	}
	if p := burst(3); p != 3 {
		t.Errorf("max_conns_per_member 3 after reload: %d concurrent requests at the member, want 3", p)
	}
}
