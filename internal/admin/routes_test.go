package admin

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/capacity"
	"gatehouse/internal/routes"
	"gatehouse/internal/store/bolt"
)

const testToken = "route-test-token-0123456789"

// routeAPI serves the admin API over a real routes.Manager on a bolt
// store, with at most two routes, and returns a client and the store.
func routeAPI(t *testing.T) (*Client, *bolt.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fixed := &routes.Fixed{Pools: []string{"a", "b"}, Routes: []routes.Route{{Host: "static.test", PathPrefix: "/"}}}
	m := routes.NewManager(st, routes.Options{Fixed: func() *routes.Fixed { return fixed }, MaxRoutes: 2})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s, err := NewServer(Options{Token: testToken, Routes: m})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewClient(srv.URL, testToken, ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.http.CloseIdleConnections)
	return c, st
}

// TestRouteErrors checks the status, code and message of each refusal.
func TestRouteErrors(t *testing.T) {
	c, st := routeAPI(t)
	ctx := context.Background()
	first, err := c.AddRoute(ctx, RouteRequest{Host: "one.test", Pool: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddRoute(ctx, RouteRequest{Host: "two.test", Pool: "b"}); err != nil {
		t.Fatal(err)
	}
	bad := "zzz"
	tests := []struct {
		name string
		call func() error
		want APIError
	}{
		{"invalid host", func() error { _, err := c.AddRoute(ctx, RouteRequest{Host: "-x.test", Pool: "a"}); return err },
			APIError{Status: 400, Code: "invalid_input", Message: `host: "-x.test" is not a valid hostname`}},
		{"unknown pool", func() error { _, err := c.UpdateRoute(ctx, first.ID, routes.Update{Pool: &bad}); return err },
			APIError{Status: 400, Code: "invalid_input", Message: `pool: "zzz" is not a pool of this node's configuration`}},
		{"existing", func() error { _, err := c.AddRoute(ctx, RouteRequest{Host: "one.test", Pool: "b"}); return err },
			APIError{Status: 409, Code: "conflict", Message: `route for host "one.test" path_prefix "/": a route already exists (id ` + first.ID + `, pool "a"); replace it or remove it first`}},
		{"static", func() error { _, err := c.AddRoute(ctx, RouteRequest{Host: "static.test", Pool: "b"}); return err },
			APIError{Status: 409, Code: "conflict", Message: `route for host "static.test" path_prefix "/": defined in the configuration file; change it there`}},
		{"limit", func() error { _, err := c.AddRoute(ctx, RouteRequest{Host: "three.test", Pool: "b"}); return err },
			APIError{Status: 409, Code: "limit_exceeded", Message: "routes limit reached: 2 of 2 in use; adding 1 would exceed the limit (limits.max_routes) by 1",
				Limit: &capacity.LimitError{Resource: "routes", Unit: "count", Source: "limits.max_routes", Usage: 2, Limit: 2, Adding: 1}}},
		{"not found", func() error { _, err := c.GetRoute(ctx, "ffffffffffffffff"); return err },
			APIError{Status: 404, Code: "not_found", Message: `route "ffffffffffffffff" does not exist: store: key not found`}},
		{"unknown field", func() error { return c.do(ctx, http.MethodPost, "/v1/routes", map[string]string{"hots": "x"}, nil) },
			APIError{Status: 400, Code: "invalid_input", Message: `request body: json: unknown field "hots"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *APIError
			if err := tt.call(); !errors.As(err, &got) {
				t.Fatalf("err = %v, want an *APIError", err)
			}
			if diff := cmp.Diff(*got, tt.want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
		})
	}
	list, err := c.ListRoutes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != first.ID {
		t.Errorf("routes after the refusals: %+v", list)
	}
	// A store that cannot be reached: 503.
	st.Close()
	_, err = c.AddRoute(ctx, RouteRequest{Host: "late.test", Pool: "a", Replace: true})
	var got *APIError
	if !errors.As(err, &got) || got.Status != http.StatusServiceUnavailable || got.Code != "store_unavailable" {
		t.Errorf("with the store closed: %v, want 503 store_unavailable", err)
	}
}
