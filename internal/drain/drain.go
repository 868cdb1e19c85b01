// Package drain keeps the fleet-wide drain state of pool members in the
// store (one key per member, drain/<pool>/<member>), follows every
// writer's changes on each node with store.Follow and hands the set to
// the proxy, which stops sending new requests to drained members and lets
// the ones in flight finish. A drain that would leave a pool without a
// healthy member is refused unless forced.
package drain

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/fault"
	"gatehouse/internal/proxy"
	"gatehouse/internal/store"
)

// Prefix holds one key per drained member: drain/<pool>/<address>.
const Prefix = "drain/"

// Errors of Drain and Undrain.
var (
	// ErrNoMatch: the request names no member of any pool.
	ErrNoMatch = fault.New(fault.ErrNotFound, "drain: no member matches")
	// ErrUnsafe: the drain would leave a pool without a healthy member
	// (answered 409 unsafe).
	ErrUnsafe = fault.WithAnswer(fault.ErrConflict, "drain: refused", http.StatusConflict, "unsafe")
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = fault.New(fault.ErrInvalid, "drain: bad request")
)

// Record is the drain of one member, as stored.
type Record struct {
	Pool   string    `json:"pool"`
	Member string    `json:"member"`
	Zone   string    `json:"zone,omitempty"`
	Since  time.Time `json:"since"`
	// Reason says who drained it ("cli", "maintenance <id>").
	Reason string `json:"reason,omitempty"`
	// UpgradeGrace bounds how long WebSockets to the member go on.
	UpgradeGrace time.Duration `json:"upgrade_grace,omitempty"`
}

func key(pool, member string) string { return Prefix + pool + "/" + member }

