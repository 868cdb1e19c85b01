package routes

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

const (
	listPageSize = 10000
	// maxAttempts bounds retries of a write that lost a race with another writer.
	maxAttempts = 5
	// DefaultApplyTimeout is how long a write waits for this node's watch
	// to apply it when Options.ApplyTimeout is 0.
	DefaultApplyTimeout = 5 * time.Second
)

// Options configure a Manager. The zero value is usable.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// Fixed returns what the node's current configuration fixes: a route
	// must name one of its pools and may not redefine one of its routes.
	// Nil (or a nil result): neither is checked.
	Fixed func() *Fixed
	// Admission decides whether a new route fits the limit in force (the
	// node's *capacity.Registry, whose limits a reload swaps). Nil: the
	// manager's own, with the limit of Limit.
	Admission Admission
	// MaxRoutes caps the routes in the store when Admission is nil and
	// Fixed sets no MaxRoutes (0: DefaultMaxRoutes; negative: no
	// cap).
	MaxRoutes int64
	// OnChange is called with every route, in no particular order: once
	// by Start after its listing, then after every change the watch
	// delivers (several transactions that arrive together make one call).
	// Calls come one at a time from one goroutine; the slice is the
	// callee's.
	OnChange func([]Route)
	// ApplyTimeout bounds how long Add, Replace, Update and Remove wait
	// for this node's watch to apply their write (and OnChange to return)
	// before they return (0: DefaultApplyTimeout). The write stands either
	// way.
	ApplyTimeout time.Duration
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Manager adds, replaces and removes dynamic routes in the store and
// follows every writer's changes with a watch. It is safe for concurrent
// use.
type Manager struct {
	st   store.Store
	log  *slog.Logger
	opts Options
	now  func() time.Time

	// writeMu serializes this process's writes, so that the limit check
	// sees the results of the writes before it.
	writeMu sync.Mutex

	// mu guards routes.
	mu     sync.Mutex
	routes map[string]Route // by ID
	// applied is the store revision the routes reflect.
	applied store.Applied
	count   atomic.Int64

	started  atomic.Bool
	runMu    sync.Mutex // guards follower
	follower *store.Follower
}

// NewManager returns a Manager over st. Call Start to load the routes and
// follow changes, and Close to stop.
func NewManager(st store.Store, opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.MaxRoutes == 0 {
		opts.MaxRoutes = DefaultMaxRoutes
	}
	if opts.ApplyTimeout <= 0 {
		opts.ApplyTimeout = DefaultApplyTimeout
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := &Manager{
		st: st, log: log.With("component", "routes"), opts: opts, now: now,
		routes: map[string]Route{},
	}
	if m.opts.Admission == nil {
		r := capacity.New(capacity.Options{Logger: m.log})
		r.Register(capacity.Routes, "count", "limits.max_routes", true, func() (int64, int64) { return m.Count(), m.Limit() })
		m.opts.Admission = r
	}
	return m
}

// counterKey holds the number of routes under Prefix, changed in the same
// transaction as every write that adds or deletes one.
const counterKey = store.CounterPrefix + "routes"

// Admission decides whether a change fits the limits in force and hears of
// the usage after it (*capacity.Registry).
type Admission interface {
	// Admit returns an error (a *capacity.LimitError) if adding n to
	// usage of resource would cross its limit.
	Admit(ctx context.Context, resource string, usage, n int64) error
	// Record notes the usage of resource after a committed change.
	Record(resource string, usage int64)
}

// Count returns the number of routes this node knows of.
func (m *Manager) Count() int64 { return m.count.Load() }

// Limit returns the cap on routes of a manager without Options.Admission
// (0: none): limits.max_routes of the current configuration when it sets
// one, else Options.MaxRoutes.
func (m *Manager) Limit() int64 {
	if f := m.fixed(); f != nil && f.MaxRoutes > 0 {
		return f.MaxRoutes
	}
	return max(m.opts.MaxRoutes, 0)
}

// Routes returns the routes this node follows, sorted by host then path
// prefix.
func (m *Manager) Routes() []Route {
	m.mu.Lock()
	out := m.snapshotLocked()
	m.mu.Unlock()
	sortRoutes(out)
	return out
}

// snapshotLocked returns the routes in no particular order.
func (m *Manager) snapshotLocked() []Route {
	out := make([]Route, 0, len(m.routes))
	for _, r := range m.routes {
		out = append(out, r)
	}
	return out
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.PathPrefix, b.PathPrefix))
	})
}

