package node

import (
	"context"
	"sync"

	"gatehouse/internal/config"
	"gatehouse/internal/proxy"
	"gatehouse/internal/routes"
)

// dynRoutes holds the dynamic routes of the store as the proxy takes them.
type dynRoutes struct {
	// mu serializes applying routes to the current proxy and swapping in
	// a new proxy, so a reload never loses a route change.
	mu  sync.Mutex
	set []proxy.DynamicRoute
}

// maxRoutes is the cap on dynamic routes of cfg: limits.max_routes or the
// default (the capacity registry's settings carry it; limits.go).
func maxRoutes(cfg *config.Config) int64 {
	if cfg.Limits.MaxRoutes > 0 {
		return cfg.Limits.MaxRoutes
	}
	return routes.DefaultMaxRoutes
}

// startRoutes loads the dynamic routes into the current proxy and follows
// them until close.
func (n *Node) startRoutes(ctx context.Context, cfg *config.Config) error {
	n.routes = routes.NewManager(n.store, routes.Options{
		Logger:    n.log,
		Fixed:     n.fixedRoutes,
		Admission: n.capacity,
		OnChange:  n.applyRoutes,
	})
	return n.routes.Start(ctx)
}

// fixedRoutes maps the current configuration to what it fixes for dynamic
// routes: the pools a route may name, the file's routes and
// limits.max_routes.
func (n *Node) fixedRoutes() *routes.Fixed {
	cfg := n.cfg.Load()
	if cfg == nil {
		return nil
	}
	f := &routes.Fixed{Pools: make([]string, len(cfg.Pools)), Routes: make([]routes.Route, len(cfg.Routes)),
		MaxRoutes: cfg.Limits.MaxRoutes}
	for i, p := range cfg.Pools {
		f.Pools[i] = p.Name
	}
	for i, r := range cfg.Routes {
		f.Routes[i] = routes.Route{Host: r.Host, PathPrefix: r.PathPrefix, Pool: r.Pool}
	}
	return f
}

// applyRoutes hands the full set of dynamic routes to the current proxy.
func (n *Node) applyRoutes(rs []routes.Route) {
	set := make([]proxy.DynamicRoute, len(rs))
	for i, r := range rs {
		set[i] = proxy.DynamicRoute{Host: r.Host, PathPrefix: r.PathPrefix, Pool: r.Pool}
	}
	n.dyn.mu.Lock()
	defer n.dyn.mu.Unlock()
	n.dyn.set = set
	n.edge.Load().SetDynamicRoutes(set)
}

// swapEdge makes p, with the current dynamic routes, the node's proxy.
func (n *Node) swapEdge(p *proxy.Proxy) {
	n.dyn.mu.Lock()
	defer n.dyn.mu.Unlock()
	p.SetDynamicRoutes(n.dyn.set)
	n.edge.Store(p)
}
