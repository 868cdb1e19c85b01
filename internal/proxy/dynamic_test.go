package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"gatehouse/internal/config"
)

// TestSetDynamicRoutes swaps sets of dynamic routes under live traffic and
// checks what each host and path is routed to after each swap.
func TestSetDynamicRoutes(t *testing.T) {
	var pools []config.Pool
	for _, n := range []string{"static", "a", "b"} {
		pools = append(pools, poolConfig(n, "", newBackend(t, n).addr()))
	}
	var logs lockedWriter
	f := newFront(t, &config.Config{
		Pools:  pools,
		Routes: []config.Route{{Host: "static.test", PathPrefix: "/", Pool: "static"}},
	}, Options{Logger: newTextLogger(&logs)})

	type probe struct {
		host, path string
		wantCode   int
		wantBody   string
	}
	notFound := "no route for host\n"
	steps := []struct {
		name        string
		routes      []DynamicRoute
		wantSkipped int
		probes      []probe
	}{
		{
			name: "none",
			probes: []probe{
				{"static.test", "/", 200, "static"},
				{"dyn.test", "/", 404, notFound},
			},
		},
		{
			name: "add",
			routes: []DynamicRoute{
				{Host: "dyn.test", PathPrefix: "/", Pool: "a"},
				{Host: "dyn.test", PathPrefix: "/api", Pool: "b"},
				{Host: "*.wild.test", PathPrefix: "/", Pool: "b"},
				// The static route of the same host and prefix wins.
				{Host: "static.test", PathPrefix: "/", Pool: "a"},
				// A longer prefix of a static host is added beside it.
				{Host: "Static.Test", PathPrefix: "/v2", Pool: "b"},
			},
			probes: []probe{
				{"static.test", "/", 200, "static"},
				{"static.test", "/v2/x", 200, "b"},
				{"dyn.test", "/", 200, "a"},
				{"dyn.test", "/api/users", 200, "b"},
				{"dyn.test", "/apix", 200, "a"},
				{"x.wild.test:443", "/", 200, "b"},
				{"wild.test", "/", 404, notFound},
			},
		},
		{
			name: "replace and skip an unknown pool",
			routes: []DynamicRoute{
				{Host: "dyn.test", PathPrefix: "/", Pool: "b"},
				{Host: "gone.test", PathPrefix: "/", Pool: "nope"},
			},
			wantSkipped: 1,
			probes: []probe{
				{"dyn.test", "/", 200, "b"},
				{"dyn.test", "/api/users", 200, "b"},
				{"x.wild.test", "/", 404, notFound},
				{"gone.test", "/", 404, notFound},
				{"static.test", "/v2/x", 200, "static"},
			},
		},
		{
			name: "remove all",
			probes: []probe{
				{"dyn.test", "/", 404, notFound},
				{"static.test", "/", 200, "static"},
			},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if got := f.px.SetDynamicRoutes(st.routes); got != st.wantSkipped {
				t.Errorf("SetDynamicRoutes skipped %d, want %d", got, st.wantSkipped)
			}
			for _, p := range st.probes {
				code, body := f.get(t, p.host, p.path)
				if code != p.wantCode || body != p.wantBody {
					t.Errorf("%s%s: got %d %q, want %d %q", p.host, p.path, code, body, p.wantCode, p.wantBody)
				}
			}
		})
	}
	if got := logs.String(); !strings.Contains(got, "gone.test/ → nope") || !strings.Contains(got, "skipped=1") {
		t.Errorf("log does not name the skipped route:\n%s", got)
	}
}

// TestSetDynamicRoutesUnderLoad swaps routes while requests are served:
// every request to the static route succeeds throughout (run with -race).
func TestSetDynamicRoutesUnderLoad(t *testing.T) {
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{poolConfig("static", "", newBackend(t, "static").addr()), poolConfig("a", "", newBackend(t, "a").addr())},
		Routes: []config.Route{{Host: "static.test", PathPrefix: "/", Pool: "static"}},
	}, Options{})
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			f.px.SetDynamicRoutes([]DynamicRoute{{Host: fmt.Sprintf("d%d.test", i), PathPrefix: "/", Pool: "a"}})
		}
	})
	for range 200 {
		if code, body := f.get(t, "static.test", "/"); code != http.StatusOK || body != "static" {
			t.Errorf("static route during swaps: %d %q", code, body)
			break
		}
	}
	close(done)
	wg.Wait()
}

// BenchmarkRouteTable measures a lookup through a Proxy's swappable
// routing table holding 10,000 dynamic routes (compare BenchmarkRoute).
func BenchmarkRouteTable(b *testing.B) {
	px := &Proxy{router: newRouteTable(), byName: map[string]*pool{"p": {}}}
	px.router.add("*.uni-c.test", "/", px.byName["p"], nil)
	var rs []DynamicRoute
	for i := range 10000 {
		rs = append(rs, DynamicRoute{Host: fmt.Sprintf("h%d.example.test", i), PathPrefix: "/", Pool: "p"})
	}
	rs = append(rs, DynamicRoute{Host: "*.uni-c.test", PathPrefix: "/api", Pool: "p"})
	px.SetDynamicRoutes(rs)
	b.ReportAllocs()
	for b.Loop() {
		if px.router.match("x.uni-c.test:443", "/api/v1") == nil {
			b.Fatal("no match")
		}
	}
}

// BenchmarkSetDynamicRoutes measures rebuilding the table with 10,000
// dynamic routes, as every node does on each change.
func BenchmarkSetDynamicRoutes(b *testing.B) {
	px := &Proxy{router: newRouteTable(), byName: map[string]*pool{"p": {}}}
	var rs []DynamicRoute
	for i := range 10000 {
		rs = append(rs, DynamicRoute{Host: fmt.Sprintf("h%d.example.test", i), PathPrefix: "/", Pool: "p"})
	}
	b.ReportAllocs()
	for b.Loop() {
		px.SetDynamicRoutes(rs)
	}
}
