package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// recorder is a member that records every byte it receives, counts its
// open connections and answers:
//
//	/upload  reads the whole body and answers its length
//	/big     streams up to 200 MB, counting the responses cut short
//	/20k     answers 20 KiB
//	/pause   answers 40 KiB, pauses 600ms, then "end"
//	/events  answers three short lines, each flushed (no Content-Length)
//	/500     answers 500
//	/reset   resets the connection without an answer
//	other    answers "ok"
type recorder struct {
	*httptest.Server
	mu      sync.Mutex
	raw     bytes.Buffer
	open    atomic.Int64
	bigCut  atomic.Int64 // /big responses whose write failed: the edge let go
	uploads atomic.Int64 // /upload bodies read to the end
}

func newRecorder(t *testing.T) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.Server = httptest.NewUnstartedServer(http.HandlerFunc(rec.serve))
	rec.Listener = &recListener{Listener: rec.Listener, rec: rec}
	rec.Start()
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		rec.uploads.Add(1)
		fmt.Fprintf(w, "%d", n)
	case "/big":
		w.Header().Set("Content-Length", "200000000")
		chunk := make([]byte, 32<<10)
		for sent := 0; sent < 200_000_000; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				rec.bigCut.Add(1)
				return
			}
		}
	case "/20k":
		w.Write(bytes.Repeat([]byte("k"), 20<<10))
	case "/events":
		for range 3 {
			io.WriteString(w, "event\n")
			http.NewResponseController(w).Flush()
		}
	case "/pause":
		w.Write(bytes.Repeat([]byte("p"), 40<<10))
		http.NewResponseController(w).Flush()
		time.Sleep(600 * time.Millisecond)
		io.WriteString(w, "end")
	case "/500":
		w.WriteHeader(http.StatusInternalServerError)
	case "/reset":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*recConn).Conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	default:
		io.WriteString(w, "ok")
	}
}

// received returns every byte the member has read so far.
func (rec *recorder) received() string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.raw.String()
}

func (rec *recorder) addr() string { return rec.Listener.Addr().String() }

type recListener struct {
	net.Listener
	rec *recorder
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.rec.open.Add(1)
	return &recConn{Conn: c, rec: l.rec}, nil
}

type recConn struct {
	net.Conn
	rec  *recorder
	once sync.Once
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.rec.mu.Lock()
		c.rec.raw.Write(p[:n])
		c.rec.mu.Unlock()
	}
	return n, err
}

func (c *recConn) Close() error {
	c.once.Do(func() { c.rec.open.Add(-1) })
	return c.Conn.Close()
}

// hostileSetup is a front with two pools on one recording member: "direct"
// (the direct path for body-less requests) and "rp" (max_conns_per_member
// set, so every request takes the ReverseProxy path), with active checks
// that eject a member after one failure of live traffic. downs counts
// member ejections.
type hostileSetup struct {
	*front
	rec   *recorder
	downs atomic.Int64
}

func newHostile(t *testing.T, https config.Listener, opts Options) *hostileSetup {
	t.Helper()
	hs := &hostileSetup{rec: newRecorder(t)}
	direct := poolConfig("direct", "", hs.rec.addr())
	rp := poolConfig("rp", "", hs.rec.addr())
	rp.MaxConnsPerMember = 64
	for _, p := range []*config.Pool{&direct, &rp} {
		p.HealthCheck = fastHealth()
		p.HealthCheck.Interval = config.Duration(time.Hour) // only passive ejection changes state
		p.HealthCheck.Timeout = config.Duration(time.Second)
	}
	opts.OnHealthChange = func(pool, addr string, up bool) {
		if !up {
			hs.downs.Add(1)
		}
	}
	hs.front = newFront(t, &config.Config{
		Listeners: config.Listeners{HTTPS: https},
		Pools:     []config.Pool{direct, rp},
		Routes: []config.Route{{Host: "direct.test", Pool: "direct"}, {Host: "rp.test", Pool: "rp"},
			{Host: "cache.test", Pool: "direct", Cache: config.RouteCache{Enabled: true, DefaultTTL: config.Duration(time.Hour)}}},
	}, opts)
	return hs
}

