package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/acme"
	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
)

// startHostnames follows the customer hostnames and, with an acme:
// section, starts the ACME manager that certifies them.
func (n *Node) startHostnames(ctx context.Context, cfg *config.Config, kek *certs.KEK) error {
	var onChange func(hostnames.Hostname, bool)
	if cfg.ACME != nil {
		hc, eab, err := acmeClientFiles(cfg.ACME)
		if err != nil {
			return err
		}
		n.acme = acme.New(acme.Options{
			Logger: n.log,
			Store:  n.store,
			KEK:    kek,
			Certs:  n.certs,
			// A reload may change the section; removing it takes a restart.
			Config: func() *config.ACME {
				if a := n.cfg.Load().ACME; a != nil {
					return a
				}
				return cfg.ACME
			},
			HTTPClient: hc,
			EABKey:     eab,
		})
		onChange = n.acme.OnHostname
	}
	// Every node answers challenges from the store, with or without an
	// acme: section of its own: the CA may ask any node behind the name.
	n.challenges = acme.NewChallenges(n.store, kek, n.log, nil)
	wildcards := cfg.ACME != nil && slices.Contains(cfg.ACME.Challenges, "dns-01")
	var onTransition func(hostnames.Transition)
	if cfg.ACME != nil && cfg.ACME.Webhook != nil {
		host, _ := os.Hostname()
		nt, err := acme.NewNotifier(cfg.ACME.Webhook, acme.NotifierOptions{Logger: n.log, Node: host})
		if err != nil {
			return err
		}
		n.notifier = nt
		onTransition = nt.OnTransition
	}
	n.hostnames = hostnames.New(n.store, hostnames.Options{Logger: n.log, Routes: n.routes, Certs: n.certs, Wildcards: wildcards,
		OnChange: onChange, OnTransition: onTransition})
	if n.acme != nil {
		n.acme.SetHostnames(n.hostnames)
	}
	return n.hostnames.Start(ctx)
}

// reconfigureNotifier applies a reloaded acme.webhook; one that cannot be
// applied (its secret file unreadable, its URL refused) keeps the running
// one, and adding or removing the section takes a restart.
func (n *Node) reconfigureNotifier(cfg *config.Config) {
	var w *config.ACMEWebhook
	if cfg.ACME != nil {
		w = cfg.ACME.Webhook
	}
	switch {
	case n.notifier == nil && w == nil:
	case n.notifier == nil || w == nil:
		n.log.Warn("reload: adding or removing acme.webhook takes effect at the next restart")
	default:
		if err := n.notifier.Configure(w); err != nil {
			n.log.Error("reload: acme.webhook not changed", "err", err)
		}
	}
}

