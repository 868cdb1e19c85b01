package server

import "github.com/prometheus/client_golang/prometheus"

var (
	refusedDesc = prometheus.NewDesc("gatehouse_listener_connections_refused_total",
		"Connections refused by a listener's limits, by reason: max_connections (listener and queue full), queue_timeout, per_client_connections, per_client_rate.",
		[]string{"listener", "reason"}, nil)
	queuedDesc = prometheus.NewDesc("gatehouse_listener_connections_queued_total",
		"Connections that waited in a listener's queue for a free slot (served or refused after queue_timeout).",
		[]string{"listener"}, nil)
	trackedDesc = prometheus.NewDesc("gatehouse_listener_client_addresses",
		"Client addresses (IPv4, IPv6 /64) the per-client limits of a listener track.",
		[]string{"listener"}, nil)
)

// Collector returns a Prometheus collector of the listeners' refusals and
// queues (their open and queued connections are capacity resources).
func (s *Server) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) { DescribeMetrics(ch) }

// DescribeMetrics sends the descriptions of the Collector's metrics.
func DescribeMetrics(ch chan<- *prometheus.Desc) {
	ch <- refusedDesc
	ch <- queuedDesc
	ch <- trackedDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	servers := c.s.servers
	c.s.mu.Unlock()
	for _, m := range servers {
		st := m.ln.stats()
		for _, r := range refusalReasons {
			ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(st.Refused[r]), m.name, r)
		}
		ch <- prometheus.MustNewConstMetric(queuedDesc, prometheus.CounterValue, float64(st.QueuedTotal), m.name)
		ch <- prometheus.MustNewConstMetric(trackedDesc, prometheus.GaugeValue, float64(st.TrackedClients), m.name)
	}
}