// failures returns the requests and failures counted for the status
// portal, summed over the pools.
func (hs *hostileSetup) failures() (requests, failures uint64) {
	for _, p := range hs.px.Pools() {
		requests += p.Requests
		failures += p.Failures
	}
	return requests, failures
}

// raw opens an HTTP/1.1 TLS connection to the front without SNI.
func (hs *hostileSetup) raw(t *testing.T) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", hs.srv.Listener.Addr().String(),
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // a hang fails the test
	t.Cleanup(func() { conn.Close() })
	return conn
}

// reset closes conn's TCP connection with an RST (SO_LINGER 0), without
// a TLS close_notify.
func reset(conn *tls.Conn) {
	tcp := conn.NetConn().(*net.TCPConn)
	tcp.SetLinger(0)
	tcp.Close()
}

// normalGETs sends n GETs on each pool and returns how many did not get 200.
func (hs *hostileSetup) normalGETs(t *testing.T, n int) (bad int) {
	t.Helper()
	for range n {
		for _, h := range []string{"direct.test", "rp.test"} {
			if code, body := hs.get(t, h, "/"); code != http.StatusOK || body != "ok" {
				t.Logf("normal GET %s: %d %q", h, code, body)
				bad++
			}
		}
	}
	return bad
}

// TestHostileResetUploads is the first attack of the probe: uploads that
// announce 100,000 bytes, send 100 and reset the connection. Before, each
// reset counted as the member's connection failure (a healthy member was
// ejected) and as a 502 in the pool's error rate.
func TestHostileResetUploads(t *testing.T) {
	hs := newHostile(t, config.Listener{}, Options{})
	const attacks = 20
	for i := range attacks {
		conn := hs.raw(t)
		before := len(hs.rec.received())
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 100))
		waitFor(t, "the member to receive the upload's head", func() bool { return len(hs.rec.received()) > before })
		reset(conn)
		if i%5 == 0 {
			if bad := hs.normalGETs(t, 1); bad > 0 {
				t.Errorf("%d normal requests failed during the attack", bad)
			}
		}
	}
	// HTTP/2: the client resets its stream mid-upload.
	for range 5 {
		pr, pw := io.Pipe()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.srv.URL+"/upload", pr)
		req.Host = "rp.test"
		req.ContentLength = 100000
		before := len(hs.rec.received())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if res, err := hs.c.Do(req); err == nil {
				res.Body.Close()
			}
		}()
		pw.Write(bytes.Repeat([]byte("y"), 100))
		waitFor(t, "the member to receive the HTTP/2 upload's head", func() bool { return len(hs.rec.received()) > before })
		cancel()
		pw.CloseWithError(context.Canceled)
		<-done
	}
	ce := hs.px.clientErrs
	waitFor(t, "every aborted upload to be counted as a client error", func() bool {
		return ce.n[reasonReset].Load()+ce.n[reasonAborted].Load() >= attacks+5
	})
	if bad := hs.normalGETs(t, 5); bad > 0 {
		t.Errorf("%d normal requests failed after the attack", bad)
	}
	if d := hs.downs.Load(); d != 0 {
		t.Errorf("member ejected %d times by client resets, want 0", d)
	}
	if _, failures := hs.failures(); failures != 0 {
		t.Errorf("pool failures = %d after client resets, want 0 (the status portal's error rate would move)", failures)
	}
	for _, p := range hs.px.Pools() {
		for _, m := range p.Members {
			if !m.Up {
				t.Errorf("pool %s member %s is down", p.Name, m.Address)
			}
		}
	}
}

