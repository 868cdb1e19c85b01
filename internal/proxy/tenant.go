package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/netip"
	"strings"
)

// A TLS session belongs to the tenant whose name it was opened for: a
// request whose Host (the :authority of HTTP/2, the authority of an
// absolute request URI) is neither the session's server name nor another
// name of the certificate served for it is misdirected and answered 421
// (RFC 9110, section 15.5.20), unless its route allows it. Another name
// of the same certificate is allowed, so that HTTP/2 clients may coalesce
// connections as RFC 9113, section 9.1.1 permits.

// misdirected reports whether r arrived on a TLS session that is not for
// its Host. The common case (Host equal to the server name) compares two
// strings and allocates nothing.
func (px *Proxy) misdirected(r *http.Request) bool {
	cs := r.TLS
	if cs == nil {
		return false
	}
	host := trimHost(r.Host)
	sni := strings.TrimSuffix(cs.ServerName, ".")
	if sni != "" && strings.EqualFold(host, sni) {
		return false
	}
	if px.certFor == nil {
		// Without the certificate only the exact name can be checked;
		// a session without a server name names no tenant.
		return sni != ""
	}
	cert := px.certFor(cs.ServerName)
	if cert == nil {
		return true
	}
	return !certCovers(cert, host)
}

// trimHost returns host without its port and trailing dot, without
// allocating.
func trimHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	return strings.TrimSuffix(host, ".")
}

// certCovers reports whether the certificate's leaf is valid for host:
// one of its DNS names equals host or is a wildcard matching host's
// first label, or host is one of its IP addresses.
func certCovers(cert *tls.Certificate, host string) bool {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return false
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false
		}
	}
	if host == "" {
		return false
	}
	// An IP address ends in a digit (or is IPv6); a hostname's last
	// label never is all digits. Parsing only then spares the error
	// ParseAddr allocates for a hostname.
	if c := host[len(host)-1]; c >= '0' && c <= '9' || strings.IndexByte(host, ':') >= 0 {
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return false
		}
		for _, a := range leaf.IPAddresses {
			if b, ok := netip.AddrFromSlice(a); ok && b.Unmap() == ip.Unmap() {
				return true
			}
		}
		return false
	}
	dot := strings.IndexByte(host, '.')
	for _, n := range leaf.DNSNames {
		n = strings.TrimSuffix(n, ".")
		if strings.EqualFold(n, host) {
			return true
		}
		if strings.HasPrefix(n, "*.") && dot > 0 && strings.EqualFold(n[1:], host[dot:]) {
			return true
		}
	}
	return false
}
