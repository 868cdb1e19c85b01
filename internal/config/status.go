package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// validateStatus checks the status portal's section: components named,
// unique within their region, tied to defined pools; a sane hysteresis and
// error-rate thresholds; an absolute public URL.
func (c *Config) validateStatus(v *validator, pools map[string]bool) {
	s := c.Status
	if s.Hysteresis < 0 || s.Hysteresis.D() > time.Hour {
		v.add("status.hysteresis", "%s must be between 0 and 1h", s.Hysteresis)
	}
	if s.URL != "" {
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.add("status.url", "%q is not an absolute http(s) URL", s.URL)
		}
	}
	c.validateErrorRate(v)
	seen := map[string]int{}
	for i, comp := range s.Components {
		p := fmt.Sprintf("status.components[%d]", i)
		if strings.TrimSpace(comp.Name) == "" {
			v.add(p+".name", "must not be empty")
		} else {
			key := strings.ToLower(comp.Region + "/" + comp.Name)
			if j, dup := seen[key]; dup {
				v.add(p+".name", "%q in region %q is already status.components[%d]", comp.Name, comp.Region, j)
			} else {
				seen[key] = i
			}
		}
		if strings.Contains(comp.Region, "/") {
			v.add(p+".region", "%q must not contain '/'", comp.Region)
		}
		for j, name := range comp.Pools {
			if !pools[name] {
				v.add(fmt.Sprintf("%s.pools[%d]", p, j), "%q is not a pool defined under pools", name)
			}
		}
	}
}

// validateErrorRate checks status.error_rate as it will apply, defaults
// filled in: a window of 10s to 1h, a non-negative minimum, and thresholds
// in (0, 100] that do not decrease from degraded to major.
func (c *Config) validateErrorRate(v *validator) {
	set := c.Status.ErrorRate
	e := set.WithDefaults()
	if set.Window < 0 || (set.Window != 0 && (e.Window.D() < 10*time.Second || e.Window.D() > time.Hour)) {
		v.add("status.error_rate.window", "%s must be between 10s and 1h", time.Duration(set.Window))
	}
	if set.MinRequests < 0 {
		v.add("status.error_rate.min_requests", "%d must not be negative", set.MinRequests)
	}
	levels := []struct {
		name     string
		set, eff float64
	}{{"degraded", set.Degraded, e.Degraded}, {"partial", set.Partial, e.Partial}, {"major", set.Major, e.Major}}
	bad := false
	for _, l := range levels {
		if l.set < 0 || l.set > 100 {
			v.add("status.error_rate."+l.name, "%g must be a percentage between 0 and 100", l.set)
			bad = true
		}
	}
	if bad {
		return
	}
	for i := 1; i < len(levels); i++ {
		lo, hi := levels[i-1], levels[i]
		if hi.eff < lo.eff {
			v.add("status.error_rate."+hi.name, "%g%% is below status.error_rate.%s (%g%%); thresholds must not decrease from degraded to major",
				hi.eff, lo.name, lo.eff)
		}
	}
}