// TestHostileMalformedChunked is the second attack: a chunked body that
// is not chunked encoding. Before, it was answered 502 and counted in the
// pool's error rate.
func TestHostileMalformedChunked(t *testing.T) {
	hs := newHostile(t, config.Listener{}, Options{})
	const attacks = 40
	for range attacks {
		conn := hs.raw(t)
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("reading the answer to a malformed chunked body: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed chunked body: status %d, want 400", res.StatusCode)
		}
	}
	if bad := hs.normalGETs(t, 5); bad > 0 {
		t.Errorf("%d normal requests failed", bad)
	}
	if got := hs.px.ClientErrors()[ReasonBadBody]; got != attacks {
		t.Errorf("client errors bad_body = %d, want %d", got, attacks)
	}
	if _, failures := hs.failures(); failures != 0 {
		t.Errorf("pool failures = %d after malformed bodies, want 0", failures)
	}
	if d := hs.downs.Load(); d != 0 {
		t.Errorf("member ejected %d times, want 0", d)
	}
	if strings.Contains(hs.rec.received(), "zz") {
		t.Error("the malformed body reached the member")
	}
}

// TestBlameOnlyWhatFailed drives each kind of failure over both request
// paths and checks which counters move: member failures count against the
// member (passive ejection) and the pool's error rate; client failures
// count as client errors only.
func TestBlameOnlyWhatFailed(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		// do provokes the failure once on host.
		do            func(t *testing.T, hs *hostileSetup, host string)
		wantFailures  uint64
		wantEjections int64
		wantClient    string // reason of the client error, or ""
	}{
		{"member_5xx", []string{"direct.test", "rp.test"}, func(t *testing.T, hs *hostileSetup, host string) {
			if code, _ := hs.get(t, host, "/500"); code != 500 {
				t.Errorf("status %d, want 500", code)
			}
		}, 1, 0, ""},
		{"member_reset", []string{"direct.test", "rp.test"}, func(t *testing.T, hs *hostileSetup, host string) {
			if code, _ := hs.get(t, host, "/reset"); code != http.StatusBadGateway {
				t.Errorf("status %d, want 502", code)
			}
		}, 1, 1, ""},
		{"client_canceled", []string{"direct.test", "rp.test"}, func(t *testing.T, hs *hostileSetup, host string) {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.srv.URL+"/big", nil)
			req.Host = host
			res, err := hs.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			res.Body.Close()
		}, 0, 0, ReasonAborted},
		{"client_reset_upload", []string{"rp.test"}, func(t *testing.T, hs *hostileSetup, host string) {
			conn := hs.raw(t)
			before := len(hs.rec.received())
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 1000\r\n\r\n0123456789", host)
			waitFor(t, "the member to receive the head", func() bool { return len(hs.rec.received()) > before })
			reset(conn)
		}, 0, 0, ReasonReset},
		{"client_bad_body", []string{"rp.test"}, func(t *testing.T, hs *hostileSetup, host string) {
			conn := hs.raw(t)
			fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX", host)
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest {
				t.Errorf("status %d, want 400", res.StatusCode)
			}
		}, 0, 0, ReasonBadBody},
	}
	for _, tc := range tests {
		for _, h := range tc.paths {
			t.Run(tc.name+"/"+strings.TrimSuffix(h, ".test"), func(t *testing.T) {
				hs := newHostile(t, config.Listener{}, Options{})
				tc.do(t, hs, h)
				if tc.wantClient != "" {
					waitFor(t, "the client error to be counted", func() bool {
						return hs.px.ClientErrors()[tc.wantClient] > 0
					})
				}
				_, failures := hs.failures()
				var clientTotal uint64
				for _, n := range hs.px.ClientErrors() {
					clientTotal += n
				}
				member := tc.wantFailures > 0
				if member && (failures == 0 || clientTotal != 0) {
					t.Errorf("member failure: pool failures %d (want > 0), client errors %d (want 0)", failures, clientTotal)
				}
				if !member && (failures != 0 || hs.downs.Load() != 0) {
					t.Errorf("client failure: pool failures %d, ejections %d (want 0, 0)", failures, hs.downs.Load())
				}
				if tc.name == "member_reset" && hs.downs.Load() == 0 {
					t.Error("a member resetting its connection was not ejected")
				}
			})
		}
	}
}

