package proxy

import (
	"bufio"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/websocket"

	"gatehouse/internal/config"
	"gatehouse/internal/health"
)

const host = "app.example.test"

func TestBalancing(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	weighted := poolConfig("w", config.WeightedRoundRobin, a.addr(), b.addr(), c.addr())
	weighted.Members[0].Weight, weighted.Members[1].Weight, weighted.Members[2].Weight = 1, 2, 3
	tests := []struct {
		name string
		pool config.Pool
		n    int
		want map[string]int
	}{
		{"round_robin", poolConfig("rr", config.RoundRobin, a.addr(), b.addr(), c.addr()), 30,
			map[string]int{"a": 10, "b": 10, "c": 10}},
		{"default_is_round_robin", poolConfig("rr", "", a.addr(), b.addr()), 20,
			map[string]int{"a": 10, "b": 10}},
		{"weighted_full_cycles", weighted, 60, map[string]int{"a": 10, "b": 20, "c": 30}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFront(t, &config.Config{
				Pools:  []config.Pool{tc.pool},
				Routes: []config.Route{{Host: host, Pool: tc.pool.Name}},
			}, Options{})
			if diff := cmp.Diff(count(t, f, host, "/", tc.n), tc.want); diff != "" {
				t.Errorf("answers by member (-got +want):\n%s", diff)
			}
		})
	}
}

func TestSchedule(t *testing.T) {
	tests := []struct {
		name    string
		weights []int
		want    string
	}{
		{"smooth_interleaving", []int{5, 1, 1}, "aabacaa"},
		{"gcd_reduced", []int{20, 10}, "aba"},
		{"equal", []int{1, 1, 1}, "abc"},
		{"single", []int{7}, "a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ms []*member
			for i, w := range tc.weights {
				ms = append(ms, &member{addr: string(rune('a' + i)), weight: w})
			}
			var got strings.Builder
			for _, m := range schedule(ms) {
				got.WriteString(m.addr)
			}
			if got.String() != tc.want {
				t.Errorf("schedule(%v) = %q, want %q", tc.weights, got.String(), tc.want)
			}
		})
	}
	t.Run("bounded", func(t *testing.T) {
		ms := []*member{{addr: "a", weight: 100000}, {addr: "b", weight: 1}}
		s := schedule(ms)
		if len(s) > maxSchedule+1 || len(s) < maxSchedule {
			t.Errorf("schedule length %d, want about %d", len(s), maxSchedule)
		}
	})
}

func TestLeastRequestsPrefersIdle(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("lr", config.LeastRequests, a.addr(), b.addr())},
		Routes: []config.Route{{Host: host, Pool: "lr"}},
	}, Options{})

	done := make(chan int, 1)
	go func() {
		code, _ := f.get(t, host, "/hold")
		done <- code
	}()
	waitFor(t, "a request held by a member", func() bool { return a.held.Load()+b.held.Load() == 1 })
	idle := "a"
	if a.held.Load() == 1 {
		idle = "b"
	}
	if diff := cmp.Diff(count(t, f, host, "/", 20), map[string]int{idle: 20}); diff != "" {
		t.Errorf("answers while one member is busy (-got +want):\n%s", diff)
	}
	a.unhold()
	b.unhold()
	if code := <-done; code != http.StatusOK {
		t.Errorf("held request: status %d, want 200", code)
	}
	for _, p := range f.px.Pools() {
		for _, m := range p.Members {
			if m.InFlight != 0 {
				t.Errorf("member %s: in-flight %d after all requests finished, want 0", m.Address, m.InFlight)
			}
		}
	}
}

