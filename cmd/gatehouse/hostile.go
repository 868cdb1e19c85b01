package main

import (
	"crypto/tls"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/proxy"
)

// servedCertificate returns the certificate the HTTPS listener serves for
// a TLS server name: the proxy answers 421 to a request whose Host that
// certificate does not cover (another tenant's session).
func (n *node) servedCertificate(serverName string) *tls.Certificate {
	cert, err := n.certs.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName})
	if err != nil {
		return nil
	}
	return cert
}

// registerClientErrors exposes the proxy's client errors (aborted or reset
// requests, malformed or stalled bodies, stalled readers, misdirected
// requests), which count neither against members nor in the status
// portal's error rates.
func registerClientErrors(reg *prometheus.Registry, n *node) {
	for _, reason := range proxy.ClientErrorReasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_client_errors_total",
			Help: "Requests that failed through the client's doing, by reason: aborted, reset, bad_body (400), " +
				"body_timeout (408), write_timeout, misdirected (421), bad_header (400). " +
				"They count neither against backend members nor in the status portal's error rates.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(n.edge.Load().ClientErrors()[reason]) }))
	}
}
