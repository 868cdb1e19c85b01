package main

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/admin"
	"gatehouse/internal/routes"
)

// wantServed polls with c (a node's httpClient) until GET
// https://host+path answers code with a body starting with bodyPrefix, and
// returns how long that took.
func wantServed(t *testing.T, c *http.Client, host, path string, code int, bodyPrefix string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		gotCode, body := get(t, c, "https://"+host+path)
		if gotCode == code && strings.HasPrefix(body, bodyPrefix) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s%s: %d %q after %v, want %d %q…", host, path, gotCode, body, within, code, bodyPrefix)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLiveRoutes adds, replaces, updates and removes routes through the
// admin API of one node: each change holds from the very next request.
func TestLiveRoutes(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("shop.uni-d.test")
	c := tn.httpClient(false)
	ctx := context.Background()
	next := func(path string, code int, bodyPrefix string) {
		t.Helper()
		if gotCode, body := get(t, c, "https://shop.uni-d.test"+path); gotCode != code || !strings.HasPrefix(body, bodyPrefix) {
			t.Fatalf("next request to shop.uni-d.test%s: %d %q, want %d %q…", path, gotCode, body, code, bodyPrefix)
		}
	}
	next("/", http.StatusNotFound, "no route for host")

	root, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", Pool: "b", Tenant: "uni-d"})
	if err != nil {
		t.Fatal(err)
	}
	next("/", http.StatusOK, "b1")
	api, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", PathPrefix: "/api", Pool: "a"})
	if err != nil {
		t.Fatal(err)
	}
	next("/api/items", http.StatusOK, "a")
	next("/", http.StatusOK, "b1")

	// Replace switches the pool of the same host and prefix.
	repl, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", Pool: "a", Replace: true})
	if err != nil {
		t.Fatal(err)
	}
	if repl.ID != root.ID || repl.Pool != "a" || !repl.CreatedAt.Equal(root.CreatedAt) {
		t.Fatalf("replaced route %+v, want id %s, pool a, created %v", repl, root.ID, root.CreatedAt)
	}
	next("/", http.StatusOK, "a")
	pool := "b"
	if _, err := tn.client.UpdateRoute(ctx, api.ID, routes.Update{Pool: &pool}); err != nil {
		t.Fatal(err)
	}
	next("/api/items", http.StatusOK, "b1")

	list, err := tn.client.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := routeSummary(list), []string{"shop.uni-d.test/ a", "shop.uni-d.test/api b"}; !cmp.Equal(got, want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}

	// A reload builds a new proxy: it keeps the dynamic routes.
	if err := tn.client.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	next("/api/items", http.StatusOK, "b1")

	// The capacity registry counts them against limits.max_routes.
	limits, err := tn.client.Limits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range limits {
		if r.Name == "routes" {
			found = true
			if r.Usage != 2 || r.Limit != routes.DefaultMaxRoutes || r.Source != "limits.max_routes" {
				t.Errorf("routes resource = %+v, want usage 2 of %d from limits.max_routes", r, routes.DefaultMaxRoutes)
			}
		}
	}
	if !found {
		t.Error("limits have no routes resource")
	}

	for _, id := range []string{root.ID, api.ID} {
		if err := tn.client.RemoveRoute(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	next("/", http.StatusNotFound, "no route for host")
	next("/api/items", http.StatusNotFound, "no route for host")
	// The static routes were never touched.
	tn.addCert("app.uni-a.test")
	if code, body := get(t, c, "https://app.uni-a.test/"); code != 200 || !strings.HasPrefix(body, "a") {
		t.Fatalf("static route after the changes: %d %q", code, body)
	}
}

func routeSummary(rs []routes.Route) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Host+r.PathPrefix+" "+r.Pool)
	}
	return out
}

