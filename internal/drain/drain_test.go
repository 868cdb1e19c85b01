package drain

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/proxy"
	"gatehouse/internal/store/bolt"
)

func testProxy(t *testing.T) *proxy.Proxy {
	t.Helper()
	cfg := &config.Config{Pools: []config.Pool{
		{Name: "web", Members: []config.Member{
			{Address: "127.0.0.1:1", Weight: 1, Zone: "dc1"}, {Address: "127.0.0.1:2", Weight: 1, Zone: "dc1"},
			{Address: "127.0.0.1:3", Weight: 2, Zone: "dc2"}}},
		{Name: "api", Members: []config.Member{{Address: "127.0.0.1:4", Weight: 1, Zone: "dc1"}}},
	}}
	px, err := proxy.New(cfg, proxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return px
}

func startManager(t *testing.T, path string, px *proxy.Proxy) (*Manager, func()) {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	m := New(st, Options{Pools: px.Pools, OnChange: func(set map[string]map[string]proxy.Drain) {
		mu.Lock()
		defer mu.Unlock()
		px.SetDrained(set)
	}})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m, func() {
		m.Close()
		st.Close()
	}
}

func drainedSet(px *proxy.Proxy) []string {
	var out []string
	for _, p := range px.Pools() {
		for _, m := range p.Members {
			if m.Drained {
				out = append(out, p.Name+"/"+m.Address)
			}
		}
	}
	return out
}

// TestDrainStoreAndRestart drains through the store, refuses a drain
// that would empty a pool (naming it and its numbers, nothing written),
// and finds the drain again after the store is reopened.
func TestDrainStoreAndRestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	px := testProxy(t)
	m, stop := startManager(t, path, px)

	// dc1 in every pool would empty api.
	_, _, err := m.Drain(ctx, Request{Zone: "dc1"})
	if !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(),
		`pool "api" would have no healthy member: 1 of 1 members healthy now (weight 1 of 1), 1 would be drained`) {
		t.Fatalf("drain of dc1 everywhere: %v", err)
	}
	if got := drainedSet(px); len(got) != 0 || len(m.List()) != 0 {
		t.Fatalf("a refused drain left %v", got)
	}
	recs, caps, err := m.Drain(ctx, Request{Zone: "dc1", Pool: "web", Reason: "test"})
	if err != nil || len(recs) != 2 {
		t.Fatalf("drain of dc1 in web: %v %v", recs, err)
	}
	if len(caps) != 1 || caps[0].Healthy != 1 || caps[0].HealthyWeight != 2 || caps[0].TotalWeight != 4 {
		t.Errorf("capacity after the drain: %+v", caps)
	}
	// Drain returns once this node applied it.
	if got := strings.Join(drainedSet(px), " "); got != "web/127.0.0.1:1 web/127.0.0.1:2" {
		t.Errorf("drained after Drain returned: %q", got)
	}
	// The last healthy member of web is refused, --force is not.
	if _, _, err := m.Drain(ctx, Request{Member: "127.0.0.1:3"}); !errors.Is(err, ErrUnsafe) {
		t.Errorf("drain of web's last member: %v", err)
	}
	if _, _, err := m.Drain(ctx, Request{Zone: "dc9"}); !errors.Is(err, ErrNoMatch) {
		t.Errorf("drain of an unknown zone: %v", err)
	}
	if _, _, err := m.Drain(ctx, Request{Pool: "web"}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("drain of a whole pool without zone or member: %v", err)
	}
	stop()

	// Restart: a new proxy and manager over the same file.
	px2 := testProxy(t)
	m2, stop2 := startManager(t, path, px2)
	defer stop2()
	if got := strings.Join(drainedSet(px2), " "); got != "web/127.0.0.1:1 web/127.0.0.1:2" {
		t.Errorf("drained after the restart: %q", got)
	}
	if l := m2.List(); len(l) != 2 || l[0].Reason != "test" || l[0].Zone != "dc1" || time.Since(l[0].Since) > time.Minute {
		t.Errorf("records after the restart: %+v", l)
	}
	if _, err := m2.Undrain(ctx, Request{Member: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(drainedSet(px2), " "); got != "web/127.0.0.1:2" {
		t.Errorf("after undrain of :1: %q", got)
	}
	if _, err := m2.Undrain(ctx, Request{Pool: "web"}); err != nil {
		t.Fatal(err)
	}
	if got := drainedSet(px2); len(got) != 0 {
		t.Errorf("after undrain of web: %v", got)
	}
	if _, err := m2.Undrain(ctx, Request{Pool: "web"}); !errors.Is(err, ErrNoMatch) {
		t.Errorf("undrain with nothing drained: %v", err)
	}
}