func TestRouting(t *testing.T) {
	names := []string{"exact", "api", "wild", "wildv2", "other"}
	var pools []config.Pool
	for _, n := range names {
		pools = append(pools, poolConfig(n, "", newBackend(t, n).addr()))
	}
	f := newFront(t, &config.Config{
		Pools: pools,
		Routes: []config.Route{
			{Host: "app.example.test", Pool: "exact"},
			{Host: "app.example.test", PathPrefix: "/api", Pool: "api"},
			{Host: "*.uni-c.test", Pool: "wild"},
			{Host: "*.uni-c.test", PathPrefix: "/v2/", Pool: "wildv2"},
			{Host: "x.uni-c.test", PathPrefix: "/only", Pool: "other"},
		},
	}, Options{})
	tests := []struct {
		host, path string
		wantCode   int
		wantBody   string
	}{
		{"app.example.test", "/", 200, "exact"},
		{"app.example.test", "/index.html", 200, "exact"},
		{"app.example.test", "/api", 200, "api"},
		{"app.example.test", "/api/users", 200, "api"},
		{"app.example.test", "/apix", 200, "exact"},
		{"APP.Example.TEST:443", "/api/x", 200, "api"},
		{"app.example.test.", "/", 200, "exact"},
		{"x.uni-c.test", "/", 200, "wild"},
		{"y.uni-c.test:8443", "/v2/items", 200, "wildv2"},
		{"x.uni-c.test", "/only/this", 200, "other"},
		{"x.uni-c.test", "/elsewhere", 200, "wild"},
		{"a.b.uni-c.test", "/", 404, "no route for host\n"},
		{"uni-c.test", "/", 404, "no route for host\n"},
		{"unknown.test", "/", 404, "no route for host\n"},
	}
	for _, tc := range tests {
		t.Run(tc.host+tc.path, func(t *testing.T) {
			code, body := f.get(t, tc.host, tc.path)
			if code != tc.wantCode || body != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Example.COM:8080", "example.com"},
		{"example.com.", "example.com"},
		{"[::1]:443", "[::1]"},
		{"[::1]", "[::1]"},
		{"127.0.0.1:80", "127.0.0.1"},
	}
	for _, tc := range tests {
		if got := normalizeHost(tc.in); got != tc.want {
			t.Errorf("normalizeHost(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	b := newBackend(t, "a")
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", b.addr())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})

	tests := []struct {
		name       string
		sentID     string
		keepSentID bool
	}{
		{"generated_id", "", false},
		{"sane_id_kept", "abc-123_x.y", true},
		{"insane_id_replaced", "bad id\twith spaces", false},
	}
	ids := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := http.Header{"X-Forwarded-For": {"6.6.6.6"}, "X-Forwarded-Host": {"evil.test"}}
			if tc.sentID != "" {
				hdr.Set("X-Request-Id", tc.sentID)
			}
			before := len(b.requests())
			res, body := f.do(t, http.MethodGet, host, "/x?q=1", nil, hdr)
			if body != "a" {
				t.Fatalf("body %q, want %q", body, "a")
			}
			if res.Proto != "HTTP/2.0" {
				t.Errorf("client protocol %q, want HTTP/2.0", res.Proto)
			}
			reqs := b.requests()
			if len(reqs) != before+1 {
				t.Fatalf("backend saw %d requests, want 1", len(reqs)-before)
			}
			r := reqs[len(reqs)-1]
			got := map[string]string{
				"proto":             r.Proto,
				"host":              r.Host,
				"uri":               r.RequestURI,
				"X-Forwarded-For":   strings.Join(r.Header.Values("X-Forwarded-For"), ","),
				"X-Forwarded-Host":  strings.Join(r.Header.Values("X-Forwarded-Host"), ","),
				"X-Forwarded-Proto": strings.Join(r.Header.Values("X-Forwarded-Proto"), ","),
			}
			want := map[string]string{
				"proto":             "HTTP/1.1",
				"host":              host,
				"uri":               "/x?q=1",
				"X-Forwarded-For":   "127.0.0.1",
				"X-Forwarded-Host":  host,
				"X-Forwarded-Proto": "https",
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("backend saw (-got +want):\n%s", diff)
			}
			id := r.Header.Values("X-Request-Id")
			if len(id) != 1 || id[0] == "" {
				t.Fatalf("backend saw X-Request-Id %q, want one value", id)
			}
			if tc.keepSentID && id[0] != tc.sentID {
				t.Errorf("X-Request-Id %q, want the sent %q", id[0], tc.sentID)
			}
			if !tc.keepSentID && (id[0] == tc.sentID || ids[id[0]]) {
				t.Errorf("X-Request-Id %q not freshly generated", id[0])
			}
			ids[id[0]] = true
			if got := res.Header.Values("X-Request-Id"); !cmp.Equal(got, id) {
				t.Errorf("client got X-Request-Id %q, want %q", got, id)
			}
		})
	}
}

func TestRequestIDsUnique(t *testing.T) {
	g := newIDGen()
	seen := map[string]bool{}
	for range 10000 {
		id := g.next()
		if seen[id] || !saneID(id) {
			t.Fatalf("id %q repeated or not sane", id)
		}
		seen[id] = true
	}
	if other := newIDGen().next(); seen[other] {
		t.Errorf("a second generator repeated id %q", other)
	}
}

func TestWebSocket(t *testing.T) {
	echo := httptestServerWS(t)
	cfg := &config.Config{
		Pools:  []config.Pool{poolConfig("ws", "", echo)},
		Routes: []config.Route{{Host: "*", Pool: "ws"}},
	}
	px, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer px.Close()
	srv := newTLSServer(t, px, 100*time.Millisecond)

	wsCfg, err := websocket.NewConfig("wss://"+srv.Listener.Addr().String()+"/echo", "https://origin.test")
	if err != nil {
		t.Fatal(err)
	}
	wsCfg.TlsConfig = &tls.Config{RootCAs: srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs}
	ws, err := websocket.DialConfig(wsCfg)
	if err != nil {
		t.Fatalf("dialing through the proxy: %v", err)
	}
	defer ws.Close()
	for i, msg := range []string{"hello", "world"} {
		if i == 1 {
			// Outlive the front server's read and write timeouts: an
			// upgraded connection must not be cut by them.
			time.Sleep(300 * time.Millisecond)
		}
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatalf("send %q: %v", msg, err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatalf("receive: %v", err)
		}
		if got != msg {
			t.Errorf("echo %q, want %q", got, msg)
		}
	}
}

func httptestServerWS(t *testing.T) string {
	t.Helper()
	b := newBackend(t, "ws")
	b.Config.Handler = websocket.Handler(func(c *websocket.Conn) { io.Copy(c, c) })
	return b.addr()
}

// newTLSServer serves h over TLS with HTTP/2 and short read and write
// timeouts.
func newTLSServer(t *testing.T, h http.Handler, timeout time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.Config.ReadTimeout = timeout
	srv.Config.WriteTimeout = timeout
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestNoHealthyMember(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	a.healthy.Store(false)
	b.healthy.Store(false)
	pc := poolConfig("p", "", a.addr(), b.addr())
	pc.HealthCheck = fastHealth()
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: host, Pool: "p"}}},
		Options{StatusURL: "https://status.example.test/"})
	waitFor(t, "both members down", func() bool {
		return !memberUp(f.px, "p", a.addr()) && !memberUp(f.px, "p", b.addr())
	})
	start := time.Now()
	res, body := f.do(t, http.MethodGet, host, "/", nil, nil)
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("503 took %v, want < 1s", elapsed)
	}
	got := []string{res.Status, res.Header.Get("Retry-After"), res.Header.Get("Content-Type")}
	want := []string{"503 Service Unavailable", "5", "text/html; charset=utf-8"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("response (-got +want):\n%s", diff)
	}
	if !strings.Contains(body, `href="https://status.example.test/"`) {
		t.Errorf("503 page does not link the status page:\n%s", body)
	}
}

