package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/syntax"
)

// Defaults for fields left empty.
const (
	DefaultDataDir           = "./gatehouse-data"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	// DefaultBodyReadTimeout and DefaultWriteIdleTimeout bound the wait
	// between two reads of a request body and two writes of a response
	// on the HTTPS listener.
	DefaultBodyReadTimeout  = 60 * time.Second
	DefaultWriteIdleTimeout = 60 * time.Second
	DefaultMaxHeaderBytes   = 64 << 10
	DefaultCacheBytes       = 256 << 20
	DefaultExpiryWarning    = 30 * 24 * time.Hour
	DefaultWarnPercent      = 80
	DefaultCheckInterval    = Duration(15 * time.Second)
	// DefaultResponseCacheBytes bounds the response cache: enough for
	// tens of thousands of typical static assets and API answers, small
	// beside the certificate cache, and used only once a route enables
	// caching.
	DefaultResponseCacheBytes = 64 << 20
	// DefaultMaxObjectBytes is the largest body the response cache stores.
	DefaultMaxObjectBytes = 1 << 20
	// DefaultMaxStale is how long past its freshness a stored response
	// may stand in for an error.
	DefaultMaxStale = 24 * time.Hour
	// MaxMaxStale bounds routes[].cache.max_stale and default_ttl.
	MaxMaxStale = 365 * 24 * time.Hour
)

// Values of listeners.https.underscore_headers.
const (
	UnderscoreDrop   = "drop"
	UnderscoreReject = "reject"
	UnderscorePass   = "pass"
)

// ApplyDefaults fills every empty field that has a default. Parse calls it.
func (c *Config) ApplyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	for _, l := range []*Listener{&c.Listeners.HTTPS, &c.Listeners.HTTP, &c.Listeners.Status, &c.Listeners.Admin} {
		if l.ReadHeaderTimeout == 0 {
			l.ReadHeaderTimeout = Duration(DefaultReadHeaderTimeout)
		}
		if l.IdleTimeout == 0 {
			l.IdleTimeout = Duration(DefaultIdleTimeout)
		}
		if l.MaxHeaderBytes == 0 {
			l.MaxHeaderBytes = DefaultMaxHeaderBytes
		}
	}
	c.Listeners.HTTPS.applyLimitDefaults(true)
	for _, l := range []*Listener{&c.Listeners.HTTP, &c.Listeners.Status, &c.Listeners.Admin} {
		l.applyLimitDefaults(false)
	}
	if l := &c.Listeners.HTTPS; l.BodyReadTimeout == 0 || l.WriteIdleTimeout == 0 || l.UnderscoreHeaders == "" {
		if l.BodyReadTimeout == 0 {
			l.BodyReadTimeout = Duration(DefaultBodyReadTimeout)
		}
		if l.WriteIdleTimeout == 0 {
			l.WriteIdleTimeout = Duration(DefaultWriteIdleTimeout)
		}
		if l.UnderscoreHeaders == "" {
			l.UnderscoreHeaders = UnderscoreDrop
		}
	}
	// The admin and status listeners serve small documents: bound whole requests.
	for _, l := range []*Listener{&c.Listeners.Status, &c.Listeners.Admin} {
		if l.ReadTimeout == 0 {
			l.ReadTimeout = Duration(30 * time.Second)
		}
		if l.WriteTimeout == 0 {
			l.WriteTimeout = Duration(60 * time.Second)
		}
	}
	if c.TLS.UnknownSNI == "" {
		c.TLS.UnknownSNI = "reject"
	}
	if c.TLS.MinVersion == "" {
		c.TLS.MinVersion = "1.2"
	}
	if c.TLS.CacheBytes == 0 {
		c.TLS.CacheBytes = DefaultCacheBytes
	}
	if c.TLS.ExpiryWarning == 0 {
		c.TLS.ExpiryWarning = Duration(DefaultExpiryWarning)
	}
	if c.TLS.SessionTicketRotation == 0 {
		c.TLS.SessionTicketRotation = Duration(12 * time.Hour)
	}
	for i := range c.Pools {
		p := &c.Pools[i]
		p.applyBalancingDefaults()
		for j := range p.Members {
			if p.Members[j].Weight == 0 {
				p.Members[j].Weight = 1
			}
		}
		p.Failover.applyDefaults()
		hc := &p.HealthCheck
		if hc.Path != "" {
			if hc.Interval == 0 {
				hc.Interval = Duration(5 * time.Second)
			}
			if hc.Timeout == 0 {
				hc.Timeout = Duration(min(2*time.Second, hc.Interval.D()))
			}
			if hc.Rise == 0 {
				hc.Rise = 2
			}
			if hc.Fall == 0 {
				hc.Fall = 3
			}
		}
		if p.Timeouts.Dial == 0 {
			p.Timeouts.Dial = Duration(5 * time.Second)
		}
		if p.Timeouts.ResponseHeader == 0 {
			p.Timeouts.ResponseHeader = Duration(60 * time.Second)
		}
		if p.Timeouts.IdleConn == 0 {
			p.Timeouts.IdleConn = Duration(90 * time.Second)
		}
	}
	for i := range c.Routes {
		if c.Routes[i].PathPrefix == "" {
			c.Routes[i].PathPrefix = "/"
		}
		if rc := &c.Routes[i].Cache; rc.Enabled && rc.MaxStale == 0 {
			rc.MaxStale = Duration(DefaultMaxStale)
		}
	}
	if c.ResponseCache.MaxBytes == 0 {
		c.ResponseCache.MaxBytes = DefaultResponseCacheBytes
	}
	if c.ResponseCache.MaxObjectBytes == 0 {
		c.ResponseCache.MaxObjectBytes = min(DefaultMaxObjectBytes, c.ResponseCache.MaxBytes/4)
	}
	if c.Status.Title == "" {
		c.Status.Title = "Service status"
	}
	if c.Limits.WarnPercent == 0 {
		c.Limits.WarnPercent = DefaultWarnPercent
	}
	if c.Limits.CheckInterval == 0 {
		c.Limits.CheckInterval = DefaultCheckInterval
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
	c.applyACMEDefaults()
}

