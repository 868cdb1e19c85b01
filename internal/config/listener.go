package config

import (
	"net"
	"net/netip"
	"strconv"
	"time"
)

// Defaults of a listener's connection limits.
const (
	DefaultMaxQueued           = 128
	DefaultQueueTimeout        = 5 * time.Second
	DefaultPerClientMaxNew     = 100
	DefaultPerClientBurst      = 500
	DefaultPerClientUnlimited  = 4096 // per-address cap when max_connections is 0
	DefaultTrackedAddresses    = 65536
	maxTrackedAddressesAllowed = 1 << 24
)

// applyLimitDefaults fills the queue and, for the public listener, the
// per-client limits.
func (l *Listener) applyLimitDefaults(public bool) {
	if l.MaxQueued == 0 {
		l.MaxQueued = DefaultMaxQueued
	}
	if l.QueueTimeout == 0 {
		l.QueueTimeout = Duration(DefaultQueueTimeout)
	}
	if !public {
		return
	}
	pc := &l.PerClient
	if pc.MaxConnections == 0 {
		pc.MaxConnections = DefaultPerClientUnlimited
		if l.MaxConnections > 0 {
			pc.MaxConnections = max(1, l.MaxConnections/4)
		}
	}
	if pc.MaxNewPerSecond == 0 {
		pc.MaxNewPerSecond = DefaultPerClientMaxNew
	}
	if pc.Burst == 0 {
		pc.Burst = DefaultPerClientBurst
	}
	if pc.TrackedAddresses == 0 {
		pc.TrackedAddresses = DefaultTrackedAddresses
	}
}

func (l *Listener) validateLimits(v *validator, p string, public bool) {
	if l.MaxQueued < -1 {
		v.add(p+".max_queued", "%d: use a count, or -1 for no queue", l.MaxQueued)
	}
	if l.QueueTimeout.D() < 0 || l.QueueTimeout.D() > time.Minute {
		v.add(p+".queue_timeout", "%s must be between 0s and 1m", l.QueueTimeout.D())
	}
	pc := l.PerClient
	if !public {
		if pc.MaxConnections != 0 || pc.MaxNewPerSecond != 0 || pc.Burst != 0 || len(pc.Allow) != 0 || pc.TrackedAddresses != 0 {
			v.add(p+".per_client", "applies to listeners.https only")
		}
		return
	}
	if pc.MaxConnections < -1 {
		v.add(p+".per_client.max_connections", "%d: use a count, or -1 for no per-address cap", pc.MaxConnections)
	}
	if pc.MaxNewPerSecond < 0 && pc.MaxNewPerSecond != -1 {
		v.add(p+".per_client.max_new_per_second", "%g: use a rate, or -1 for no rate limit", pc.MaxNewPerSecond)
	}
	if pc.Burst < 1 && pc.MaxNewPerSecond > 0 {
		v.add(p+".per_client.burst", "%d must be at least 1", pc.Burst)
	}
	if pc.TrackedAddresses < 1 || pc.TrackedAddresses > maxTrackedAddressesAllowed {
		v.add(p+".per_client.tracked_addresses", "%d must be between 1 and %d", pc.TrackedAddresses, maxTrackedAddressesAllowed)
	}
	for i, a := range pc.Allow {
		if _, err := ParseAllow(a); err != nil {
			v.add(p+".per_client.allow["+strconv.Itoa(i)+"]", "%s", err)
		}
	}
}

// ParseAllow reads an allow-list entry: a CIDR ("10.0.0.0/8") or a single
// address.
func ParseAllow(s string) (netip.Prefix, error) {
	if pf, err := netip.ParsePrefix(s); err == nil {
		return pf.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, &net.ParseError{Type: "CIDR or IP address", Text: s}
}

// IsLoopbackHost reports whether a listener host (an IP address or
// hostname; "" and unspecified addresses are every interface) is loopback
// only.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
