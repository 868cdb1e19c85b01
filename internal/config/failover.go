package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Failover policies of a pool.
const (
	// FailoverSpread sends traffic to the healthy members of every zone,
	// weighted (the behaviour of a pool without zones).
	FailoverSpread = "spread"
	// FailoverPriority sends traffic to the first zone of Zones with
	// enough healthy capacity, and to the next one when it has not.
	FailoverPriority = "priority"
)

// Defaults of Failover.
const (
	DefaultMinHealthyShare = 0.5
	DefaultReturnAfter     = 30 * time.Second
	DefaultSlowStart       = 30 * time.Second
)

// Failover is how a pool shares traffic between its members' zones.
type Failover struct {
	// Policy is spread (default) or priority.
	Policy string `yaml:"policy"`
	// Zones is the order of preference of the priority policy: every
	// member's zone must be listed.
	Zones []string `yaml:"zones"`
	// MinHealthyShare is the share of a zone's member weight that must be
	// healthy (and not drained) for the zone to take traffic under the
	// priority policy (default 0.5).
	MinHealthyShare float64 `yaml:"min_healthy_share"`
	// ReturnAfter is how long a preferred zone must stay healthy before
	// traffic returns to it (hysteresis, default 30s).
	ReturnAfter Duration `yaml:"return_after"`
	// SlowStart is how long an undrained member takes to reach its full
	// share of new requests (default 30s; use 1ms for practically none).
	SlowStart Duration `yaml:"slow_start"`
}

func (f *Failover) applyDefaults() {
	if f.Policy == "" {
		f.Policy = FailoverSpread
	}
	if f.MinHealthyShare == 0 {
		f.MinHealthyShare = DefaultMinHealthyShare
	}
	if f.ReturnAfter == 0 {
		f.ReturnAfter = Duration(DefaultReturnAfter)
	}
	if f.SlowStart == 0 {
		f.SlowStart = Duration(DefaultSlowStart)
	}
}

var zoneName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// validateFailover checks the members' zones and the failover policy of
// the pool at path pp.
func (p *Pool) validateFailover(v *validator, pp string) {
	for j, m := range p.Members {
		if m.Zone != "" && !zoneName.MatchString(m.Zone) {
			v.add(fmt.Sprintf("%s.members[%d].zone", pp, j), "%q may hold only letters, digits, '.', '_' and '-' (at most 63)", m.Zone)
		}
	}
	f := p.Failover
	fp := pp + ".failover"
	switch f.Policy {
	case FailoverSpread:
		if len(f.Zones) > 0 {
			v.add(fp+".zones", "is only used by the priority policy (policy is %q)", f.Policy)
		}
	case FailoverPriority:
		if len(f.Zones) == 0 {
			v.add(fp+".zones", "the priority policy needs the zones in order of preference")
		}
		seen := map[string]bool{}
		inPool := map[string]bool{}
		for _, m := range p.Members {
			inPool[m.Zone] = true
		}
		for k, z := range f.Zones {
			zp := fmt.Sprintf("%s.zones[%d]", fp, k)
			switch {
			case seen[z]:
				v.add(zp, "%q is listed twice", z)
			case !inPool[z] || z == "":
				v.add(zp, "%q is not the zone of any member of this pool", z)
			}
			seen[z] = true
		}
		if len(f.Zones) > 0 {
			for j, m := range p.Members {
				if !seen[m.Zone] {
					mp := fmt.Sprintf("%s.members[%d].zone", pp, j)
					if m.Zone == "" {
						v.add(mp, "is required by the priority policy (%s.zones)", fp)
					} else {
						v.add(mp, "%q is not in %s.zones", m.Zone, fp)
					}
				}
			}
		}
	default:
		v.add(fp+".policy", "%q must be one of %s", f.Policy, strings.Join([]string{FailoverSpread, FailoverPriority}, ", "))
	}
	if f.MinHealthyShare <= 0 || f.MinHealthyShare > 1 {
		v.add(fp+".min_healthy_share", "%g must be above 0 and at most 1", f.MinHealthyShare)
	}
	if d := f.ReturnAfter.D(); d < 0 || d > 24*time.Hour {
		v.add(fp+".return_after", "%s must be between 0 and 24h", f.ReturnAfter)
	}
	if d := f.SlowStart.D(); d < 0 || d > time.Hour {
		v.add(fp+".slow_start", "%s must be between 0 and 1h", f.SlowStart)
	}
}

// Zones returns the zones of the pool's members, in the priority order if
// there is one, then in order of appearance.
func (p *Pool) Zones() []string {
	out := slices.Clone(p.Failover.Zones)
	for _, m := range p.Members {
		if m.Zone != "" && !slices.Contains(out, m.Zone) {
			out = append(out, m.Zone)
		}
	}
	return out
}
