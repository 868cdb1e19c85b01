// Package server runs Gatehouse's listeners: the public HTTPS edge, the
// plain-HTTP redirector, the status portal and the admin API, each on its own
// socket with its own timeouts and limits, and shuts them down gracefully.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
)

// Options are the handlers and TLS settings the listeners serve.
type Options struct {
	Logger *slog.Logger
	// PublicTLS serves the HTTPS edge (its GetCertificate picks by SNI).
	PublicTLS *tls.Config
	// Edge handles requests on the HTTPS listener.
	Edge http.Handler
	// Status handles the status listener (nil: not served).
	Status http.Handler
	// AdminTLS and Admin serve the admin API.
	AdminTLS *tls.Config
	Admin    http.Handler
	// PlainHTTP, if set, wraps the plain HTTP listener's redirect handler,
	// for ACME HTTP-01 challenges answered before the redirect.
	PlainHTTP func(redirect http.Handler) http.Handler
	// Listen binds a listener's socket; nil means net.Listen. An Upgrader's
	// Listen inherits the sockets of the process it replaces.
	Listen func(network, addr string) (net.Listener, error)
	// Now is the clock of the per-client rate limits; nil means time.Now.
	Now func() time.Time
}

// Server owns the listeners of one process.
type Server struct {
	log  *slog.Logger
	cfg  *config.Config
	opts Options

	mu      sync.Mutex // guards servers and addrs
	servers []*managed
	addrs   map[string]string

	wg sync.WaitGroup
}

type managed struct {
	name string
	srv  *http.Server
	ln   *limitListener
	// draining is set once Shutdown has closed ln: Serve's error is expected.
	draining atomic.Bool
}

// New returns a Server for the listeners of cfg; Start binds them.
func New(cfg *config.Config, opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{log: log.With("component", "server"), cfg: cfg, opts: opts, addrs: map[string]string{}}
}

// Start binds every configured listener and serves in the background. If any
// listener cannot be bound, the ones already bound are closed and the error
// names the listener and address.
func (s *Server) Start() error {
	l := s.cfg.Listeners
	type spec struct {
		name    string
		lc      config.Listener
		handler http.Handler
		tls     *tls.Config
	}
	specs := []spec{{"https", l.HTTPS, s.opts.Edge, s.opts.PublicTLS}}
	if l.HTTP.Address != "" {
		specs = append(specs, spec{"http", l.HTTP, nil, nil}) // built once https is bound
	}
	if l.Status.Address != "" && s.opts.Status != nil {
		specs = append(specs, spec{"status", l.Status, s.opts.Status, nil})
	}
	if s.opts.Admin != nil {
		specs = append(specs, spec{"admin", l.Admin, s.opts.Admin, s.opts.AdminTLS})
	}
	var started []*managed
	for _, sp := range specs {
		if sp.name == "http" {
			sp.handler = RedirectHandler(s.Addr("https"))
			if s.opts.PlainHTTP != nil {
				sp.handler = s.opts.PlainHTTP(sp.handler)
			}
		}
		m, err := s.listen(sp.name, sp.lc, sp.handler, sp.tls)
		if err != nil {
			for _, m := range started {
				m.ln.Close() // not yet served: srv.Close would not close it
			}
			return err
		}
		started = append(started, m)
	}
	s.mu.Lock()
	s.servers = started
	s.mu.Unlock()
	for _, m := range started {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var err error
			if m.srv.TLSConfig != nil {
				err = m.srv.ServeTLS(m.ln, "", "")
			} else {
				err = m.srv.Serve(m.ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !m.draining.Load() {
				s.log.Error("listener stopped", "listener", m.name, "err", err)
			}
		}()
	}
	return nil
}

func (s *Server) listen(name string, lc config.Listener, h http.Handler, tcfg *tls.Config) (*managed, error) {
	listen := s.opts.Listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", lc.Address)
	if err != nil {
		return nil, fmt.Errorf("listeners.%s: cannot listen on %s: %w", name, lc.Address, err)
	}
	now := s.opts.Now
	if now == nil {
		now = time.Now
	}
	cl := newLimitListener(ln, name, limitsOf(lc), tcfg != nil, s.log, now)
	if name == "admin" {
		if host, _, err := net.SplitHostPort(lc.Address); err == nil && !config.IsLoopbackHost(host) {
			s.log.Warn("the admin API listens on a non-loopback address (listeners.admin.allow_remote confirms it): restrict it with a firewall", "addr", ln.Addr().String())
		}
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tcfg,
		ReadHeaderTimeout: lc.ReadHeaderTimeout.D(),
		ReadTimeout:       lc.ReadTimeout.D(),
		WriteTimeout:      lc.WriteTimeout.D(),
		IdleTimeout:       lc.IdleTimeout.D(),
		MaxHeaderBytes:    int(lc.MaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.log.With("listener", name).Handler(), slog.LevelDebug),
		ConnState:         cl.connState,
	}
	if tcfg != nil {
		srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 250}
	}
	s.mu.Lock()
	s.addrs[name] = ln.Addr().String()
	s.mu.Unlock()
	s.log.Info("listening", "listener", name, "addr", ln.Addr().String(), "tls", tcfg != nil)
	return &managed{name: name, srv: srv, ln: cl}, nil
}