func TestBackendFailures(t *testing.T) {
	b := newBackend(t, "a")
	pc := poolConfig("p", "", b.addr())
	pc.Timeouts.ResponseHeader = config.Duration(50 * time.Millisecond)
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: host, Pool: "p"}}}, Options{})
	tests := []struct {
		path     string
		wantCode int
	}{
		{"/close", http.StatusBadGateway},
		{"/slow", http.StatusGatewayTimeout},
		{"/ok", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, body := f.get(t, host, tc.path)
			if code != tc.wantCode {
				t.Errorf("status %d (%q), want %d", code, body, tc.wantCode)
			}
		})
	}
}

func TestRetryOnConnectionFailure(t *testing.T) {
	b := newBackend(t, "b")
	dead := closedAddr(t)
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", config.RoundRobin, dead, b.addr())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{})
	if diff := cmp.Diff(count(t, f, host, "/", 10), map[string]int{"b": 10}); diff != "" {
		t.Errorf("GET answers (-got +want):\n%s", diff)
	}
	// A request with a body is not retried: of two POSTs round robin sends
	// one to the dead member.
	codes := map[int]int{}
	for range 2 {
		res, _ := f.do(t, http.MethodPost, host, "/", strings.NewReader("payload"), nil)
		codes[res.StatusCode]++
	}
	if diff := cmp.Diff(codes, map[int]int{200: 1, 502: 1}); diff != "" {
		t.Errorf("POST status counts (-got +want):\n%s", diff)
	}
	if !memberUp(f.px, "p", dead) {
		t.Error("dead member ejected without active checks configured")
	}
}

func TestPassiveEjection(t *testing.T) {
	b := newBackend(t, "b")
	dead := closedAddr(t)
	pc := poolConfig("p", config.RoundRobin, dead, b.addr())
	pc.HealthCheck = config.HealthCheck{Path: "/health", Interval: config.Duration(time.Hour), Fall: 2}
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: host, Pool: "p"}}}, Options{})
	if diff := cmp.Diff(count(t, f, host, "/", 10), map[string]int{"b": 10}); diff != "" {
		t.Errorf("answers (-got +want):\n%s", diff)
	}
	if memberUp(f.px, "p", dead) {
		t.Error("member refusing connections still up after 10 requests, want ejected after 2 failures")
	}
}