// TestHostileSlowBody: a client that sends its headers and 10 of 1,000
// body bytes, then nothing, gets 408 after the body read timeout, and the
// member connection is released.
func TestHostileSlowBody(t *testing.T) {
	hs := newHostile(t, config.Listener{BodyReadTimeout: config.Duration(300 * time.Millisecond)}, Options{})
	t.Run("http1", func(t *testing.T) {
		conn := hs.raw(t)
		before := len(hs.rec.received())
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nContent-Length: 1000\r\n\r\n0123456789")
		waitFor(t, "the member to receive the head", func() bool { return len(hs.rec.received()) > before })
		br := bufio.NewReader(conn)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer to a stalled body: %v", err)
		}
		io.Copy(io.Discard, res.Body)
		if res.StatusCode != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", res.StatusCode)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("after the 408 the connection stays open (read: %v)", err)
		}
		waitFor(t, "the member connection to be released", func() bool { return hs.rec.open.Load() == 0 })
	})
	t.Run("http2", func(t *testing.T) {
		pr, pw := io.Pipe()
		defer pw.Close()
		req, _ := http.NewRequest(http.MethodPost, hs.srv.URL+"/upload", pr)
		req.Host = "rp.test"
		req.ContentLength = 1000
		go pw.Write([]byte("0123456789"))
		res, err := hs.c.Do(req)
		if err != nil {
			t.Fatalf("no answer to a stalled HTTP/2 body: %v", err)
		}
		res.Body.Close()
		if res.ProtoMajor != 2 || res.StatusCode != http.StatusRequestTimeout {
			t.Errorf("HTTP/%d status %d, want HTTP/2 408", res.ProtoMajor, res.StatusCode)
		}
		waitFor(t, "the member connection to be released", func() bool { return hs.rec.open.Load() == 0 })
	})
	if got := hs.px.ClientErrors()[ReasonBodyTimeout]; got != 2 {
		t.Errorf("client errors body_timeout = %d, want 2", got)
	}
	if _, failures := hs.failures(); failures != 0 || hs.downs.Load() != 0 {
		t.Errorf("pool failures %d, ejections %d, want 0, 0", failures, hs.downs.Load())
	}
	if n := hs.rec.uploads.Load(); n != 0 {
		t.Errorf("the member read %d complete uploads, want 0", n)
	}
}

// TestHostileUnreadResponse: a client that never reads a 200 MB response
// loses its connection (HTTP/1) or stream (HTTP/2) after the write idle
// timeout, and the member connection is released, on both paths.
func TestHostileUnreadResponse(t *testing.T) {
	hs := newHostile(t, config.Listener{WriteIdleTimeout: config.Duration(300 * time.Millisecond)}, Options{})
	cut := int64(0)
	for _, h := range []string{"direct.test", "rp.test"} {
		t.Run("http1/"+h, func(t *testing.T) {
			conn := hs.raw(t)
			fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: %s\r\n\r\n", h)
			cut++
			waitForWithin(t, 30*time.Second, "the member's response to be cut off", func() bool { return hs.rec.bigCut.Load() >= cut })
			waitFor(t, "the member connection to be released", func() bool { return hs.rec.open.Load() == 0 })
		})
		t.Run("http2/"+h, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, hs.srv.URL+"/big", nil)
			req.Host = h
			res, err := hs.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.ProtoMajor != 2 {
				t.Fatalf("HTTP/%d, want 2", res.ProtoMajor)
			}
			cut++
			waitForWithin(t, 30*time.Second, "the member's response to be cut off", func() bool { return hs.rec.bigCut.Load() >= cut })
			waitFor(t, "the member connection to be released", func() bool { return hs.rec.open.Load() == 0 })
		})
	}
	if got := hs.px.ClientErrors()[ReasonWriteTimeout]; got != 4 {
		t.Errorf("client errors write_timeout = %d, want 4", got)
	}
	if _, failures := hs.failures(); failures != 0 || hs.downs.Load() != 0 {
		t.Errorf("pool failures %d, ejections %d, want 0, 0", failures, hs.downs.Load())
	}
	if bad := hs.normalGETs(t, 3); bad > 0 {
		t.Errorf("%d normal requests failed", bad)
	}
}

