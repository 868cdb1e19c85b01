package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/waittest"
)

// backend is a real member server that answers with its name and records
// what it saw.
type backend struct {
	name string
	*httptest.Server
	healthy atomic.Bool
	held    atomic.Int64  // requests currently blocked in /hold
	release chan struct{} // closed to let /hold requests finish

	mu   sync.Mutex
	seen []*http.Request // clones of the requests received (except health checks)
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name, release: make(chan struct{})}
	b.healthy.Store(true)
	b.Server = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(func() {
		b.unhold()
		b.Close()
	})
	return b
}

func (b *backend) unhold() {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.release:
	default:
		close(b.release)
	}
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		if !b.healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	b.mu.Lock()
	b.seen = append(b.seen, r.Clone(r.Context()))
	b.mu.Unlock()
	switch r.URL.Path {
	case "/hold":
		b.held.Add(1)
		<-b.release
		b.held.Add(-1)
	case "/close":
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	case "/slow":
		select {
		case <-r.Context().Done():
		case <-b.release:
		}
		return
	}
	w.Header().Set("X-Request-Id", "from-backend")
	io.WriteString(w, b.name)
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

func (b *backend) requests() []*http.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*http.Request(nil), b.seen...)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// front runs px behind a real TLS server with HTTP/2 enabled.
type front struct {
	px  *Proxy
	srv *httptest.Server
	c   *http.Client
}

func newFront(t *testing.T, cfg *config.Config, opts Options) *front {
	t.Helper()
	px, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewUnstartedServer(px)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		px.Close()
	})
	return &front{px: px, srv: srv, c: srv.Client()}
}

// get requests path on host through the front and returns the status and
// body.
func (f *front) do(t *testing.T, method, host, path string, body io.Reader, hdr http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := f.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s: %v", method, host, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s%s: reading body: %v", method, host, path, err)
	}
	return res, string(b)
}

func (f *front) get(t *testing.T, host, path string) (int, string) {
	t.Helper()
	res, body := f.do(t, http.MethodGet, host, path, nil, nil)
	return res.StatusCode, body
}

// poolConfig is a pool of the given backends (addresses) with weights 1.
func poolConfig(name string, algo config.Algorithm, addrs ...string) config.Pool {
	p := config.Pool{Name: name, Algorithm: algo}
	for _, a := range addrs {
		p.Members = append(p.Members, config.Member{Address: a})
	}
	return p
}

func fastHealth() config.HealthCheck {
	return config.HealthCheck{
		Path:     "/health",
		Interval: config.Duration(10 * time.Millisecond),
		Timeout:  config.Duration(500 * time.Millisecond),
		Rise:     1,
		Fall:     1,
	}
}

// waitFor polls cond until it holds or waittest.DefaultWithin passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, 0, what, cond)
}

// waitForWithin is waitFor with its own bound, for waits that move megabytes
// through TLS (slow under the race detector on a busy machine).
func waitForWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, max(d, waittest.DefaultWithin), what, cond)
}

// memberUp reports the state of a member in px.
func memberUp(px *Proxy, pool, addr string) bool {
	for _, p := range px.Pools() {
		if p.Name != pool {
			continue
		}
		for _, m := range p.Members {
			if m.Address == addr {
				return m.Up
			}
		}
	}
	return false
}

// count tallies answers by body.
func count(t *testing.T, f *front, host, path string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		code, body := f.get(t, host, path)
		if code != http.StatusOK {
			t.Fatalf("GET %s%s: status %d, body %q", host, path, code, body)
		}
		got[body]++
	}
	return got
}

// lockedWriter collects log output written from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
