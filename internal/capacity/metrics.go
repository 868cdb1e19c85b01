package capacity

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes every resource as gatehouse_resource_usage and
// gatehouse_resource_limit gauges labelled by resource, and the refusals of
// each hard resource as the counter gatehouse_admission_refused_total.
type Collector struct{ r *Registry }

// NewCollector returns a Prometheus collector for r.
func NewCollector(r *Registry) *Collector { return &Collector{r: r} }

var (
	usageDesc   = prometheus.NewDesc("gatehouse_resource_usage", "Current usage of a finite resource.", []string{"resource", "unit"}, nil)
	limitDesc   = prometheus.NewDesc("gatehouse_resource_limit", "Limit of a finite resource (0: none).", []string{"resource", "unit"}, nil)
	ratioDesc   = prometheus.NewDesc("gatehouse_resource_utilization_ratio", "Usage over limit, for resources with a limit.", []string{"resource"}, nil)
	refusedDesc = prometheus.NewDesc("gatehouse_admission_refused_total", "Changes refused because they would cross a hard limit.", []string{"resource"}, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- usageDesc
	ch <- limitDesc
	ch <- ratioDesc
	ch <- refusedDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, res := range c.r.Snapshot() {
		ch <- prometheus.MustNewConstMetric(usageDesc, prometheus.GaugeValue, float64(res.Usage), res.Name, res.Unit)
		ch <- prometheus.MustNewConstMetric(limitDesc, prometheus.GaugeValue, float64(res.Limit), res.Name, res.Unit)
		if res.Limit > 0 {
			ch <- prometheus.MustNewConstMetric(ratioDesc, prometheus.GaugeValue, float64(res.Usage)/float64(res.Limit), res.Name)
		}
		if res.Hard {
			ch <- prometheus.MustNewConstMetric(refusedDesc, prometheus.CounterValue, float64(c.r.Refused(res.Name)), res.Name)
		}
	}
}