// Validate reports every problem of an already defaulted configuration,
// each as "field.path: problem".
func (c *Config) Validate() error {
	v := &validator{}
	if strings.TrimSpace(c.DataDir) == "" {
		v.add("data_dir", "must not be empty")
	}
	c.validateListeners(v)
	c.validateTLS(v)
	c.validateStore(v)
	if c.Admin.Token != "" && len(c.Admin.Token) < 16 {
		v.add("admin.token", "is %d characters; use at least 16 (or leave it empty to generate one)", len(c.Admin.Token))
	}
	if (c.Admin.CertFile == "") != (c.Admin.KeyFile == "") {
		v.add("admin", "cert_file and key_file go together: give both or neither")
	}
	pools := c.validatePools(v)
	c.validateRoutes(v, pools)
	c.validateResponseCache(v)
	c.validateStatus(v, pools)
	c.validateACME(v, pools)
	if c.Limits.MaxCertificates < 0 {
		v.add("limits.max_certificates", "must not be negative (0 means no limit)")
	}
	if r := c.Limits.MaxRoutes; r < 0 || r > 1_000_000 {
		v.add("limits.max_routes", "%d must be between 1 and 1000000 (0 means the default of 100000); every route change rebuilds the route table", r)
	}
	if c.Limits.StoreQuota != 0 && c.Limits.StoreQuota < 1<<20 {
		v.add("limits.store_quota", "%s is below the minimum of 1MiB (0 means no quota)", c.Limits.StoreQuota)
	}
	if m := c.Limits.MemorySoftLimit; m != 0 && m < 64<<20 {
		v.add("limits.memory_soft_limit", "%s is below the minimum of 64MiB (0 means the runtime's default)", m)
	}
	if d := c.Limits.CheckInterval.D(); d < time.Second || d > time.Hour {
		v.add("limits.check_interval", "%s must be from 1s to 1h", d)
	}
	if c.Limits.WarnPercent <= 0 || c.Limits.WarnPercent >= 100 {
		v.add("limits.warn_percent", "%v must be between 0 and 100", c.Limits.WarnPercent)
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		v.add("log.level", "%q must be one of debug, info, warn, error", c.Log.Level)
	}
	if !slices.Contains([]string{"text", "json"}, c.Log.Format) {
		v.add("log.format", "%q must be text or json", c.Log.Format)
	}
	return v.err()
}

