package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
)

// fakeClock is the injected clock of the cache tests; the origins date
// their answers with it too.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// origin is a member whose answer the test sets, counting the requests
// it gets per path.
type origin struct {
	*httptest.Server
	clock   *fakeClock
	healthy atomic.Bool

	mu      sync.Mutex
	handler http.HandlerFunc
	hits    map[string]int
	last    http.Header
}

func newOrigin(t *testing.T, clock *fakeClock, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{clock: clock, handler: h, hits: map[string]int{}}
	o.healthy.Store(true)
	o.Server = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.Close)
	return o
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		if !o.healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	o.mu.Lock()
	o.hits[r.URL.Path]++
	o.last = r.Header.Clone()
	h := o.handler
	o.mu.Unlock()
	w.Header().Set("Date", o.clock.Now().UTC().Format(http.TimeFormat))
	h(w, r)
}

func (o *origin) set(h http.HandlerFunc) {
	o.mu.Lock()
	o.handler = h
	o.mu.Unlock()
}

func (o *origin) count(path string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits[path]
}

func (o *origin) lastRequest() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

func (o *origin) addr() string { return o.Listener.Addr().String() }

// respond answers with the body and header fields given as name, value
// pairs.
func respond(status int, body string, kv ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < len(kv); i += 2 {
			w.Header().Add(kv[i], kv[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// forwardingPaths are the two ways to a member: the direct path, and
// ReverseProxy (taken when connections per member are capped).
var forwardingPaths = []struct {
	name     string
	maxConns int
}{{"direct", 0}, {"reverseproxy", 8}}

// cacheConfig routes host to a caching route over one pool of addrs.
func cacheConfig(maxConns int, rc config.RouteCache, addrs ...string) *config.Config {
	pc := poolConfig("p", "", addrs...)
	pc.MaxConnsPerMember = maxConns
	rc.Enabled = true
	return &config.Config{
		Pools:  []config.Pool{pc},
		Routes: []config.Route{{Host: host, Pool: "p", Cache: rc}},
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestCacheStores(t *testing.T) {
	clock := newFakeClock()
	tests := []struct {
		name    string
		status  int
		fields  []string    // response fields
		req     http.Header // request fields
		ttl     time.Duration
		wantHit bool // the second GET is answered from the cache
	}{
		{"max-age", 200, []string{"Cache-Control", "max-age=60"}, nil, 0, true},
		{"s-maxage", 200, []string{"Cache-Control", "s-maxage=60"}, nil, 0, true},
		{"expires", 200, []string{"Expires", "EXPIRES"}, nil, 0, true},
		{"404 with max-age", 404, []string{"Cache-Control", "max-age=60"}, nil, 0, true},
		{"no freshness, default_ttl", 200, nil, nil, time.Minute, true},
		{"no freshness, no default_ttl", 200, nil, nil, 0, false},
		{"no-store", 200, []string{"Cache-Control", "no-store, max-age=60"}, nil, 0, false},
		{"private", 200, []string{"Cache-Control", "private, max-age=60"}, nil, 0, false},
		{"no-cache", 200, []string{"Cache-Control", "no-cache, max-age=60"}, nil, 0, false},
		{"set-cookie", 200, []string{"Cache-Control", "public, max-age=60", "Set-Cookie", "s=1"}, nil, 0, false},
		{"vary star", 200, []string{"Cache-Control", "max-age=60", "Vary", "*"}, nil, 0, false},
		{"500", 500, []string{"Cache-Control", "max-age=60"}, nil, 0, false},
		{"authorization", 200, []string{"Cache-Control", "max-age=60"}, hdr("Authorization", "Bearer t"), 0, false},
		{"authorization, public", 200, []string{"Cache-Control", "public, max-age=60"}, hdr("Authorization", "Bearer t"), 0, true},
		{"cookie", 200, []string{"Cache-Control", "max-age=60"}, hdr("Cookie", "s=1"), 0, false},
		{"cookie, public", 200, []string{"Cache-Control", "public, max-age=60"}, hdr("Cookie", "s=1"), 0, true},
		{"request no-store", 200, []string{"Cache-Control", "max-age=60"}, hdr("Cache-Control", "no-store"), 0, false},
	}
	for _, fp := range forwardingPaths {
		t.Run(fp.name, func(t *testing.T) {
			o := newOrigin(t, clock, nil)
			f := newFront(t, cacheConfig(fp.maxConns, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
			// The default TTL is per route: one more route for it.
			ttlCfg := cacheConfig(fp.maxConns, config.RouteCache{DefaultTTL: config.Duration(time.Minute)}, o.addr())
			fttl := newFront(t, ttlCfg, Options{Now: clock.Now})
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					fields := append([]string(nil), tt.fields...)
					for j := range fields {
						if fields[j] == "EXPIRES" {
							fields[j] = clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
						}
					}
					o.set(respond(tt.status, "body "+tt.name, fields...))
					ff := f
					if tt.ttl > 0 {
						ff = fttl
					}
					path := fmt.Sprintf("/%s/%d", fp.name, i)
					var statuses []string
					for range 2 {
						res, body := ff.do(t, http.MethodGet, host, path, nil, tt.req)
						if res.StatusCode != tt.status || body != "body "+tt.name {
							t.Fatalf("GET: %d %q, want %d %q", res.StatusCode, body, tt.status, "body "+tt.name)
						}
						statuses = append(statuses, res.Header.Get("Cache-Status"))
					}
					wantCount := 2
					if tt.wantHit {
						wantCount = 1
					}
					if got := o.count(path); got != wantCount {
						t.Errorf("origin got %d requests, want %d (Cache-Status %q)", got, wantCount, statuses)
					}
					if hit := strings.HasPrefix(statuses[1], "gatehouse; hit"); hit != tt.wantHit {
						t.Errorf("second Cache-Status %q, want hit %v", statuses[1], tt.wantHit)
					}
				})
			}
		})
	}
}

func TestCacheHitAnswer(t *testing.T) {
	clock := newFakeClock()
	o := newOrigin(t, clock, respond(200, "hello", "Cache-Control", "max-age=60", "Etag", `"v1"`, "Content-Type", "text/plain"))
	f := newFront(t, cacheConfig(0, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
	first, _ := f.do(t, http.MethodGet, host, "/a?x=1", nil, nil)
	clock.Advance(10 * time.Second)

	type answer struct {
		Status                            int
		Body, CacheStatus, Age, Type, Len string
		HasID                             bool
	}
	tests := []struct {
		name   string
		method string
		path   string
		req    http.Header
		want   answer
	}{
		{"GET hit", "GET", "/a?x=1", nil, answer{200, "hello", "gatehouse; hit; ttl=50", "10", "text/plain", "5", true}},
		{"HEAD from the stored GET", "HEAD", "/a?x=1", nil, answer{200, "", "gatehouse; hit; ttl=50", "10", "text/plain", "5", true}},
		{"conditional GET", "GET", "/a?x=1", hdr("If-None-Match", `"v1"`), answer{304, "", "gatehouse; hit; ttl=50", "10", "text/plain", "", true}},
		{"other query is another key", "GET", "/a?x=2", nil, answer{200, "hello", "gatehouse; fwd=uri-miss; fwd-status=200; stored", "", "text/plain", "5", true}},
		{"request no-cache revalidates", "GET", "/a?x=1", hdr("Cache-Control", "no-cache"), answer{200, "hello", "gatehouse; fwd=request; fwd-status=200; stored", "", "text/plain", "5", true}},
		{"range bypasses", "GET", "/a?x=1", hdr("Range", "bytes=0-1"), answer{200, "hello", "gatehouse; fwd=bypass", "", "text/plain", "5", true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := f.do(t, tt.method, host, tt.path, nil, tt.req)
			got := answer{res.StatusCode, body, res.Header.Get("Cache-Status"), res.Header.Get("Age"),
				res.Header.Get("Content-Type"), res.Header.Get("Content-Length"), res.Header.Get("X-Request-Id") != ""}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
	if got := first.Header.Get("Cache-Status"); got != "gatehouse; fwd=uri-miss; fwd-status=200; stored" {
		t.Errorf("first Cache-Status %q", got)
	}
	if got := o.count("/a"); got != 4 {
		t.Errorf("origin got %d requests, want 4 (first, x=2, no-cache, range)", got)
	}
}

func TestCacheVary(t *testing.T) {
	clock := newFakeClock()
	o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "enc="+r.Header.Get("Accept-Encoding"))
	})
	f := newFront(t, cacheConfig(0, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
	tests := []struct {
		enc, wantBody, wantStatus string
		wantCount                 int
	}{
		{"gzip", "enc=gzip", "gatehouse; fwd=uri-miss; fwd-status=200; stored", 1},
		{"br", "enc=br", "gatehouse; fwd=vary-miss; fwd-status=200; stored", 2},
		{"gzip", "enc=gzip", "gatehouse; hit; ttl=60", 2},
		{"br", "enc=br", "gatehouse; hit; ttl=60", 2},
		{"identity", "enc=identity", "gatehouse; fwd=vary-miss; fwd-status=200; stored", 3},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i, tt.enc), func(t *testing.T) {
			res, body := f.do(t, http.MethodGet, host, "/v", nil, hdr("Accept-Encoding", tt.enc))
			got := []string{body, res.Header.Get("Cache-Status"), strconv.Itoa(o.count("/v"))}
			want := []string{tt.wantBody, tt.wantStatus, strconv.Itoa(tt.wantCount)}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestCacheRevalidation(t *testing.T) {
	lastMod := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Format(http.TimeFormat)
	validators := []struct {
		name          string
		field, value  string
		cond, condVal string
	}{
		{"etag", "Etag", `"v1"`, "If-None-Match", `"v1"`},
		{"last-modified", "Last-Modified", lastMod, "If-Modified-Since", lastMod},
	}
	for _, fp := range forwardingPaths {
		for _, v := range validators {
			t.Run(fp.name+"/"+v.name, func(t *testing.T) {
				clock := newFakeClock()
				o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Cache-Control", "max-age=60")
					w.Header().Set(v.field, v.value)
					if r.Header.Get(v.cond) == v.condVal {
						w.Header().Set("X-Refreshed", "yes")
						w.WriteHeader(http.StatusNotModified)
						return
					}
					io.WriteString(w, "content")
				})
				f := newFront(t, cacheConfig(fp.maxConns, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
				type step struct {
					Status               int
					Body, CacheStatus    string
					Count                int
					SentCond, XRefreshed string
				}
				get := func() step {
					res, body := f.do(t, http.MethodGet, host, "/r", nil, nil)
					return step{res.StatusCode, body, res.Header.Get("Cache-Status"), o.count("/r"),
						o.lastRequest().Get(v.cond), res.Header.Get("X-Refreshed")}
				}
				var got []step
				got = append(got, get(), get())
				clock.Advance(61 * time.Second)
				got = append(got, get(), get())
				want := []step{
					{200, "content", "gatehouse; fwd=uri-miss; fwd-status=200; stored", 1, "", ""},
					{200, "content", "gatehouse; hit; ttl=60", 1, "", ""},
					{200, "content", "gatehouse; fwd=stale; fwd-status=304; ttl=60", 2, v.condVal, "yes"},
					{200, "content", "gatehouse; hit; ttl=60", 2, v.condVal, "yes"},
				}
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("(-got +want):\n%s", diff)
				}
				if s := f.px.CacheStats(); s.Revalidated != 1 || s.Hits != 2 {
					t.Errorf("stats %+v, want 1 revalidated and 2 hits", s)
				}
			})
		}
	}
}

// failure makes an origin fail in one way and reports the status the
// edge answers with.
type failure struct {
	name       string
	wantStatus int
	setup      func(t *testing.T, f *front, o *origin)
}

var failures = []failure{
	{"no healthy member", http.StatusServiceUnavailable, func(t *testing.T, f *front, o *origin) {
		o.healthy.Store(false)
		waitFor(t, "member down", func() bool { return !memberUp(f.px, "p", o.addr()) })
	}},
	{"member answers 500", http.StatusInternalServerError, func(t *testing.T, f *front, o *origin) {
		o.set(respond(http.StatusInternalServerError, "boom"))
	}},
	{"connection refused", http.StatusBadGateway, func(t *testing.T, f *front, o *origin) {
		o.Close()
	}},
	{"member times out", http.StatusGatewayTimeout, func(t *testing.T, f *front, o *origin) {
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		o.set(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
	}},
}

// staleFront is a caching front over one origin with active checks and
// a short response header timeout.
func staleFront(t *testing.T, maxConns int, rc config.RouteCache, clock *fakeClock, o *origin) *front {
	cfg := cacheConfig(maxConns, rc, o.addr())
	cfg.Pools[0].HealthCheck = fastHealth()
	cfg.Pools[0].Retries = -1
	cfg.Pools[0].Timeouts.ResponseHeader = config.Duration(100 * time.Millisecond)
	return newFront(t, cfg, Options{Now: clock.Now})
}

func TestCacheStaleIfError(t *testing.T) {
	for _, fp := range forwardingPaths {
		for _, fl := range failures {
			t.Run(fp.name+"/"+fl.name, func(t *testing.T) {
				clock := newFakeClock()
				o := newOrigin(t, clock, respond(200, "cached page", "Cache-Control", "max-age=60", "Content-Type", "text/html"))
				f := staleFront(t, fp.maxConns, config.RouteCache{}, clock, o)
				if _, body := f.do(t, http.MethodGet, host, "/page", nil, nil); body != "cached page" {
					t.Fatalf("priming GET: %q", body)
				}
				clock.Advance(time.Hour)
				fl.setup(t, f, o)
				res, body := f.do(t, http.MethodGet, host, "/page", nil, nil)
				type answer struct {
					Status                          int
					Body, Age, CacheStatus, Warning string
					Type                            string
					HasID                           bool
				}
				got := answer{res.StatusCode, body, res.Header.Get("Age"), res.Header.Get("Cache-Status"),
					res.Header.Get("Warning"), res.Header.Get("Content-Type"), res.Header.Get("X-Request-Id") != ""}
				wantStatus := fl.wantStatus
				if fl.wantStatus == http.StatusBadGateway && strings.Contains(got.CacheStatus, "fwd-status=503") {
					// The active check saw the closed member first: the
					// pool had no healthy member left (503), also a
					// failure that the stale copy stands in for.
					wantStatus = http.StatusServiceUnavailable
				}
				want := answer{200, "cached page", "3600",
					fmt.Sprintf("gatehouse; fwd=stale; fwd-status=%d; ttl=-3540; detail=stale-if-error", wantStatus),
					`110 gatehouse "Response is Stale"`, "text/html", true}
				if diff := cmp.Diff(got, want); diff != "" {
					t.Errorf("(-got +want):\n%s", diff)
				}
				// HEAD gets the stale stand-in too.
				res, body = f.do(t, http.MethodHead, host, "/page", nil, nil)
				if res.StatusCode != 200 || body != "" || res.Header.Get("Content-Length") != "11" {
					t.Errorf("HEAD: %d %q Content-Length %q, want 200, no body, 11", res.StatusCode, body, res.Header.Get("Content-Length"))
				}
				if s := f.px.CacheStats(); s.Stale != 2 {
					t.Errorf("Stale = %d, want 2", s.Stale)
				}
				// The failures still count against the pool.
				if ps := f.px.Pools()[0]; ps.Failures != 2 {
					t.Errorf("pool failures = %d, want 2", ps.Failures)
				}
			})
		}
	}
}

func TestCacheStaleLimits(t *testing.T) {
	tests := []struct {
		name     string
		cc       string
		maxStale time.Duration
		after    time.Duration
		wantHit  bool // a stale response stands in
	}{
		{"within max_stale", "max-age=60", time.Hour, 30 * time.Minute, true},
		{"beyond max_stale", "max-age=60", time.Hour, 2 * time.Hour, false},
		{"beyond the default 24h", "max-age=60", 0, 25 * time.Hour, false},
		{"within the default 24h", "max-age=60", 0, 23 * time.Hour, true},
		{"within own stale-if-error", "max-age=60, stale-if-error=60", time.Hour, 90 * time.Second, true},
		{"beyond own stale-if-error", "max-age=60, stale-if-error=60", time.Hour, 3 * time.Minute, false},
		{"must-revalidate", "max-age=60, must-revalidate", time.Hour, 2 * time.Minute, false},
		{"no freshness info is a stand-in", "", time.Hour, 2 * time.Minute, true},
	}
	for _, fl := range failures[:2] {
		for _, tt := range tests {
			t.Run(fl.name+"/"+tt.name, func(t *testing.T) {
				clock := newFakeClock()
				var fields []string
				if tt.cc != "" {
					fields = []string{"Cache-Control", tt.cc}
				}
				o := newOrigin(t, clock, respond(200, "cached page", fields...))
				f := staleFront(t, 0, config.RouteCache{MaxStale: config.Duration(tt.maxStale)}, clock, o)
				f.do(t, http.MethodGet, host, "/page", nil, nil)
				clock.Advance(tt.after)
				fl.setup(t, f, o)
				res, body := f.do(t, http.MethodGet, host, "/page", nil, nil)
				if tt.wantHit {
					if res.StatusCode != 200 || body != "cached page" {
						t.Errorf("got %d %q, want the stale page", res.StatusCode, body)
					}
					return
				}
				if res.StatusCode != fl.wantStatus || res.Header.Get("Warning") != "" {
					t.Errorf("got %d (Warning %q), want the error %d", res.StatusCode, res.Header.Get("Warning"), fl.wantStatus)
				}
				if fl.wantStatus == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "" {
					t.Error("503 without Retry-After")
				}
			})
		}
	}
}

func TestCacheMemoryBound(t *testing.T) {
	clock := newFakeClock()
	body := strings.Repeat("x", 16<<10)
	o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch r.URL.Path {
		case "/big":
			io.WriteString(w, strings.Repeat("b", 100<<10))
		case "/big-chunked":
			for range 10 {
				io.WriteString(w, strings.Repeat("c", 10<<10))
				w.(http.Flusher).Flush()
			}
		default:
			io.WriteString(w, body)
		}
	})
	cfg := cacheConfig(0, config.RouteCache{}, o.addr())
	cfg.ResponseCache = config.ResponseCache{MaxBytes: 1 << 20, MaxObjectBytes: 64 << 10}
	f := newFront(t, cfg, Options{Now: clock.Now})
	const n = 200
	for i := range n {
		if code, got := f.get(t, host, fmt.Sprintf("/o/%d", i)); code != 200 || len(got) != len(body) {
			t.Fatalf("GET /o/%d: %d, %d bytes", i, code, len(got))
		}
	}
	s := f.px.CacheStats()
	if s.Bytes > s.Limit || s.Limit != 1<<20 || s.Bytes < s.Limit/2 {
		t.Errorf("cache holds %d bytes of limit %d, want within limit and at least half full", s.Bytes, s.Limit)
	}
	if s.Stored != n || s.Entries >= n || s.Entries < 30 {
		t.Errorf("stored %d, holding %d entries; want %d stored and some evicted", s.Stored, s.Entries, n)
	}
	// The newest is still there.
	if res, _ := f.do(t, http.MethodGet, host, fmt.Sprintf("/o/%d", n-1), nil, nil); !strings.HasPrefix(res.Header.Get("Cache-Status"), "gatehouse; hit") {
		t.Errorf("newest object: Cache-Status %q, want a hit", res.Header.Get("Cache-Status"))
	}
	// Objects over max_object_bytes pass through unstored, with or
	// without Content-Length.
	for _, path := range []string{"/big", "/big-chunked"} {
		for range 2 {
			if code, got := f.get(t, host, path); code != 200 || len(got) != 100<<10 {
				t.Fatalf("GET %s: %d, %d bytes", path, code, len(got))
			}
		}
		if got := o.count(path); got != 2 {
			t.Errorf("origin got %d requests for %s, want 2 (not stored)", got, path)
		}
	}
}

func TestCacheCoalescesMisses(t *testing.T) {
	clock := newFakeClock()
	release := make(chan struct{})
	o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "shared")
	})
	f := newFront(t, cacheConfig(0, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
	const n = 6
	bodies := make(chan string, n)
	var wg sync.WaitGroup
	get := func() {
		code, body := f.get(t, host, "/c")
		bodies <- fmt.Sprint(code, " ", body)
	}
	wg.Go(get)
	waitFor(t, "the leader at the origin", func() bool { return o.count("/c") == 1 })
	for range n - 1 {
		wg.Go(get)
	}
	waitFor(t, "followers waiting", func() bool { return f.px.CacheStats().Coalesced == n-1 })
	close(release)
	wg.Wait()
	close(bodies)
	for b := range bodies {
		if b != "200 shared" {
			t.Errorf("answer %q, want 200 shared", b)
		}
	}
	if got := o.count("/c"); got != 1 {
		t.Errorf("origin got %d requests, want 1", got)
	}
}

func TestCacheInvalidatedByUnsafeMethods(t *testing.T) {
	clock := newFakeClock()
	o := newOrigin(t, clock, respond(200, "doc", "Cache-Control", "max-age=60"))
	f := newFront(t, cacheConfig(0, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
	f.get(t, host, "/d")
	f.get(t, host, "/d")
	if got := o.count("/d"); got != 1 {
		t.Fatalf("origin got %d GETs before the POST, want 1", got)
	}
	f.do(t, http.MethodPost, host, "/d", strings.NewReader("change"), nil)
	f.get(t, host, "/d")
	if got := o.count("/d"); got != 3 {
		t.Errorf("origin got %d requests, want 3 (GET, POST, GET after invalidation)", got)
	}
}

func TestCacheSurvivesReload(t *testing.T) {
	clock := newFakeClock()
	o := newOrigin(t, clock, respond(200, "doc", "Cache-Control", "max-age=60"))
	cfg := cacheConfig(0, config.RouteCache{}, o.addr())
	f := newFront(t, cfg, Options{Now: clock.Now})
	f.get(t, host, "/d")
	cfg2 := cacheConfig(0, config.RouteCache{}, o.addr())
	cfg2.ResponseCache.MaxBytes = 2 << 20
	px2, err := New(cfg2, Options{Now: clock.Now, Previous: f.px})
	if err != nil {
		t.Fatal(err)
	}
	defer px2.Close()
	s := px2.CacheStats()
	if s.Entries != 1 || s.Stored != 1 || s.Limit != 2<<20 {
		t.Errorf("after reload: %+v, want the stored entry, its count and the new limit", s)
	}
	// Without caching routes, the reloaded proxy has no cache.
	px3, err := New(&config.Config{Pools: cfg.Pools, Routes: []config.Route{{Host: host, Pool: "p"}}}, Options{Previous: px2})
	if err != nil {
		t.Fatal(err)
	}
	defer px3.Close()
	if s := px3.CacheStats(); s != (CacheStats{}) {
		t.Errorf("stats without caching routes: %+v", s)
	}
}

// TestInformationalResponses checks that 1xx answers such as 103 Early
// Hints reach the client on every path, without leaking their fields
// into the final response.
func TestInformationalResponses(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		w.Header().Set("Cache-Control", "max-age=60")
		io.WriteString(w, "page")
	}))
	t.Cleanup(be.Close)
	for _, fp := range forwardingPaths {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cached=%v", fp.name, cached), func(t *testing.T) {
				cfg := cacheConfig(fp.maxConns, config.RouteCache{}, be.Listener.Addr().String())
				cfg.Routes[0].Cache.Enabled = cached
				f := newFront(t, cfg, Options{})
				var mu sync.Mutex
				var hints []string
				trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					mu.Lock()
					hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
					mu.Unlock()
					return nil
				}}
				for _, c := range []*http.Client{h1Client(t, f), f.c} {
					req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, f.srv.URL+"/", nil)
					if err != nil {
						t.Fatal(err)
					}
					req.Host = host
					req.Header.Set("Cache-Control", "no-cache") // reach the member every time
					res, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(res.Body)
					res.Body.Close()
					got := []string{res.Status, string(body), res.Header.Get("Link"), boolString(res.Header.Get("X-Request-Id") != "")}
					if diff := cmp.Diff(got, []string{"200 OK", "page", "", "true"}); diff != "" {
						t.Errorf("final response (-got +want):\n%s", diff)
					}
				}
				mu.Lock()
				defer mu.Unlock()
				want := []string{"103 </style.css>; rel=preload", "103 </style.css>; rel=preload"}
				if diff := cmp.Diff(hints, want); diff != "" {
					t.Errorf("1xx responses over HTTP/1.1 and HTTP/2 (-got +want):\n%s", diff)
				}
			})
		}
	}
}

// BenchmarkCacheHit measures a keep-alive GET answered from the response
// cache, in the setup of BenchmarkProxy.
func BenchmarkCacheHit(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Cache-Control", "max-age=3600")
				w.Write(benchBody)
			}))
			b.Cleanup(be.Close)
			px, err := New(cacheConfig(0, config.RouteCache{}, be.Listener.Addr().String()), Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(px.Close)
			front := httptest.NewServer(px)
			b.Cleanup(front.Close)
			runClient(b, front.URL+"/", host, parallel)
		})
	}
}

func TestCacheNoCacheRevalidatesEveryTime(t *testing.T) {
	clock := newFakeClock()
	o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Etag", `"n1"`)
		if r.Header.Get("If-None-Match") == `"n1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "always validated")
	})
	f := newFront(t, cacheConfig(0, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
	var got [][]string
	for range 3 {
		res, body := f.do(t, http.MethodGet, host, "/n", nil, nil)
		got = append(got, []string{body, res.Header.Get("Cache-Status"), res.Header.Get("Warning"), o.lastRequest().Get("If-None-Match")})
	}
	want := [][]string{
		{"always validated", "gatehouse; fwd=uri-miss; fwd-status=200; stored", "", ""},
		{"always validated", "gatehouse; fwd=stale; fwd-status=304; ttl=0", "", `"n1"`},
		{"always validated", "gatehouse; fwd=stale; fwd-status=304; ttl=0", "", `"n1"`},
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if got := o.count("/n"); got != 3 {
		t.Errorf("origin got %d requests, want 3", got)
	}
}
