// Package capacity is the registry of Gatehouse's finite resources:
// certificates installed, routes defined, store bytes, decoded-cache bytes,
// open connections, file descriptors, memory. Each subsystem registers a
// probe that reports usage (and, for limits the system sets, the limit);
// limits that come from the configuration live in the registry's Settings,
// which a reload swaps whole, so that the admission of a change and what
// the admin API shows read the same value.
//
// Admit is the one admission point of changes that would cross a hard
// limit (certificates, routes, store bytes): it refuses them with a
// *LimitError, logs the refusal with the caller (see WithCaller), counts
// it and keeps a day of refusals per resource. Record, called once a
// change is committed, logs the crossing of the warning and critical
// levels at that moment; Run's periodic Check does the same for resources
// that grow by themselves.
package capacity

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/fault"
)

// Probe reports a resource's current usage and limit (0: no limit).
type Probe func() (usage, limit int64)

// Resource is a registered resource at one moment.
type Resource struct {
	Name  string `json:"name"`
	Unit  string `json:"unit"` // "count", "bytes"
	Usage int64  `json:"usage"`
	Limit int64  `json:"limit"` // 0: no limit
	// Hard means a change that would cross the limit is refused; otherwise
	// the limit is informational (the system enforces it, e.g. the kernel).
	Hard bool `json:"hard"`
	// Percent is Usage/Limit in percent, or -1 without a limit.
	Percent float64 `json:"percent"`
	// Level is "ok", "warning" or "critical".
	Level string `json:"level"`
	// Source says where the limit comes from ("limits.max_certificates", "RLIMIT_NOFILE").
	Source string `json:"source,omitempty"`
	// Refused24h counts the changes Admit refused in the last 24 hours.
	Refused24h int64 `json:"refused_24h"`
}

// Levels of a resource.
const (
	LevelOK       = "ok"
	LevelWarning  = "warning"
	LevelCritical = "critical"
)

// Resources admitted through the registry by the certificate and route
// managers.
const (
	Certificates = "certificates"
	Routes       = "routes"
	Store        = "store"
)

// Defaults of Settings.
const (
	DefaultWarnPercent     = 80
	DefaultCriticalPercent = 95
	DefaultCheckInterval   = 15 * time.Second
)

// Settings are the registry's configuration. Configure swaps them whole.
type Settings struct {
	// WarnPercent is the warning level (0: DefaultWarnPercent);
	// CriticalPercent the critical level (0: DefaultCriticalPercent).
	WarnPercent, CriticalPercent float64
	// Limits are the limits set by the configuration, by resource name
	// (0: none). Where a probe reports a limit too (the store's own quota),
	// the lower of the two holds. The registry keeps the map: build a new
	// one for each Configure.
	Limits map[string]int64
	// CheckInterval is the period of Run's check (0: DefaultCheckInterval).
	CheckInterval time.Duration
}

func (s Settings) withDefaults() Settings {
	if s.WarnPercent <= 0 {
		s.WarnPercent = DefaultWarnPercent
	}
	if s.CriticalPercent <= 0 {
		s.CriticalPercent = DefaultCriticalPercent
	}
	if s.CheckInterval <= 0 {
		s.CheckInterval = DefaultCheckInterval
	}
	return s
}

// LimitError is the refusal of a change that would cross a hard limit.
type LimitError struct {
	Resource string `json:"resource"`
	Unit     string `json:"unit"`
	Source   string `json:"source,omitempty"`
	Usage    int64  `json:"usage"`
	Limit    int64  `json:"limit"`
	Adding   int64  `json:"adding"`
	// Hint says what to do, when the resource has more to say than
	// "raise the limit".
	Hint string `json:"-"`
}