type validator struct{ errs []error }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (v *validator) err() error { return errors.Join(v.errs...) }

func (c *Config) validateListeners(v *validator) {
	type named struct {
		name string
		l    *Listener
	}
	ls := []named{{"https", &c.Listeners.HTTPS}, {"http", &c.Listeners.HTTP}, {"status", &c.Listeners.Status}, {"admin", &c.Listeners.Admin}}
	ports := map[string]string{} // port -> listener, to refuse sharing
	for _, n := range ls {
		p := "listeners." + n.name
		if n.l.Address == "" {
			if n.name == "https" || n.name == "admin" {
				v.add(p+".address", "is required")
			}
			continue
		}
		host, port, err := splitHostPort(n.l.Address, true)
		if err != nil {
			v.add(p+".address", "%s", err)
			continue
		}
		if port == "0" {
			// The system picks a free port: no two listeners can collide.
		} else if other, ok := ports[port]; ok && addrOverlap(host, other) {
			v.add(p+".address", "%q uses the same port as listeners.%s; every listener needs its own socket (the admin API is never served on the public listener)", n.l.Address, strings.SplitN(other, "|", 2)[1])
		}
		ports[port] = host + "|" + n.name
		if n.l.MaxHeaderBytes < 1024 || n.l.MaxHeaderBytes > 1<<20 {
			v.add(p+".max_header_bytes", "%d must be between 1024 and 1048576", n.l.MaxHeaderBytes)
		}
		if n.l.MaxConnections < 0 {
			v.add(p+".max_connections", "must not be negative")
		}
		n.l.validateLimits(v, p, n.name == "https")
		if n.name == "admin" {
			if !IsLoopbackHost(host) && !n.l.AllowRemote {
				v.add(p+".allow_remote", "the admin API would listen on %q, which is not a loopback address: set listeners.admin.allow_remote: true to confirm it (and restrict the port with a firewall), or listen on 127.0.0.1", n.l.Address)
			}
		} else if n.l.AllowRemote {
			v.add(p+".allow_remote", "applies to listeners.admin only")
		}
		if n.name == "https" {
			for _, d := range []struct {
				field string
				v     Duration
			}{{"body_read_timeout", n.l.BodyReadTimeout}, {"write_idle_timeout", n.l.WriteIdleTimeout}} {
				if d.v.D() < 0 || d.v.D() > time.Hour {
					v.add(p+"."+d.field, "%s must be between 0 (the default, 60s) and 1h", d.v)
				}
			}
			switch n.l.UnderscoreHeaders {
			case "", UnderscoreDrop, UnderscoreReject, UnderscorePass:
			default:
				v.add(p+".underscore_headers", "%q must be drop, reject or pass", n.l.UnderscoreHeaders)
			}
		} else if n.l.BodyReadTimeout != 0 || n.l.WriteIdleTimeout != 0 || n.l.UnderscoreHeaders != "" {
			v.add(p, "body_read_timeout, write_idle_timeout and underscore_headers apply to listeners.https only")
		}
	}
}

// addrOverlap reports whether a host and a recorded "host|name" share a socket space.
func addrOverlap(host, rec string) bool {
	other := strings.SplitN(rec, "|", 2)[0]
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return host == other || wild(host) || wild(other)
}

// splitHostPort checks a host:port address; port 0 (any free port) is
// accepted only for listeners.
func splitHostPort(addr string, listener bool) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return "", "", fmt.Errorf("%q has no port", addr)
		}
		return "", "", fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(port)
	if listener && err == nil && n == 0 {
		return host, port, nil
	}
	if err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: port %q must be a number from 1 to 65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		return "", "", fmt.Errorf("%q: %q is not an IP address or hostname", addr, host)
	}
	return host, port, nil
}