func TestHealthRotation(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	pc := poolConfig("p", config.RoundRobin, a.addr(), b.addr())
	pc.HealthCheck = fastHealth()
	changes := make(chan string, 16)
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: host, Pool: "p"}}},
		Options{OnHealthChange: func(pool, addr string, up bool) {
			if up {
				changes <- pool + " " + addr + " up"
			} else {
				changes <- pool + " " + addr + " down"
			}
		}})

	b.healthy.Store(false)
	waitFor(t, "b down", func() bool { return !memberUp(f.px, "p", b.addr()) })
	if got, want := <-changes, "p "+b.addr()+" down"; got != want {
		t.Errorf("OnHealthChange %q, want %q", got, want)
	}
	if diff := cmp.Diff(count(t, f, host, "/", 6), map[string]int{"a": 6}); diff != "" {
		t.Errorf("answers with b down (-got +want):\n%s", diff)
	}
	b.healthy.Store(true)
	waitFor(t, "b up", func() bool { return memberUp(f.px, "p", b.addr()) })
	if diff := cmp.Diff(count(t, f, host, "/", 6), map[string]int{"a": 3, "b": 3}); diff != "" {
		t.Errorf("answers with b back (-got +want):\n%s", diff)
	}
}

func TestReloadCarriesHealth(t *testing.T) {
	a, b, c := newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")
	pc := poolConfig("p", config.RoundRobin, a.addr(), b.addr())
	pc.HealthCheck = fastHealth()
	checker := health.New(health.Options{})
	defer checker.Close()
	b.healthy.Store(false)
	old, err := New(&config.Config{Pools: []config.Pool{pc}}, Options{Health: checker})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b down", func() bool { return !memberUp(old, "p", b.addr()) })

	// The new config keeps a and b, adds c, and checks rarely, so any
	// state below comes from the carry-over.
	pc2 := poolConfig("p", config.WeightedRoundRobin, a.addr(), b.addr(), c.addr())
	pc2.Members[2].Weight = 3
	pc2.HealthCheck = fastHealth()
	pc2.HealthCheck.Interval = config.Duration(time.Hour)
	next, err := New(&config.Config{Pools: []config.Pool{pc2, poolConfig("q", "", c.addr())}},
		Options{Health: checker, Previous: old})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()
	defer next.Close()
	want := []PoolStatus{
		{Name: "p", Algorithm: string(config.WeightedRoundRobin), Failover: "spread", Members: []MemberStatus{
			{Address: a.addr(), Up: true, Weight: 1},
			{Address: b.addr(), Up: false, Weight: 1},
			{Address: c.addr(), Up: true, Weight: 3},
		}},
		{Name: "q", Algorithm: string(config.RoundRobin), Failover: "spread", Members: []MemberStatus{{Address: c.addr(), Up: true, Weight: 1}}},
	}
	if diff := cmp.Diff(next.Pools(), want); diff != "" {
		t.Errorf("Pools after reload (-got +want):\n%s", diff)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  config.Config
		want string
	}{
		{"unknown_pool", config.Config{Routes: []config.Route{{Host: "x", Pool: "nope"}}}, `routes[0]: unknown pool "nope"`},
		{"unknown_algorithm", config.Config{Pools: []config.Pool{{Name: "p", Algorithm: "random"}}}, `pool "p": unknown algorithm "random"`},
		{"duplicate_pool", config.Config{Pools: []config.Pool{{Name: "p"}, {Name: "p"}}}, `pools[1]: duplicate pool name "p"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			px, err := New(&tc.cfg, Options{})
			if err == nil {
				px.Close()
				t.Fatal("New succeeded, want error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCloseStopsChecks(t *testing.T) {
	a := newBackend(t, "a")
	pc := poolConfig("p", "", a.addr())
	pc.HealthCheck = fastHealth()
	px, err := New(&config.Config{Pools: []config.Pool{pc}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	px.Close()
	px.Close()
	buf := make([]byte, 1<<20)
	if s := string(buf[:runtime.Stack(buf, true)]); strings.Contains(s, "health.(*Watch).run") {
		t.Errorf("health goroutines left after Close:\n%s", s)
	}
}

func TestAccessLog(t *testing.T) {
	b := newBackend(t, "a")
	w := &lockedWriter{}
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("p", "", b.addr())},
		Routes: []config.Route{{Host: host, Pool: "p"}},
	}, Options{AccessLog: true, Logger: newTextLogger(w)})
	f.get(t, host, "/logged")
	f.get(t, "nowhere.test", "/")
	sc := bufio.NewScanner(strings.NewReader(w.String()))
	var lines []string
	for sc.Scan() {
		if strings.Contains(sc.Text(), "msg=request") {
			lines = append(lines, sc.Text())
		}
	}
	if len(lines) != 2 || !strings.Contains(lines[0], "path=/logged") || !strings.Contains(lines[0], "status=200") ||
		!strings.Contains(lines[1], "status=404") {
		t.Errorf("access log lines:\n%s", strings.Join(lines, "\n"))
	}
}