func (e *LimitError) Error() string {
	src := ""
	if e.Source != "" {
		src = " (" + e.Source + ")"
	}
	about := ""
	if e.Unit == "bytes" {
		about = "about "
	}
	msg := fmt.Sprintf("%s limit reached: %s of %s in use; adding %s%s would exceed the limit%s by %s%s",
		e.Resource, amount(e.Usage, e.Unit), amount(e.Limit, e.Unit), about, amount(e.Adding, e.Unit), src, about, amount(e.Usage+e.Adding-e.Limit, e.Unit))
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// Storage reports whether the refusal is of store space (the admin API
// answers 507 Insufficient Storage) rather than of a count (409).
func (e *LimitError) Storage() bool { return e.Resource == Store }

// Is makes a LimitError a fault.ErrLimit.
func (e *LimitError) Is(target error) bool { return target == fault.ErrLimit }

// HTTPStatus answers a full store 507 quota_exceeded, any other limit 409
// limit_exceeded (fault.Answer).
func (e *LimitError) HTTPStatus() (int, string) {
	if e.Storage() {
		return http.StatusInsufficientStorage, "quota_exceeded"
	}
	return http.StatusConflict, "limit_exceeded"
}

func amount(n int64, unit string) string {
	if unit != "bytes" {
		return fmt.Sprint(n)
	}
	if n < 1<<20 && n > -1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

type entry struct {
	name, unit, source string
	hard               bool
	probe              Probe
	level              string // last level logged; guarded by Registry.levelMu
	refused            atomic.Int64
	ring               refusals
}

// Registry holds the registered resources. It is safe for concurrent use.
type Registry struct {
	log      *slog.Logger
	now      func() time.Time
	settings atomic.Pointer[Settings]
	// wake tells Run that the check interval changed.
	wake chan struct{}

	mu      sync.Mutex // guards entries
	entries map[string]*entry
	// levelMu orders level changes and their log lines, so that two
	// changes crossing at once log in the order of their levels.
	levelMu sync.Mutex
}

// Options configure a Registry.
type Options struct {
	Logger *slog.Logger
	// Settings are the initial settings (see Configure).
	Settings Settings
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
}

// New returns an empty registry.
func New(opts Options) *Registry {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	r := &Registry{log: log.With("component", "capacity"), now: now, entries: map[string]*entry{}, wake: make(chan struct{}, 1)}
	s := opts.Settings.withDefaults()
	r.settings.Store(&s)
	return r
}

// Settings returns the settings in force.
func (r *Registry) Settings() Settings { return *r.settings.Load() }

// Configure swaps in new settings: the next admission, snapshot and check
// use them. A hard limit set below its resource's usage is logged as a
// warning: new additions are refused, nothing installed is removed. Level
// changes the new limits cause are logged at once.
func (r *Registry) Configure(s Settings) {
	s = s.withDefaults()
	old := r.settings.Swap(&s)
	if old.CheckInterval != s.CheckInterval {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	for _, e := range r.list() {
		if !e.hard || s.Limits[e.name] == old.Limits[e.name] {
			continue
		}
		if res := r.read(e); res.Limit > 0 && res.Usage > res.Limit {
			r.log.Warn("limit set below usage: new additions are refused, nothing is removed",
				"resource", e.name, "usage", res.Usage, "limit", res.Limit, "source", e.source)
		}
	}
	r.Check()
}

// Limit returns the limit of the named resource in force (0: none).
func (r *Registry) Limit(name string) int64 {
	e := r.get(name)
	if e == nil {
		return r.settings.Load().Limits[name]
	}
	_, l := r.limitOf(e, r.settings.Load())
	return l
}

// Register adds (or replaces) a resource. hard marks limits that admission
// enforces; source names where the limit is set.
func (r *Registry) Register(name, unit, source string, hard bool, p Probe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := &entry{name: name, unit: unit, source: source, hard: hard, probe: p, level: LevelOK}
	if old := r.entries[name]; old != nil {
		e.refused.Store(old.refused.Load())
		e.ring.take(&old.ring)
	}
	r.entries[name] = e
}

// Unregister removes a resource.
func (r *Registry) Unregister(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, name)
}

func (r *Registry) get(name string) *entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.entries[name]
}

func (r *Registry) list() []*entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	es := make([]*entry, 0, len(r.entries))
	for _, e := range r.entries {
		es = append(es, e)
	}
	return es
}

func levelOf(s *Settings, usage, limit int64) (string, float64) {
	if limit <= 0 {
		return LevelOK, -1
	}
	pct := math.Round(float64(usage)/float64(limit)*10000) / 100
	switch {
	case pct >= s.CriticalPercent:
		return LevelCritical, pct
	case pct >= s.WarnPercent:
		return LevelWarning, pct
	}
	return LevelOK, pct
}

// limitOf reads e's probe and returns its usage and the limit in force:
// the configured one, the probed one, or the lower of both.
func (r *Registry) limitOf(e *entry, s *Settings) (usage, limit int64) {
	u, l := e.probe()
	if c := s.Limits[e.name]; c > 0 && (l <= 0 || c < l) {
		l = c
	}
	return u, max(l, 0)
}

