package routes

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/capacity"
	"gatehouse/internal/leakcheck"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestMain fails the run if goroutines outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock() *clock           { c := &clock{}; c.set(t0); return c }
func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()).UTC() }

// testFixed has pools a and b and one static route.
func testFixed() *Fixed {
	return &Fixed{
		Pools:  []string{"a", "b"},
		Routes: []Route{{Host: "Static.Example.test", PathPrefix: "/", Pool: "a"}},
	}
}

// recorder keeps what OnChange was last called with.
type recorder struct {
	mu      sync.Mutex
	calls   int
	last    []Route
	changed chan struct{} // closed and replaced on every call
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) onChange(rs []Route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.last = rs
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) get() (int, []Route) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, r.last
}

// waitFor waits until the routes OnChange last gave satisfy ok, and returns them.
func (r *recorder) waitFor(t *testing.T, what string, within time.Duration, ok func([]Route) bool) []Route {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		last, ch := r.last, r.changed
		r.mu.Unlock()
		if ok(last) {
			return last
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("%s: not seen within %v; last routes %+v", what, within, last)
		}
	}
}

func hasPool(host, prefix, pool string) func([]Route) bool {
	return func(rs []Route) bool {
		for _, r := range rs {
			if r.Host == host && r.PathPrefix == prefix {
				return r.Pool == pool
			}
		}
		return pool == ""
	}
}

// backend opens a store of one kind; each call on the same backend value
// gives another client of the same data.
type backend struct {
	name string
	open func(t *testing.T) store.Store
}

