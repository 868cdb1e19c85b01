// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp)
// on loopback for tests and benchmarks: STARTTLS or implicit TLS with its
// own CA, optional AUTH PLAIN, and every accepted message kept and parsed.
// It can refuse recipients (5xx), answer 4xx for a while, or stop
// listening, to exercise a sender's retries.
package smtptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one accepted message.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is a running test SMTP server.
type Server struct {
	Addr   string // host:port
	CAPEM  []byte // the CA that signed the server's certificate
	CAPool *x509.CertPool

	srv     *smtp.Server
	ln      net.Listener
	implcit bool
	user    string
	pass    string
	done    chan struct{}

	// mu guards msgs, reject, tempFail, onAccept.
	mu       sync.Mutex
	msgs     []Message
	reject   map[string]bool // recipients answered 550
	tempFail bool
	tempRcpt map[string]bool // recipients answered 451
	onAccept func(Message)
	count    atomic.Int64
	notify   chan struct{}
}

// Options configures a Server.
type Options struct {
	Implicit bool // TLS from the first byte instead of STARTTLS
	// Username and Password, if set, are required (AUTH PLAIN).
	Username, Password string
	// Discard keeps only the count of messages, not their data (for
	// benchmarks).
	Discard bool
}

// Start starts a server on 127.0.0.1:0.
func Start(opts Options) (*Server, error) {
	cert, caPEM, pool, err := newCert()
	if err != nil {
		return nil, err
	}
	s := &Server{CAPEM: caPEM, CAPool: pool, implcit: opts.Implicit, user: opts.Username, pass: opts.Password,
		reject: map[string]bool{}, tempRcpt: map[string]bool{}, notify: make(chan struct{}, 1)}
	discard := opts.Discard
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{s: s, discard: discard}, nil
	}))
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) listen(addr string) error {
	var ln net.Listener
	var err error
	if s.implcit {
		ln, err = tls.Listen("tcp", addr, s.srv.TLSConfig)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return err
	}
	s.ln, s.Addr = ln, ln.Addr().String()
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		s.srv.Serve(ln)
	}()
	return nil
}

// Host and Port split Addr.
func (s *Server) Host() string { h, _, _ := net.SplitHostPort(s.Addr); return h }

// Port returns the listening port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Stop stops listening and drops every open session (the server is down).
func (s *Server) Stop() {
	s.ln.Close()
	s.srv.Close()
	<-s.done
}

// Restart listens again on the same address after Stop.
func (s *Server) Restart() error {
	cfg := s.srv.TLSConfig
	be := s.srv.Backend
	s.srv = smtp.NewServer(be)
	s.srv.Domain = "localhost"
	s.srv.TLSConfig = cfg
	s.srv.MaxMessageBytes = 10 << 20
	var err error
	for range 50 { // the port may linger briefly
		if err = s.listen(s.Addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// Close stops the server.
func (s *Server) Close() { s.Stop() }

// Reject makes the server answer 550 for rcpt.
func (s *Server) Reject(rcpt string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject[rcpt] = true
}

// TempFail makes the server answer 451 to every message while on.
func (s *Server) TempFail(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tempFail = on
}

// TempFailRcpt makes the server answer 451 for rcpt while on.
func (s *Server) TempFailRcpt(rcpt string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tempRcpt[rcpt] = on
}

// OnAccept, if set, is called after each accepted message.
func (s *Server) OnAccept(f func(Message)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onAccept = f
}

// Messages returns the accepted messages, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many messages were accepted.
func (s *Server) Count() int64 { return s.count.Load() }

// Wait waits until at least n messages were accepted or d passed, and
// reports whether they were.
func (s *Server) Wait(n int64, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for s.Count() < n {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-s.notify:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
	return true
}

type session struct {
	s       *Server
	discard bool
	authed  bool
	from    string
	to      []string
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.s.user || password != ss.s.pass {
			return errors.New("invalid credentials")
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.user != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	ss.s.mu.Lock()
	temp := ss.s.tempFail
	ss.s.mu.Unlock()
	if temp {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	rej, temp := ss.s.reject[to], ss.s.tempRcpt[to]
	ss.s.mu.Unlock()
	if temp {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "mailbox busy, try again later"}
	}
	if rej {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	m := Message{From: ss.from, To: ss.to}
	if !ss.discard {
		m.Data = b.Bytes()
	}
	ss.s.mu.Lock()
	if !ss.discard {
		ss.s.msgs = append(ss.s.msgs, m)
	}
	f := ss.s.onAccept
	ss.s.mu.Unlock()
	ss.s.count.Add(1)
	if f != nil {
		f(m)
	}
	select {
	case ss.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.to = "", nil }

func (ss *session) Logout() error { return nil }

// newCert returns a certificate for 127.0.0.1 and localhost signed by a
// fresh CA.
func newCert() (tls.Certificate, []byte, *x509.CertPool, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtptest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caPEM, pool, nil
}