// TestKeepAliveAfterIdle: a deadline armed for one response does not cut
// the next response on the same kept-alive connection short.
func TestKeepAliveAfterIdle(t *testing.T) {
	hs := newHostile(t, config.Listener{WriteIdleTimeout: config.Duration(100 * time.Millisecond)}, Options{})
	conn := hs.raw(t)
	br := bufio.NewReader(conn)
	for i := range 3 {
		fmt.Fprintf(conn, "HEAD / HTTP/1.1\r\nHost: direct.test\r\n\r\n")
		res, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil {
			t.Fatalf("request %d on the kept-alive connection: %v", i, err)
		}
		res.Body.Close()
		time.Sleep(250 * time.Millisecond) // idle past the write idle timeout
	}
}

// testCert returns a self-signed certificate for names.
func testCert(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestMisdirected: a request for one tenant on another tenant's TLS
// session gets 421 on HTTP/1.1 (Host header and absolute URI) and HTTP/2;
// names of the certificate that served the session (coalescing) and
// routes with allow_misdirected are served.
func TestMisdirected(t *testing.T) {
	certA := testCert(t, "app.uni-a.test", "www.uni-a.test", "*.shop.uni-a.test")
	certB := testCert(t, "app.uni-b.test", "open.uni-b.test")
	byName := func(name string) *tls.Certificate {
		switch {
		case strings.HasSuffix(name, "uni-a.test"):
			return &certA
		case strings.HasSuffix(name, "uni-b.test"):
			return &certB
		}
		return nil
	}
	a, b := newBackend(t, "a"), newBackend(t, "b")
	px, err := New(&config.Config{
		Pools: []config.Pool{poolConfig("a", "", a.addr()), poolConfig("b", "", b.addr())},
		Routes: []config.Route{
			{Host: "app.uni-a.test", Pool: "a"}, {Host: "www.uni-a.test", Pool: "a"},
			{Host: "*.shop.uni-a.test", Pool: "a"}, {Host: "*.x.shop.uni-a.test", Pool: "a"},
			{Host: "app.uni-b.test", Pool: "b"}, {Host: "open.uni-b.test", Pool: "b", AllowMisdirected: true},
		},
	}, Options{Certificate: byName})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(px)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return byName(h.ServerName), nil },
	}
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		px.Close()
	})
	addr := srv.Listener.Addr().String()

	h1 := func(t *testing.T, sni, requestLine, hostHeader string) int {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "%s HTTP/1.1\r\nHost: %s\r\n\r\n", requestLine, hostHeader)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	h2 := func(t *testing.T, sni, host string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+sni+"/", nil)
		req.Host = host
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.ProtoMajor != 2 || res.TLS.ServerName != sni {
			t.Fatalf("HTTP/%d on a session for %q, want HTTP/2 on %q", res.ProtoMajor, res.TLS.ServerName, sni)
		}
		return res.StatusCode
	}

	tests := []struct {
		name string
		do   func(t *testing.T) int
		want int
	}{
		{"h1_other_tenant", func(t *testing.T) int { return h1(t, "app.uni-a.test", "GET /", "app.uni-b.test") }, 421},
		{"h1_absolute_uri", func(t *testing.T) int {
			return h1(t, "app.uni-a.test", "GET https://app.uni-b.test/", "app.uni-a.test")
		}, 421},
		{"h2_other_tenant", func(t *testing.T) int { return h2(t, "app.uni-a.test", "app.uni-b.test") }, 421},
		{"h1_same_name", func(t *testing.T) int { return h1(t, "app.uni-a.test", "GET /", "APP.uni-a.test.:443") }, 200},
		{"h2_coalesced_same_cert", func(t *testing.T) int { return h2(t, "app.uni-a.test", "www.uni-a.test") }, 200},
		{"h2_coalesced_wildcard", func(t *testing.T) int { return h2(t, "app.uni-a.test", "x.shop.uni-a.test") }, 200},
		{"h1_wildcard_two_labels", func(t *testing.T) int { return h1(t, "app.uni-a.test", "GET /", "y.x.shop.uni-a.test") }, 421},
		{"h2_allow_misdirected_route", func(t *testing.T) int { return h2(t, "app.uni-a.test", "open.uni-b.test") }, 200},
		{"h2_reverse", func(t *testing.T) int { return h2(t, "app.uni-b.test", "app.uni-a.test") }, 421},
		// No server name: the certificate served for none covers no tenant.
		{"h1_no_sni", func(t *testing.T) int { return h1(t, "", "GET /", "app.uni-a.test") }, 421},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.do(t); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	for _, r := range b.requests() {
		if r.Host != "open.uni-b.test" {
			t.Errorf("tenant b's member received a misdirected request for %q", r.Host)
		}
	}
	if got := px.ClientErrors()[ReasonMisdirected]; got != 6 {
		t.Errorf("client errors misdirected = %d, want 6", got)
	}
	same := &http.Request{Host: "app.uni-a.test:443", TLS: &tls.ConnectionState{ServerName: "App.uni-a.test"}}
	coalesced := &http.Request{Host: "x.shop.uni-a.test", TLS: &tls.ConnectionState{ServerName: "app.uni-a.test"}}
	if n := testing.AllocsPerRun(100, func() {
		if px.misdirected(same) || px.misdirected(coalesced) {
			t.Fatal("misdirected")
		}
	}); n != 0 {
		t.Errorf("the check allocates %v times per request, want 0", n)
	}
}