func backends(t *testing.T) []backend {
	boltPath := filepath.Join(t.TempDir(), "gatehouse.db")
	var boltOnce sync.Once
	var boltStore *bolt.Store
	var cluster *etcdtest.Cluster
	return []backend{
		{"bolt", func(t *testing.T) store.Store {
			// bolt is one file of one process: clients share the store.
			boltOnce.Do(func() {
				st, err := bolt.Open(boltPath, bolt.Options{})
				if err != nil {
					t.Fatal(err)
				}
				boltStore = st
				t.Cleanup(func() { st.Close() })
			})
			return boltStore
		}},
		{"etcd", func(t *testing.T) store.Store {
			if cluster == nil {
				cluster = etcdtest.Start(t, 1)
			}
			st, err := etcd.Open(context.Background(), etcd.Options{Endpoints: cluster.Endpoints(), Prefix: "/routes-test",
				DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			return st
		}},
	}
}

// startManager starts a manager over st, closed at cleanup.
func startManager(t *testing.T, st store.Store, opts Options) (*Manager, *recorder) {
	t.Helper()
	rec := newRecorder()
	opts.OnChange = rec.onChange
	if opts.Fixed == nil {
		opts.Fixed = testFixed
	}
	m := NewManager(st, opts)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m, rec
}

func ptr[T any](v T) *T { return &v }

// TestLifecycle adds, replaces, updates and removes routes on each backend
// and checks what the store and OnChange hold after each step; a second
// node (manager) follows every change.
func TestLifecycle(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clk := newClock()
			m, rec := startManager(t, b.open(t), Options{Now: clk.now})
			other, otherRec := startManager(t, b.open(t), Options{})
			if n, rs := rec.get(); n != 1 || len(rs) != 0 {
				t.Fatalf("after Start: %d calls with %v, want one call with no routes", n, rs)
			}

			added, err := m.Add(ctx, Route{Host: "App.Example.test.", Pool: "a", Tenant: "acme"})
			if err != nil {
				t.Fatal(err)
			}
			want := Route{ID: ID("app.example.test", "/"), Host: "app.example.test", PathPrefix: "/", Pool: "a", Tenant: "acme",
				CreatedAt: t0, UpdatedAt: t0}
			if diff := cmp.Diff(added, want); diff != "" {
				t.Fatalf("Add returned (-got +want):\n%s", diff)
			}
			// Add returns once this node serves the route: no waiting.
			if _, rs := rec.get(); !cmp.Equal(rs, []Route{want}) {
				t.Fatalf("OnChange right after Add: %+v, want %+v", rs, want)
			}
			otherRec.waitFor(t, "other node sees the add", 5*time.Second, hasPool("app.example.test", "/", "a"))

			// The same host and prefix again: refused, nothing changes.
			_, err = m.Add(ctx, Route{Host: "app.example.test", PathPrefix: "/", Pool: "b"})
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("second Add: err = %v, want *ConflictError", err)
			}

			clk.set(t0.Add(time.Hour))
			api, err := m.Add(ctx, Route{Host: "app.example.test", PathPrefix: "/api", Pool: "b"})
			if err != nil {
				t.Fatal(err)
			}
			repl, err := m.Replace(ctx, Route{Host: "app.example.test", Pool: "b"})
			if err != nil {
				t.Fatal(err)
			}
			wantRepl := Route{ID: want.ID, Host: "app.example.test", PathPrefix: "/", Pool: "b", CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)}
			if diff := cmp.Diff(repl, wantRepl); diff != "" {
				t.Fatalf("Replace returned (-got +want):\n%s", diff)
			}
			otherRec.waitFor(t, "other node sees the replacement", 5*time.Second, hasPool("app.example.test", "/", "b"))

			upd, err := m.Update(ctx, api.ID, Update{Pool: ptr("a"), Tenant: ptr("globex")})
			if err != nil {
				t.Fatal(err)
			}
			if upd.Pool != "a" || upd.Tenant != "globex" || upd.Host != "app.example.test" || upd.PathPrefix != "/api" {
				t.Fatalf("Update returned %+v", upd)
			}
			got, err := other.Get(ctx, api.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(got, upd); diff != "" {
				t.Fatalf("Get after Update (-got +want):\n%s", diff)
			}
			list, err := other.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(list, []Route{wantRepl, upd}); diff != "" {
				t.Fatalf("List (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(m.Routes(), list); diff != "" {
				t.Fatalf("Routes differ from the store (-got +want):\n%s", diff)
			}

			if err := other.Remove(ctx, want.ID); err != nil {
				t.Fatal(err)
			}
			if _, rs := otherRec.get(); !cmp.Equal(rs, []Route{upd}) {
				t.Fatalf("OnChange right after Remove: %+v, want only %+v", rs, upd)
			}
			rec.waitFor(t, "first node sees the removal", 5*time.Second, hasPool("app.example.test", "/", ""))
			if err := m.Remove(ctx, want.ID); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("second Remove: err = %v, want ErrNotFound", err)
			}
			if _, err := m.Update(ctx, want.ID, Update{Pool: ptr("a")}); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Update of a removed route: err = %v, want ErrNotFound", err)
			}
			if _, err := m.Get(ctx, "../certs"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("Get of a malformed id: err = %v, want ErrNotFound", err)
			}
			if got := m.Count(); got != 1 {
				t.Errorf("Count = %d, want 1", got)
			}
		})
	}
}

