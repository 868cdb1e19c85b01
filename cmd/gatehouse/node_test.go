package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/config"
	"gatehouse/internal/demo"
	"gatehouse/internal/node"
)

// testNode is a whole Gatehouse process (in this test binary) on loopback
// ports, with real backends.
type testNode struct {
	*node.Node
	t       *testing.T
	cfg     *config.Config
	cfgPath string
	ca      *demo.CA
	client  *admin.Client
	roots   *x509.CertPool
	cancel  context.CancelFunc
	done    chan error
}

// backend is a loopback HTTP server answering with its name.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			time.Sleep(dur)
		}
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func addrOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// startTestNode writes a config file with the given pools and routes and
// starts a node from it.
func startTestNode(t *testing.T, yamlTail string) *testNode {
	t.Helper()
	return startTestNodeLog(t, yamlTail, nil)
}

// startTestNodeLog is startTestNode with the node's log (warnings and
// above) also written to logTo.
func startTestNodeLog(t *testing.T, yamlTail string, logTo io.Writer) *testNode {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: "127.0.0.1:0"}
  http: {address: "127.0.0.1:0"}
  status: {address: "127.0.0.1:0"}
  admin: {address: "127.0.0.1:0"}
%s`, dir, yamlTail)
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ca, err := demo.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var w io.Writer = testWriter{t}
	if logTo != nil {
		w = io.MultiWriter(w, logTo)
	}
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(ctx, cfg, node.Options{Logger: log, Reload: func() (*config.Config, error) { return config.Load(path) }})
	if err != nil {
		cancel()
		t.Fatalf("startNode: %v", err)
	}
	tn := &testNode{Node: n, t: t, cfg: cfg, cfgPath: path, ca: ca, cancel: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(tn.stop)
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	adminCA, _ := os.ReadFile(filepath.Join(dir, "admin.crt"))
	tn.client, err = admin.NewClient("https://"+n.Addr("admin"), strings.TrimSpace(string(tok)), adminCA)
	if err != nil {
		t.Fatal(err)
	}
	tn.roots = x509.NewCertPool()
	tn.roots.AddCert(ca.Cert)
	return tn
}

func (tn *testNode) stop() {
	// An idle HTTP/2 connection would hold the drain for the GOAWAY grace.
	tn.client.CloseIdleConnections()
	tn.cancel()
	select {
	case <-tn.done:
	case <-time.After(40 * time.Second):
		tn.t.Error("node did not stop")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// addCert issues a certificate for names from the test CA and installs it
// through the admin API.
func (tn *testNode) addCert(names ...string) admin.CertResponse {
	tn.t.Helper()
	certPEM, keyPEM, err := tn.ca.Issue(names...)
	if err != nil {
		tn.t.Fatal(err)
	}
	res, err := tn.client.AddCert(context.Background(), certPEM, keyPEM)
	if err != nil {
		tn.t.Fatalf("AddCert(%v): %v", names, err)
	}
	return res
}

// handshake connects to the HTTPS listener with SNI and returns the served leaf.
func (tn *testNode) handshake(sni string) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", tn.Addr("https"),
		&tls.Config{ServerName: sni, RootCAs: tn.roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// httpClient returns a client that sends every request to the HTTPS
// listener, whatever the URL's host (like curl --resolve).
func (tn *testNode) httpClient(h2 bool) *http.Client {
	addr := tn.Addr("https")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: tn.roots},
		ForceAttemptHTTP2: h2,
	}
	tn.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func twoPools(t *testing.T) string {
	a1, a2, b1 := backend(t, "a1"), backend(t, "a2"), backend(t, "b1")
	return fmt.Sprintf(`pools:
  - name: a
    members: [{address: %q}, {address: %q}]
  - name: b
    members: [{address: %q}]
routes:
  - {host: app.uni-a.test, pool: a}
  - {host: "*.uni-c.test", pool: b}