// Request selects members: those of Pool (every pool if empty) in Zone
// (any zone if empty) with address Member (any if empty). At least Zone
// or Member must be set.
type Request struct {
	Pool   string `json:"pool,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Member string `json:"member,omitempty"`
	// Force drains even if a pool is left without a healthy member.
	Force bool `json:"force,omitempty"`
	// UpgradeGrace bounds WebSockets (0: proxy.DefaultUpgradeGrace).
	UpgradeGrace time.Duration `json:"upgrade_grace,omitempty"`
	Reason       string        `json:"reason,omitempty"`
}

func (r Request) String() string {
	var parts []string
	for _, kv := range [][2]string{{"pool", r.Pool}, {"zone", r.Zone}, {"member", r.Member}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+" "+kv[1])
		}
	}
	return strings.Join(parts, ", ")
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Pools returns the live pools (members, zones, health, drain).
	Pools func() []proxy.PoolStatus
	// OnChange gets the whole drain set after every change (one call at
	// a time, from one goroutine).
	OnChange func(map[string]map[string]proxy.Drain)
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// Manager writes drains to the store and follows them.
type Manager struct {
	st   store.Store
	log  *slog.Logger
	opts Options

	mu   sync.Mutex
	recs map[string]Record // by key
	// applied is the store revision recs reflect.
	applied store.Applied

	cancel context.CancelFunc
	done   <-chan struct{}
}

// New returns a Manager; Start begins following the store.
func New(st store.Store, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{st: st, log: opts.Logger.With("component", "drain"), opts: opts,
		recs: map[string]Record{}}
}

// Start loads the drains, hands them to OnChange and follows changes by
// any node until Close. ctx bounds only the loading.
func (m *Manager) Start(ctx context.Context) error {
	opts := store.FollowOptions{What: "drains", Logger: m.log}
	rev, err := store.Load(ctx, m.st, Prefix, opts, (*feed)(m))
	if err != nil {
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	opts.Loaded, opts.FromRev = true, rev
	m.done = store.Follow(runCtx, m.st, Prefix, opts, (*feed)(m)).Done()
	if n := len(m.List()); n > 0 {
		m.log.Info("drained members loaded", "members", n, "rev", rev)
	}
	return nil
}

// Close stops following the store.
func (m *Manager) Close() {
	if m.cancel != nil {
		m.cancel()
		<-m.done
	}
}

// List returns the drains, by pool and member.
func (m *Manager) List() []Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Record, 0, len(m.recs))
	for _, r := range m.recs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(key(a.Pool, a.Member), key(b.Pool, b.Member)) })
	return out
}

// Set returns the drain set in the form the proxy takes.
func (m *Manager) Set() map[string]map[string]proxy.Drain {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.setLocked()
}

func (m *Manager) setLocked() map[string]map[string]proxy.Drain {
	out := map[string]map[string]proxy.Drain{}
	for _, r := range m.recs {
		if out[r.Pool] == nil {
			out[r.Pool] = map[string]proxy.Drain{}
		}
		out[r.Pool][r.Member] = proxy.Drain{UpgradeGrace: r.UpgradeGrace}
	}
	return out
}

// match returns the members req selects, by pool.
func match(pools []proxy.PoolStatus, req Request) (map[string][]proxy.MemberStatus, error) {
	if req.Zone == "" && req.Member == "" {
		return nil, fmt.Errorf("%w: name a zone or a member", ErrBadRequest)
	}
	out := map[string][]proxy.MemberStatus{}
	for _, p := range pools {
		if req.Pool != "" && p.Name != req.Pool {
			continue
		}
		for _, ms := range p.Members {
			if (req.Zone == "" || ms.Zone == req.Zone) && (req.Member == "" || ms.Address == req.Member) {
				out[p.Name] = append(out[p.Name], ms)
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoMatch, req)
	}
	return out, nil
}

// Capacity is a pool's healthy capacity: the weight of its members that
// are up and not drained, against the total and the weight required (at
// least one member's).
type Capacity struct {
	Pool           string `json:"pool"`
	Members        int    `json:"members"`
	Healthy        int    `json:"healthy"`
	HealthyWeight  int    `json:"healthy_weight"`
	TotalWeight    int    `json:"total_weight"`
	Drained        int    `json:"drained"`
	RequiredWeight int    `json:"required_weight"`
}

// PoolCapacity computes the capacity of p if the members in extra were
// drained too.
func PoolCapacity(p proxy.PoolStatus, extra map[string]bool) Capacity {
	c := Capacity{Pool: p.Name, Members: len(p.Members), RequiredWeight: 1}
	for _, ms := range p.Members {
		c.TotalWeight += ms.Weight
		drained := ms.Drained || extra[ms.Address]
		if drained {
			c.Drained++
		}
		if ms.Up && !drained {
			c.Healthy++
			c.HealthyWeight += ms.Weight
		}
	}
	return c
}

// Check returns an error wrapping ErrUnsafe if draining the members req
// selects would leave a pool with no healthy member, naming the pool and
// its numbers; the capacities after the drain otherwise.
func Check(pools []proxy.PoolStatus, req Request) ([]Capacity, map[string][]proxy.MemberStatus, error) {
	sel, err := match(pools, req)
	if err != nil {
		return nil, nil, err
	}
	var caps []Capacity
	var errs []string
	for _, p := range pools {
		ms, ok := sel[p.Name]
		if !ok {
			continue
		}
		extra := map[string]bool{}
		for _, m := range ms {
			extra[m.Address] = true
		}
		c := PoolCapacity(p, extra)
		caps = append(caps, c)
		if c.Healthy == 0 {
			before := PoolCapacity(p, nil)
			errs = append(errs, fmt.Sprintf("pool %q would have no healthy member: %d of %d members healthy now (weight %d of %d), %d would be drained",
				p.Name, before.Healthy, c.Members, before.HealthyWeight, c.TotalWeight, len(ms)))
		}
	}
	if len(errs) > 0 && !req.Force {
		return caps, sel, fmt.Errorf("%w: %s (force to drain anyway)", ErrUnsafe, strings.Join(errs, "; "))
	}
	return caps, sel, nil
}

// Drain writes the drain of every member req selects, after the safety
// check, and waits until this node applies it. It returns the records
// written and the capacity of each affected pool.
func (m *Manager) Drain(ctx context.Context, req Request) ([]Record, []Capacity, error) {
	if req.UpgradeGrace < 0 {
		return nil, nil, fmt.Errorf("%w: upgrade_grace must not be negative", ErrBadRequest)
	}
	caps, sel, err := Check(m.opts.Pools(), req)
	if err != nil {
		return nil, caps, err
	}
	now := m.opts.Now().UTC()
	var ops []store.Op
	var recs []Record
	for pool, ms := range sel {
		for _, ms := range ms {
			r := Record{Pool: pool, Member: ms.Address, Zone: ms.Zone, Since: now, Reason: req.Reason, UpgradeGrace: req.UpgradeGrace}
			if ms.Drained {
				continue // already drained: keep its record
			}
			b, _ := json.Marshal(r)
			ops = append(ops, store.Put(key(pool, ms.Address), b))
			recs = append(recs, r)
		}
	}
	if err := m.write(ctx, ops); err != nil {
		return nil, caps, err
	}
	for _, r := range recs {
		m.log.Info("drain requested", "pool", r.Pool, "member", r.Member, "zone", r.Zone, "reason", r.Reason)
	}
	return recs, caps, nil
}

// Undrain removes the drains of the members req selects (drained or
// not), and waits until this node applies it.
func (m *Manager) Undrain(ctx context.Context, req Request) ([]Record, error) {
	if req.Zone == "" && req.Member == "" && req.Pool == "" {
		return nil, fmt.Errorf("%w: name a pool, a zone or a member", ErrBadRequest)
	}
	var ops []store.Op
	var recs []Record
	for _, r := range m.List() {
		if (req.Pool == "" || r.Pool == req.Pool) && (req.Zone == "" || r.Zone == req.Zone) && (req.Member == "" || r.Member == req.Member) {
			ops = append(ops, store.Delete(key(r.Pool, r.Member)))
			recs = append(recs, r)
		}
	}
	if len(ops) == 0 {
		return nil, fmt.Errorf("%w: no drained member for %s", ErrNoMatch, req)
	}
	if err := m.write(ctx, ops); err != nil {
		return nil, err
	}
	for _, r := range recs {
		m.log.Info("undrain requested", "pool", r.Pool, "member", r.Member, "zone", r.Zone)
	}
	return recs, nil
}

// write applies ops in transactions of at most 128 and waits until the
// watch of this node applied the last.
func (m *Manager) write(ctx context.Context, ops []store.Op) error {
	var rev int64
	for len(ops) > 0 {
		n := min(len(ops), 128)
		r, err := m.st.Txn(ctx, nil, ops[:n])
		if err != nil {
			return fmt.Errorf("writing drain state: %w", err)
		}
		rev, ops = r, ops[n:]
	}
	if rev == 0 || m.cancel == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.applied.Wait(wctx, rev)
	return nil
}

// feed is the Manager as the store.Handler of the drain keys.
type feed Manager

func (f *feed) Reset(ctx context.Context, l *store.Listing) error {
	m := (*Manager)(f)
	recs := map[string]Record{}
	for kv, err := range l.All() {
		if err != nil {
			return fmt.Errorf("listing drains: %w", err)
		}
		if r, ok := m.decode(kv); ok {
			recs[kv.Key] = r
		}
	}
	m.mu.Lock()
	m.recs = recs
	set := m.setLocked()
	m.mu.Unlock()
	m.notify(set)
	m.advance(l.Rev())
	return nil
}

func (f *feed) Apply(resps []store.WatchResponse) {
	m := (*Manager)(f)
	var last int64
	m.mu.Lock()
	for _, resp := range resps {
		for _, ev := range resp.Events {
			switch ev.Type {
			case store.EventPut:
				if r, ok := m.decode(ev.KV); ok {
					m.recs[ev.KV.Key] = r
				}
			case store.EventDelete:
				delete(m.recs, ev.KV.Key)
			}
		}
		last = max(last, resp.Rev)
	}
	set := m.setLocked()
	m.mu.Unlock()
	m.notify(set)
	m.advance(last)
}

func (m *Manager) decode(kv store.KV) (Record, bool) {
	var r Record
	if err := json.Unmarshal(kv.Value, &r); err != nil || key(r.Pool, r.Member) != kv.Key {
		m.log.Warn("ignoring malformed drain record", "key", kv.Key, "err", err)
		return Record{}, false
	}
	return r, true
}

func (m *Manager) notify(set map[string]map[string]proxy.Drain) {
	if m.opts.OnChange != nil {
		m.opts.OnChange(set)
	}
}

func (m *Manager) advance(rev int64) { m.applied.Advance(rev) }

// Progress is the work left on a drained member of this node.
type Progress struct {
	Pool      string `json:"pool"`
	Member    string `json:"member"`
	Zone      string `json:"zone,omitempty"`
	Up        bool   `json:"up"`
	InFlight  int64  `json:"in_flight"`
	OpenConns int64  `json:"open_connections"`
}

// Progress returns the drained members of this node's proxy with their
// requests in flight and open upstream connections.
func (m *Manager) Progress() []Progress {
	var out []Progress
	for _, p := range m.opts.Pools() {
		for _, ms := range p.Members {
			if ms.Drained {
				out = append(out, Progress{Pool: p.Name, Member: ms.Address, Zone: ms.Zone, Up: ms.Up, InFlight: ms.InFlight, OpenConns: ms.OpenConns})
			}
		}
	}
	return out
}

// Capacities returns the healthy capacity of every pool.
func (m *Manager) Capacities() []Capacity {
	var out []Capacity
	for _, p := range m.opts.Pools() {
		out = append(out, PoolCapacity(p, nil))
	}
	return out
}