func (m *Manager) fixed() *Fixed {
	if m.opts.Fixed == nil {
		return nil
	}
	return m.opts.Fixed()
}

// Start lists the routes, calls OnChange with them, then follows changes
// by any writer with a watch until Close. ctx bounds only the listing.
func (m *Manager) Start(ctx context.Context) error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.follower != nil {
		return errors.New("routes: manager already started")
	}
	opts := store.FollowOptions{What: "routes", Logger: m.log, PageSize: listPageSize}
	rev, err := store.Load(ctx, m.st, Prefix, opts, (*feed)(m))
	if err != nil {
		return err
	}
	m.started.Store(true)
	// Follow opens the first watch before it returns: a write right after
	// Start is not missed.
	opts.Loaded, opts.FromRev = true, rev
	m.follower = store.Follow(context.WithoutCancel(ctx), m.st, Prefix, opts, (*feed)(m))
	m.log.Info("dynamic routes loaded", "routes", m.Count(), "rev", rev)
	return nil
}

// Close stops following the store and waits for the watch to end. It does
// not close the store.
func (m *Manager) Close() error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	m.follower.Stop()
	return nil
}

// list reads every route from the store.
func (m *Manager) list(ctx context.Context) ([]Route, error) {
	var out []Route
	for kv, err := range store.All(ctx, m.st, Prefix, listPageSize) {
		if err != nil {
			return nil, fmt.Errorf("listing routes: %w", err)
		}
		if r, ok := m.decodeLogged(kv); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *Manager) decodeLogged(kv store.KV) (Route, bool) {
	r, err := decode(kv)
	if err != nil {
		m.log.Warn("ignoring malformed route", "key", kv.Key, "err", err)
		return Route{}, false
	}
	return r, true
}

func decode(kv store.KV) (Route, error) {
	var r Route
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		return Route{}, err
	}
	if r.ID == "" || key(r.ID) != kv.Key {
		return Route{}, fmt.Errorf("id %q does not match the key", r.ID)
	}
	return r, nil
}

// feed is the Manager as the store.Handler that keeps its routes in step
// with routes/ (see store.Follow).
type feed Manager

// Reset replaces the routes with a listing of the store and calls
// OnChange. A listing spread over pages may mix revisions; the watch from
// the first page's revision replays what changed meanwhile.
func (f *feed) Reset(ctx context.Context, l *store.Listing) error {
	m := (*Manager)(f)
	byID := make(map[string]Route)
	for kv, err := range l.All() {
		if err != nil {
			return fmt.Errorf("listing routes: %w", err)
		}
		if r, ok := m.decodeLogged(kv); ok {
			byID[r.ID] = r
		}
	}
	m.mu.Lock()
	m.routes = byID
	m.count.Store(int64(len(byID)))
	snap := m.snapshotLocked()
	m.mu.Unlock()
	m.notify(snap)
	m.advance(l.Rev())
	return nil
}

// Apply applies watched transactions that arrived together, then calls
// OnChange once if the routes changed.
func (f *feed) Apply(resps []store.WatchResponse) {
	m := (*Manager)(f)
	m.mu.Lock()
	changed := false
	var last int64
	for _, r := range resps {
		changed = m.applyLocked(r) || changed
		last = max(last, r.Rev)
	}
	var snap []Route
	if changed {
		snap = m.snapshotLocked()
	}
	m.mu.Unlock()
	if changed {
		m.notify(snap)
	}
	m.advance(last)
}

