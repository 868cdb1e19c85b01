// Package capacity is the registry of Gatehouse's finite resources:
// certificates installed, decoded-cache bytes, open connections, file
// descriptors, store size, memory. Each subsystem registers a probe that
// reports usage against limit; the registry serves them to the admin API
// and metrics, logs a warning once when a resource crosses the warning
// level and again at the critical level, and answers admission checks for
// changes that would cross a hard limit.
package capacity

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"gatehouse/internal/loop"
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
}

// Levels of a resource.
const (
	LevelOK       = "ok"
	LevelWarning  = "warning"
	LevelCritical = "critical"
)

// LimitError is the refusal of a change that would cross a hard limit.
type LimitError struct {
	Resource string
	Source   string
	Usage    int64
	Limit    int64
	Adding   int64
}

func (e *LimitError) Error() string {
	src := ""
	if e.Source != "" {
		src = " (" + e.Source + ")"
	}
	return fmt.Sprintf("%s limit reached: %d of %d in use; adding %d would exceed the limit%s by %d",
		e.Resource, e.Usage, e.Limit, e.Adding, src, e.Usage+e.Adding-e.Limit)
}

type entry struct {
	name, unit, source string
	hard               bool
	probe              Probe
	level              string // last level logged; guarded by Registry.mu
}

// Registry holds the registered resources. It is safe for concurrent use.
type Registry struct {
	log      *slog.Logger
	warn     float64
	critical float64

	mu      sync.Mutex // guards entries and their levels
	entries map[string]*entry
}

// Options configure a Registry.
type Options struct {
	Logger *slog.Logger
	// WarnPercent is the warning level (default 80); CriticalPercent the
	// critical level (default 95).
	WarnPercent, CriticalPercent float64
}

// New returns an empty registry.
func New(opts Options) *Registry {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.WarnPercent <= 0 {
		opts.WarnPercent = 80
	}
	if opts.CriticalPercent <= 0 {
		opts.CriticalPercent = 95
	}
	return &Registry{log: log.With("component", "capacity"), warn: opts.WarnPercent, critical: opts.CriticalPercent, entries: map[string]*entry{}}
}

// Register adds (or replaces) a resource. hard marks limits that admission
// enforces; source names where the limit is set.
func (r *Registry) Register(name, unit, source string, hard bool, p Probe) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries[name] = &entry{name: name, unit: unit, source: source, hard: hard, probe: p, level: LevelOK}
}

// Unregister removes a resource.
func (r *Registry) Unregister(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.entries, name)
}

func (r *Registry) levelOf(pct float64) string {
	switch {
	case pct < 0:
		return LevelOK
	case pct >= r.critical:
		return LevelCritical
	case pct >= r.warn:
		return LevelWarning
	}
	return LevelOK
}

func (r *Registry) read(e *entry) Resource {
	u, l := e.probe()
	res := Resource{Name: e.name, Unit: e.unit, Usage: u, Limit: l, Hard: e.hard, Source: e.source, Percent: -1}
	if l > 0 {
		res.Percent = math.Round(float64(u)/float64(l)*10000) / 100
	}
	res.Level = r.levelOf(res.Percent)
	return res
}

// Snapshot returns every resource, sorted by name.
func (r *Registry) Snapshot() []Resource {
	r.mu.Lock()
	es := make([]*entry, 0, len(r.entries))
	for _, e := range r.entries {
		es = append(es, e)
	}
	r.mu.Unlock()
	out := make([]Resource, len(es))
	for i, e := range es {
		out[i] = r.read(e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Admit returns a *LimitError if adding n units of the named resource
// would cross its hard limit. An unknown resource or one without a limit
// admits everything.
func (r *Registry) Admit(name string, n int64) error {
	r.mu.Lock()
	e := r.entries[name]
	r.mu.Unlock()
	if e == nil || !e.hard {
		return nil
	}
	u, l := e.probe()
	if l > 0 && u+n > l {
		return &LimitError{Resource: name, Source: e.source, Usage: u, Limit: l, Adding: n}
	}
	return nil
}

// Check reads every resource and logs each change of level once: a
// warning when a resource reaches the warning level, an error at the
// critical level, and an info line when it falls back to ok.
func (r *Registry) Check() {
	for _, res := range r.Snapshot() {
		r.mu.Lock()
		e := r.entries[res.Name]
		prev := ""
		if e != nil {
			prev = e.level
			e.level = res.Level
		}
		r.mu.Unlock()
		if e == nil || prev == res.Level {
			continue
		}
		attrs := []any{"resource", res.Name, "usage", res.Usage, "limit", res.Limit, "percent", res.Percent, "source", res.Source}
		switch res.Level {
		case LevelCritical:
			r.log.Error("resource near its limit", attrs...)
		case LevelWarning:
			r.log.Warn("resource above warning level", attrs...)
		default:
			r.log.Info("resource back below warning level", attrs...)
		}
	}
}

// Run calls Check every interval until ctx is done.
func (r *Registry) Run(ctx context.Context, interval time.Duration) {
	r.Check()
	loop.Every(ctx, interval, r.Check)
}
