package status

import (
	"testing"
	"time"

	"gatehouse/internal/config"
)

// TestDecide drives the state machine through sequences of steps, with no
// store, portal or clock: hysteresis, the error rate, overrides,
// maintenance windows, what the leader announces and when a draft opens,
// and how a follower takes the leader's time of change.
func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := rules{hold: 30 * time.Second, errRate: config.ErrorRate{}.WithDefaults()}
	up := &poolAgg{healthy: 2, total: 2}
	half := &poolAgg{healthy: 1, total: 2}
	down := &poolAgg{healthy: 0, total: 2}
	failing := &poolAgg{healthy: 2, total: 2, requests: 100, failures: 60}
	window := map[string]*MaintenanceWindow{"m1": {ID: "m1", Status: Scheduled, Components: []string{"c"},
		ScheduledFor: t0.Add(time.Minute), ScheduledUntil: t0.Add(2 * time.Minute)}}
	override := map[string]Override{"c": {Component: "c", Status: Partial}}

	type step struct {
		at        time.Duration // after t0
		obs       *poolAgg
		overrides map[string]Override
		maints    map[string]*MaintenanceWindow
		follower  *componentRecord // set: this node follows
		initial   bool

		status    string // shown after the step
		health    string // tracked health after the step
		changed   bool
		announce  bool
		openDraft bool
		updatedAt time.Duration // after t0, when changed
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"hysteresis holds a change until it lasts", []step{
			{at: 0, obs: up, status: Operational, health: Operational},
			{at: 10 * time.Second, obs: down, status: Operational, health: Operational},
			{at: 30 * time.Second, obs: down, status: Operational, health: Operational},
			{at: 40 * time.Second, obs: down, status: Major, health: Major, changed: true, announce: true, openDraft: true, updatedAt: 40 * time.Second},
			{at: 50 * time.Second, obs: down, status: Major, health: Major},
		}},
		{"a flap resets the hold", []step{
			{at: 0, obs: down, status: Operational, health: Operational},
			{at: 20 * time.Second, obs: up, status: Operational, health: Operational},
			{at: 40 * time.Second, obs: down, status: Operational, health: Operational},
			{at: 60 * time.Second, obs: half, status: Operational, health: Operational},
			{at: 90 * time.Second, obs: half, status: Degraded, health: Degraded, changed: true, announce: true, updatedAt: 90 * time.Second},
		}},
		{"errors alone make a major outage and a draft", []step{
			{at: 0, obs: failing, status: Operational, health: Operational},
			{at: 30 * time.Second, obs: failing, status: Major, health: Major, changed: true, announce: true, openDraft: true, updatedAt: 30 * time.Second},
		}},
		{"an override wins over health and opens no draft", []step{
			{at: 0, obs: down, overrides: map[string]Override{"c": {Status: Major}}, status: Major, health: Operational, changed: true, announce: true, updatedAt: 0},
			{at: 30 * time.Second, obs: down, overrides: map[string]Override{"c": {Status: Major}}, status: Major, health: Major},
		}},
		{"an override over a maintenance window", []step{
			{at: 90 * time.Second, maints: window, overrides: override, status: Partial, health: Operational, changed: true, announce: true, updatedAt: 90 * time.Second},
		}},
		{"a maintenance window by the clock", []step{
			{at: 30 * time.Second, maints: window, status: Operational, health: Operational},
			{at: time.Minute, maints: window, status: Maintenance, health: Operational, changed: true, announce: true, updatedAt: time.Minute},
			{at: 90 * time.Second, obs: down, maints: window, status: Maintenance, health: Operational},
			{at: 2 * time.Minute, obs: down, maints: window, status: Major, health: Major, changed: true, announce: true, openDraft: true, updatedAt: 2 * time.Minute},
		}},
		{"the first decision after a start announces nothing", []step{
			{at: 0, overrides: override, initial: true, status: Partial, health: Operational, changed: true, updatedAt: 0},
		}},
		{"a follower announces nothing and takes the leader's time", []step{
			{at: 10 * time.Second, overrides: override, follower: &componentRecord{Status: Partial, UpdatedAt: t0.Add(5 * time.Second)},
				status: Partial, health: Operational, changed: true, updatedAt: 5 * time.Second},
			{at: 20 * time.Second, overrides: override, follower: &componentRecord{Status: Partial, UpdatedAt: t0.Add(5 * time.Second)},
				status: Partial, health: Operational},
			{at: 30 * time.Second, follower: &componentRecord{Status: Partial, UpdatedAt: t0.Add(5 * time.Second)},
				status: Operational, health: Operational, changed: true, updatedAt: 30 * time.Second},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := componentState{status: Operational, updatedAt: t0.Add(-time.Hour), track: tracker{shown: Operational}}
			for i, st := range tt.steps {
				in := componentInput{id: "c", obs: st.obs, overrides: st.overrides, maints: st.maints,
					leading: st.follower == nil, leader: st.follower, initial: st.initial}
				prev := s
				d := r.decide(s, in, t0.Add(st.at))
				s = d.next
				if s.status != st.status || s.track.shown != st.health {
					t.Fatalf("step %d: shows %s with health %s, want %s with %s", i, s.status, s.track.shown, st.status, st.health)
				}
				if d.changed != st.changed || d.announce != st.announce || d.openDraft != st.openDraft {
					t.Fatalf("step %d: changed %v announce %v draft %v, want %v %v %v",
						i, d.changed, d.announce, d.openDraft, st.changed, st.announce, st.openDraft)
				}
				switch {
				case d.changed && !s.updatedAt.Equal(t0.Add(st.updatedAt)):
					t.Fatalf("step %d: updated at %v, want %v", i, s.updatedAt, t0.Add(st.updatedAt))
				case !d.changed && !s.updatedAt.Equal(prev.updatedAt):
					t.Fatalf("step %d: updated at %v without a change", i, s.updatedAt)
				case d.changed && d.from != prev.status:
					t.Fatalf("step %d: from %s, want %s", i, d.from, prev.status)
				}
			}
		})
	}
}

// TestDecideIsPure checks that decide changes neither its state argument
// nor its inputs.
func TestDecideIsPure(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r := rules{hold: 0, errRate: config.ErrorRate{}.WithDefaults()}
	s := componentState{status: Operational, track: tracker{shown: Operational}}
	obs := &poolAgg{healthy: 0, total: 3}
	d := r.decide(s, componentInput{id: "c", obs: obs, leading: true}, t0)
	if s.status != Operational || s.track.shown != Operational || *obs != (poolAgg{total: 3}) {
		t.Fatalf("decide changed its inputs: %+v %+v", s, *obs)
	}
	if d.next.status != Major || !d.openDraft {
		t.Fatalf("decision %+v, want a major outage with a draft", d)
	}
}
