package status

import (
	"slices"
	"time"

	"gatehouse/internal/config"
)

// The portal's decisions are made here, by pure functions of their
// inputs: what the fleet observes of a component's pools, the operators'
// overrides, the maintenance windows and the time. Nothing here reads a
// clock, the store or the portal's mutex; the portal (status.go) gathers
// the inputs under its lock, calls decide for every component and carries
// out the decision (state, announcement, draft incident).

// rules are the settings the decisions apply: the hysteresis and the
// error-rate thresholds.
type rules struct {
	hold    time.Duration
	errRate config.ErrorRate
}

func (o *poolAgg) add(a poolAgg) {
	o.healthy += a.healthy
	o.total += a.total
	o.requests += a.requests
	o.failures += a.failures
}

// tracker applies hysteresis: a new state must hold for the hold time
// before it is shown.
type tracker struct {
	shown        string
	pending      string
	pendingSince time.Time
}

// observe feeds the automatic state raw seen at now; it reports whether
// the tracked (shown) health changed.
func (t *tracker) observe(raw string, now time.Time, hold time.Duration) bool {
	if raw == t.shown {
		t.pending = ""
		return false
	}
	if raw != t.pending {
		t.pending, t.pendingSince = raw, now
	}
	if now.Sub(t.pendingSince) >= hold {
		t.shown, t.pending = raw, ""
		return true
	}
	return false
}

// automatic is the state a sample calls for before hysteresis: the
// worse of the state from member health and from the error rate.
func (r rules) automatic(o poolAgg) string {
	return worse(stateOf(o.healthy, o.total), r.errorState(o.requests, o.failures))
}

// errorState maps an error rate to a component state; a window with fewer
// than the minimum of requests says nothing.
func (r rules) errorState(requests, failures uint64) string {
	e := r.errRate
	if e.Disabled || requests == 0 || requests < uint64(e.MinRequests) {
		return Operational
	}
	switch pct := errorPercent(requests, failures); {
	case pct >= e.Major:
		return Major
	case pct >= e.Partial:
		return Partial
	case pct >= e.Degraded:
		return Degraded
	}
	return Operational
}

// worse returns the worse of two automatic states.
func worse(a, b string) string {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// effective is what the page shows for a component whose tracked health
// is health: an override wins, then a maintenance window active at now,
// then health.
func effective(id, health string, overrides map[string]Override, maints map[string]*MaintenanceWindow, now time.Time) string {
	if o, ok := overrides[id]; ok {
		return o.Status
	}
	for _, m := range maints {
		if m.activeAt(now) && slices.Contains(m.Components, id) {
			return Maintenance
		}
	}
	return health
}

// componentState is one component's part of the state machine.
type componentState struct {
	track     tracker
	status    string // what the page shows
	updatedAt time.Time
}

// componentInput is everything a decision about one component depends on
// besides its state.
type componentInput struct {
	id string
	// obs is a new sample; nil re-decides after an override, incident or
	// maintenance change without one.
	obs       *poolAgg
	overrides map[string]Override
	maints    map[string]*MaintenanceWindow
	// leading: this node decides for the fleet. A follower instead takes
	// the time of a change from the leader's record when they agree.
	leading bool
	leader  *componentRecord
	// initial: the first decision after a start, announced to no one.
	initial bool
}

// decision is the outcome for one component.
type decision struct {
	next componentState
	// changed: the shown state changed (from is the old one).
	changed bool
	from    string
	// healthChanged: the sample changed the tracked health.
	healthChanged bool
	// announce: the leader tells webhook subscribers of the change.
	announce bool
	// openDraft: the leader opens a draft incident for a major outage
	// that health or errors (not an override) caused.
	openDraft bool
}

// decide is the state machine's step for one component at now.
func (r rules) decide(s componentState, in componentInput, now time.Time) decision {
	d := decision{next: s, from: s.status}
	if in.obs != nil {
		d.healthChanged = d.next.track.observe(r.automatic(*in.obs), now, r.hold)
	}
	eff := effective(in.id, d.next.track.shown, in.overrides, in.maints, now)
	if !in.leading {
		if l := in.leader; l != nil && l.Status == eff && !l.UpdatedAt.IsZero() && !l.UpdatedAt.Equal(s.updatedAt) {
			d.next.status, d.next.updatedAt = eff, l.UpdatedAt
			d.changed = true
			return d
		}
	}
	if eff == s.status {
		return d
	}
	d.next.status, d.next.updatedAt = eff, now
	d.changed = true
	if in.initial || !in.leading {
		return d
	}
	d.announce = true
	d.openDraft = d.healthChanged && eff == Major
	return d
}
