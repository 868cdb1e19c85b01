package proxy

import (
	"sort"
	"strings"
	"time"
)

// router maps host → path prefix → route (a pool and its cache policy). A lookup is at most two map
// lookups plus a walk over the prefixes configured for that one host.
type router struct {
	exact map[string]*hostRoutes // "app.example.com"
	wild  map[string]*hostRoutes // "example.com" for "*.example.com"
	any   *hostRoutes            // "*": every other host; nil if none
}

// hostRoutes are the prefixes of one host, longest first.
type hostRoutes struct {
	routes []prefixRoute
}

// prefixRoute is one route: the pool for a path prefix and, when the
// route caches responses, its cache policy (nil otherwise).
type prefixRoute struct {
	prefix string
	pool   *pool
	cache  *routeCache
	// allowMisdirected serves a Host that is not the TLS session's
	// (tenant.go); bodyRead and writeIdle override the listener's
	// timeouts when not 0.
	allowMisdirected    bool
	bodyRead, writeIdle time.Duration
}

func newRouter() *router {
	return &router{exact: map[string]*hostRoutes{}, wild: map[string]*hostRoutes{}}
}

// add registers a route; the first route for a host and prefix wins. rc
// is the route's cache policy, nil when it does not cache.
func (rt *router) add(host, prefix string, p *pool, rc *routeCache) {
	rt.addRoute(host, prefixRoute{prefix: prefix, pool: p, cache: rc})
}

// addRoute registers route pr for host; the first route for a host and
// prefix wins.
func (rt *router) addRoute(host string, pr prefixRoute) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if pr.prefix == "" {
		pr.prefix = "/"
	}
	prefix := pr.prefix
	var hr *hostRoutes
	switch {
	case host == "*" || host == "":
		if rt.any == nil {
			rt.any = &hostRoutes{}
		}
		hr = rt.any
	case strings.HasPrefix(host, "*."):
		hr = lookupOrAdd(rt.wild, host[2:])
	default:
		hr = lookupOrAdd(rt.exact, host)
	}
	for _, r := range hr.routes {
		if r.prefix == prefix {
			return
		}
	}
	hr.routes = append(hr.routes, pr)
	sort.SliceStable(hr.routes, func(i, j int) bool {
		return len(hr.routes[i].prefix) > len(hr.routes[j].prefix)
	})
}

func lookupOrAdd(m map[string]*hostRoutes, key string) *hostRoutes {
	hr := m[key]
	if hr == nil {
		hr = &hostRoutes{}
		m[key] = hr
	}
	return hr
}

// match returns the route for a request's Host header and path, or nil.
func (rt *router) match(host, path string) *prefixRoute {
	host = normalizeHost(host)
	if path == "" || path[0] != '/' {
		path = "/"
	}
	if hr := rt.exact[host]; hr != nil {
		if p := hr.match(path); p != nil {
			return p
		}
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if hr := rt.wild[host[i+1:]]; hr != nil {
			if p := hr.match(path); p != nil {
				return p
			}
		}
	}
	if rt.any != nil {
		return rt.any.match(path)
	}
	return nil
}

// match returns the route of the longest prefix that matches path on a
// segment boundary: "/api" matches "/api" and "/api/x", not "/apix".
func (hr *hostRoutes) match(path string) *prefixRoute {
	for i := range hr.routes {
		r := &hr.routes[i]
		if !strings.HasPrefix(path, r.prefix) {
			continue
		}
		if len(path) == len(r.prefix) || r.prefix[len(r.prefix)-1] == '/' || path[len(r.prefix)] == '/' {
			return r
		}
	}
	return nil
}

// normalizeHost strips the port and a trailing dot and lowercases host. It
// allocates only when host has upper-case letters.
func normalizeHost(host string) string {
	if strings.HasPrefix(host, "[") { // IPv6 literal
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