// Addr returns the bound address of a listener ("https", "http", "status",
// "admin"), or "" if it is not served.
func (s *Server) Addr(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[name]
}

// Connections returns the open connections of a listener and its limit (0: none).
func (s *Server) Connections(name string) (open, limit int64) {
	st := s.Stats(name)
	return st.Open, st.Max
}

// Stats returns a listener's connections, queue and refusals (zero for a
// listener not served).
func (s *Server) Stats(name string) ListenerStats {
	if m := s.managed(name); m != nil {
		return m.ln.stats()
	}
	return ListenerStats{Refused: map[string]uint64{}}
}

func (s *Server) managed(name string) *managed {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.servers {
		if m.name == name {
			return m
		}
	}
	return nil
}

// Reconfigure applies the connection limits of ls to the running listeners
// (max_connections, max_queued, queue_timeout, per_client): the next
// connection is admitted or refused by the new values, and no open
// connection is closed. It returns the changed fields that take effect only
// at the next start (addresses, timeouts, header size).
func (s *Server) Reconfigure(ls config.Listeners) (needRestart []string) {
	s.mu.Lock()
	old := s.cfg.Listeners
	servers := s.servers
	s.mu.Unlock()
	for _, m := range servers {
		m.ln.setLimits(limitsOf(*listenerNamed(&ls, m.name)))
	}
	for _, name := range []string{"https", "http", "status", "admin"} {
		o, n := listenerNamed(&old, name), listenerNamed(&ls, name)
		if o.Address != n.Address || o.ReadHeaderTimeout != n.ReadHeaderTimeout || o.ReadTimeout != n.ReadTimeout ||
			o.WriteTimeout != n.WriteTimeout || o.IdleTimeout != n.IdleTimeout || o.MaxHeaderBytes != n.MaxHeaderBytes {
			needRestart = append(needRestart, "listeners."+name)
		}
	}
	return needRestart
}

func listenerNamed(ls *config.Listeners, name string) *config.Listener {
	switch name {
	case "https":
		return &ls.HTTPS
	case "http":
		return &ls.HTTP
	case "status":
		return &ls.Status
	}
	return &ls.Admin
}

// limitsOf reads a listener's connection limits from its (defaulted)
// configuration.
func limitsOf(lc config.Listener) limits {
	pc := lc.PerClient
	lim := limits{
		max:          lc.MaxConnections,
		maxQueued:    max(lc.MaxQueued, 0),
		queueTimeout: lc.QueueTimeout.D(),
		perClient: clientLimits{
			maxConns:   pc.MaxConnections,
			rate:       pc.MaxNewPerSecond,
			burst:      float64(pc.Burst),
			maxTracked: max(pc.TrackedAddresses, 1),
		},
	}
	if lim.queueTimeout <= 0 {
		lim.maxQueued = 0
	}
	for _, a := range pc.Allow {
		if p, err := config.ParseAllow(a); err == nil { // validated
			lim.perClient.allow = append(lim.perClient.allow, p)
		}
	}
	return lim
}

// FreshGrace bounds how long Shutdown waits for connections that have not
// sent their first request yet (a client that connects and stays silent).
const FreshGrace = 5 * time.Second

// Shutdown stops accepting, lets in-flight requests finish until ctx is done,
// then closes what is left. It waits for every serving goroutine.
//
// It drains in two phases. First it closes the listening sockets (in a
// binary upgrade the new process goes on accepting from them) and turns
// keep-alives off, so that every response from then on closes its
// connection, and waits, up to FreshGrace, until every accepted connection
// has begun its first request: http.Server.Shutdown would close a
// connection whose first request it reads after shutdown began, without an
// answer. Then http.Server.Shutdown closes the idle connections, waits for
// the active ones and ends HTTP/2 connections with GOAWAY.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers := s.servers
	s.mu.Unlock()
	for _, m := range servers {
		m.draining.Store(true)
		m.ln.Close()
		m.srv.SetKeepAlivesEnabled(false)
	}
	grace, cancel := context.WithTimeout(ctx, FreshGrace)
	waitFresh(grace, servers)
	cancel()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, m := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.srv.Shutdown(ctx); err != nil {
				m.srv.Close()
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
				emu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return errors.Join(errs...)
}

// waitFresh polls until no connection of servers is fresh, or ctx is done.
func waitFresh(ctx context.Context, servers []*managed) {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		var fresh int64
		for _, m := range servers {
			fresh += m.ln.fresh.Load()
		}
		if fresh == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RedirectHandler answers plain-HTTP requests with a permanent redirect to
// the same host and path over HTTPS (on httpsAddr's port unless it is 443).
// ACME HTTP-01 challenge paths are left for a later handler: they get 404.
func RedirectHandler(httpsAddr string) http.Handler {
	_, port, _ := net.SplitHostPort(httpsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" || strings.ContainsAny(host, "/\\@ ") {
			http.Error(w, "missing or invalid Host header", http.StatusBadRequest)
			return
		}
		if port != "" && port != "443" {
			host = net.JoinHostPort(host, port)
		}
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// ShutdownTimeout is how long a graceful shutdown waits for in-flight requests.
const ShutdownTimeout = 30 * time.Second