// TestRefusedRoutesChangeNothing sends bad route changes to the admin API:
// each is refused with the status and a message naming the field, and
// neither the store nor what is served changes.
func TestRefusedRoutesChangeNothing(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("shop.uni-d.test")
	c := tn.httpClient(false)
	ctx := context.Background()
	kept, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", Pool: "b"})
	if err != nil {
		t.Fatal(err)
	}
	nope := "nope"
	tests := []struct {
		name     string
		call     func() error
		wantCode int
		wantErr  string // error code of the answer
		wantMsg  string
	}{
		{"bad host", func() error {
			_, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop..uni-d.test", Pool: "a"})
			return err
		}, 400, "invalid_input", `host: "shop..uni-d.test" is not a valid hostname`},
		{"relative path", func() error {
			_, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", PathPrefix: "api", Pool: "a"})
			return err
		}, 400, "invalid_input", `path_prefix: "api" must start with /`},
		{"unknown pool", func() error {
			_, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "new.uni-d.test", Pool: "nope"})
			return err
		}, 400, "invalid_input", `pool: "nope" is not a pool of this node's configuration`},
		{"static route", func() error {
			_, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "app.uni-a.test", Pool: "b", Replace: true})
			return err
		}, 409, "conflict", `route for host "app.uni-a.test" path_prefix "/": defined in the configuration file; change it there`},
		{"existing route", func() error {
			_, err := tn.client.AddRoute(ctx, admin.RouteRequest{Host: "shop.uni-d.test", Pool: "a"})
			return err
		}, 409, "conflict", "a route already exists (id " + kept.ID},
		{"set unknown pool", func() error {
			_, err := tn.client.UpdateRoute(ctx, kept.ID, routes.Update{Pool: &nope})
			return err
		}, 400, "invalid_input", `pool: "nope" is not a pool of this node's configuration`},
		{"set nothing", func() error {
			_, err := tn.client.UpdateRoute(ctx, kept.ID, routes.Update{})
			return err
		}, 400, "invalid_input", "request body: give pool or tenant"},
		{"remove unknown", func() error { return tn.client.RemoveRoute(ctx, "0123456789abcdef") }, 404, "not_found", `route "0123456789abcdef"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var apiErr *admin.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.wantCode || apiErr.Code != tt.wantErr || !strings.Contains(apiErr.Message, tt.wantMsg) {
				t.Fatalf("err = %v, want HTTP %d %s with %q", err, tt.wantCode, tt.wantErr, tt.wantMsg)
			}
			list, err := tn.client.ListRoutes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(list, []routes.Route{kept}); diff != "" {
				t.Errorf("routes changed (-got +want):\n%s", diff)
			}
			if code, body := get(t, c, "https://shop.uni-d.test/"); code != 200 || body != "b1" {
				t.Errorf("served after the refusal: %d %q, want 200 b1", code, body)
			}
		})
	}
}

// TestRouteCLI drives routes through the gatehouse route commands.
func TestRouteCLI(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("cli.uni-d.test")
	c := tn.httpClient(false)
	out, err := statusCLI(t, tn, "route", "add", "--host", "cli.uni-d.test", "--path", "/x", "--pool", "b", "--tenant", "uni-d")
	if err != nil {
		t.Fatalf("route add: %v: %s", err, out)
	}
	m := regexp.MustCompile(`^added ([0-9a-f]{16}): cli\.uni-d\.test/x → b\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("route add printed %q", out)
	}
	id := m[1]
	if code, body := get(t, c, "https://cli.uni-d.test/x/1"); code != 200 || body != "b1" {
		t.Fatalf("after route add: %d %q", code, body)
	}
	if out, err := statusCLI(t, tn, "route", "set", id, "--pool", "a"); err != nil || !strings.Contains(out, "→ a") {
		t.Fatalf("route set: %v: %q", err, out)
	}
	out, err = statusCLI(t, tn, "route", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "uni-d") || !strings.HasSuffix(out, "1 routes\n") {
		t.Fatalf("route list: %v:\n%s", err, out)
	}
	if _, err := statusCLI(t, tn, "route", "add", "--host", "cli.uni-d.test", "--path", "/x", "--pool", "missing"); err == nil ||
		!strings.Contains(err.Error(), `pool: "missing" is not a pool`) {
		t.Fatalf("route add with an unknown pool: %v", err)
	}
	if out, err := statusCLI(t, tn, "route", "rm", id); err != nil || out != "removed "+id+"\n" {
		t.Fatalf("route rm: %v: %q", err, out)
	}
	if code, _ := get(t, c, "https://cli.uni-d.test/x/1"); code != http.StatusNotFound {
		t.Fatalf("after route rm: %d, want 404", code)
	}
}

// TestFleetRoutes adds a route through node 1 of a fleet on etcd, checks
// that nodes 2 and 3 route to it within a second, switches its pool through
// node 2 and removes it through node 3.
func TestFleetRoutes(t *testing.T) {
	f := startFleet(t, 3, 3)
	const host = "fleet.uni-d.test"
	cert := f.nodes[0].addCert(host)
	var clients []*http.Client
	for _, tn := range f.nodes {
		waitServed(t, tn, host, cert.Cert.Serial, 2*time.Second)
		clients = append(clients, tn.httpClient(false))
	}
	for j := range f.nodes {
		wantServed(t, clients[j], host, "/", http.StatusNotFound, "no route for host", 2*time.Second)
	}
	ctx := context.Background()
	r, err := f.nodes[0].client.AddRoute(ctx, admin.RouteRequest{Host: host, Pool: "b"})
	if err != nil {
		t.Fatal(err)
	}
	for j := range f.nodes {
		d := wantServed(t, clients[j], host, "/", http.StatusOK, "b1", time.Second)
		t.Logf("route added on node 1, served by node %d after %v", j+1, d)
	}
	pool := "a"
	if _, err := f.nodes[1].client.UpdateRoute(ctx, r.ID, routes.Update{Pool: &pool}); err != nil {
		t.Fatal(err)
	}
	for j := range f.nodes {
		d := wantServed(t, clients[j], host, "/", http.StatusOK, "a", time.Second)
		t.Logf("pool switched on node 2, served by node %d after %v", j+1, d)
	}
	if err := f.nodes[2].client.RemoveRoute(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	for j := range f.nodes {
		d := wantServed(t, clients[j], host, "/", http.StatusNotFound, "no route for host", time.Second)
		t.Logf("route removed on node 3, gone from node %d after %v", j+1, d)
	}
	// With etcd gone, a route change is refused with 503 and nothing served changes.
	f.etcd.StopAll()
	_, err = f.nodes[0].client.AddRoute(ctx, admin.RouteRequest{Host: host, Pool: "b"})
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusServiceUnavailable || apiErr.Code != "store_unavailable" {
		t.Fatalf("AddRoute with etcd down: %v, want 503 store_unavailable", err)
	}
	if code, _ := get(t, clients[0], "https://"+host+"/"); code != http.StatusNotFound {
		t.Fatalf("after a refused add: %d, want 404", code)
	}
	// When etcd returns, writes are accepted and followed again. (The
	// restart also lets the nodes stop: their fleet-once work waits for
	// etcd at shutdown.)
	f.etcd.RestartAll()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err = f.nodes[2].client.AddRoute(ctx, admin.RouteRequest{Host: host, Pool: "b"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("AddRoute after etcd returned: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for j := range f.nodes {
		d := wantServed(t, clients[j], host, "/", http.StatusOK, "b1", 5*time.Second)
		t.Logf("after etcd returned: route added on node 3, served by node %d after %v", j+1, d)
	}
}
