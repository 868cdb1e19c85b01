// Package hostnames keeps the customer hostnames the edge serves, as a
// SaaS edge's "custom hostnames": a name, the tenant it belongs to, the
// pool it is routed to, and the lifecycle of its certificate when an ACME
// CA issues it (pending_validation → issuing → active → renewing → active…,
// or failed with the CA's reason, the attempt count and the next retry).
//
// Hostnames live in the store under hostnames/<name>, one JSON record per
// name; every node follows them with a watch and keeps a compact in-memory
// index (name → state and due time) for the handshake path and the
// scheduler. Adding a hostname adds its route (host, path "/", pool);
// removing it removes the route and, for an ACME hostname, its certificate.
package hostnames

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"gatehouse/internal/config"
	"gatehouse/internal/fault"
	"gatehouse/internal/routes"
	"gatehouse/internal/store"
)

// Prefix is the store prefix of the hostnames: Prefix + name holds one
// Hostname as JSON.
const Prefix = "hostnames/"

// State is where a hostname is in its certificate's lifecycle.
type State string

// States of a hostname.
const (
	PendingValidation State = "pending_validation" // registered, no certificate yet
	Issuing           State = "issuing"            // an order is in progress
	Active            State = "active"             // a valid certificate is served
	Renewing          State = "renewing"           // a renewal order is in progress; the old certificate is served
	Failed            State = "failed"             // the last order failed; see Reason, Attempts, NextAttempt
)

// States lists every state, in lifecycle order.
var States = []State{PendingValidation, Issuing, Active, Renewing, Failed}

// Sources of a hostname's certificate.
const (
	SourceACME     = "acme"     // obtained and renewed from the ACME CA
	SourceUploaded = "uploaded" // brought by the operator (gatehouse cert add)
)

// Input limits.
const maxTenant = 128

