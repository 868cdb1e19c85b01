package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/admin"
	"gatehouse/internal/config"
	"gatehouse/internal/proxy"
)

// memberTransitions counts pool members going up and down, by pool and new
// state; it survives reloads (every proxy a reload builds reports here).
func newMemberTransitions() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_member_transitions_total",
		Help: "Pool member health transitions (active and passive checks), by pool and new state (up, down).",
	}, []string{"pool", "state"})
}

// newProxy builds the proxy for cfg; prev, if not nil, is the one it
// replaces. The 503 page links the status portal when status.url is set.
func (n *Node) newProxy(cfg *config.Config, prev *proxy.Proxy) (*proxy.Proxy, error) {
	return proxy.New(cfg, proxy.Options{
		Logger:      n.log,
		AccessLog:   cfg.Log.Access,
		Previous:    prev,
		Certificate: n.servedCertificate,
		StatusURL:   cfg.Status.URL,
		OnHealthChange: func(pool, address string, up bool) {
			state := "down"
			if up {
				state = "up"
			}
			n.transitions.WithLabelValues(pool, state).Inc()
		},
	})
}

// adminPools is the live pool state as the admin API answers it.
func (n *Node) adminPools() []admin.Pool {
	ps := n.edge.Load().Pools()
	out := make([]admin.Pool, len(ps))
	for i, p := range ps {
		out[i] = admin.Pool{Name: p.Name, Algorithm: p.Algorithm, Failover: p.Failover, ActiveZone: p.ActiveZone,
			Requests: p.Requests, Failures: p.Failures, Members: make([]admin.PoolMember, len(p.Members))}
		for j, m := range p.Members {
			out[i].Members[j] = admin.PoolMember{Address: m.Address, Up: m.Up, Drained: m.Drained, Weight: m.Weight,
				Zone: m.Zone, InFlight: m.InFlight, OpenConns: m.OpenConns}
		}
	}
	return out
}
