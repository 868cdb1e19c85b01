package node

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"

	"gatehouse/internal/capacity"
	"gatehouse/internal/config"
)

// capacitySettings are the capacity registry's settings from cfg: the
// levels, the check period and every limit the registry admits changes
// against. They are swapped whole on reload (applyLimits), so that the
// next admission and `gatehouse limits` read the same values.
func capacitySettings(cfg *config.Config) capacity.Settings {
	return capacity.Settings{
		WarnPercent:   cfg.Limits.WarnPercent,
		CheckInterval: cfg.Limits.CheckInterval.D(),
		Limits: map[string]int64{
			capacity.Certificates: cfg.Limits.MaxCertificates,
			capacity.Routes:       maxRoutes(cfg),
			// On etcd the lower of this and etcd's own quota holds.
			capacity.Store: int64(cfg.Limits.StoreQuota),
		},
	}
}

// restartOnly lists the limits that cannot change without a restart: the
// field, why, and how to read it. A reload that changes one is refused
// whole (restartOnlyLimits). Every limit of the capacity registry changes
// live today, so the list is empty; a limit that cannot must be added
// here and to the README's "No hidden limits".
var restartOnly []struct {
	field, why string
	get        func(*config.Config) any
}

// restartOnlyLimits returns an error naming each limit of restartOnly that
// differs between running and next.
func restartOnlyLimits(running, next *config.Config) error {
	var errs []error
	for _, r := range restartOnly {
		if was, is := r.get(running), r.get(next); was != is {
			errs = append(errs, fmt.Errorf("%s: changing it from %v to %v needs a restart (%s); the reload changed nothing", r.field, was, is, r.why))
		}
	}
	return errors.Join(errs...)
}

// quotaSetter is a store whose quota changes while it is open (the
// embedded store).
type quotaSetter interface{ SetQuota(bytes int64) error }

// prepareLimits does the part of applying cfg's limits that can fail, so
// that a reload fails before anything of it is swapped in.
func (n *Node) prepareLimits(cfg *config.Config) error {
	if q, ok := n.store.(quotaSetter); ok {
		return q.SetQuota(int64(cfg.Limits.StoreQuota))
	}
	return nil
}

// applyLimits makes every config-driven limit of cfg (already the node's
// configuration) the one in force. It is called on reload after the new
// proxy, which carries response_cache.max_bytes and max_object_bytes and
// the pools' limits, is swapped in.
func (n *Node) applyLimits(cfg *config.Config) {
	n.certs.SetCacheBytes(int64(cfg.TLS.CacheBytes))
	n.certs.SetLocalCacheBytes(localCacheBytes(cfg))
	n.applyMemoryLimit()
	// The listeners' connection limits (max_connections, max_queued,
	// queue_timeout, per_client) are applied by doReload through
	// Server.Reconfigure, which also names the listener fields that need a
	// restart; the registry reads them back from the listener.
	n.capacity.Configure(capacitySettings(cfg))
}

// applyMemoryLimit sets the Go runtime's soft memory limit:
// limits.memory_soft_limit when set, else the automatic one
// (memorySoftLimit plus the response cache), moved only on a change of
// more than 1/16 to keep the log quiet. GOMEMLIMIT, when set, wins.
func (n *Node) applyMemoryLimit() {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	n.memMu.Lock()
	defer n.memMu.Unlock()
	if m := int64(n.cfg.Load().Limits.MemorySoftLimit); m > 0 {
		if !n.memFixed || n.memLast != m {
			debug.SetMemoryLimit(m)
			n.log.Info("Go memory soft limit", "bytes", m, "source", "limits.memory_soft_limit")
			n.memLast, n.memFixed = m, true
		}
		return
	}
	_, cacheLimit, _, _, _ := n.certs.CacheStats()
	want := memorySoftLimit(cacheLimit, n.certs.Count()) + n.edge.Load().CacheStats().Limit
	if d := want - n.memLast; n.memFixed || d > n.memLast/16 || -d > n.memLast/16 {
		debug.SetMemoryLimit(want)
		n.log.Info("Go memory soft limit", "bytes", want, "source", "automatic", "certificates", n.certs.Count())
		n.memLast, n.memFixed = want, false
	}
}

// goMemoryLimit is the Go soft memory limit in force (0: none).
func goMemoryLimit() int64 {
	l := debug.SetMemoryLimit(-1)
	if l == math.MaxInt64 {
		return 0
	}
	return l
}
