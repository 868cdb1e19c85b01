package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
)

func TestDirectOK(t *testing.T) {
	tests := []struct {
		name   string
		method string
		body   string
		hdr    http.Header
		want   bool
	}{
		{"get", http.MethodGet, "", nil, true},
		{"head", http.MethodHead, "", nil, true},
		{"post_with_body", http.MethodPost, "x", nil, false},
		{"post_without_body", http.MethodPost, "", nil, false},
		{"post_with_idempotency_key", http.MethodPost, "", http.Header{"Idempotency-Key": {"k"}}, true},
		{"delete", http.MethodDelete, "", nil, false},
		{"upgrade", http.MethodGet, "", http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"}}, false},
		{"te_trailers", http.MethodGet, "", http.Header{"Te": {"trailers"}}, false},
		{"connect", http.MethodConnect, "", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader = http.NoBody
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, "/", body)
			for k, v := range tc.hdr {
				r.Header[k] = v
			}
			if got := directOK(r); got != tc.want {
				t.Errorf("directOK = %v, want %v", got, tc.want)
			}
		})
	}
}

// h1Client returns a client of f's TLS server that speaks HTTP/1.1 only.
func h1Client(t *testing.T, f *front) *http.Client {
	t.Helper()
	tr := f.srv.Client().Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// countConns counts the connections a test server accepts.
func countConns(s *httptest.Server) *atomic.Int64 {
	var n atomic.Int64
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

func TestDirectHeadersAndTrailers(t *testing.T) {
	seen := make(chan http.Header, 10)
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Clone()
		h := w.Header()
		h.Set("Connection", "X-Hop")
		h.Set("X-Hop", "1")
		h.Set("Keep-Alive", "timeout=5")
		h.Set("X-End", "1")
		h.Set("X-Request-Id", "from-backend")
		h.Set("Trailer", "X-Trailer")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "part one, ")
		w.(http.Flusher).Flush() // chunked
		io.WriteString(w, "part two")
		h.Set("X-Trailer", "done")
	}))
	conns := countConns(be)
	be.Start()
	t.Cleanup(be.Close)
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", be.Listener.Addr().String())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})

	clients := []struct {
		name      string
		c         *http.Client
		wantProto string
	}{
		{"http1", h1Client(t, f), "HTTP/1.1"},
		{"http2", f.c, "HTTP/2.0"},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/h?x=1", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			req.Header.Set("X-End-Req", "1")
			req.Header.Set("Forwarded", "for=6.6.6.6")
			if cl.name == "http1" {
				req.Header.Set("Connection", "X-Client-Hop")
				req.Header.Set("X-Client-Hop", "1")
				req.Header.Set("Keep-Alive", "timeout=5")
			}
			res, err := cl.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			in := <-seen
			got := map[string]string{
				"proto":           res.Proto,
				"status":          res.Status,
				"body":            string(body),
				"X-End":           res.Header.Get("X-End"),
				"X-Hop":           res.Header.Get("X-Hop"),
				"Keep-Alive":      res.Header.Get("Keep-Alive"),
				"trailer":         res.Trailer.Get("X-Trailer"),
				"id equal":        boolString(res.Header.Get("X-Request-Id") == in.Get("X-Request-Id")),
				"in X-End-Req":    in.Get("X-End-Req"),
				"in X-Client-Hop": in.Get("X-Client-Hop"),
				"in Keep-Alive":   in.Get("Keep-Alive"),
				"in Connection":   in.Get("Connection"),
				"in Forwarded":    in.Get("Forwarded"),
				"in User-Agent":   in.Get("User-Agent"),
				"in X-F-Proto":    in.Get("X-Forwarded-Proto"),
				"in X-F-Host":     in.Get("X-Forwarded-Host"),
			}
			want := map[string]string{
				"proto":           cl.wantProto,
				"status":          "201 Created",
				"body":            "part one, part two",
				"X-End":           "1",
				"X-Hop":           "",
				"Keep-Alive":      "",
				"trailer":         "done",
				"id equal":        "true",
				"in X-End-Req":    "1",
				"in X-Client-Hop": "",
				"in Keep-Alive":   "",
				"in Connection":   "",
				"in Forwarded":    "",
				"in User-Agent":   "Go-http-client/1.1",
				"in X-F-Proto":    "https",
				"in X-F-Host":     host,
			}
			if cl.name == "http2" {
				want["in User-Agent"] = "Go-http-client/2.0"
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
	// Both requests took the direct path over one kept-alive connection.
	m := f.px.byName["p"].members[0]
	m.conns.mu.Lock()
	idle := len(m.conns.idle)
	m.conns.mu.Unlock()
	if got := []int64{int64(idle), conns.Load()}; !cmp.Equal(got, []int64{1, 1}) {
		t.Errorf("idle direct connections, backend connections = %v, want [1 1]", got)
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestDirectStaleConnectionRetried(t *testing.T) {
	b := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
	}))
	conns := countConns(b)
	b.Start()
	t.Cleanup(b.Close)
	addr := b.Listener.Addr().String()
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", addr)},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})
	for i := range 3 {
		// The member drops its idle connections between requests: the
		// next request fails on the kept one and is sent again on a new
		// connection.
		b.CloseClientConnections()
		if code, body := f.get(t, host, "/"); code != http.StatusOK || body != "a" {
			t.Fatalf("request %d: status %d, body %q, want 200 %q", i, code, body, "a")
		}
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("backend connections %d, want 3", got)
	}
	if !memberUp(f.px, "p", addr) {
		t.Error("member marked down by stale connections")
	}
}