func (r *Registry) read(e *entry) Resource {
	s := r.settings.Load()
	u, l := r.limitOf(e, s)
	res := Resource{Name: e.name, Unit: e.unit, Usage: u, Limit: l, Hard: e.hard, Source: e.source}
	res.Level, res.Percent = levelOf(s, u, l)
	res.Refused24h = e.ring.sum(r.now())
	return res
}

// Snapshot returns every resource, sorted by name.
func (r *Registry) Snapshot() []Resource {
	es := r.list()
	out := make([]Resource, len(es))
	for i, e := range es {
		out[i] = r.read(e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Admit returns a *LimitError if adding n units to usage of the named
// resource would cross its hard limit in force, and then logs the refusal
// with the caller of ctx, counts it and remembers it for a day. usage is
// what the caller read in the transaction it is about to commit (a store
// counter), so that the decision holds for the whole fleet. A resource
// that is unknown, soft or without a limit, and n <= 0, admit everything.
func (r *Registry) Admit(ctx context.Context, name string, usage, n int64) error {
	e := r.get(name)
	if e == nil || !e.hard || n <= 0 {
		return nil
	}
	_, l := r.limitOf(e, r.settings.Load())
	if l <= 0 || usage+n <= l {
		return nil
	}
	err := &LimitError{Resource: name, Unit: e.unit, Source: e.source, Usage: usage, Limit: l, Adding: n}
	e.refused.Add(1)
	e.ring.add(r.now())
	c := CallerFrom(ctx)
	r.log.Warn("change refused: limit reached", "resource", name, "usage", usage, "limit", l, "adding", n, "source", e.source,
		"remote", c.Remote, "identity", c.Identity, "request_id", c.RequestID)
	return err
}

// Record notes the usage of the named resource after a committed change
// (usage < 0: read it from the probe) and logs, at once and in order, each level it crossed: a warning when it
// reached the warning level, an error at the critical level (both, warning
// first, when one change jumped past both), an info line when it fell back
// below the warning level.
func (r *Registry) Record(name string, usage int64) {
	e := r.get(name)
	if e == nil {
		return
	}
	s := r.settings.Load()
	u, l := r.limitOf(e, s)
	if usage < 0 {
		usage = u
	}
	if usage < 0 {
		return // not known now
	}
	r.transition(e, s, usage, l)
}

// transition moves e to the level of usage against limit, logging each
// level crossed.
func (r *Registry) transition(e *entry, s *Settings, usage, limit int64) {
	level, pct := levelOf(s, usage, limit)
	r.levelMu.Lock()
	defer r.levelMu.Unlock()
	prev := e.level
	if prev == level {
		return
	}
	e.level = level
	attrs := []any{"resource", e.name, "usage", usage, "limit", limit, "percent", pct, "source", e.source}
	if rank(level) < rank(prev) {
		if level == LevelOK {
			r.log.Info("resource back below warning level", attrs...)
		} else {
			r.log.Info("resource back below critical level", attrs...)
		}
		return
	}
	if rank(prev) < rank(LevelWarning) {
		r.log.Warn("resource above warning level", append(attrs, "warn_percent", s.WarnPercent)...)
	}
	if level == LevelCritical {
		r.log.Error("resource near its limit", append(attrs, "critical_percent", s.CriticalPercent)...)
	}
}

// rank orders the levels.
func rank(level string) int {
	switch level {
	case LevelCritical:
		return 2
	case LevelWarning:
		return 1
	}
	return 0
}

// Check reads every resource and logs each change of level once (see
// Record).
func (r *Registry) Check() {
	s := r.settings.Load()
	es := r.list()
	sort.Slice(es, func(i, j int) bool { return es[i].name < es[j].name })
	for _, e := range es {
		u, l := r.limitOf(e, s)
		if u < 0 {
			continue // not known now (a store that does not answer)
		}
		r.transition(e, s, u, l)
	}
}

// Run calls Check at once and then every Settings.CheckInterval (as
// Configure changes it) until ctx is done.
func (r *Registry) Run(ctx context.Context) {
	r.Check()
	for {
		t := time.NewTimer(r.settings.Load().CheckInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			t.Stop()
		case <-t.C:
			r.Check()
		}
	}
}

// Refused returns how many changes of the named resource Admit refused
// since the process started.
func (r *Registry) Refused(name string) int64 {
	if e := r.get(name); e != nil {
		return e.refused.Load()
	}
	return 0
}