// Hostname is one customer hostname.
type Hostname struct {
	// Name is the hostname, lower case without a trailing dot.
	Name   string `json:"name"`
	Tenant string `json:"tenant,omitempty"`
	Pool   string `json:"pool"`
	// Source says who provides the certificate: "acme" or "uploaded".
	Source string `json:"source"`
	State  State  `json:"state"`
	// Reason is why the last order failed (the CA's problem detail).
	Reason string `json:"reason,omitempty"`
	// Attempts counts the orders that failed since the last success.
	Attempts int `json:"attempts,omitempty"`
	// NextAttempt is when the next order is due: the first issuance, the
	// renewal time or the retry after a failure. Zero for an uploaded
	// hostname.
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// CertID is the bundle ACME issued and the edge serves for the name.
	CertID string `json:"cert_id,omitempty"`
	Serial string `json:"serial,omitempty"`
	// AuthorityKeyID of the certificate, with Serial its ACME Renewal
	// Information identity (the order that renews it names it).
	AuthorityKeyID []byte    `json:"authority_key_id,omitempty"`
	NotBefore      time.Time `json:"not_before,omitzero"`
	NotAfter       time.Time `json:"not_after,omitzero"`
	// RenewalWindow is the CA's suggested renewal window (ARI), stored so
	// that every node of a fleet agrees on it.
	WindowStart time.Time `json:"window_start,omitzero"`
	WindowEnd   time.Time `json:"window_end,omitzero"`
	// RouteID is the route that was added with the hostname.
	RouteID   string    `json:"route_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Key returns the store key of a hostname.
func Key(name string) string { return Prefix + name }

// InputError is a problem with a request's input, naming the field.
type InputError struct{ Field, Problem string }

func (e *InputError) Error() string { return e.Field + ": " + e.Problem }

// Is makes an InputError a fault.ErrInvalid.
func (e *InputError) Is(target error) bool { return target == fault.ErrInvalid }

// FieldName is the field (fault.Field).
func (e *InputError) FieldName() string { return e.Field }

// Is makes a ConflictError a fault.ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == fault.ErrConflict }

// ConflictError refuses an addition of a name that is already registered.
type ConflictError struct{ Name string }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("name: %q is already registered (gatehouse hostname show %s)", e.Name, e.Name)
}

// Routes is what the manager needs of the dynamic routes.
type Routes interface {
	Add(ctx context.Context, r routes.Route) (routes.Route, error)
	Remove(ctx context.Context, id string) error
}

// Certs is what the manager needs of the certificate manager.
type Certs interface {
	Remove(ctx context.Context, id string) error
}

// Options configure a Manager.
type Options struct {
	Logger *slog.Logger
	// Routes adds and removes the route of each hostname (nil: none).
	Routes Routes
	// Certs removes an ACME hostname's certificate with it (nil: kept).
	Certs Certs
	// Wildcards allows "*.example.com" (only dns-01 can validate them).
	Wildcards bool
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// OnChange is called, on the watch's goroutine, for every hostname
	// written or removed (removed: h.Name set, ok false), and for every
	// hostname after a full listing. It must not block.
	OnChange func(h Hostname, ok bool)
	// OnTransition is called by the node that made a change of state
	// (added, a new state, removed), once per change, after the store took
	// it. It must not block.
	OnTransition func(Transition)
}

// Transition is one change of a hostname's state, as made by this node.
// From is empty for an added hostname; To is Removed for a removed one.
type Transition struct {
	Hostname Hostname
	From, To State
	At       time.Time
}

// Removed is Transition.To for a removed hostname (not a stored state).
const Removed State = "removed"

// entry is what a node keeps in memory per hostname.
type entry struct {
	state State
	acme  bool
	cert  string // the ACME certificate's bundle id
}

// Manager stores hostnames and follows them. It is safe for concurrent use.
type Manager struct {
	st   store.Store
	log  *slog.Logger
	opts Options
	now  func() time.Time

	// mu guards names and certs.
	mu    sync.RWMutex
	names map[string]entry
	// certs maps the bundle id of each ACME certificate to its hostname.
	certs map[string]string
	// applied is the store revision the index reflects.
	applied store.Applied

	// transitions counts state changes made by this node, by new state.
	transitions [5]atomic.Uint64

	started atomic.Bool
	runMu   sync.Mutex
	// follower keeps the index in step with the store (nil until Start).
	follower *store.Follower
}

// New returns a Manager over st; Start loads and follows the hostnames.
func New(st store.Store, opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Manager{st: st, log: log.With("component", "hostnames"), opts: opts, now: now,
		names: map[string]entry{}, certs: map[string]string{}}
}

// Start lists the hostnames and follows changes until Close.
func (m *Manager) Start(ctx context.Context) error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.follower != nil {
		return errors.New("hostnames: already started")
	}
	opts := store.FollowOptions{What: "hostnames", Logger: m.log, PageSize: 10000}
	rev, err := store.Load(ctx, m.st, Prefix, opts, follower{m})
	if err != nil {
		return fmt.Errorf("listing hostnames: %w", err)
	}
	opts.Loaded, opts.FromRev = true, rev
	m.follower = store.Follow(context.WithoutCancel(ctx), m.st, Prefix, opts, follower{m})
	m.started.Store(true)
	m.log.Info("hostnames loaded", "hostnames", m.Count(), "rev", rev)
	return nil
}

// Close stops following the store.
func (m *Manager) Close() error {
	m.runMu.Lock()
	f := m.follower
	m.runMu.Unlock()
	f.Stop()
	return nil
}

func decode(kv store.KV) (Hostname, error) {
	var h Hostname
	if err := json.Unmarshal(kv.Value, &h); err != nil {
		return h, err
	}
	if Key(h.Name) != kv.Key {
		return h, fmt.Errorf("name %q does not match the key", h.Name)
	}
	return h, nil
}

func (m *Manager) reset(kvs []store.KV) {
	names := make(map[string]entry, len(kvs))
	certIDs := map[string]string{}
	var all []Hostname
	for _, kv := range kvs {
		h, err := decode(kv)
		if err != nil {
			m.log.Warn("ignoring malformed hostname record", "key", kv.Key, "err", err)
			continue
		}
		names[h.Name] = newEntry(h)
		if names[h.Name].cert != "" {
			certIDs[h.CertID] = h.Name
		}
		all = append(all, h)
	}
	m.mu.Lock()
	old := m.names
	m.names, m.certs = names, certIDs
	m.mu.Unlock()
	if m.opts.OnChange == nil {
		return
	}
	for name := range old {
		if _, ok := names[name]; !ok {
			m.opts.OnChange(Hostname{Name: name}, false)
		}
	}
	for _, h := range all {
		m.opts.OnChange(h, true)
	}
}

func (m *Manager) event(ev store.Event) {
	name := strings.TrimPrefix(ev.KV.Key, Prefix)
	if ev.Type == store.EventDelete {
		m.mu.Lock()
		delete(m.certs, m.names[name].cert)
		delete(m.names, name)
		m.mu.Unlock()
		if m.opts.OnChange != nil {
			m.opts.OnChange(Hostname{Name: name}, false)
		}
		return
	}
	h, err := decode(ev.KV)
	if err != nil {
		m.log.Warn("ignoring malformed hostname record", "key", ev.KV.Key, "err", err)
		return
	}
	e := newEntry(h)
	m.mu.Lock()
	delete(m.certs, m.names[h.Name].cert)
	m.names[h.Name] = e
	if e.cert != "" {
		m.certs[e.cert] = h.Name
	}
	m.mu.Unlock()
	if m.opts.OnChange != nil {
		m.opts.OnChange(h, true)
	}
}

func (m *Manager) synced(rev int64) { m.applied.Advance(rev) }

// waitApplied waits until the in-memory index reflects rev (or ctx ends),
// so that a write through the admin API is visible on return.
func (m *Manager) waitApplied(ctx context.Context, rev int64) {
	if !m.started.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	m.applied.Wait(ctx, rev)
}

func newEntry(h Hostname) entry {
	e := entry{state: h.State, acme: h.Source == SourceACME}
	if e.acme {
		e.cert = h.CertID
	}
	return e
}

// CertSource returns "acme" for the bundle id of a hostname's ACME
// certificate and "uploaded" for any other.
func (m *Manager) CertSource(id string) string {
	m.mu.RLock()
	_, ok := m.certs[id]
	m.mu.RUnlock()
	if ok {
		return SourceACME
	}
	return SourceUploaded
}

// Count returns the number of hostnames known to this node.
func (m *Manager) Count() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return int64(len(m.names))
}

// Lookup reports whether name is a registered hostname, and its state and
// source, from memory (no store access: safe on the handshake path).
func (m *Manager) Lookup(name string) (state State, acme, ok bool) {
	m.mu.RLock()
	e, ok := m.names[name]
	m.mu.RUnlock()
	return e.state, e.acme, ok
}

// Counts returns how many hostnames are in each state.
func (m *Manager) Counts() map[State]int {
	out := make(map[State]int, len(States))
	for _, s := range States {
		out[s] = 0
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, e := range m.names {
		out[e.state]++
	}
	return out
}

// Transitions returns how many state changes this node made, by new state.
func (m *Manager) Transitions() map[State]uint64 {
	out := make(map[State]uint64, len(States))
	for i, s := range States {
		out[s] = m.transitions[i].Load()
	}
	return out
}

// Normalize returns name lower case without a trailing dot.
func Normalize(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// CheckName reports whether name (normalized) can be a hostname: a DNS
// name of at least two labels, not an IP address, a wildcard only when
// wildcards is true.
func CheckName(name string, wildcards bool) error {
	bad := func(format string, args ...any) error {
		return &InputError{Field: "name", Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case name == "":
		return bad("is required")
	case net.ParseIP(strings.Trim(name, "[]")) != nil:
		return bad("%q is an IP address; certificates are issued for DNS names only", name)
	case name == "*":
		return bad("\"*\" is not a hostname")
	case strings.HasPrefix(name, "*."):
		if !wildcards {
			return bad("%q is a wildcard: only the dns-01 challenge can validate it, and acme.challenges does not offer dns-01", name)
		}
	case strings.Contains(name, "*"):
		return bad("%q: '*' is allowed only as the whole first label", name)
	}
	if err := config.CheckRouteHost(name); err != nil {
		return &InputError{Field: "name", Problem: err.Error()}
	}
	if !strings.Contains(strings.TrimPrefix(name, "*."), ".") {
		return bad("%q has one label; a customer hostname needs a domain (e.g. shop.example.com)", name)
	}
	if strings.Contains(name, "_") {
		return bad("%q: '_' is not allowed in a certificate's hostname", name)
	}
	return nil
}

// Add registers a hostname and its route. Invalid input is an
// *InputError naming the field; a name already registered is a
// *ConflictError. On any error nothing was changed.
func (m *Manager) Add(ctx context.Context, in Hostname) (Hostname, error) {
	in.Name = Normalize(in.Name)
	if err := CheckName(in.Name, m.opts.Wildcards); err != nil {
		return Hostname{}, err
	}
	if len(in.Tenant) > maxTenant || strings.IndexFunc(in.Tenant, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return Hostname{}, &InputError{Field: "tenant", Problem: fmt.Sprintf("must be at most %d printable characters", maxTenant)}
	}
	if in.Pool == "" {
		return Hostname{}, &InputError{Field: "pool", Problem: "is required: the pool the hostname is routed to"}
	}
	switch in.Source {
	case "":
		in.Source = SourceACME
	case SourceACME, SourceUploaded:
	default:
		return Hostname{}, &InputError{Field: "source", Problem: fmt.Sprintf("%q must be acme or uploaded", in.Source)}
	}
	if _, err := m.st.Get(ctx, Key(in.Name)); err == nil {
		return Hostname{}, &ConflictError{Name: in.Name}
	} else if !errors.Is(err, store.ErrNotFound) {
		return Hostname{}, err
	}
	now := m.now().UTC()
	h := Hostname{Name: in.Name, Tenant: in.Tenant, Pool: in.Pool, Source: in.Source, CreatedAt: now, UpdatedAt: now}
	if h.Source == SourceACME {
		h.State, h.NextAttempt = PendingValidation, now
	} else {
		h.State = Active
	}
	if m.opts.Routes != nil {
		rt, err := m.opts.Routes.Add(ctx, routes.Route{Host: h.Name, PathPrefix: "/", Pool: h.Pool, Tenant: h.Tenant})
		if err != nil {
			return Hostname{}, err
		}
		h.RouteID = rt.ID
	}
	val, _ := json.Marshal(h)
	rev, err := m.st.Txn(ctx, []store.Cond{store.Absent(Key(h.Name))}, []store.Op{store.Put(Key(h.Name), val)})
	if err != nil {
		m.undoRoute(h)
		if errors.Is(err, store.ErrConflict) {
			return Hostname{}, &ConflictError{Name: h.Name}
		}
		return Hostname{}, fmt.Errorf("storing hostname %q: %w", h.Name, err)
	}
	m.transitions[stateIndex(h.State)].Add(1)
	m.log.Info("hostname added", "name", h.Name, "tenant", h.Tenant, "pool", h.Pool, "source", h.Source, "state", h.State)
	m.transition(h, "", h.State)
	m.waitApplied(ctx, rev)
	return h, nil
}

func (m *Manager) undoRoute(h Hostname) {
	if m.opts.Routes == nil || h.RouteID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.opts.Routes.Remove(ctx, h.RouteID); err != nil && !errors.Is(err, store.ErrNotFound) {
		m.log.Warn("removing the route of a hostname", "name", h.Name, "route", h.RouteID, "err", err)
	}
}

// Get returns one hostname, or an error wrapping store.ErrNotFound.
func (m *Manager) Get(ctx context.Context, name string) (Hostname, error) {
	h, _, err := m.get(ctx, Normalize(name))
	return h, err
}

func (m *Manager) get(ctx context.Context, name string) (Hostname, int64, error) {
	if name == "" {
		return Hostname{}, 0, fmt.Errorf("hostname %q: %w", name, store.ErrNotFound)
	}
	kv, err := m.st.Get(ctx, Key(name))
	if err != nil {
		return Hostname{}, 0, fmt.Errorf("hostname %q: %w", name, err)
	}
	h, err := decode(kv)
	if err != nil {
		return Hostname{}, 0, fmt.Errorf("hostname %q: %w", name, err)
	}
	return h, kv.ModRev, nil
}

// List returns the hostnames (in one state, unless state is ""), in name
// order, up to limit (0: all) after the name after.
func (m *Manager) List(ctx context.Context, state State, after string, limit int) ([]Hostname, error) {
	if state != "" && !slices.Contains(States, state) {
		return nil, &InputError{Field: "state", Problem: fmt.Sprintf("%q is not a state (pending_validation, issuing, active, renewing, failed)", state)}
	}
	var out []Hostname
	start := ""
	if after != "" {
		start = Key(Normalize(after))
	}
	for {
		kvs, _, err := m.st.List(ctx, Prefix, start, 1000)
		if err != nil {
			return nil, fmt.Errorf("listing hostnames: %w", err)
		}
		for _, kv := range kvs {
			h, err := decode(kv)
			if err != nil {
				continue
			}
			if state == "" || h.State == state {
				out = append(out, h)
				if limit > 0 && len(out) == limit {
					return out, nil
				}
			}
		}
		if len(kvs) < 1000 {
			return out, nil
		}
		start = kvs[len(kvs)-1].Key
	}
}

// Remove deletes a hostname, its route and, for an ACME hostname, its
// certificate: the edge stops serving and routing it.
func (m *Manager) Remove(ctx context.Context, name string) error {
	name = Normalize(name)
	h, rev, err := m.get(ctx, name)
	if err != nil {
		return err
	}
	nrev, err := m.st.Txn(ctx, []store.Cond{{Key: Key(name), ModRev: rev}}, []store.Op{store.Delete(Key(name))})
	if err != nil {
		return fmt.Errorf("removing hostname %q: %w", name, err)
	}
	m.undoRoute(h)
	if h.Source == SourceACME && h.CertID != "" && m.opts.Certs != nil {
		if err := m.opts.Certs.Remove(ctx, h.CertID); err != nil && !errors.Is(err, store.ErrNotFound) {
			m.log.Warn("removing the certificate of a hostname", "name", name, "cert", h.CertID, "err", err)
		}
	}
	m.log.Info("hostname removed", "name", name, "state", h.State)
	m.transition(h, h.State, Removed)
	m.waitApplied(ctx, nrev)
	return nil
}

// Retry makes a pending, failed or active ACME hostname due at once (after
// the operator fixed what made it fail).
func (m *Manager) Retry(ctx context.Context, name string) (Hostname, error) {
	return m.Update(ctx, Normalize(name), func(h *Hostname) error {
		if h.Source != SourceACME {
			return &InputError{Field: "name", Problem: fmt.Sprintf("%q has an uploaded certificate: nothing to retry", h.Name)}
		}
		h.NextAttempt = m.now().UTC()
		return nil
	})
}

// Update changes a hostname with fn under a compare-and-swap, retrying on
// a concurrent change. A change of state is logged and counted.
func (m *Manager) Update(ctx context.Context, name string, fn func(h *Hostname) error) (Hostname, error) {
	for range 5 {
		h, rev, err := m.get(ctx, name)
		if err != nil {
			return Hostname{}, err
		}
		old := h.State
		if err := fn(&h); err != nil {
			return Hostname{}, err
		}
		h.UpdatedAt = m.now().UTC()
		val, _ := json.Marshal(h)
		nrev, err := m.st.Txn(ctx, []store.Cond{{Key: Key(name), ModRev: rev}}, []store.Op{store.Put(Key(name), val)})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Hostname{}, fmt.Errorf("updating hostname %q: %w", name, err)
		}
		if h.State != old {
			m.transitions[stateIndex(h.State)].Add(1)
			attrs := []any{"name", name, "from", old, "to", h.State}
			if h.State == Failed {
				attrs = append(attrs, "reason", h.Reason, "attempts", h.Attempts, "next_attempt", h.NextAttempt)
				m.log.Warn("hostname state", attrs...)
			} else {
				m.log.Info("hostname state", attrs...)
			}
			m.transition(h, old, h.State)
		}
		m.waitApplied(ctx, nrev)
		return h, nil
	}
	return Hostname{}, fmt.Errorf("updating hostname %q: gave up after 5 conflicting concurrent changes: %w", name, store.ErrConflict)
}

func (m *Manager) transition(h Hostname, from, to State) {
	if m.opts.OnTransition != nil {
		m.opts.OnTransition(Transition{Hostname: h, From: from, To: to, At: m.now().UTC()})
	}
}

func stateIndex(s State) int {
	if i := slices.Index(States, s); i >= 0 {
		return i
	}
	return 0
}