func (m *Manager) notify(snap []Route) {
	if m.opts.OnChange != nil {
		m.opts.OnChange(snap)
	}
}

// advance records that the routes (and OnChange) reflect the store up to rev.
func (m *Manager) advance(rev int64) { m.applied.Advance(rev) }

// applyLocked applies one watched transaction and reports whether the
// routes changed.
func (m *Manager) applyLocked(resp store.WatchResponse) bool {
	changed := false
	for _, ev := range resp.Events {
		id := ev.KV.Key[len(Prefix):]
		switch ev.Type {
		case store.EventPut:
			r, ok := m.decodeLogged(ev.KV)
			if !ok {
				continue
			}
			m.routes[id] = r
			changed = true
		case store.EventDelete:
			if _, ok := m.routes[id]; ok {
				delete(m.routes, id)
				changed = true
			}
		}
	}
	m.count.Store(int64(len(m.routes)))
	return changed
}

// waitApplied waits until the watch has applied rev (so this node serves
// the write), ctx is done or Options.ApplyTimeout passes.
func (m *Manager) waitApplied(ctx context.Context, rev int64) {
	if !m.started.Load() {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, m.opts.ApplyTimeout)
	defer cancel()
	if !m.applied.Wait(wctx, rev) && ctx.Err() == nil {
		m.log.Warn("a route change is stored but this node's watch has not applied it yet", "rev", rev, "applied", m.applied.Rev(), "waited", m.opts.ApplyTimeout)
	}
}

// Add stores a new route. It refuses a host and path prefix that already
// have a route (*ConflictError), invalid input (*InputError) and a route
// past the limit (*capacity.LimitError). It returns once this node serves the route.
func (m *Manager) Add(ctx context.Context, r Route) (Route, error) {
	return m.put(ctx, r, false)
}

// Replace stores r as the route of its host and path prefix, adding it or
// replacing the one there (whose creation time it keeps). It returns once
// this node serves the route.
func (m *Manager) Replace(ctx context.Context, r Route) (Route, error) {
	return m.put(ctx, r, true)
}

func (m *Manager) put(ctx context.Context, in Route, replace bool) (Route, error) {
	r, err := check(in, m.fixed())
	if err != nil {
		return Route{}, err
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	k := key(r.ID)
	for range maxAttempts {
		cur, err := m.st.Get(ctx, k)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Route{}, fmt.Errorf("reading route %s: %w", r.ID, err)
		}
		now := m.now().UTC()
		r.CreatedAt, r.UpdatedAt = now, now
		conds := []store.Cond{store.Absent(k)}
		var ops []store.Op
		counted := int64(-1) // the route count after the write, if it adds one
		if exists {
			old, derr := decode(cur)
			if !replace {
				reason := "a route already exists"
				if derr == nil {
					reason = fmt.Sprintf("a route already exists (id %s, pool %q); replace it or remove it first", old.ID, old.Pool)
				}
				return Route{}, &ConflictError{Host: r.Host, PathPrefix: r.PathPrefix, Reason: reason}
			}
			if derr == nil {
				r.CreatedAt = old.CreatedAt
			}
			conds[0] = store.Cond{Key: k, ModRev: cur.ModRev}
		} else {
			cnt, err := store.ReadCounter(ctx, m.st, counterKey, Prefix)
			if err != nil {
				return Route{}, err
			}
			if err := m.opts.Admission.Admit(ctx, capacity.Routes, cnt.Value, 1); err != nil {
				return Route{}, err
			}
			counted = cnt.Value + 1
			conds, ops = append(conds, cnt.Cond), append(ops, cnt.Op(counted))
		}
		val, err := json.Marshal(r)
		if err != nil {
			return Route{}, err
		}
		rev, err := m.st.Txn(ctx, conds, append(ops, store.Put(k, val)))
		if errors.Is(err, store.ErrConflict) {
			continue // another writer got there first: look again
		}
		if err != nil {
			return Route{}, fmt.Errorf("storing route %s: %w", r.ID, err)
		}
		if counted >= 0 {
			m.opts.Admission.Record(capacity.Routes, counted)
		}
		m.waitApplied(ctx, rev)
		return r, nil
	}
	return Route{}, &ConflictError{Host: r.Host, PathPrefix: r.PathPrefix, Reason: "changed concurrently by another writer; try again"}
}