// TestContentLengthWithChunked: a request with both Content-Length and
// Transfer-Encoding is answered and its connection closed (RFC 9112,
// section 6.3); the member receives the chunked body without the
// Content-Length. A request with Content-Length only keeps its connection.
func TestContentLengthWithChunked(t *testing.T) {
	hs := newHostile(t, config.Listener{}, Options{})
	conn := hs.raw(t)
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"7\r\nsmuggle\r\n0\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(body) != "7" || !res.Close {
		t.Errorf("CL+TE: status %d body %q close %v, want 200 \"7\" and Connection: close", res.StatusCode, body, res.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection stays open after a CL+TE request (read: %v)", err)
	}
	got := hs.rec.received()
	if strings.Contains(strings.ToLower(got), "content-length: 5") {
		t.Errorf("the member received the Content-Length beside Transfer-Encoding:\n%s", got)
	}

	conn = hs.raw(t)
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nContent-Length: 5\r\n\r\nhello")
	res, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.Close {
		t.Error("a request with Content-Length only closes its connection")
	}
}

// TestEdgeHeaders: X-Real-Ip is the client's address, never the client's
// own value; header names with underscores are dropped (default),
// refused or passed; on both paths.
func TestEdgeHeaders(t *testing.T) {
	for _, mode := range []string{"", config.UnderscoreReject, config.UnderscorePass} {
		for _, pool := range []string{"direct", "rp"} {
			t.Run(mode+"/"+pool, func(t *testing.T) {
				be := newBackend(t, "a")
				pc := poolConfig("p", "", be.addr())
				if pool == "rp" {
					pc.MaxConnsPerMember = 8
				}
				f := newFront(t, &config.Config{
					Listeners: config.Listeners{HTTPS: config.Listener{UnderscoreHeaders: mode}},
					Pools:     []config.Pool{pc},
					Routes:    []config.Route{{Host: host, Pool: "p"}},
				}, Options{})
				res, _ := f.do(t, http.MethodGet, host, "/", nil, http.Header{
					"X-Real-Ip":       {"6.6.6.6"},
					"X-Forwarded-For": {"6.6.6.6"},
					"X_tenant":        {"evil"},
				})
				if mode == config.UnderscoreReject {
					if res.StatusCode != http.StatusBadRequest || len(be.requests()) != 0 {
						t.Errorf("reject: status %d, member saw %d requests; want 400, 0", res.StatusCode, len(be.requests()))
					}
					return
				}
				seen := be.requests()
				if res.StatusCode != 200 || len(seen) != 1 {
					t.Fatalf("status %d, member saw %d requests", res.StatusCode, len(seen))
				}
				h := seen[0].Header
				if got := h["X-Real-Ip"]; len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("X-Real-Ip = %q, want [127.0.0.1]", got)
				}
				if got := h["X-Forwarded-For"]; len(got) != 1 || got[0] != "127.0.0.1" {
					t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got)
				}
				if _, ok := h["X_tenant"]; ok != (mode == config.UnderscorePass) {
					t.Errorf("mode %q: member saw X_tenant: %v", mode, ok)
				}
			})
		}
	}
}