func (c *Config) validateTLS(v *validator) {
	switch c.TLS.UnknownSNI {
	case "reject":
	case "default":
		if c.TLS.DefaultHostname == "" {
			v.add("tls.default_hostname", "is required when tls.unknown_sni is \"default\"")
		}
	default:
		v.add("tls.unknown_sni", "%q must be reject or default", c.TLS.UnknownSNI)
	}
	if c.TLS.DefaultHostname != "" && !validHostname(c.TLS.DefaultHostname) {
		v.add("tls.default_hostname", "%q is not a valid hostname", c.TLS.DefaultHostname)
	}
	if c.TLS.MinVersion != "1.2" && c.TLS.MinVersion != "1.3" {
		v.add("tls.min_version", "%q must be \"1.2\" or \"1.3\"", c.TLS.MinVersion)
	}
	if r := c.TLS.SessionTicketRotation.D(); r < time.Minute || r > 7*24*time.Hour {
		v.add("tls.session_ticket_rotation", "%s must be between 1m and 7d", c.TLS.SessionTicketRotation)
	}
	if c.TLS.CacheBytes < 1<<20 {
		v.add("tls.cache_bytes", "%s is below the minimum of 1MiB", c.TLS.CacheBytes)
	}
}

var poolName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (c *Config) validatePools(v *validator) map[string]bool {
	names := map[string]bool{}
	for i, p := range c.Pools {
		pp := fmt.Sprintf("pools[%d]", i)
		switch {
		case p.Name == "":
			v.add(pp+".name", "must not be empty")
		case !poolName.MatchString(p.Name):
			v.add(pp+".name", "%q may hold only letters, digits, '.', '_' and '-' (at most 63)", p.Name)
		case names[p.Name]:
			v.add(pp+".name", "%q is defined twice", p.Name)
		}
		names[p.Name] = true
		p.validateBalancing(v, pp)
		if len(p.Members) == 0 {
			v.add(pp+".members", "a pool needs at least one member")
		}
		seen := map[string]bool{}
		for j, m := range p.Members {
			mp := fmt.Sprintf("%s.members[%d]", pp, j)
			if m.Address == "" {
				v.add(mp+".address", "is required")
			} else if _, _, err := splitHostPort(m.Address, false); err != nil {
				v.add(mp+".address", "%s", err)
			} else if seen[m.Address] {
				v.add(mp+".address", "%q is listed twice in this pool", m.Address)
			}
			seen[m.Address] = true
			if m.Weight < 1 || m.Weight > 1000 {
				v.add(mp+".weight", "%d must be between 1 and 1000", m.Weight)
			}
		}
		hc := p.HealthCheck
		hp := pp + ".health_check"
		if hc.Path != "" {
			if !strings.HasPrefix(hc.Path, "/") {
				v.add(hp+".path", "%q must start with /", hc.Path)
			}
			if hc.Interval.D() < 10*time.Millisecond {
				v.add(hp+".interval", "%s is below the minimum of 10ms", hc.Interval)
			}
			if hc.Timeout.D() > hc.Interval.D() {
				v.add(hp+".timeout", "%s must not exceed the interval (%s)", hc.Timeout, hc.Interval)
			}
			if hc.Rise < 1 || hc.Rise > 100 {
				v.add(hp+".rise", "%d must be between 1 and 100", hc.Rise)
			}
			if hc.Fall < 1 || hc.Fall > 100 {
				v.add(hp+".fall", "%d must be between 1 and 100", hc.Fall)
			}
			for k, s := range hc.ExpectStatus {
				if s < 100 || s > 599 {
					v.add(fmt.Sprintf("%s.expect_status[%d]", hp, k), "%d is not an HTTP status code", s)
				}
			}
			if hc.Host != "" {
				h := hc.Host
				if hh, _, err := net.SplitHostPort(h); err == nil {
					h = hh
				}
				if !validHostname(h) && net.ParseIP(h) == nil {
					v.add(hp+".host", "%q is not a hostname (optionally with :port)", hc.Host)
				}
			}
		} else if hc.Interval != 0 || hc.Rise != 0 || hc.Fall != 0 || len(hc.ExpectStatus) > 0 || hc.Host != "" {
			v.add(hp+".path", "is required when other health_check fields are set")
		}
		if p.Retries < -1 || p.Retries > 10 {
			v.add(pp+".retries", "%d must be between -1 (no retries) and 10", p.Retries)
		}
		if p.MaxConnsPerMember < 0 {
			v.add(pp+".max_conns_per_member", "must not be negative")
		}
		p.validateFailover(v, pp)
	}
	return names
}