// Get returns the route with id from the store, or an error wrapping
// store.ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Route, error) {
	r, _, err := m.get(ctx, id)
	return r, err
}

func (m *Manager) get(ctx context.Context, id string) (Route, int64, error) {
	if !validID(id) {
		return Route{}, 0, fmt.Errorf("route %q does not exist: %w", id, store.ErrNotFound)
	}
	kv, err := m.st.Get(ctx, key(id))
	if errors.Is(err, store.ErrNotFound) {
		return Route{}, 0, fmt.Errorf("route %q does not exist: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return Route{}, 0, fmt.Errorf("reading route %q: %w", id, err)
	}
	r, err := decode(kv)
	if err != nil {
		return Route{}, 0, fmt.Errorf("route %q: malformed in the store: %w", id, err)
	}
	return r, kv.ModRev, nil
}

// Update changes the pool or tenant of the route with id. It returns once
// this node serves the change.
func (m *Manager) Update(ctx context.Context, id string, u Update) (Route, error) {
	if u.Pool != nil {
		if err := checkPool(*u.Pool, m.fixed()); err != nil {
			return Route{}, err
		}
	}
	if u.Tenant != nil {
		if err := checkTenant(*u.Tenant); err != nil {
			return Route{}, err
		}
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	for range maxAttempts {
		r, modRev, err := m.get(ctx, id)
		if err != nil {
			return Route{}, err
		}
		if u.Pool != nil {
			r.Pool = *u.Pool
		}
		if u.Tenant != nil {
			r.Tenant = *u.Tenant
		}
		r.UpdatedAt = m.now().UTC()
		val, err := json.Marshal(r)
		if err != nil {
			return Route{}, err
		}
		rev, err := m.st.Txn(ctx, []store.Cond{{Key: key(id), ModRev: modRev}}, []store.Op{store.Put(key(id), val)})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Route{}, fmt.Errorf("storing route %s: %w", id, err)
		}
		m.waitApplied(ctx, rev)
		return r, nil
	}
	return Route{}, fmt.Errorf("route %s: changed concurrently by another writer; try again: %w", id, store.ErrConflict)
}

// Remove deletes the route with id (an error wrapping store.ErrNotFound if
// there is none). It returns once this node no longer serves it.
func (m *Manager) Remove(ctx context.Context, id string) error {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	for range maxAttempts {
		_, modRev, err := m.get(ctx, id)
		if err != nil {
			return err
		}
		cnt, err := store.ReadCounter(ctx, m.st, counterKey, Prefix)
		if err != nil {
			return err
		}
		after := max(cnt.Value-1, 0)
		rev, err := m.st.Txn(ctx, []store.Cond{{Key: key(id), ModRev: modRev}, cnt.Cond}, []store.Op{store.Delete(key(id)), cnt.Op(after)})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("removing route %s: %w", id, err)
		}
		m.opts.Admission.Record(capacity.Routes, after)
		m.waitApplied(ctx, rev)
		return nil
	}
	return fmt.Errorf("route %s: changed concurrently by another writer; try again: %w", id, store.ErrConflict)
}

// List returns every route in the store, sorted by host then path prefix.
func (m *Manager) List(ctx context.Context) ([]Route, error) {
	rs, err := m.list(ctx)
	if err != nil {
		return nil, err
	}
	sortRoutes(rs)
	return rs, nil
}