// TestAbortedRequestLogSampled: a flood of HTTP/2 streams reset by the
// client writes at most abortedLinesPerSecond access-log lines a second.
func TestAbortedRequestLogSampled(t *testing.T) {
	be := newBackend(t, "a")
	var logs lockedWriter
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", be.addr())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{AccessLog: true, Logger: newTextLogger(&logs), Now: func() time.Time { return now }})
	const streams = 100
	for range streams {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/slow", nil)
		req.Host = host
		before := len(be.requests())
		done := make(chan struct{})
		go func() {
			defer close(done)
			if res, err := f.c.Do(req); err == nil {
				res.Body.Close()
			}
		}()
		waitFor(t, "the member to hold the request", func() bool { return len(be.requests()) > before })
		cancel()
		<-done
	}
	waitFor(t, "every aborted request to finish", func() bool { return f.px.ClientErrors()[ReasonAborted] >= streams })
	if code, _ := f.get(t, host, "/"); code != 200 {
		t.Fatalf("status %d", code)
	}
	lines := strings.Count(logs.String(), "msg=request")
	if lines > abortedLinesPerSecond+1 {
		t.Errorf("%d access-log lines for %d reset streams and one normal request, want at most %d", lines, streams, abortedLinesPerSecond+1)
	}
	if lines < abortedLinesPerSecond {
		t.Errorf("%d access-log lines, want the first %d aborted ones logged", lines, abortedLinesPerSecond)
	}
}

// TestClientErrorCountingDoesNotAllocate: counting a client error, and
// classifying the common body and write errors, costs no allocation.
func TestClientErrorCountingDoesNotAllocate(t *testing.T) {
	var c clientErrors
	err := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	if n := testing.AllocsPerRun(100, func() {
		c.add(bodyReason(err))
		c.add(writeReason(os.ErrDeadlineExceeded))
	}); n != 0 {
		t.Errorf("counting allocates %v times", n)
	}
	if got := c.n[reasonReset].Load(); got != 101 {
		t.Errorf("reset counted %d times, want 101", got)
	}
	if got := c.n[reasonWriteTimeout].Load(); got != 101 {
		t.Errorf("write_timeout counted %d times, want 101", got)
	}
}

// TestRouteTimeouts: a route's body_read_timeout and write_idle_timeout
// override the listener's.
func TestRouteTimeouts(t *testing.T) {
	rec := newRecorder(t)
	pc := poolConfig("rp", "", rec.addr())
	pc.MaxConnsPerMember = 8
	f := newFront(t, &config.Config{
		Listeners: config.Listeners{HTTPS: config.Listener{
			BodyReadTimeout: config.Duration(time.Hour), WriteIdleTimeout: config.Duration(time.Hour)}},
		Pools: []config.Pool{pc, poolConfig("direct", "", rec.addr())},
		Routes: []config.Route{
			{Host: "rp.test", Pool: "rp", BodyReadTimeout: config.Duration(200 * time.Millisecond)},
			{Host: "direct.test", Pool: "direct", WriteIdleTimeout: config.Duration(200 * time.Millisecond)},
		},
	}, Options{})
	hs := &hostileSetup{front: f, rec: rec}

	conn := hs.raw(t)
	io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: rp.test\r\nContent-Length: 1000\r\n\r\n0123456789")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("stalled body on a route with body_read_timeout: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want 408", res.StatusCode)
	}

	conn = hs.raw(t)
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: direct.test\r\n\r\n")
	// The edge reads until the socket buffers toward the client are full
	// (megabytes through TLS) before its writes stall; under -race on a
	// busy machine that alone can take seconds.
	waitForWithin(t, 30*time.Second, "the unread response to be cut off", func() bool { return rec.bigCut.Load() == 1 })
	waitForWithin(t, 30*time.Second, "the member connections to be released", func() bool { return rec.open.Load() == 0 })
}
