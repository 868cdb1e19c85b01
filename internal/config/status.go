package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// StatusWebhooks is the policy for webhook subscriber URLs. Subscribers
// on loopback, link-local, unspecified and multicast addresses are refused
// (at subscription and at every delivery, on the address dialled), and
// so are this node's own listeners; private ranges are allowed.
type StatusWebhooks struct {
	// AllowHosts permits hosts the policy refuses: an IP address
	// ("127.0.0.1"), a CIDR ("10.0.0.0/8", "::1/128") or a host name
	// ("hooks.internal", matched exactly as written in the URL, whatever it
	// resolves to). This node's own listeners stay refused.
	AllowHosts []string `yaml:"allow_hosts"`
}

// ParseAllowHost reads one status.webhooks.allow_hosts entry: an address
// or CIDR as a prefix, or else a lower-case host name.
func ParseAllowHost(s string) (prefix netip.Prefix, name string, err error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), "", nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), "", nil
	}
	name = strings.ToLower(strings.TrimSuffix(s, "."))
	if name == "" || len(name) > 253 || strings.Contains(s, "/") {
		return netip.Prefix{}, "", fmt.Errorf("%q is neither an IP address, a CIDR nor a host name", s)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") ||
			strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return netip.Prefix{}, "", fmt.Errorf("%q is neither an IP address, a CIDR nor a host name", s)
		}
	}
	return netip.Prefix{}, name, nil
}

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
	c.validateStatusEmail(v)
	for i, h := range s.Webhooks.AllowHosts {
		if _, _, err := ParseAllowHost(h); err != nil {
			v.add(fmt.Sprintf("status.webhooks.allow_hosts[%d]", i), "%v", err)
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