func (c *Config) validateRoutes(v *validator, pools map[string]bool) {
	seen := map[string]int{}
	for i, r := range c.Routes {
		rp := fmt.Sprintf("routes[%d]", i)
		host := strings.ToLower(r.Host)
		switch {
		case host == "":
			v.add(rp+".host", "is required")
		case host == "*":
			// The catch-all: hosts that no other route matches.
		case strings.HasPrefix(host, "*."):
			if !validHostname(host[2:]) || !strings.Contains(host[2:], ".") {
				v.add(rp+".host", "%q is not a valid wildcard (use *.example.com)", r.Host)
			}
		case !validHostname(host):
			v.add(rp+".host", "%q is not a valid hostname", r.Host)
		}
		if !strings.HasPrefix(r.PathPrefix, "/") {
			v.add(rp+".path_prefix", "%q must start with /", r.PathPrefix)
		}
		if r.Pool == "" {
			v.add(rp+".pool", "is required")
		} else if !pools[r.Pool] {
			v.add(rp+".pool", "%q is not a pool defined under pools", r.Pool)
		}
		c.validateRouteCache(v, rp+".cache", r.Cache)
		if r.BodyReadTimeout.D() < 0 || r.BodyReadTimeout.D() > time.Hour {
			v.add(rp+".body_read_timeout", "%s must be between 0 (the listener's) and 1h", r.BodyReadTimeout)
		}
		if r.WriteIdleTimeout.D() < 0 || r.WriteIdleTimeout.D() > time.Hour {
			v.add(rp+".write_idle_timeout", "%s must be between 0 (the listener's) and 1h", r.WriteIdleTimeout)
		}
		key := host + " " + r.PathPrefix
		if j, dup := seen[key]; dup {
			v.add(rp, "same host and path_prefix as routes[%d]", j)
		}
		seen[key] = i
	}
}

// validateRouteCache checks one route's cache policy at path.
func (c *Config) validateRouteCache(v *validator, path string, rc RouteCache) {
	if !rc.Enabled {
		if rc.DefaultTTL != 0 || rc.MaxStale != 0 {
			v.add(path+".enabled", "must be true when other cache fields are set")
		}
		return
	}
	if d := rc.DefaultTTL.D(); d < 0 || d > MaxMaxStale {
		v.add(path+".default_ttl", "%s must be between 0 and 365d", rc.DefaultTTL)
	}
	if d := rc.MaxStale.D(); d < time.Second || d > MaxMaxStale {
		v.add(path+".max_stale", "%s must be between 1s and 365d", rc.MaxStale)
	}
}

// validateResponseCache checks the response cache's sizes.
func (c *Config) validateResponseCache(v *validator) {
	rc := c.ResponseCache
	if rc.MaxBytes < 1<<20 {
		v.add("response_cache.max_bytes", "%s is below the minimum of 1MiB", rc.MaxBytes)
		return // max_object_bytes may be derived from it
	}
	switch {
	case rc.MaxObjectBytes < 1<<10:
		v.add("response_cache.max_object_bytes", "%s is below the minimum of 1KiB", rc.MaxObjectBytes)
	case rc.MaxObjectBytes > rc.MaxBytes/4:
		v.add("response_cache.max_object_bytes", "%s is more than a quarter of response_cache.max_bytes (%s)",
			rc.MaxObjectBytes, rc.MaxBytes)
	}
}

// CheckRouteHost reports whether host is acceptable as a route's host, as
// routes[].host is validated (see syntax.RouteHost).
func CheckRouteHost(host string) error { return syntax.RouteHost(host) }

// validHostname reports whether s is a DNS hostname (see syntax.Hostname).
func validHostname(s string) bool { return syntax.Hostname(s) }
