package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
)

// DynamicRoute is a route managed at run time (through the admin API and
// the store) rather than in the configuration file. Host and PathPrefix
// have the meaning of config.Route's.
type DynamicRoute struct {
	Host, PathPrefix, Pool string
}

// routeTable is a Proxy's router: the static routes of the configuration,
// which New adds through the embedded router, and the router requests are
// matched against, which is the static one until SetDynamicRoutes swaps in
// a copy extended with the dynamic routes. A lookup costs one atomic load
// more than the router's own.
type routeTable struct {
	*router // the static routes; only New adds to it, before the Proxy is shared
	cur     atomic.Pointer[router]
	// mu serializes SetDynamicRoutes.
	mu sync.Mutex
}

func newRouteTable() *routeTable {
	t := &routeTable{router: newRouter()}
	t.cur.Store(t.router)
	return t
}

// match returns the route for a request's Host header and path, or nil.
func (t *routeTable) match(host, path string) *prefixRoute {
	return t.cur.Load().match(host, path)
}

// clone returns a copy of rt that can be added to without changing rt,
// with room for about extra more hosts.
func (rt *router) clone(extra int) *router {
	c := &router{
		exact: make(map[string]*hostRoutes, len(rt.exact)+extra),
		wild:  make(map[string]*hostRoutes, len(rt.wild)),
	}
	for k, hr := range rt.exact {
		c.exact[k] = &hostRoutes{routes: slices.Clone(hr.routes)}
	}
	for k, hr := range rt.wild {
		c.wild[k] = &hostRoutes{routes: slices.Clone(hr.routes)}
	}
	if rt.any != nil {
		c.any = &hostRoutes{routes: slices.Clone(rt.any.routes)}
	}
	return c
}

// SetDynamicRoutes replaces the dynamic routes of px with routes: the
// static routes of the configuration are copied, the dynamic ones added
// (a static route wins over a dynamic one with the same host and path
// prefix, the first of two dynamic ones wins), and the result swapped in
// for the next request. Pools, member health and requests in flight are
// untouched. A route whose pool this Proxy does not have is logged and
// skipped. It returns the number of routes skipped.
func (px *Proxy) SetDynamicRoutes(routes []DynamicRoute) (skipped int) {
	t := px.router
	t.mu.Lock()
	defer t.mu.Unlock()
	next := t.router.clone(len(routes))
	var missing []string
	for _, r := range routes {
		p := px.byName[r.Pool]
		if p == nil {
			skipped++
			if len(missing) < 5 {
				missing = append(missing, r.Host+r.PathPrefix+" → "+r.Pool)
			}
			continue
		}
		next.add(r.Host, r.PathPrefix, p, nil)
	}
	t.cur.Store(next)
	if skipped > 0 {
		px.log.Warn("dynamic routes skipped: their pool is not in this node's configuration",
			"skipped", skipped, "examples", missing)
	}
	return skipped
}
