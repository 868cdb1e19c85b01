package proxy

import "github.com/prometheus/client_golang/prometheus"

var (
	poolRequestsDesc = prometheus.NewDesc("gatehouse_pool_requests_total",
		"Requests a pool answered (see PoolStatus.Requests).", []string{"pool"}, nil)
	upstreamConnsDesc = prometheus.NewDesc("gatehouse_pool_upstream_connections_opened_total",
		"Connections opened to a pool's members; over gatehouse_pool_requests_total, the share of requests that did not reuse a kept-alive connection.",
		[]string{"pool"}, nil)
)

// Collector returns a Prometheus collector of the pools' answered requests
// and opened upstream connections, read from the Proxy current returns
// (the one serving after the latest reload).
func Collector(current func() *Proxy) prometheus.Collector { return poolCollector{current} }

type poolCollector struct{ current func() *Proxy }

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolRequestsDesc
	ch <- upstreamConnsDesc
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	px := c.current()
	if px == nil {
		return
	}
	for _, p := range px.pools {
		ch <- prometheus.MustNewConstMetric(poolRequestsDesc, prometheus.CounterValue, float64(p.stats.requests.Load()), p.name)
		ch <- prometheus.MustNewConstMetric(upstreamConnsDesc, prometheus.CounterValue, float64(p.stats.upstreamConns.Load()), p.name)
	}
}
