package node

import (
	"crypto/tls"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/proxy"
)

// servedCertificate returns the certificate the HTTPS listener serves for
// a TLS server name: the proxy answers 421 to a request whose Host that
// certificate does not cover (another tenant's session).
// It runs only for a request whose Host differs from its session's server
// name (HTTP/2 clients coalescing across one certificate's names).
func (n *Node) servedCertificate(serverName string) *tls.Certificate {
	hello := helloPool.Get().(*tls.ClientHelloInfo)
	hello.ServerName = serverName
	cert, err := n.certs.GetCertificate(hello)
	hello.ServerName = ""
	helloPool.Put(hello)
	if err != nil {
		return nil
	}
	return cert
}

// helloPool holds the ClientHelloInfos servedCertificate asks with
// (GetCertificate does not keep them).
var helloPool = sync.Pool{New: func() any { return new(tls.ClientHelloInfo) }}

// registerClientErrors exposes the proxy's client errors (aborted or reset
// requests, malformed or stalled bodies, stalled readers, misdirected
// requests), which count neither against members nor in the status
// portal's error rates.
func registerClientErrors(reg *prometheus.Registry, n *Node) {
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
