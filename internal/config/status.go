package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// validateStatus checks the status portal's section: components named,
// unique within their region, tied to defined pools; a sane hysteresis; an
// absolute public URL.
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
