// Package webhook sends signed webhooks to operators' endpoints without
// letting an endpoint URL reach what it should not (Guard), with retries
// and backoff (Sender). The status portal's subscribers and the
// hostnames' state-change notifications use it.
package webhook

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse/internal/config"
)

// Webhook URLs are a way for whoever holds the admin token, or controls an
// endpoint's DNS, to make the node send requests. The guard
// refuses the addresses through which that reaches what it should not:
//   - loopback, link-local (cloud metadata at 169.254.169.254 among them),
//     unspecified (0.0.0.0/8, ::) and multicast or broadcast addresses;
//   - this node's own listeners, even when allow-listed: nothing useful
//     listens there for a webhook, and the admin API does.
//
// Private ranges (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10) are
// allowed: chat and incident tools inside the operator's network are the
// usual subscribers. An allow-list (status.webhooks.allow_hosts, or the
// field the Guard was made for) permits refused hosts by
// address, CIDR or name. Both the subscription (the URL's literal address,
// or every address its name resolves to) and every delivery (the address
// actually dialled, in the dialer's Control hook, after DNS) are checked,
// so a name that later resolves somewhere refused is caught.

// Guard holds the current policy and this node's listeners. It is safe
// for concurrent use; the policy and listeners may change at any time.
type Guard struct {
	// field is the configuration field of the allow-list, named in
	// refusals.
	field     string
	policy    atomic.Pointer[hookPolicy]
	listeners atomic.Pointer[map[string]netip.AddrPort] // listener name → address
	resolver  *net.Resolver
	// localAddrs returns the node's interface addresses, to match a
	// listener bound to a wildcard address.
	localAddrs func() []netip.Addr
}

// hookPolicy is status.webhooks parsed.
type hookPolicy struct {
	nets  []netip.Prefix
	names map[string]bool
}

// NewGuard returns a guard with an empty allow-list; field is the
// configuration field of its allow-list (e.g. "status.webhooks.allow_hosts"),
// named in its refusals.
func NewGuard(field string) *Guard {
	g := &Guard{field: field, resolver: net.DefaultResolver, localAddrs: InterfaceAddrs}
	g.SetAllowHosts(nil)
	m := map[string]netip.AddrPort{}
	g.listeners.Store(&m)
	return g
}

// SetAllowHosts applies an allow-list of addresses, CIDRs and host names;
// config validation has refused bad entries, any left are ignored.
func (g *Guard) SetAllowHosts(hosts []string) {
	pol := &hookPolicy{names: map[string]bool{}}
	for _, h := range hosts {
		prefix, name, err := config.ParseAllowHost(h)
		switch {
		case err != nil:
		case name != "":
			pol.names[name] = true
		default:
			pol.nets = append(pol.nets, prefix)
		}
	}
	g.policy.Store(pol)
}

// SetListeners records the addresses this node listens on, by name.
func (g *Guard) SetListeners(addrs map[string]string) {
	m := make(map[string]netip.AddrPort, len(addrs))
	for name, a := range addrs {
		if ap, err := netip.ParseAddrPort(a); err == nil {
			m[name] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		} else if host, port, err := net.SplitHostPort(a); err == nil && host == "" {
			if ap, err := netip.ParseAddrPort("0.0.0.0:" + port); err == nil {
				m[name] = ap
			}
		}
	}
	g.listeners.Store(&m)
}

// allowedName reports whether host (as written in the URL) is allow-listed
// by name.
func (g *Guard) allowedName(host string) bool {
	return g.policy.Load().names[strings.ToLower(strings.TrimSuffix(host, "."))]
}

// Check returns why a webhook to ap (for a URL naming host) is refused, or
// nil.
func (g *Guard) Check(host string, ap netip.AddrPort) error {
	a := ap.Addr().Unmap()
	if name := g.ownListener(netip.AddrPortFrom(a, ap.Port())); name != "" {
		return fmt.Errorf("%s is this node's own %s listener", netip.AddrPortFrom(a, ap.Port()), name)
	}
	if g.allowedName(host) {
		return nil
	}
	for _, n := range g.policy.Load().nets {
		if n.Contains(a) {
			return nil
		}
	}
	var kind string
	switch {
	case a.IsLoopback():
		kind = "a loopback address"
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		kind = "a link-local address"
	case a.IsUnspecified(), a.Is4() && a.As4()[0] == 0:
		kind = "an unspecified address"
	case a.IsMulticast(), a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		kind = "a multicast or broadcast address"
	default:
		return nil
	}
	return fmt.Errorf("%s is %s; allow it in %s if it is really meant", a, kind, g.field)
}

// ownListener names the listener of this node at ap, or "".
func (g *Guard) ownListener(ap netip.AddrPort) string {
	own := *g.listeners.Load()
	names := make([]string, 0, len(own))
	for name := range own {
		names = append(names, name)
	}
	sort.Strings(names)
	var local []netip.Addr
	for _, name := range names {
		l := own[name]
		if l.Port() != ap.Port() {
			continue
		}
		if l.Addr() == ap.Addr() {
			return name
		}
		if l.Addr().IsUnspecified() {
			if ap.Addr().IsLoopback() || ap.Addr().IsUnspecified() {
				return name
			}
			if local == nil {
				local = g.localAddrs()
			}
			if slices.Contains(local, ap.Addr()) {
				return name
			}
		}
	}
	return ""
}

// CheckURL checks an endpoint URL when it is configured or subscribed: a
// literal address, or every address its host name resolves to.
func (g *Guard) CheckURL(ctx context.Context, u *url.URL) error {
	host := u.Hostname()
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443", "http": "80"}[u.Scheme]
	}
	p, err := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", port))
	if err != nil {
		return fmt.Errorf("%q has no valid port", u.String())
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err = g.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			if g.allowedName(host) {
				return nil // allow-listed by name; checked again at delivery
			}
			return fmt.Errorf("host %q of %s does not resolve: %v", host, u.Redacted(), err)
		}
	}
	for _, a := range addrs {
		if err := g.Check(host, netip.AddrPortFrom(a, p.Port())); err != nil {
			return fmt.Errorf("%s: %v", u.Redacted(), err)
		}
	}
	return nil
}

// Client returns the HTTP client deliveries use: every connection is
// checked at the address dialled; no proxy from the environment (it would
// dial for us), no redirects.
func (g *Guard) Client(timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           g.dialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// dialContext dials addr ("host:port", before resolution) and refuses, in
// the dialer's Control hook, each address the guard refuses.
func (g *Guard) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("webhook address %q: %w", address, err)
			}
			if err := g.Check(host, ap); err != nil {
				return fmt.Errorf("webhook refused: %w", err)
			}
			return nil
		}}
	return d.DialContext(ctx, network, addr)
}

// InterfaceAddrs lists the addresses of this machine's interfaces.
func InterfaceAddrs() []netip.Addr {
	ifas, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifa := range ifas {
		if p, err := netip.ParsePrefix(ifa.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}
