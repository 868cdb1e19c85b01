package main

import (
	"context"
	"fmt"
	"sync"

	"gatehouse/internal/drain"
	"gatehouse/internal/proxy"
)

// drainState serialises handing the drain set to the proxy: the store
// follower and a reload both do.
type drainState struct {
	mu sync.Mutex
}

// startDrains loads the fleet's drains from the store, applies them to the
// proxy and follows every node's changes.
func (n *node) startDrains(ctx context.Context) error {
	n.drains = drain.New(n.store, drain.Options{
		Logger:   n.log,
		Pools:    func() []proxy.PoolStatus { return n.edge.Load().Pools() },
		OnChange: n.applyDrains,
	})
	return n.drains.Start(ctx)
}

// applyDrains hands the drain set to the current proxy.
func (n *node) applyDrains(set map[string]map[string]proxy.Drain) {
	n.drainMu.mu.Lock()
	defer n.drainMu.mu.Unlock()
	n.edge.Load().SetDrained(set)
}

// reapplyDrains hands the drain set to a proxy that replaced the previous
// one (a reload).
func (n *node) reapplyDrains() {
	if n.drains != nil {
		n.applyDrains(n.drains.Set())
	}
}

// registerPoolCapacity declares one capacity row per pool: its members
// that take no traffic (down or drained) against its members; 100% means
// no healthy member is left.
func (n *node) registerPoolCapacity() {
	for _, pc := range n.cfg.Load().Pools {
		name := pc.Name
		n.capacity.Register("pool_unavailable:"+name, "count",
			fmt.Sprintf("pools[%s].members: down or drained of all (100%%: no healthy member; a drain there is refused)", name), true,
			func() (int64, int64) {
				for _, p := range n.edge.Load().Pools() {
					if p.Name == name {
						c := drain.PoolCapacity(p, nil)
						return int64(c.Members - c.Healthy), int64(c.Members)
					}
				}
				return 0, 0
			})
	}
}