// TestRefused checks that each bad input is refused with an error naming
// the field, and that nothing reaches the store.
func TestRefused(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, rec := startManager(t, st, Options{})
	ctx := context.Background()
	existing, err := m.Add(ctx, Route{Host: "taken.example.test", Pool: "a"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		route     Route
		wantField string // of an *InputError; "" for a *ConflictError
		wantMsg   string
	}{
		{"no host", Route{Pool: "a"}, "host", "host: is required"},
		{"bad host", Route{Host: "a..b", Pool: "a"}, "host", `host: "a..b" is not a valid hostname`},
		{"bad wildcard", Route{Host: "*.com", Pool: "a"}, "host", `host: "*.com" is not a valid wildcard (use *.example.com)`},
		{"host with a path", Route{Host: "x.test/api", Pool: "a"}, "host", `host: "x.test/api" is not a valid hostname`},
		{"relative prefix", Route{Host: "x.test", PathPrefix: "api", Pool: "a"}, "path_prefix", `path_prefix: "api" must start with /`},
		{"prefix with query", Route{Host: "x.test", PathPrefix: "/a?b", Pool: "a"}, "path_prefix", `path_prefix: "/a?b" must not contain a query (?) or fragment (#)`},
		{"prefix with space", Route{Host: "x.test", PathPrefix: "/a b", Pool: "a"}, "path_prefix", `path_prefix: "/a b" must not contain spaces, control characters or invalid UTF-8`},
		{"no pool", Route{Host: "x.test"}, "pool", "pool: is required"},
		{"unknown pool", Route{Host: "x.test", Pool: "nope"}, "pool", `pool: "nope" is not a pool of this node's configuration`},
		{"tenant with newline", Route{Host: "x.test", Pool: "a", Tenant: "a\nb"}, "tenant", `tenant: "a\nb" must not contain control characters or invalid UTF-8`},
		{"static route", Route{Host: "static.example.test", Pool: "b"}, "",
			`route for host "static.example.test" path_prefix "/": defined in the configuration file; change it there`},
		{"existing route", Route{Host: "TAKEN.example.test", PathPrefix: "", Pool: "b"}, "",
			fmt.Sprintf(`route for host "taken.example.test" path_prefix "/": a route already exists (id %s, pool "a"); replace it or remove it first`, existing.ID)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			revBefore, _ := st.Rev(ctx)
			_, err := m.Add(ctx, tt.route)
			if err == nil {
				t.Fatal("Add succeeded")
			}
			if got := err.Error(); got != tt.wantMsg {
				t.Errorf("error = %q, want %q", got, tt.wantMsg)
			}
			var ie *InputError
			var ce *ConflictError
			switch {
			case tt.wantField != "" && (!errors.As(err, &ie) || ie.Field != tt.wantField):
				t.Errorf("error %v is not an *InputError for %s", err, tt.wantField)
			case tt.wantField == "" && !errors.As(err, &ce):
				t.Errorf("error %v is not a *ConflictError", err)
			}
			if revAfter, _ := st.Rev(ctx); revAfter != revBefore {
				t.Errorf("store revision moved from %d to %d: a refused route wrote something", revBefore, revAfter)
			}
		})
	}
	// Update checks the new pool the same way.
	if _, err := m.Update(ctx, existing.ID, Update{Pool: ptr("nope")}); err == nil || err.Error() != `pool: "nope" is not a pool of this node's configuration` {
		t.Errorf("Update to an unknown pool: err = %v", err)
	}
	if _, rs := rec.get(); !cmp.Equal(rs, []Route{existing}) {
		t.Errorf("routes after refusals: %+v, want only %+v", rs, existing)
	}
}

