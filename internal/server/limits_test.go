package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// limitedNode is a Server whose HTTPS (and plain status) handler blocks each
// request until released, so that tests can hold connections open.
type limitedNode struct {
	t       testing.TB
	s       *Server
	cfg     *config.Config
	ccfg    *tls.Config
	release chan struct{}
	entered chan struct{}
	mu      sync.Mutex
	now     time.Time
}

func (n *limitedNode) clock() time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.now
}

func (n *limitedNode) advance(d time.Duration) {
	n.mu.Lock()
	n.now = n.now.Add(d)
	n.mu.Unlock()
}

// startLimitedB holds the only slot of a listener (full) or sets no limit.
func startLimitedB(b *testing.B, full bool) *limitedNode {
	n := startLimited(b, func(ls *config.Listeners) {
		ls.HTTPS.PerClient = config.PerClient{MaxConnections: -1, MaxNewPerSecond: -1}
		if full {
			ls.HTTPS.MaxConnections = 1
			ls.HTTPS.MaxQueued = -1
		}
	})
	if full {
		n.hold("")
	}
	return n
}

func startLimited(t testing.TB, set func(ls *config.Listeners)) *limitedNode {
	t.Helper()
	dir := t.TempDir()
	certFile := filepath.Join(dir, "c.pem")
	cert, err := LoadOrCreateAdminCert(certFile, filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(certFile)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	n := &limitedNode{t: t, release: make(chan struct{}), entered: make(chan struct{}, 100), now: time.Unix(1e9, 0)}
	cfg := &config.Config{}
	cfg.Listeners.HTTPS.Address = "127.0.0.1:0"
	cfg.Listeners.Status.Address = "127.0.0.1:0"
	set(&cfg.Listeners)
	cfg.ApplyDefaults()
	n.cfg = cfg
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			n.entered <- struct{}{}
			select {
			case <-n.release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	})
	n.s = New(cfg, Options{
		PublicTLS: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		Edge:      h,
		Status:    h,
		Now:       n.clock,
	})
	if err := n.s.Start(); err != nil {
		t.Fatal(err)
	}
	n.ccfg = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	t.Cleanup(func() {
		n.releaseAll()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.s.Shutdown(ctx)
	})
	return n
}

func (n *limitedNode) releaseAll() {
	select {
	case <-n.release:
	default:
		close(n.release)
	}
}

