// Package acmetest runs an ACME CA in process: Pebble's CA, validation
// authority and web front end, with a DNS answerer on loopback that sends
// every name to 127.0.0.1, so that the CA validates challenges against the
// node's own listeners. Tests use it, and so does gatehouse demo --acme: a
// newcomer sees a hostname certified without internet.
package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Options configure a CA.
type Options struct {
	// HTTPPort and TLSPort are where the validation authority connects for
	// HTTP-01 and TLS-ALPN-01 (on 127.0.0.1): a node's plain HTTP and
	// HTTPS listeners. Either may be set later with SetPorts.
	HTTPPort, TLSPort int
	// Validity is the certificates' lifetime in seconds (0: Pebble's 90
	// days).
	Validity uint64
	// Log receives Pebble's log (nil: discarded).
	Log io.Writer
	// TXTDir, if set, holds the DNS answerer's TXT records for dns-01: a
	// question for NAME is answered with the lines of the file TXTDir/NAME
	// (lower case, no trailing dot). An operator's dns01 hook in a test
	// writes and removes these files.
	TXTDir string
	// EAB, if not empty, makes the CA require External Account Binding
	// with these key ids and their base64url HMAC keys.
	EAB map[string]string
}

// CA is an in-process ACME CA.
type CA struct {
	srv         *httptest.Server
	dns, dnsTCP *dns.Server
	// handler is the front end, swapped when the ports change.
	handler atomic.Pointer[http.Handler]
	ca      *ca.CAImpl
	db      *db.MemoryStore
	log     *log.Logger
	opts    Options
	dnsAddr string

	orders atomic.Int64
	// fault, if set, answers a request instead of Pebble (fault injection).
	fault atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
	mu    sync.Mutex
}

// DirectoryPath is the path of the directory on URL.
const DirectoryPath = wfe.DirectoryPath

var envOnce sync.Once

// Start runs a CA on loopback. Close stops it.
func Start(opts Options) (*CA, error) {
	envOnce.Do(func() {
		// No artificial validation delay, no rejected nonces, fresh authorizations.
		os.Setenv("PEBBLE_VA_NOSLEEP", "1")
		os.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
		os.Setenv("PEBBLE_AUTHZREUSE", "0")
	})
	w := opts.Log
	if w == nil {
		w = io.Discard
	}
	c := &CA{opts: opts, log: log.New(w, "pebble ", log.LstdFlags)}
	// The validation authority asks over TCP or UDP: answer both on one port.
	var ln net.Listener
	var pc net.PacketConn
	var err error
	for range 20 {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		pc, err = net.ListenPacket("udp", ln.Addr().String())
		if err == nil {
			break
		}
		ln.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("dns answerer: %w", err)
	}
	c.dnsAddr = ln.Addr().String()
	answer := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) { answerLoopback(w, r, opts.TXTDir) })
	c.dns = &dns.Server{PacketConn: pc, Handler: answer}
	c.dnsTCP = &dns.Server{Listener: ln, Handler: answer}
	for _, s := range []*dns.Server{c.dns, c.dnsTCP} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
	}
	c.db = db.NewMemoryStore()
	for kid, key := range opts.EAB {
		if err := c.db.AddExternalAccountKeyByID(kid, key); err != nil {
			return nil, fmt.Errorf("external account key %q: %w", kid, err)
		}
	}
	// One profile: Pebble picks any of its profiles for an order that
	// names none, so a second one would make lifetimes random.
	profiles := map[string]ca.Profile{
		"default": {Description: "The default profile", ValidityPeriod: opts.Validity},
	}
	c.ca = ca.New(c.log, c.db, "", "ecdsa", 0, 1, profiles)
	c.srv = httptest.NewUnstartedServer(http.HandlerFunc(c.serve))
	c.srv.StartTLS()
	c.SetPorts(opts.HTTPPort, opts.TLSPort)
	return c, nil
}

// answerLoopback answers every A question with 127.0.0.1, and TXT
// questions from the files in txtDir (if set).
func answerLoopback(w dns.ResponseWriter, r *dns.Msg, txtDir string) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, q := range r.Question {
		switch q.Qtype {
		case dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeTXT:
			name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
			if txtDir == "" || strings.ContainsAny(name, "/\\") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(txtDir, name))
			if err != nil {
				continue
			}
			for _, v := range strings.Fields(string(b)) {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 0}, Txt: []string{v}})
			}
		}
	}
	_ = w.WriteMsg(m)
}

// SetPorts points validation at other ports (a new validation authority
// and front end over the same CA and database).
func (c *CA) SetPorts(httpPort, tlsPort int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := va.New(c.log, httpPort, tlsPort, true, c.dnsAddr, c.db)
	f := wfe.New(c.log, c.db, v, c.ca, nil, true, len(c.opts.EAB) > 0, 0, 0)
	h := f.Handler()
	c.handler.Store(&h)
}

func (c *CA) serve(w http.ResponseWriter, r *http.Request) {
	if f := c.fault.Load(); f != nil && (*f)(w, r) {
		return
	}
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz") {
		c.orders.Add(1)
	}
	(*c.handler.Load()).ServeHTTP(w, r)
}

// SetFault makes f see every request first; when it returns true it has
// answered (for problems Pebble does not produce, such as rateLimited).
// nil removes it.
func (c *CA) SetFault(f func(w http.ResponseWriter, r *http.Request) bool) {
	if f == nil {
		c.fault.Store(nil)
		return
	}
	c.fault.Store(&f)
}

// URL is the directory URL.
func (c *CA) URL() string { return c.srv.URL + DirectoryPath }

// Orders is how many new orders the CA received.
func (c *CA) Orders() int64 { return c.orders.Load() }

// ServerCAPEM is the PEM certificate to trust for the directory's HTTPS.
func (c *CA) ServerCAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.srv.Certificate().Raw})
}

// Roots is the pool of the CA's issuing root, to verify what it issued.
func (c *CA) Roots() (*x509.CertPool, error) {
	root := c.ca.GetRootCert(0)
	if root == nil {
		return nil, fmt.Errorf("no root certificate")
	}
	cert, err := x509.ParseCertificate(root.DER)
	if err != nil {
		return nil, err
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p, nil
}

// Client returns an HTTP client that trusts the directory's HTTPS.
func (c *CA) Client() *http.Client {
	p := x509.NewCertPool()
	p.AddCert(c.srv.Certificate())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p}}}
}

// Close stops the CA.
func (c *CA) Close() {
	c.srv.CloseClientConnections()
	c.srv.Close()
	_ = c.dns.Shutdown()
	_ = c.dnsTCP.Shutdown()
}

// RootPEM is the CA's issuing root in PEM, for clients (curl --cacert).
func (c *CA) RootPEM() []byte {
	root := c.ca.GetRootCert(0)
	if root == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.DER})
}
