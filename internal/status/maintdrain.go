package status

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// MaintenanceDrain is the drain a maintenance window performs while it
// runs: the members of Pool (every pool if empty) in Zone, or the member
// Member. Force starts the window even if the drain leaves a pool without
// a healthy member.
type MaintenanceDrain struct {
	Zone   string `json:"zone,omitempty"`
	Pool   string `json:"pool,omitempty"`
	Member string `json:"member,omitempty"`
	Force  bool   `json:"force,omitempty"`
}

func (d MaintenanceDrain) String() string {
	var parts []string
	if d.Zone != "" {
		parts = append(parts, "zone "+d.Zone)
	}
	if d.Member != "" {
		parts = append(parts, "member "+d.Member)
	}
	if d.Pool != "" {
		parts = append(parts, "pool "+d.Pool)
	}
	return strings.Join(parts, ", ")
}

// Drain states of a maintenance window.
const (
	DrainPending  = "pending"  // the window has not started
	DrainRefused  = "refused"  // the drain would leave a pool without a healthy member
	DrainDrained  = "drained"  // the members get no traffic
	DrainRestored = "restored" // the members take traffic again
)

// Drainer drains and restores pool members for maintenance windows
// (Options.Drainer).
type Drainer interface {
	// Pools returns the pools with members d selects.
	Pools(d MaintenanceDrain) []string
	// Drain drains the members d selects, or refuses (naming the pool and
	// its capacity) if a pool would be left without a healthy member and
	// d.Force is not set. It returns a summary for the log.
	Drain(ctx context.Context, maintenanceID string, d MaintenanceDrain) (string, error)
	// Undrain restores them and returns their health ("2 of 2 members
	// healthy").
	Undrain(ctx context.Context, maintenanceID string, d MaintenanceDrain) (string, error)
}

// drainTimeout bounds a maintenance window's drain or undrain.
const drainTimeout = 10 * time.Second

// checkMaintenanceDrain validates the drain of a new window and returns
// the pools it affects.
func (p *Portal) checkMaintenanceDrain(d *MaintenanceDrain) ([]string, error) {
	if d == nil {
		return nil, nil
	}
	if p.drainer == nil {
		return nil, inputErr("drain", "this node cannot drain members")
	}
	if d.Zone == "" && d.Member == "" {
		return nil, inputErr("drain", "name a zone or a member")
	}
	pools := p.drainer.Pools(*d)
	if len(pools) == 0 {
		return nil, inputErr("drain", "no pool member matches %s", d)
	}
	return pools, nil
}

// componentsOfPoolsLocked returns the ids of the components fed by any of
// pools.
func (p *Portal) componentsOfPoolsLocked(pools []string) []string {
	var ids []string
	for _, c := range p.comps {
		for _, pl := range c.Pools {
			if containsString(pools, pl) {
				ids = append(ids, c.ID)
				break
			}
		}
	}
	return ids
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// maintenanceDrainLocked performs the drain side of moving m to next:
// draining when it starts, restoring when it is verified or completed. It
// returns text for the update and false if the window must not start (the
// drain was refused; m records why).
func (p *Portal) maintenanceDrainLocked(m *MaintenanceWindow, next string) (string, bool) {
	if m.Drain == nil || p.drainer == nil {
		return "", true
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	switch {
	case next == InProgress && m.DrainState != DrainDrained:
		sum, err := p.drainer.Drain(ctx, m.ID, *m.Drain)
		if err != nil {
			if m.DrainError != err.Error() {
				p.log.Error("maintenance not started: drain refused", "maintenance", m.ID, "drain", m.Drain.String(), "err", err)
			}
			m.DrainState, m.DrainError = DrainRefused, err.Error()
			return "", false
		}
		m.DrainState, m.DrainError = DrainDrained, ""
		p.log.Info("maintenance started: members drained", "maintenance", m.ID, "drain", m.Drain.String(), "summary", sum)
		return "Traffic has been moved away from " + m.Drain.String() + ".", true
	case (next == Verifying || next == Completed) && m.DrainState == DrainDrained:
		health, err := p.drainer.Undrain(ctx, m.ID, *m.Drain)
		if err != nil {
			p.log.Error("maintenance: restoring drained members failed", "maintenance", m.ID, "drain", m.Drain.String(), "err", err)
			m.DrainError = err.Error()
			return "", true
		}
		m.DrainState, m.DrainError = DrainRestored, ""
		p.log.Info("maintenance: drained members restored", "maintenance", m.ID, "drain", m.Drain.String(), "health", health)
		return "Traffic is back on " + m.Drain.String() + " (" + health + ").", true
	}
	return "", true
}

// recordRefusalLocked keeps why a window's drain was refused, so that the
// management API shows it, without changing its status.
func (p *Portal) recordRefusalLocked(m *MaintenanceWindow) {
	if err := p.casLocked(p.life, keyMaintenances+m.ID, m); err != nil {
		p.log.Warn("recording a refused maintenance drain", "maintenance", m.ID, "err", fmt.Sprint(err))
		return
	}
	p.maints[m.ID] = m
}
