package server

import (
	"container/list"
	"net"
	"net/netip"
	"time"
)

// clientAddr is the unit a per-client limit counts: an IPv4 address, or the
// /64 prefix of an IPv6 address (one site or host, which typically holds a
// whole /64 and could otherwise rotate through it).
type clientAddr = netip.Addr

// clientKey returns the client unit of a remote address.
func clientKey(a net.Addr) (clientAddr, bool) {
	ip, ok := remoteIP(a)
	if !ok {
		return clientAddr{}, false
	}
	return unitOf(ip), true
}

// remoteIP returns the IP address of a TCP remote address.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	return ip.Unmap(), ok
}

// unitOf returns the unit an address counts in: itself (IPv4) or its /64.
func unitOf(ip netip.Addr) clientAddr {
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// clientLimits are the per-client limits of a listener.
type clientLimits struct {
	maxConns   int     // 0 or less: none
	rate       float64 // new connections per second; 0 or less: none
	burst      float64
	allow      []netip.Prefix
	maxTracked int
}

func (cl *clientLimits) off() bool { return cl.maxConns <= 0 && cl.rate <= 0 }

func (cl *clientLimits) allowed(a netip.Addr) bool {
	for _, p := range cl.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientTable counts each client address's open connections and keeps its
// token bucket of new connections. Its size is bounded by maxTracked plus
// the addresses that hold open connections (which the listener's limits and
// file descriptors bound): an address without open connections is kept, so
// that its bucket is remembered, until the table is full, then the least
// recently seen one is forgotten. A flood of distinct source addresses thus
// cannot grow it without bound; forgetting an idle address only gives it a
// full bucket again. The listener's mu guards it.
type clientTable struct {
	m    map[clientAddr]*client
	idle list.List // of *client with open == 0, least recently seen first
}

type client struct {
	addr   clientAddr
	open   int
	tokens float64
	last   time.Time
	elem   *list.Element // in idle while open == 0
}

func newClientTable() *clientTable {
	return &clientTable{m: map[clientAddr]*client{}}
}

// admit counts a new connection from ip; tracked says whether release must
// be called for its unit; reason is non-empty when it is refused. The
// allow-list is matched against ip itself, not its unit.
func (t *clientTable) admit(cl *clientLimits, ip netip.Addr, now time.Time) (tracked bool, reason string) {
	if cl.off() || cl.allowed(ip) {
		return false, ""
	}
	a := unitOf(ip)
	c := t.m[a]
	if c == nil {
		for len(t.m) >= cl.maxTracked && t.idle.Len() > 0 {
			t.forget(t.idle.Front().Value.(*client))
		}
		c = &client{addr: a, tokens: cl.burst, last: now}
		t.m[a] = c
	} else if cl.rate > 0 {
		if d := now.Sub(c.last); d > 0 {
			c.tokens = min(cl.burst, c.tokens+d.Seconds()*cl.rate)
		}
		c.last = now
	}
	switch {
	case cl.maxConns > 0 && c.open >= cl.maxConns:
		reason = RefusedPerClientConnections
	case cl.rate > 0 && c.tokens < 1:
		reason = RefusedPerClientRate
	}
	if reason != "" {
		if c.elem != nil {
			t.idle.MoveToBack(c.elem)
		} else if c.open == 0 {
			c.elem = t.idle.PushBack(c)
		}
		return false, reason
	}
	if cl.rate > 0 {
		c.tokens--
	}
	c.open++
	if c.elem != nil {
		t.idle.Remove(c.elem)
		c.elem = nil
	}
	return true, ""
}

// release ends a connection that admit counted.
func (t *clientTable) release(cl *clientLimits, a clientAddr) {
	c := t.m[a]
	if c == nil {
		return
	}
	c.open--
	if c.open > 0 {
		return
	}
	c.open = 0
	c.elem = t.idle.PushBack(c)
	for len(t.m) > cl.maxTracked && t.idle.Len() > 0 {
		t.forget(t.idle.Front().Value.(*client))
	}
}

func (t *clientTable) forget(c *client) {
	if c.elem != nil {
		t.idle.Remove(c.elem)
		c.elem = nil
	}
	delete(t.m, c.addr)
}

// trim applies a smaller bound after a reload.
func (t *clientTable) trim(cl *clientLimits) {
	for len(t.m) > cl.maxTracked && t.idle.Len() > 0 {
		t.forget(t.idle.Front().Value.(*client))
	}
}

// busiest returns the most open connections of one address (a scan: for
// reports, not the accept path).
func (t *clientTable) busiest() int {
	n := 0
	for _, c := range t.m {
		n = max(n, c.open)
	}
	return n
}

func (t *clientTable) len() int { return len(t.m) }