// dialFrom does a TLS handshake from a local address ("" any).
func (n *limitedNode) dialFrom(local string) (*tls.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	raw, err := d.Dial("tcp", n.s.Addr("https"))
	if err != nil {
		return nil, err
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	c := tls.Client(raw, n.ccfg)
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return c, nil
}

// hold opens a connection from local and starts a /hold request on it; it
// returns once the handler runs. The request's answer arrives on done.
func (n *limitedNode) hold(local string) (done chan string) {
	n.t.Helper()
	c, err := n.dialFrom(local)
	if err != nil {
		n.t.Fatalf("dial from %q: %v", local, err)
	}
	n.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	done = make(chan string, 1)
	go func() { done <- get(c, "/hold") }()
	select {
	case <-n.entered:
	case <-time.After(10 * time.Second):
		n.t.Fatal("the held request never reached the handler")
	}
	return done
}

// get sends one request on c and returns "status body" or the error.
func get(c net.Conn, path string) string {
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path); err != nil {
		return "error: " + err.Error()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// wantRefused checks that a handshake from local fails at once with the
// TLS internal_error alert (not a timeout, not a reset).
func (n *limitedNode) wantRefused(local string) {
	n.t.Helper()
	c, err := n.dialFrom(local)
	if err == nil {
		c.Close()
		n.t.Fatalf("handshake from %q succeeded; want a refusal", local)
	}
	if !strings.Contains(err.Error(), "tls: internal error") {
		n.t.Fatalf("handshake from %q: %v; want the TLS internal_error alert", local, err)
	}
}

func (n *limitedNode) waitStats(what string, ok func(ListenerStats) bool) ListenerStats {
	n.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := n.s.Stats("https")
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("waiting for %s: stats %+v", what, st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestConnectionLimitQueuesThenRefuses drives real TLS clients at a listener
// at max_connections: a client is queued while the queue has room, refused
// at once with a TLS alert beyond it, refused after queue_timeout when no
// slot frees; a reload raising the limit admits the queued client, one
// lowering it refuses new clients and closes none.
func TestConnectionLimitQueuesThenRefuses(t *testing.T) {
	n := startLimited(t, func(ls *config.Listeners) {
		ls.HTTPS.MaxConnections = 1
		ls.HTTPS.MaxQueued = 1
		ls.HTTPS.QueueTimeout = config.Duration(time.Minute)
		ls.HTTPS.PerClient.MaxConnections = -1 // every client comes from 127.0.0.1
	})
	first := n.hold("")

	// The second client waits in the queue: its handshake does not finish.
	type dialed struct {
		c   *tls.Conn
		err error
	}
	queued := make(chan dialed, 1)
	go func() {
		c, err := n.dialFrom("")
		queued <- dialed{c, err}
	}()
	n.waitStats("one queued connection", func(st ListenerStats) bool { return st.Queued == 1 })

	// The third finds the queue full: refused at once.
	n.wantRefused("")
	if st := n.s.Stats("https"); st.Refused[RefusedMaxConnections] != 1 || st.QueuedTotal != 1 {
		t.Fatalf("stats %+v; want 1 refused for max_connections, 1 queued", st)
	}

	// Reload with a higher limit: the queued client is served at once.
	raised := n.cfg.Listeners
	raised.HTTPS.MaxConnections = 2
	if restart := n.s.Reconfigure(raised); len(restart) != 0 {
		t.Fatalf("Reconfigure of limits only asks for a restart of %v", restart)
	}
	d := <-queued
	if d.err != nil {
		t.Fatalf("queued client after the limit was raised: %v", d.err)
	}
	defer d.c.Close()
	d.c.SetDeadline(time.Now().Add(30 * time.Second))
	second := make(chan string, 1)
	go func() { second <- get(d.c, "/hold") }()
	<-n.entered
	if st := n.s.Stats("https"); st.Open != 2 || st.Max != 2 {
		t.Fatalf("stats %+v; want 2 open of 2", st)
	}

	// Reload with a lower limit and no queue: the two open connections
	// stay, a new client is refused at once.
	lowered := n.cfg.Listeners
	lowered.HTTPS.MaxConnections = 1
	lowered.HTTPS.MaxQueued = -1
	n.s.Reconfigure(lowered)
	n.wantRefused("")

	// With a short queue timeout, a queued client is refused once it expires.
	short := lowered
	short.HTTPS.MaxQueued = 4
	short.HTTPS.QueueTimeout = config.Duration(100 * time.Millisecond)
	n.s.Reconfigure(short)
	n.wantRefused("")
	st := n.s.Stats("https")
	want := map[string]uint64{RefusedMaxConnections: 2, RefusedQueueTimeout: 1, RefusedPerClientConnections: 0, RefusedPerClientRate: 0}
	for r, w := range want {
		if st.Refused[r] != w {
			t.Errorf("refused %s = %d, want %d (stats %+v)", r, st.Refused[r], w, st)
		}
	}
	if st.QueuedTotal != 2 {
		t.Errorf("queued total = %d, want 2", st.QueuedTotal)
	}

	// The connections open before the reload were never closed.
	n.releaseAll()
	for i, ch := range []chan string{first, second} {
		if got := <-ch; got != "200 ok" {
			t.Errorf("held request %d: %q, want 200 ok", i+1, got)
		}
	}
}

// TestPlainListenerRefusesWith503: a plain-HTTP listener at its limit
// answers 503 with Retry-After.
func TestPlainListenerRefusesWith503(t *testing.T) {
	n := startLimited(t, func(ls *config.Listeners) {
		ls.Status.MaxConnections = 1
		ls.Status.MaxQueued = -1
	})
	c1, err := net.Dial("tcp", n.s.Addr("status"))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.SetDeadline(time.Now().Add(30 * time.Second))
	held := make(chan string, 1)
	go func() { held <- get(c1, "/hold") }()
	<-n.entered
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + n.s.Addr("status") + "/")
	if err != nil {
		t.Fatalf("second client: %v; want a 503 answer", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("second client: %d Retry-After=%q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	n.releaseAll()
	if got := <-held; got != "200 ok" {
		t.Fatalf("held request: %q", got)
	}
}

// TestPerClientLimits drives clients from distinct loopback addresses:
// the per-address cap and rate refuse one address while others are served,
// the allow-list exempts an address, a reload changes the cap live, and the
// table of addresses stays bounded under many distinct sources.
func TestPerClientLimits(t *testing.T) {
	n := startLimited(t, func(ls *config.Listeners) {
		ls.HTTPS.PerClient = config.PerClient{
			MaxConnections: 2, MaxNewPerSecond: 1, Burst: 4,
			Allow: []string{"127.0.0.4/32"}, TrackedAddresses: 16,
		}
	})
	// Two held connections from 127.0.0.2 fill its cap.
	a := n.hold("127.0.0.2")
	b := n.hold("127.0.0.2")
	n.wantRefused("127.0.0.2")
	// Another address is served.
	if c, err := n.dialFrom("127.0.0.3"); err != nil {
		t.Fatalf("127.0.0.3: %v", err)
	} else {
		c.Close()
	}
	st := n.s.Stats("https")
	if st.BusiestClient != 2 || st.PerClientMax != 2 || st.Refused[RefusedPerClientConnections] != 1 {
		t.Fatalf("stats %+v; want busiest 2 of 2, 1 refused per_client_connections", st)
	}
	// The allow-listed address is exempt from both limits.
	for i := range 6 {
		c, err := n.dialFrom("127.0.0.4")
		if err != nil {
			t.Fatalf("allow-listed connection %d: %v", i, err)
		}
		defer c.Close()
	}
	// Rate: 127.0.0.5 has a burst of 4, then 1 a second (the clock stands).
	for i := range 4 {
		c, err := n.dialFrom("127.0.0.5")
		if err != nil {
			t.Fatalf("connection %d of the burst: %v", i+1, err)
		}
		c.Close()
	}
	n.wantRefused("127.0.0.5")
	n.advance(time.Second)
	if c, err := n.dialFrom("127.0.0.5"); err != nil {
		t.Fatalf("a second later: %v", err)
	} else {
		c.Close()
	}
	if got := n.s.Stats("https").Refused[RefusedPerClientRate]; got != 1 {
		t.Fatalf("refused per_client_rate = %d, want 1", got)
	}
	// Reload: a higher cap admits a third connection from 127.0.0.2.
	raised := n.cfg.Listeners
	raised.HTTPS.PerClient.MaxConnections = 3
	n.s.Reconfigure(raised)
	n.advance(10 * time.Second)
	third := n.hold("127.0.0.2")

	// Many distinct sources: the table stays at its bound (16), apart from
	// the addresses that hold open connections.
	for i := 10; i < 210; i++ {
		c, err := n.dialFrom(fmt.Sprintf("127.0.0.%d", i))
		if err != nil {
			t.Fatalf("127.0.0.%d: %v", i, err)
		}
		c.Close()
	}
	st = n.waitStats("the table at its bound", func(st ListenerStats) bool { return st.TrackedClients == 16 })
	if st.TrackedMax != 16 {
		t.Fatalf("tracked max = %d, want 16", st.TrackedMax)
	}
	n.releaseAll()
	for _, ch := range []chan string{a, b, third} {
		if got := <-ch; got != "200 ok" {
			t.Errorf("held request: %q", got)
		}
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	key := func(s string) string {
		k, ok := clientKey(&net.TCPAddr{IP: net.ParseIP(s)})
		if !ok {
			t.Fatalf("no key for %s", s)
		}
		return k.String()
	}
	tests := []struct{ in, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
		{"2001:db8:1:3::1", "2001:db8:1:3::"},
	}
	for _, tt := range tests {
		if got := key(tt.in); got != tt.want {
			t.Errorf("clientKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	allowed, _ := netip.ParsePrefix("2001:db8:1:2::5/128")
	cl := clientLimits{maxConns: 1, maxTracked: 8, allow: []netip.Prefix{allowed}}
	tab := newClientTable()
	a, _ := netip.ParseAddr("2001:db8:1:2::1")
	b, _ := netip.ParseAddr("2001:db8:1:2::2")
	if tracked, reason := tab.admit(&cl, a, time.Now()); !tracked || reason != "" {
		t.Fatalf("first connection of the /64: tracked=%v reason=%q", tracked, reason)
	}
	if _, reason := tab.admit(&cl, b, time.Now()); reason != RefusedPerClientConnections {
		t.Fatalf("second connection of the same /64: reason %q, want %s", reason, RefusedPerClientConnections)
	}
	// The allow-list matches the address itself, not its /64.
	five, _ := netip.ParseAddr("2001:db8:1:2::5")
	if tracked, reason := tab.admit(&cl, five, time.Now()); tracked || reason != "" {
		t.Fatalf("allow-listed address in a full /64: tracked=%v reason=%q, want exempt", tracked, reason)
	}
}

// TestShutdownWithQueuedClients: clients waiting in the queue when the
// server shuts down get an answer (their connection closes) and Shutdown
// ends by its deadline.
func TestShutdownWithQueuedClients(t *testing.T) {
	n := startLimited(t, func(ls *config.Listeners) {
		ls.HTTPS.MaxConnections = 1
		ls.HTTPS.MaxQueued = 4
		ls.HTTPS.QueueTimeout = config.Duration(time.Minute)
		ls.HTTPS.PerClient.MaxConnections = -1
	})
	n.hold("")
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			c, err := n.dialFrom("")
			if err == nil {
				c.Close()
			}
			errs <- err
		}()
	}
	n.waitStats("two queued", func(st ListenerStats) bool { return st.Queued == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.s.Shutdown(ctx) }()
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a queued client completed its handshake on a server shutting down")
		} else if strings.Contains(err.Error(), "timeout") {
			t.Errorf("queued client: %v; want the connection closed, not a timeout", err)
		}
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.releaseAll()
		t.Fatal("Shutdown still running 10s after its 200ms deadline")
	}
}

// BenchmarkRefusalAtLimit measures how long a client at the connection
// limit waits for its refusal (TLS dial to the internal_error alert), and,
// for comparison, a full handshake below the limit.
func BenchmarkRefusalAtLimit(b *testing.B) {
	for _, full := range []bool{true, false} {
		name := "refused"
		if !full {
			name = "admitted"
		}
		b.Run(name, func(b *testing.B) {
			n := startLimitedB(b, full)
			b.ResetTimer()
			for b.Loop() {
				c, err := n.dialFrom("")
				if full {
					if err == nil || !strings.Contains(err.Error(), "internal error") {
						b.Fatalf("want a refusal, got %v", err)
					}
					continue
				}
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// TestPerClientIPv6: over a real IPv6 loopback connection the per-client
// cap counts ::1's /64, and an allow-list entry for the address exempts it
// after a reload.
func TestPerClientIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Fatalf("this test needs IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	n := startLimited(t, func(ls *config.Listeners) {
		ls.HTTPS.Address = "[::1]:0"
		ls.HTTPS.PerClient = config.PerClient{MaxConnections: 1, MaxNewPerSecond: -1}
	})
	n.hold("::1")
	n.wantRefused("::1")
	allowed := n.cfg.Listeners
	allowed.HTTPS.PerClient.Allow = []string{"::1"}
	n.s.Reconfigure(allowed)
	c, err := n.dialFrom("::1")
	if err != nil {
		t.Fatalf("allow-listed ::1: %v", err)
	}
	c.Close()
}
