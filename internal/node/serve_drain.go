package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"gatehouse/internal/drain"
	"gatehouse/internal/proxy"
	"gatehouse/internal/status"
)

// drainState serialises handing the drain set to the proxy: the store
// follower and a reload both do.
type drainState struct {
	mu sync.Mutex
}

// startDrains loads the fleet's drains from the store, applies them to the
// proxy and follows every node's changes.
func (n *Node) startDrains(ctx context.Context) error {
	n.drains = drain.New(n.store, drain.Options{
		Logger:   n.log,
		Pools:    func() []proxy.PoolStatus { return n.edge.Load().Pools() },
		OnChange: n.applyDrains,
	})
	return n.drains.Start(ctx)
}

// applyDrains hands the drain set to the current proxy.
func (n *Node) applyDrains(set map[string]map[string]proxy.Drain) {
	n.drainMu.mu.Lock()
	defer n.drainMu.mu.Unlock()
	n.edge.Load().SetDrained(set)
}

// reapplyDrains hands the drain set to a proxy that replaced the previous
// one (a reload).
func (n *Node) reapplyDrains() {
	if n.drains != nil {
		n.applyDrains(n.drains.Set())
	}
}

// registerPoolCapacity declares one capacity row per pool: its members
// that take no traffic (down or drained) against its members; 100% means
// no healthy member is left.
func (n *Node) registerPoolCapacity() {
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

// maintDrainer drains members for the status portal's maintenance windows.
type maintDrainer struct{ n *Node }

func (d maintDrainer) request(id string, md status.MaintenanceDrain) drain.Request {
	return drain.Request{Pool: md.Pool, Zone: md.Zone, Member: md.Member, Force: md.Force, Reason: "maintenance " + id}
}

func (d maintDrainer) Pools(md status.MaintenanceDrain) []string {
	var out []string
	for _, p := range d.n.edge.Load().Pools() {
		if md.Pool != "" && p.Name != md.Pool {
			continue
		}
		for _, m := range p.Members {
			if (md.Zone == "" || m.Zone == md.Zone) && (md.Member == "" || m.Address == md.Member) {
				out = append(out, p.Name)
				break
			}
		}
	}
	return out
}

func (d maintDrainer) Drain(ctx context.Context, id string, md status.MaintenanceDrain) (string, error) {
	recs, caps, err := d.n.drains.Drain(ctx, d.request(id, md))
	if err != nil {
		return "", err
	}
	var parts []string
	for _, c := range caps {
		parts = append(parts, fmt.Sprintf("pool %s: %d of %d members take traffic", c.Pool, c.Healthy, c.Members))
	}
	return fmt.Sprintf("%d members drained; %s", len(recs), strings.Join(parts, "; ")), nil
}

func (d maintDrainer) Undrain(ctx context.Context, id string, md status.MaintenanceDrain) (string, error) {
	req := d.request(id, md)
	recs, err := d.n.drains.Undrain(ctx, req)
	if err != nil && !errors.Is(err, drain.ErrNoMatch) {
		return "", err
	}
	// Health of the restored members, from their active checks (which
	// went on during the drain).
	up, total := 0, 0
	for _, p := range d.n.edge.Load().Pools() {
		for _, m := range p.Members {
			for _, r := range recs {
				if r.Pool == p.Name && r.Member == m.Address {
					total++
					if m.Up {
						up++
					}
				}
			}
		}
	}
	return fmt.Sprintf("%d of %d members healthy", up, total), nil
}
