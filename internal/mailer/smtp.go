package mailer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"sync"
	"time"
)

// TLS modes of Config.TLS.
const (
	StartTLS = "starttls" // plain connection upgraded by STARTTLS, which the server must offer
	Implicit = "implicit" // TLS from the first byte
	NoTLS    = "none"     // no TLS and no authentication
)

// Config is an SMTP server and how to reach it.
type Config struct {
	Host string
	Port int
	TLS  string // StartTLS (default), Implicit or NoTLS
	// Username and Password, if set, authenticate with AUTH PLAIN, only
	// ever inside TLS.
	Username, Password string
	// RootCAs, if not nil, are the only CAs trusted for the server.
	RootCAs *x509.CertPool
	// HelloName is sent in EHLO (default "localhost").
	HelloName string
	// Timeout bounds each message (connection included; default 30s).
	Timeout time.Duration
}

// PermanentError is a 5xx answer of the server about one message or
// recipient: retrying the same message will not help.
type PermanentError struct {
	Code int
	Msg  string
}

func (e *PermanentError) Error() string { return fmt.Sprintf("smtp: %d %s", e.Code, e.Msg) }

// IsPermanent reports whether err is a PermanentError.
func IsPermanent(err error) bool {
	var pe *PermanentError
	return errors.As(err, &pe)
}

// Client sends messages over one connection, kept open between messages
// and reopened after an error. It is safe for concurrent use (messages are
// sent one at a time).
type Client struct {
	cfg  Config
	dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// mu guards c and conn.
	mu   sync.Mutex
	c    *smtp.Client
	conn net.Conn
}

// New returns a client for cfg; no connection is made until Send.
func New(cfg Config) *Client {
	if cfg.TLS == "" {
		cfg.TLS = StartTLS
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	d := &net.Dialer{Timeout: cfg.Timeout}
	return &Client{cfg: cfg, dial: d.DialContext}
}

func (cl *Client) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: cl.cfg.Host, RootCAs: cl.cfg.RootCAs, MinVersion: tls.VersionTLS12}
}

// connectLocked opens and prepares a session: TLS as configured, then
// authentication.
func (cl *Client) connectLocked(ctx context.Context) error {
	addr := net.JoinHostPort(cl.cfg.Host, strconv.Itoa(cl.cfg.Port))
	conn, err := cl.dial(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(cl.cfg.Timeout))
	if cl.cfg.TLS == Implicit {
		tc := tls.Client(conn, cl.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("smtp: TLS handshake: %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, cl.cfg.Host)
	if err != nil {
		conn.Close()
		return classify(err)
	}
	if err := c.Hello(cl.cfg.HelloName); err != nil {
		c.Close()
		return classify(err)
	}
	if cl.cfg.TLS == StartTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			c.Close()
			return errors.New("smtp: the server does not offer STARTTLS, which is required (status.email.smtp.tls)")
		}
		if err := c.StartTLS(cl.tlsConfig()); err != nil {
			c.Close()
			return fmt.Errorf("smtp: STARTTLS: %w", err)
		}
	}
	if cl.cfg.Username != "" {
		if cl.cfg.TLS == NoTLS {
			c.Close()
			return errors.New("smtp: refusing to authenticate without TLS")
		}
		if err := c.Auth(plainAuth{user: cl.cfg.Username, pass: cl.cfg.Password}); err != nil {
			c.Close()
			return classify(err)
		}
	}
	cl.c, cl.conn = c, conn
	return nil
}

// Send hands msg for to (envelope sender from) to the server; ctx is
// checked before the message begins (see below). A 5xx
// answer is a *PermanentError; anything else (4xx, a broken connection)
// is worth retrying later.
func (cl *Client) Send(ctx context.Context, from, to string, msg []byte) error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	if cl.c != nil {
		cl.conn.SetDeadline(time.Now().Add(cl.cfg.Timeout))
		if err := cl.c.Reset(); err != nil { // the server may have closed an idle session
			cl.closeLocked()
		}
	}
	if cl.c == nil {
		if err := cl.connectLocked(ctx); err != nil {
			return err
		}
	}
	// A message once begun is finished (within Timeout) even if ctx ends
	// meanwhile: aborting it could leave the server having accepted a
	// message the caller counts as not sent, and send it twice.
	cl.conn.SetDeadline(time.Now().Add(cl.cfg.Timeout))
	err := cl.sendLocked(from, to, msg)
	if err != nil {
		cl.closeLocked()
	}
	return err
}

func (cl *Client) sendLocked(from, to string, msg []byte) error {
	if err := cl.c.Mail(from); err != nil {
		return classify(err)
	}
	if err := cl.c.Rcpt(to); err != nil {
		return classify(err)
	}
	w, err := cl.c.Data()
	if err != nil {
		return classify(err)
	}
	if _, err := w.Write(msg); err != nil {
		return classify(err)
	}
	return classify(w.Close())
}

// classify turns a 5xx reply into a PermanentError.
func classify(err error) error {
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 && te.Code <= 599 {
		return &PermanentError{Code: te.Code, Msg: te.Msg}
	}
	return err
}

func (cl *Client) closeLocked() {
	if cl.c != nil {
		cl.c.Close()
		cl.c, cl.conn = nil, nil
	}
}

// Close ends the session politely (QUIT), if one is open.
func (cl *Client) Close() error {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.c == nil {
		return nil
	}
	cl.conn.SetDeadline(time.Now().Add(5 * time.Second))
	err := cl.c.Quit()
	cl.closeLocked()
	return err
}

// plainAuth is AUTH PLAIN (RFC 4616). Unlike smtp.PlainAuth it does not
// make an exception for localhost: the connection must be TLS.
type plainAuth struct{ user, pass string }

func (a plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS {
		return "", nil, errors.New("smtp: refusing AUTH PLAIN without TLS")
	}
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}

func (a plainAuth) Next(fromServer []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("smtp: unexpected server challenge")
	}
	return nil, nil
}
