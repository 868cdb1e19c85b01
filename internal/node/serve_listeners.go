package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/server"
)

// registerListenerResources declares the public listener's queue, its
// refusals and the busiest client address as capacity resources, so that
// `gatehouse limits` shows them beside https_connections.
func (n *Node) registerListenerResources() {
	stats := func() server.ListenerStats {
		if n.srv == nil {
			return server.ListenerStats{}
		}
		return n.srv.Stats("https")
	}
	r := n.capacity
	r.Register("https_connection_queue", "count", "listeners.https.max_queued", false, func() (int64, int64) {
		st := stats()
		return st.Queued, st.MaxQueued
	})
	// A counter since start (no limit): every refusal, whatever its reason;
	// gatehouse_listener_connections_refused_total has them by reason.
	r.Register("https_connections_refused", "count", "refused since start: max_connections, queue_timeout, per_client", false, func() (int64, int64) {
		var total uint64
		for _, v := range stats().Refused {
			total += v
		}
		return int64(total), 0
	})
	r.Register("https_connections_queued", "count", "queued since start (listeners.https.queue_timeout)", false, func() (int64, int64) {
		return int64(stats().QueuedTotal), 0
	})
	r.Register("https_connections_per_client", "count", "listeners.https.per_client.max_connections (the busiest address)", false, func() (int64, int64) {
		st := stats()
		return st.BusiestClient, st.PerClientMax
	})
}

// listenerCollector exposes the listeners' refusals by reason.
func (n *Node) listenerCollector() prometheus.Collector {
	return lazyCollector{func() prometheus.Collector {
		if n.srv == nil {
			return nil
		}
		return n.srv.Collector()
	}}
}

// lazyCollector collects from a collector that exists only once the
// listeners are bound (metrics are registered before).
type lazyCollector struct{ get func() prometheus.Collector }

func (c lazyCollector) Describe(ch chan<- *prometheus.Desc) {
	server.DescribeMetrics(ch)
}

func (c lazyCollector) Collect(ch chan<- prometheus.Metric) {
	if col := c.get(); col != nil {
		col.Collect(ch)
	}
}