// TestLimit checks MaxRoutes: a route past it is refused with the numbers;
// replacing an existing route at the limit still works.
func TestLimit(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m, _ := startManager(t, st, Options{MaxRoutes: 2})
	ctx := context.Background()
	for _, h := range []string{"one.example.test", "two.example.test"} {
		if _, err := m.Add(ctx, Route{Host: h, Pool: "a"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = m.Add(ctx, Route{Host: "three.example.test", Pool: "a"})
	var le *capacity.LimitError
	if !errors.As(err, &le) {
		t.Fatalf("third Add: err = %v, want *capacity.LimitError", err)
	}
	if want := "routes limit reached: 2 of 2 in use; adding 1 would exceed the limit (limits.max_routes) by 1"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if _, err := m.Replace(ctx, Route{Host: "two.example.test", Pool: "b"}); err != nil {
		t.Errorf("Replace at the limit: %v", err)
	}
	if _, err := m.Replace(ctx, Route{Host: "three.example.test", Pool: "b"}); !errors.As(err, &le) {
		t.Errorf("Replace that adds past the limit: err = %v, want *LimitError", err)
	}
	if got, _ := m.List(ctx); len(got) != 2 || m.Count() != 2 || m.Limit() != 2 {
		t.Errorf("after the refusals: %d routes listed, Count %d, Limit %d; want 2, 2, 2", len(got), m.Count(), m.Limit())
	}
}

// TestConcurrentAdd races two nodes adding the same route on etcd: exactly
// one wins, the other gets a conflict.
func TestConcurrentAdd(t *testing.T) {
	b := backends(t)[1]
	st1, st2 := b.open(t), b.open(t)
	m1, _ := startManager(t, st1, Options{})
	m2, _ := startManager(t, st2, Options{})
	for i := range 5 {
		host := fmt.Sprintf("race%d.example.test", i)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for j, m := range []*Manager{m1, m2} {
			wg.Go(func() { _, errs[j] = m.Add(context.Background(), Route{Host: host, Pool: "a"}) })
		}
		wg.Wait()
		var ce *ConflictError
		ok := (errs[0] == nil && errors.As(errs[1], &ce)) || (errs[1] == nil && errors.As(errs[0], &ce))
		if !ok {
			t.Fatalf("%s: errors %v, want one nil and one conflict", host, errs)
		}
	}
}

// compactingStore is a real bolt store whose first watch starts after
// writes and a real compaction past its start revision, as when a node
// falls behind.
type compactingStore struct {
	*bolt.Store
	done   atomic.Bool
	before func()
}

func (s *compactingStore) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse {
	if !s.done.Swap(true) {
		s.before()
	}
	return s.Store.Watch(ctx, prefix, fromRev)
}

// TestRelistAfterCompaction checks that a watch that cannot resume
// (ErrCompacted from the store) lists again and keeps following.
func TestRelistAfterCompaction(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	writer := NewManager(st, Options{Fixed: testFixed})
	gone, err := writer.Add(ctx, Route{Host: "gone.example.test", Pool: "a"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &compactingStore{Store: st, before: func() {
		if _, err := writer.Add(ctx, Route{Host: "added.example.test", Pool: "b"}); err != nil {
			t.Error(err)
		}
		if err := writer.Remove(ctx, gone.ID); err != nil {
			t.Error(err)
		}
		rev, _ := st.Rev(ctx)
		if err := st.Compact(ctx, rev); err != nil {
			t.Error(err)
		}
	}}
	_, rec := startManager(t, cs, Options{})
	rec.waitFor(t, "the relist", 5*time.Second, func(rs []Route) bool {
		return len(rs) == 1 && rs[0].Host == "added.example.test"
	})
	if _, err := writer.Add(ctx, Route{Host: "later.example.test", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, "the watch after the relist", 5*time.Second, hasPool("later.example.test", "/", "a"))
}

func TestID(t *testing.T) {
	tests := []struct {
		host, prefix string
		same         [2]string
	}{
		{"App.Example.test.", "", [2]string{"app.example.test", "/"}},
		{"*.example.test", "/api", [2]string{"*.EXAMPLE.test", "/api"}},
	}
	for _, tt := range tests {
		got, want := ID(tt.host, tt.prefix), ID(tt.same[0], tt.same[1])
		if got != want || !validID(got) {
			t.Errorf("ID(%q, %q) = %q, want %q like ID(%q, %q)", tt.host, tt.prefix, got, want, tt.same[0], tt.same[1])
		}
	}
	if ID("a.test", "/x") == ID("a.test", "/y") {
		t.Error("different prefixes share an ID")
	}
}

// TestLimitFromConfig: limits.max_routes of the current configuration caps
// the routes, and a reload that raises it lets more in.
func TestLimitFromConfig(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var cur atomic.Pointer[Fixed]
	cfg := *testFixed()
	cfg.MaxRoutes = 1
	cur.Store(&cfg)
	m, _ := startManager(t, st, Options{Fixed: cur.Load})
	ctx := context.Background()
	if _, err := m.Add(ctx, Route{Host: "one.example.test", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	var le *capacity.LimitError
	if _, err := m.Add(ctx, Route{Host: "two.example.test", Pool: "a"}); !errors.As(err, &le) || le.Limit != 1 {
		t.Fatalf("second Add with limits.max_routes 1: err = %v, want *LimitError at 1", err)
	}
	raised := cfg
	raised.MaxRoutes = 2
	cur.Store(&raised) // a reload
	if _, err := m.Add(ctx, Route{Host: "two.example.test", Pool: "a"}); err != nil {
		t.Fatalf("Add after the limit was raised to 2: %v", err)
	}
	if m.Limit() != 2 {
		t.Errorf("Limit() = %d, want 2", m.Limit())
	}
}