`, addrOf(a1), addrOf(a2), addrOf(b1))
}

func TestAdminRequiresToken(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tests := []struct {
		name, token string
		wantCode    int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "not-the-token-0123456789", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := admin.NewClient("https://"+tn.Addr("admin"), tt.token, adminCA)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ListCerts(context.Background(), "", 10)
			var apiErr *admin.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.wantCode {
				t.Fatalf("ListCerts with %s token: err = %v, want HTTP %d", tt.name, err, tt.wantCode)
			}
		})
	}
	if _, err := tn.client.ListCerts(context.Background(), "", 10); err != nil {
		t.Fatalf("ListCerts with the right token: %v", err)
	}
	// The admin API is not on the public listener: there /v1/certs is just
	// an unrouted path of an unknown host.
	tn.addCert("app.uni-a.test")
	code, body := get(t, tn.httpClient(false), "https://app.uni-a.test/v1/certs")
	if strings.Contains(body, "certs") && code == http.StatusOK && !strings.HasPrefix(body, "a") {
		t.Fatalf("public listener answered the admin path: %d %q", code, body)
	}
}

func TestLiveAddReplaceRemove(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	if _, err := tn.handshake("app.uni-a.test"); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("handshake before add: err = %v, want unrecognized name", err)
	}
	first := tn.addCert("app.uni-a.test")
	leaf, err := tn.handshake("app.uni-a.test")
	if err != nil {
		t.Fatalf("handshake after add: %v", err)
	}
	if got := leaf.SerialNumber.Text(16); got != first.Cert.Serial {
		t.Fatalf("served serial %s, want the added %s", got, first.Cert.Serial)
	}
	second := tn.addCert("app.uni-a.test")
	leaf, err = tn.handshake("app.uni-a.test")
	if err != nil || leaf.SerialNumber.Text(16) != second.Cert.Serial {
		t.Fatalf("after replace: serial %v err %v, want %s", leaf.SerialNumber.Text(16), err, second.Cert.Serial)
	}
	list, err := tn.client.Lookup(context.Background(), "app.uni-a.test")
	if err != nil || len(list) != 1 || list[0].ID != second.Cert.ID {
		t.Fatalf("lookup after replace = %+v, %v; want only %s", list, err, second.Cert.ID)
	}
	if err := tn.client.RemoveCert(context.Background(), second.Cert.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.handshake("app.uni-a.test"); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("handshake after remove: err = %v, want unrecognized name", err)
	}
	var apiErr *admin.APIError
	if err := tn.client.RemoveCert(context.Background(), second.Cert.ID); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("second remove: %v, want 404", err)
	}
}

// TestLiveChangeKeepsConnections checks that adding and removing other
// certificates does not disturb an open keep-alive connection.
func TestLiveChangeKeepsConnections(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(true)
	var conns atomic.Int32
	trace := c.Transport.(*http.Transport)
	dial := trace.DialContext
	trace.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conns.Add(1)
		return dial(ctx, network, addr)
	}
	for i := range 20 {
		if code, _ := get(t, c, "https://app.uni-a.test/"); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
		res := tn.addCert(fmt.Sprintf("t%d.other.test", i))
		if i%2 == 0 {
			if err := tn.client.RemoveCert(context.Background(), res.Cert.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("client dialled %d connections, want 1 kept open across live changes", n)
	}
}

func TestBadCertificateChangesNothing(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	before, err := tn.client.ListCerts(context.Background(), "", 100)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tn.client.AddCert(context.Background(), []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), nil)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadRequest || apiErr.Code != "invalid_input" {
		t.Fatalf("garbage PEM: err = %v, want 400 invalid_input", err)
	}
	after, _ := tn.client.ListCerts(context.Background(), "", 100)
	if len(after) != len(before) {
		t.Fatalf("store changed: %d bundles before, %d after", len(before), len(after))
	}
}

func TestRoutingBalancingAndHTTP2(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	tn.addCert("*.uni-c.test")
	c := tn.httpClient(true)
	seen := map[string]int{}
	for range 10 {
		resp, err := c.Get("https://app.uni-a.test/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Fatalf("proto %s, want HTTP/2.0", resp.Proto)
		}
		seen[string(b)]++
	}
	if seen["a1"] != 5 || seen["a2"] != 5 {
		t.Fatalf("round robin over a1, a2: %v, want 5 each", seen)
	}
	if code, body := get(t, c, "https://x.uni-c.test/"); code != 200 || body != "b1" {
		t.Fatalf("wildcard route: %d %q, want 200 b1", code, body)
	}
}

func TestRedirectListener(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+tn.Addr("http")+"/a/b?x=1", nil)
	req.Host = "app.uni-a.test"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(tn.Addr("https"))
	want := "https://app.uni-a.test:" + port + "/a/b?x=1"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("redirect: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
}

func TestGracefulDrain(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(false)
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("https://app.uni-a.test/?sleep=700ms")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	// Wait until the request is in flight at a backend.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var inflight int64
		for _, p := range tn.Proxy().Pools() {
			for _, m := range p.Members {
				inflight += m.InFlight
			}
		}
		if inflight > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request never reached a backend")
		}
		time.Sleep(5 * time.Millisecond)
	}
	tn.cancel() // SIGTERM-equivalent: the node drains
	r := <-res
	if r.err != nil || r.code != 200 {
		t.Fatalf("in-flight request during shutdown: %d %q %v, want 200", r.code, r.body, r.err)
	}
	if err := <-tn.done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	tn.done <- nil // for the cleanup
	if _, err := net.DialTimeout("tcp", tn.Addr("https"), time.Second); err == nil {
		t.Fatal("listener still accepts after shutdown")
	}
}

func TestReload(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(false)
	orig, _ := os.ReadFile(tn.cfgPath)

	// A bad file is refused and changes nothing.
	bad := bytes.Replace(orig, []byte("pool: a}"), []byte("pool: nope}"), 1)
	os.WriteFile(tn.cfgPath, bad, 0o600)
	err := tn.client.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `routes[0].pool: "nope" is not a pool defined under pools`) {
		t.Fatalf("reload of a bad config: %v", err)
	}
	if code, _ := get(t, c, "https://app.uni-a.test/"); code != 200 {
		t.Fatalf("serving after a refused reload: %d", code)
	}

	// A good file swaps in new routes.
	n1 := backend(t, "new1")
	good := bytes.Replace(orig, []byte("routes:\n"), []byte(fmt.Sprintf("  - name: n\n    members: [{address: %q}]\nroutes:\n  - {host: app.uni-a.test, path_prefix: /new, pool: n}\n", addrOf(n1))), 1)
	os.WriteFile(tn.cfgPath, good, 0o600)
	if err := tn.client.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if code, body := get(t, c, "https://app.uni-a.test/new/x"); code != 200 || body != "new1" {
		t.Fatalf("after reload /new: %d %q, want new1", code, body)
	}
	if code, body := get(t, c, "https://app.uni-a.test/"); code != 200 || !strings.HasPrefix(body, "a") {
		t.Fatalf("after reload /: %d %q", code, body)
	}
}

// adminHTTP is a plain HTTP client trusting the admin certificate.
func (tn *testNode) adminHTTP(caPEM []byte) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	tn.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