// acmeClientFiles reads acme.ca_file and acme.eab.hmac_file.
func acmeClientFiles(a *config.ACME) (*http.Client, string, error) {
	hc := &http.Client{}
	if a.CAFile != "" {
		pem, err := os.ReadFile(a.CAFile)
		if err != nil {
			return nil, "", fmt.Errorf("acme.ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "", fmt.Errorf("acme.ca_file: %s holds no PEM certificate", a.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		hc.Transport = tr
	}
	eab := ""
	if a.EAB != nil {
		b, err := os.ReadFile(a.EAB.HMACFile)
		if err != nil {
			return nil, "", fmt.Errorf("acme.eab.hmac_file: %w", err)
		}
		eab = strings.TrimSpace(string(b))
		if eab == "" {
			return nil, "", fmt.Errorf("acme.eab.hmac_file: %s is empty", a.EAB.HMACFile)
		}
	}
	return hc, eab, nil
}

// acmeTLS adds the ACME handshake paths (TLS-ALPN-01, on-demand) to the
// public TLS config.
func (n *Node) acmeTLS(c *tls.Config) *tls.Config {
	if n.acme == nil {
		return n.challenges.TLSConfig(c)
	}
	return n.acme.TLSConfig(c)
}

// acmeHTTP answers HTTP-01 challenges before the plain listener's redirect.
func (n *Node) acmeHTTP() func(http.Handler) http.Handler {
	if n.acme == nil {
		return n.challenges.HTTPHandler
	}
	return n.acme.Challenges().HTTPHandler
}

// runACME orders and renews until ctx is done. Every node runs it: the
// per-name lock spreads the work over the live nodes.
func (n *Node) runACME(ctx context.Context) {
	if n.acme != nil {
		n.acme.Run(ctx)
	}
}

// registerACMEResources puts the CA budgets and the renewal queue in the
// capacity registry.
func (n *Node) registerACMEResources() {
	if n.acme == nil {
		return
	}
	for i, b := range n.acme.Budgets() {
		n.capacity.Register(b.Name, "count", "acme.rate_limits (the busiest account, domain, name set or name)", false, func() (int64, int64) {
			u := n.acme.Budgets()[i]
			return u.Used, u.Limit
		})
	}
	n.capacity.Register("acme_schedule", "bytes", "renewal schedule in memory (about 58 bytes per hostname)", false, func() (int64, int64) {
		return n.acme.ScheduleBytes(), 0
	})
	n.capacity.Register("acme_waiting_budget", "count", "acme.rate_limits (orders queued for a CA budget)", false, func() (int64, int64) {
		_, w := n.acme.Queued()
		return int64(w), 0
	})
}

// hostnameCollector exposes hostnames by state, the state changes this
// node made, and the ACME orders.
type hostnameCollector struct{ n *Node }

var (
	hostnamesDesc       = prometheus.NewDesc("gatehouse_hostnames", "Customer hostnames by state.", []string{"state"}, nil)
	hostnameTransDesc   = prometheus.NewDesc("gatehouse_hostname_state_changes_total", "Hostname state changes made by this node, by new state.", []string{"state"}, nil)
	acmeOrdersDesc      = prometheus.NewDesc("gatehouse_acme_orders_total", "ACME orders this node completed, by result.", []string{"result"}, nil)
	acmeExpiringDesc    = prometheus.NewDesc("gatehouse_acme_expiring_unrenewed", "ACME certificates past their emergency renewal point whose renewal failed.", nil, nil)
	acmeScheduledDesc   = prometheus.NewDesc("gatehouse_acme_scheduled", "Hostnames in this node's renewal schedule.", nil, nil)
	acmeWaitBudgetsDesc = prometheus.NewDesc("gatehouse_acme_waiting_budget", "Orders waiting for a CA rate-limit budget.", nil, nil)
)

func (c hostnameCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{hostnamesDesc, hostnameTransDesc, acmeOrdersDesc, acmeExpiringDesc, acmeScheduledDesc, acmeWaitBudgetsDesc} {
		ch <- d
	}
}

func (c hostnameCollector) Collect(ch chan<- prometheus.Metric) {
	for s, v := range c.n.hostnames.Counts() {
		ch <- prometheus.MustNewConstMetric(hostnamesDesc, prometheus.GaugeValue, float64(v), string(s))
	}
	for s, v := range c.n.hostnames.Transitions() {
		ch <- prometheus.MustNewConstMetric(hostnameTransDesc, prometheus.CounterValue, float64(v), string(s))
	}
	if a := c.n.acme; a != nil {
		ok, failed, _ := a.Orders()
		ch <- prometheus.MustNewConstMetric(acmeOrdersDesc, prometheus.CounterValue, float64(ok), "ok")
		ch <- prometheus.MustNewConstMetric(acmeOrdersDesc, prometheus.CounterValue, float64(failed), "failed")
		ch <- prometheus.MustNewConstMetric(acmeExpiringDesc, prometheus.GaugeValue, float64(len(a.ExpiringUnrenewed())))
		s, w := a.Queued()
		ch <- prometheus.MustNewConstMetric(acmeScheduledDesc, prometheus.GaugeValue, float64(s))
		ch <- prometheus.MustNewConstMetric(acmeWaitBudgetsDesc, prometheus.GaugeValue, float64(w))
	}
}
