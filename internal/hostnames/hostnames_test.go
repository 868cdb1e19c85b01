package hostnames

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"gatehouse/internal/leakcheck"
	"gatehouse/internal/routes"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func newTest(t *testing.T, wildcards bool) (*Manager, *routes.Manager, store.Store) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fixed := &routes.Fixed{Pools: []string{"web"}}
	rm := routes.NewManager(st, routes.Options{Fixed: func() *routes.Fixed { return fixed }})
	if err := rm.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	hm := New(st, Options{Routes: rm, Wildcards: wildcards})
	if err := hm.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hm.Close(); rm.Close(); st.Close() })
	return hm, rm, st
}

func TestAddBadInput(t *testing.T) {
	hm, rm, st := newTest(t, false)
	ctx := context.Background()
	if _, err := hm.Add(ctx, Hostname{Name: "taken.example.com", Pool: "web"}); err != nil {
		t.Fatal(err)
	}
	rev0, _ := st.Rev(ctx)
	tests := []struct {
		name  string
		in    Hostname
		field string // "" : a conflict
	}{
		{"empty", Hostname{Pool: "web"}, "name"},
		{"ipv4", Hostname{Name: "192.0.2.1", Pool: "web"}, "name"},
		{"ipv6", Hostname{Name: "[2001:db8::1]", Pool: "web"}, "name"},
		{"wildcard without dns-01", Hostname{Name: "*.example.com", Pool: "web"}, "name"},
		{"star inside", Hostname{Name: "a*.example.com", Pool: "web"}, "name"},
		{"one label", Hostname{Name: "localhost", Pool: "web"}, "name"},
		{"bad chars", Hostname{Name: "shop!.example.com", Pool: "web"}, "name"},
		{"underscore", Hostname{Name: "a_b.example.com", Pool: "web"}, "name"},
		{"too long label", Hostname{Name: "a" + string(make([]byte, 0)) + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com", Pool: "web"}, "name"},
		{"no pool", Hostname{Name: "shop.example.com"}, "pool"},
		{"bad source", Hostname{Name: "shop.example.com", Pool: "web", Source: "manual"}, "source"},
		{"unknown pool", Hostname{Name: "shop.example.com", Pool: "nope"}, "pool"},
		{"duplicate", Hostname{Name: "Taken.Example.com.", Pool: "web"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hm.Add(ctx, tc.in)
			var in *InputError
			var rin *routes.InputError
			var conf *ConflictError
			switch {
			case err == nil:
				t.Fatalf("Add(%+v) succeeded", tc.in)
			case tc.field == "":
				if !errors.As(err, &conf) {
					t.Fatalf("err = %v, want a conflict", err)
				}
			case errors.As(err, &in):
				if in.Field != tc.field {
					t.Errorf("field = %q (%v), want %q", in.Field, err, tc.field)
				}
			case errors.As(err, &rin):
				if rin.Field != tc.field {
					t.Errorf("route field = %q (%v), want %q", rin.Field, err, tc.field)
				}
			default:
				t.Fatalf("err = %T %v, want an input error on %s", err, err, tc.field)
			}
		})
	}
	if rev, _ := st.Rev(ctx); rev != rev0 {
		t.Errorf("store revision moved from %d to %d: a refused request changed something", rev0, rev)
	}
	if n := rm.Count(); n != 1 {
		t.Errorf("routes = %d, want 1", n)
	}
}

func TestLifecycle(t *testing.T) {
	hm, rm, _ := newTest(t, true)
	ctx := context.Background()
	h, err := hm.Add(ctx, Hostname{Name: "Shop.Uni-D.edu", Tenant: "uni-d", Pool: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Name != "shop.uni-d.edu" || h.State != PendingValidation || h.Source != SourceACME || h.NextAttempt.IsZero() {
		t.Errorf("added %+v", h)
	}
	if st, acme, ok := hm.Lookup("shop.uni-d.edu"); !ok || !acme || st != PendingValidation {
		t.Errorf("Lookup = %v %v %v", st, acme, ok)
	}
	if _, err := rm.Get(ctx, routes.ID("shop.uni-d.edu", "/")); err != nil {
		t.Errorf("route of the hostname: %v", err)
	}
	if _, err := hm.Add(ctx, Hostname{Name: "*.wild.example", Pool: "web"}); err != nil {
		t.Errorf("wildcard with dns-01: %v", err)
	}
	if _, err := hm.Update(ctx, "shop.uni-d.edu", func(h *Hostname) error { h.State = Failed; h.Reason = "boom"; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := hm.Transitions()[Failed]; got != 1 {
		t.Errorf("failed transitions = %d", got)
	}
	list, err := hm.List(ctx, Failed, "", 0)
	if err != nil || len(list) != 1 || list[0].Reason != "boom" {
		t.Errorf("List(failed) = %+v, %v", list, err)
	}
	if _, err := hm.List(ctx, "bogus", "", 0); err == nil {
		t.Error("List(bogus) succeeded")
	}
	if err := hm.Remove(ctx, "shop.uni-d.edu"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := hm.Lookup("shop.uni-d.edu"); ok {
		t.Error("removed hostname still known")
	}
	if _, err := rm.Get(ctx, routes.ID("shop.uni-d.edu", "/")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("route after removal: %v", err)
	}
	if err := hm.Remove(ctx, "shop.uni-d.edu"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second remove: %v", err)
	}
}