func TestDirectClientCancelAbortsMember(t *testing.T) {
	started := make(chan struct{}, 1)
	canceled := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
		canceled <- struct{}{}
	}))
	t.Cleanup(be.Close)
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", be.Listener.Addr().String())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+"/wait", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	errc := make(chan error, 1)
	go func() {
		res, err := f.c.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	waitChan(t, "the member to get the request", started)
	cancel()
	if err := <-errc; err == nil {
		t.Error("canceled request succeeded")
	}
	// The proxy closes its connection to the member, which cancels the
	// member's request.
	waitChan(t, "the member's request to be canceled", canceled)
}

// waitChan waits up to 5 s for a value on c.
func waitChan(t *testing.T, what string, c <-chan struct{}) {
	t.Helper()
	timer := time.NewTimer(5 * time.Second)
	defer timer.Stop()
	select {
	case <-c:
	case <-timer.C:
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestDirectBodies(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10000) // 160 KB, several copy buffers
	next := make(chan struct{})
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, big)
		case "/stream":
			// Unknown length: each part must reach the client before
			// the next is written.
			for _, part := range []string{"one", "two"} {
				io.WriteString(w, part)
				w.(http.Flusher).Flush()
				<-next
			}
		}
	}))
	t.Cleanup(be.Close)
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", be.Listener.Addr().String())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})
	t.Run("big", func(t *testing.T) {
		code, body := f.get(t, host, "/big")
		if code != http.StatusOK || body != big {
			t.Errorf("status %d, body of %d bytes, want 200 and %d bytes", code, len(body), len(big))
		}
	})
	t.Run("head", func(t *testing.T) {
		res, body := f.do(t, http.MethodHead, host, "/big", nil, nil)
		if got, want := []any{res.StatusCode, body}, []any{200, ""}; !cmp.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
	t.Run("stream", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		res, err := f.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var got []string
		buf := make([]byte, 3)
		for range 2 {
			if _, err := io.ReadFull(res.Body, buf); err != nil {
				t.Fatalf("reading a streamed part: %v", err)
			}
			got = append(got, string(buf))
			next <- struct{}{}
		}
		if diff := cmp.Diff(got, []string{"one", "two"}); diff != "" {
			t.Errorf("parts (-got +want):\n%s", diff)
		}
	})
}
