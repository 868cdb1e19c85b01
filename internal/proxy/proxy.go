// Package proxy routes requests by host and path to backend pools,
// balances them over the healthy members and reverse-proxies them.
//
// Two paths, with the same headers and failure answers: body-less
// idempotent requests (the keep-alive GETs that are most of the traffic)
// take the direct path of direct.go, which talks HTTP/1.1 to the member in
// the serving goroutine over its own idle connections; everything else
// (bodies, WebSockets and other upgrades, TE: trailers, pools with
// MaxConnsPerMember) goes through net/http/httputil.ReverseProxy.
//
// A Proxy is built from one config snapshot and is immutable apart from
// member health; a reload builds a new Proxy (passing the old one as
// Options.Previous so member health carries over), swaps it in and closes
// the old one once its requests have finished.
//
// Toward members: HTTP/1.1 only, the inbound Host header kept,
// X-Forwarded-For and X-Real-Ip (the client address; values sent by the
// client are dropped), X-Forwarded-Host and X-Forwarded-Proto set, header
// names with underscores dropped (listeners.https.underscore_headers),
// and X-Request-Id
// kept when the client sent a sane one or generated (also returned to the
// client). Accept-Encoding and bodies pass through untouched.
//
// Failures: no route answers 404, a pool without a healthy member answers
// 503 at once with Retry-After, a failed member 502, a member that does not
// send response headers in time 504. A body-less request whose connection
// to a member failed before any response (refused, reset, dial timeout) is
// retried on other healthy members, Pool.Retries times (default 1; a
// negative value disables retries). With active checks configured, Fall
// (default 3) consecutive connection failures of live traffic eject a
// member until its next successful check (passive ejection).
//
// Clients: a request whose Host is not a name of its TLS session gets
// 421 (tenant.go); a request body that stalls longer than the body read
// timeout gets 408, a malformed one 400, and a response the client stops
// reading for the write idle timeout is cut off (clienterr.go). Such
// client errors release the member connection and are counted apart
// (ClientErrors), never against a member or a pool.
//
// Each pool counts the requests it answered and those that failed (a 5xx
// from a member, or a 502/503/504 of its own) in atomic counters that a
// reload carries over; Pools reports them, and the status portal turns
// them into an error rate.
//
// Routes with cache.enabled answer GET and HEAD from a response cache in
// front of both paths (cache.go); a stored response also stands in for
// the failures above while it is within its route's max_stale.
package proxy

import (
	"crypto/tls"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/health"
)

// Log attribute keys.
const (
	keyPool      = "pool"
	keyMember    = "member"
	keyRequestID = "request_id"
	keyStatus    = "status"
	keyError     = "error"
)

// headerRequestID carries the request id to members and back to clients.
const headerRequestID = "X-Request-Id"

// RetryAfter is the Retry-After value, in seconds, of a 503 for a pool
// without a healthy member.
const RetryAfter = 5

// Options configure a Proxy. The zero value is usable.
type Options struct {
	// Logger receives errors and, with AccessLog, one line per request;
	// nil discards.
	Logger *slog.Logger
	// Health runs the active checks. Nil means the Proxy starts its own
	// checker and closes it in Close.
	Health *health.Checker
	// AccessLog logs every request at level Info.
	AccessLog bool
	// StatusURL, if set, is linked from the 503 page.
	StatusURL string
	// Previous is the Proxy this one replaces: members with the same pool
	// name and address start in the state they had there.
	Previous *Proxy
	// OnHealthChange, if set, is called after every member transition.
	OnHealthChange func(pool, address string, up bool)
	// Now, if set, replaces time.Now for the response cache's freshness
	// and age and for the pools' slow start and zone hysteresis (tests
	// inject a clock with it).
	Now func() time.Time
	// Certificate, if set, returns the certificate the HTTPS listener
	// serves for a TLS server name ("" for a client that sent none), or
	// nil. A request whose Host differs from its session's server name is
	// allowed only if that certificate also covers the Host. Nil allows
	// only the exact server name (and any Host on a session without one).
	Certificate func(serverName string) *tls.Certificate
}

// Proxy is an http.Handler that routes and proxies requests.
type Proxy struct {
	log        *slog.Logger
	router     *routeTable // static routes, and dynamic ones (dynamic.go)
	pools      []*pool
	byName     map[string]*pool
	checker    *health.Checker
	ownChecker bool
	ids        *idGen
	accessLog  bool
	page503    []byte
	buffers    *bufferPool
	closeOnce  sync.Once
	// cache is the response cache of the routes that enable it, shared
	// with the Proxy this one replaces and the one that replaces it; nil
	// when no route caches.
	cache *responseCache
	now   func() time.Time

	// Client-side limits (listeners.https): body read and write idle
	// timeouts (routes may override them), what to do with header names
	// holding underscores.
	bodyRead, writeIdle time.Duration
	underscore          string
	certFor             func(serverName string) *tls.Certificate
	// clientErrs counts client errors by reason, handed on by a reload.
	clientErrs *clientErrors
	// abortLog samples the access-log lines of aborted requests.
	abortLog *logSampler
	// drains runs the watchers of drained members (drain.go).
	drains drainers
}

// New builds a Proxy from cfg's pools and routes and starts the active
// health checks of its members.
func New(cfg *config.Config, opts Options) (*Proxy, error) {
	px := &Proxy{
		log:       opts.Logger,
		router:    newRouteTable(),
		byName:    make(map[string]*pool, len(cfg.Pools)),
		ids:       newIDGen(),
		accessLog: opts.AccessLog,
		page503:   unavailablePage(opts.StatusURL),
		now:       opts.Now,

		bodyRead:   orDefault(cfg.Listeners.HTTPS.BodyReadTimeout.D(), config.DefaultBodyReadTimeout),
		writeIdle:  orDefault(cfg.Listeners.HTTPS.WriteIdleTimeout.D(), config.DefaultWriteIdleTimeout),
		underscore: cfg.Listeners.HTTPS.UnderscoreHeaders,
		certFor:    opts.Certificate,
		clientErrs: new(clientErrors),
		abortLog:   &logSampler{perSecond: abortedLinesPerSecond},
	}
	if px.underscore == "" {
		px.underscore = config.UnderscoreDrop
	}
	if opts.Previous != nil {
		px.clientErrs = opts.Previous.clientErrs
	}
	if px.now == nil {
		px.now = time.Now
	}
	if px.log == nil {
		px.log = slog.New(slog.DiscardHandler)
	}
	px.log = px.log.With("component", "proxy")
	errorLog := slog.NewLogLogger(px.log.Handler(), slog.LevelWarn)
	px.buffers = newBufferPool()

	for i, pc := range cfg.Pools {
		if pc.Name == "" {
			return nil, fmt.Errorf("pools[%d]: name is empty", i)
		}
		if px.byName[pc.Name] != nil {
			return nil, fmt.Errorf("pools[%d]: duplicate pool name %q", i, pc.Name)
		}
		p := newPool(pc)
		p.now = px.now
		if p.bal == nil {
			return nil, fmt.Errorf("pool %q: unknown algorithm %q (want one of %v)", pc.Name, pc.Algorithm, config.Algorithms)
		}
		if len(p.members) != len(p.byAddr) {
			return nil, fmt.Errorf("pool %q: duplicate member address", pc.Name)
		}
		p.onChange = opts.OnHealthChange
		if opts.Previous != nil {
			if old := opts.Previous.byName[p.name]; old != nil {
				p.stats = old.stats
				for _, m := range p.members {
					if om := old.byAddr[m.addr]; om != nil {
						m.up.Store(om.up.Load())
						if om.drained.Load() {
							m.drained.Store(true)
							m.conns.close()
						}
						m.rampFrom.Store(om.rampFrom.Load())
					}
				}
			}
		}
		p.rebuild()
		for _, m := range p.members {
			m.live.opened = &p.stats.upstreamConns
			m.tr = newTransport(pc, &m.live)
		}
		p.transport = &poolTransport{pool: p}
		p.rp = &httputil.ReverseProxy{
			Rewrite:        rewrite,
			Transport:      p.transport,
			BufferPool:     px.buffers,
			ErrorLog:       errorLog,
			ErrorHandler:   px.errorHandler(p),
			ModifyResponse: p.modifyResponse,
		}
		px.pools = append(px.pools, p)
		px.byName[p.name] = p
	}
	var prevCache *responseCache
	if opts.Previous != nil {
		prevCache = opts.Previous.cache
	}
	for i, rc := range cfg.Routes {
		p := px.byName[rc.Pool]
		if p == nil {
			return nil, fmt.Errorf("routes[%d]: unknown pool %q", i, rc.Pool)
		}
		var policy *routeCache
		if rc.Cache.Enabled {
			if px.cache == nil {
				px.cache = newResponseCache(cfg.ResponseCache, prevCache)
			}
			policy = px.cache.policy(rc.Cache)
		}
		px.router.addRoute(rc.Host, prefixRoute{prefix: rc.PathPrefix, pool: p, cache: policy,
			allowMisdirected: rc.AllowMisdirected, bodyRead: rc.BodyReadTimeout.D(), writeIdle: rc.WriteIdleTimeout.D()})
	}

	px.checker = opts.Health
	if px.checker == nil {
		px.checker = health.New(health.Options{Logger: opts.Logger})
		px.ownChecker = true
	}
	for i, p := range px.pools {
		hc := cfg.Pools[i].HealthCheck
		if hc.Path == "" {
			continue
		}
		for _, m := range p.members {
			m.watch = px.checker.Watch(health.Target{
				Pool: p.name, Address: m.addr, Check: hc, Down: !m.up.Load(),
			}, m.setUp)
		}
	}
	return px, nil
}

// Close stops the health checks of this Proxy and closes idle connections
// to members. Call it after the requests it serves have finished.
func (px *Proxy) Close() {
	px.closeOnce.Do(func() {
		for _, p := range px.pools {
			for _, m := range p.members {
				if m.watch != nil {
					m.watch.Stop()
				}
			}
		}
		if px.ownChecker {
			px.checker.Close()
		}
		px.drains.stop()
		for _, p := range px.pools {
			p.stop()
			for _, m := range p.members {
				m.tr.CloseIdleConnections()
				m.conns.close()
			}
		}
	})
}

// ServeHTTP routes and proxies one request.
func (px *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if px.accessLog {
		px.serveLogged(w, r)
		return
	}
	px.serve(w, r)
}

func (px *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	// A deadline left on an HTTP/1 connection by its previous response
	// must not cut this one short.
	armWrite(w, r, px.writeIdle)
	rt := px.router.match(r.Host, r.URL.Path)
	if rt == nil {
		armPage(w, r, px.writeIdle)
		writePage(w, http.StatusNotFound, "text/plain; charset=utf-8", pageNotFound)
		return
	}
	if !rt.allowMisdirected && r.TLS != nil && px.misdirected(r) {
		px.clientErrs.add(reasonMisdirected)
		armPage(w, r, px.writeIdle)
		writePage(w, http.StatusMisdirectedRequest, "text/plain; charset=utf-8", pageMisdirected)
		return
	}
	if px.underscore != config.UnderscorePass && !px.underscoreHeaders(r) {
		px.clientErrs.add(reasonBadHeader)
		armPage(w, r, px.writeIdle)
		writePage(w, http.StatusBadRequest, "text/plain; charset=utf-8", pageUnderscore)
		return
	}
	if r.ProtoMajor == 1 && r.TransferEncoding != nil {
		// net/http drops a Content-Length sent beside Transfer-Encoding
		// before the handler can see it; RFC 9112, section 6.3 asks to
		// close the connection after answering such a request, so every
		// chunked HTTP/1 request closes its connection.
		w.Header()["Connection"] = closeValue
	}
	if rt.cache != nil {
		px.serveCached(w, r, rt)
		return
	}
	px.forward(w, r, rt)
}

var closeValue = []string{"close"}

// underscoreHeaders drops the request headers whose names hold an
// underscore, or with underscore_headers: reject reports false if there
// is one.
func (px *Proxy) underscoreHeaders(r *http.Request) bool {
	for k := range r.Header {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		if px.underscore == config.UnderscoreReject {
			return false
		}
		delete(r.Header, k)
	}
	return true
}

// forward proxies r to a member of rt's pool, by the direct path or the
// ReverseProxy.
func (px *Proxy) forward(w http.ResponseWriter, r *http.Request, rt *prefixRoute) {
	p := rt.pool
	m := p.pick(r)
	if m != nil {
		m.inflight.Add(1)
		// A drain that began after the pick: the drain reads in-flight
		// counts after setting the flag, so either it counts this
		// request or this request sees the flag and picks again.
		if m.drained.Load() {
			m.inflight.Add(-1)
			if m = p.pick(r); m != nil {
				m.inflight.Add(1)
			}
		}
	}
	if m == nil {
		p.countAnswer(true)
		w.Header()["Retry-After"] = []string{strconv.Itoa(RetryAfter)}
		armPage(w, r, px.writeIdle)
		writePage(w, http.StatusServiceUnavailable, "text/html; charset=utf-8", px.page503)
		return
	}
	defer m.inflight.Add(-1)

	ids := r.Header[headerRequestID]
	if len(ids) != 1 || !saneID(ids[0]) {
		ids = []string{px.ids.next()}
		r.Header[headerRequestID] = ids
	}
	writeIdle := orDefault(rt.writeIdle, px.writeIdle)
	if p.direct && directOK(r) {
		w.Header()[headerRequestID] = ids
		px.serveDirect(w, r, p, m, ids, writeIdle)
		return
	}

	// The outbound request is a clone of r: pointing r's URL at the member
	// saves passing per-request state to Rewrite through the context, and
	// so does r.Body, which Rewrite finds the rpState through.
	// modifyResponse or answerError return the request id to the client
	// (ReverseProxy clears the header map after forwarding a 1xx).
	st := &rpState{ResponseWriter: w, px: px, clock: newWriteClock(w, r, writeIdle)}
	st.body.rc, st.body.st = r.Body, st
	if bodyRead := orDefault(rt.bodyRead, px.bodyRead); r.Body != nil && r.Body != http.NoBody {
		if _, rd := deadlines(w); rd != nil {
			st.body.dl, st.body.timeout = rd, bodyRead
		}
	}
	r.Body = &st.body
	r.URL.Scheme = "http"
	r.URL.Host = m.addr
	defer func() {
		// A client that went away mid-response (ReverseProxy panics
		// with http.ErrAbortHandler then) is a client error too.
		if !st.counted && r.Context().Err() != nil {
			st.clientError(reasonAborted)
		}
	}()
	p.rp.ServeHTTP(st, r)
	if st.wroteBody {
		st.clock.finish()
	}
	r.Body = st.body.rc
}

// clientError counts a client error of the request w answers (once per
// request on the ReverseProxy path).
func (px *Proxy) clientError(w http.ResponseWriter, reason clientReason) {
	if st, ok := w.(*rpState); ok {
		st.clientError(reason)
		return
	}
	px.clientErrs.add(reason)
}

// requestID keeps r's sane X-Request-Id or sets a new one, and returns
// it to the client too.
func (px *Proxy) requestID(w http.ResponseWriter, r *http.Request) []string {
	ids := r.Header[headerRequestID]
	if len(ids) != 1 || !saneID(ids[0]) {
		ids = []string{px.ids.next()}
		r.Header[headerRequestID] = ids
	}
	w.Header()[headerRequestID] = ids
	return ids
}

// forwarded holds the values of the forwarding headers of one request, so
// that setting them costs one allocation.
type forwarded struct {
	forIP, host, proto [1]string
}

// rewrite is the ReverseProxy.Rewrite of every pool: setForwarded on
// the outbound header. The outbound body is the clientBody itself (it
// does not close the inbound body).
func rewrite(pr *httputil.ProxyRequest) {
	var f *forwarded
	if cb, ok := pr.In.Body.(*clientBody); ok {
		f = &cb.state().fwd
		if pr.Out.Body != nil {
			pr.Out.Body = cb
		}
	} else {
		f = new(forwarded)
	}
	setForwarded(pr.Out.Header, pr.In, f)
}

// setForwarded is the forwarded-header rewrite of both paths: it drops
// the forwarding headers the client sent (Forwarded, X-Forwarded-*,
// X-Real-Ip) and sets X-Forwarded-For and X-Real-Ip to the client's
// address, X-Forwarded-Host to the inbound Host and X-Forwarded-Proto to
// the inbound scheme. It has the semantics of ProxyRequest.SetXForwarded
// without its per-header allocations; the values live in f.
func setForwarded(h http.Header, in *http.Request, f *forwarded) {
	delete(h, "Forwarded")
	delete(h, "X-Forwarded-For")
	delete(h, "X-Real-Ip")
	if ip, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		f.forIP[0] = ip
		h["X-Forwarded-For"] = f.forIP[:]
		h["X-Real-Ip"] = f.forIP[:]
	}
	f.host[0] = in.Host
	h["X-Forwarded-Host"] = f.host[:]
	f.proto[0] = "http"
	if in.TLS != nil {
		f.proto[0] = "https"
	}
	h["X-Forwarded-Proto"] = f.proto[:]
}

// modifyResponse counts the member's answer and replaces its
// X-Request-Id with the one the member was sent.
func (p *pool) modifyResponse(res *http.Response) error {
	p.countAnswer(res.StatusCode >= 500)
	if in := res.Request; in.ProtoMajor == 1 && in.TransferEncoding != nil {
		res.Header["Connection"] = closeValue // see serve
	}
	if ids := res.Request.Header[headerRequestID]; ids != nil {
		res.Header[headerRequestID] = ids
	} else {
		delete(res.Header, headerRequestID)
	}
	return nil
}

func (px *Proxy) errorHandler(p *pool) func(http.ResponseWriter, *http.Request, error) {
	return func(w http.ResponseWriter, r *http.Request, err error) {
		if cb, ok := r.Body.(*clientBody); ok {
			if reason := cb.failed(); reason != noClientError {
				px.answerClientError(w, r, p, reason, err)
				return
			}
		}
		px.answerError(w, r, p, r.URL.Host, err)
	}
}

// answerClientError answers a request whose body the client failed to
// send: 408 after the body read timeout, 400 for a malformed body, nothing
// (the client is gone) after a reset or abort. Neither the member nor the
// pool's error rate is charged.
func (px *Proxy) answerClientError(w http.ResponseWriter, r *http.Request, p *pool, reason clientReason, err error) {
	if reason == reasonBadBody && r.Context().Err() != nil {
		reason = reasonAborted // the client went away mid-body
	}
	px.clientError(w, reason)
	id := ""
	if ids := r.Header[headerRequestID]; len(ids) > 0 {
		id = ids[0]
		w.Header()[headerRequestID] = ids
	}
	px.log.Debug("client error", keyPool, p.name, keyRequestID, id, "reason", reasonNames[reason], keyError, err)
	h := w.Header()
	if r.ProtoMajor == 1 {
		h["Connection"] = closeValue // the rest of the body cannot be trusted
	}
	armPage(w, r, px.writeIdle)
	switch reason {
	case reasonBodyTimeout:
		writePage(w, http.StatusRequestTimeout, "text/plain; charset=utf-8", pageBodyTimeout)
	case reasonBadBody:
		writePage(w, http.StatusBadRequest, "text/plain; charset=utf-8", pageBadBody)
	default:
		w.WriteHeader(499)
	}
}

// answerError answers a request whose member (at addr) failed: 499 (logged
// at debug) when the client went away, 504 for a timeout, 502 otherwise.
func (px *Proxy) answerError(w http.ResponseWriter, r *http.Request, p *pool, addr string, err error) {
	id := ""
	if ids := r.Header[headerRequestID]; len(ids) > 0 {
		id = ids[0]
		w.Header()[headerRequestID] = ids
	}
	if r.Context().Err() != nil {
		// The client went away; nobody reads the answer, and the
		// request counts neither as answered nor as failed.
		px.clientError(w, reasonAborted)
		px.log.Debug("client canceled request", keyPool, p.name, keyMember, addr, keyRequestID, id)
		w.WriteHeader(499)
		return
	}
	p.countAnswer(true)
	status, page := http.StatusBadGateway, pageBadGateway
	if timeoutError(err) {
		status, page = http.StatusGatewayTimeout, pageGatewayTimeout
	}
	px.log.Warn("backend request failed", keyPool, p.name, keyMember, addr,
		keyRequestID, id, keyStatus, status, keyError, err)
	armPage(w, r, px.writeIdle) // the wait for the member may have used up the deadline
	writePage(w, status, "text/plain; charset=utf-8", page)
}

// MemberStatus is the state of one member.
type MemberStatus struct {
	Address  string
	Up       bool
	InFlight int64
	Weight   int
	// Zone is the member's zone ("" for none); Drained says it gets no
	// new request; OpenConns counts its open upstream connections.
	Zone      string `json:",omitempty"`
	Drained   bool
	OpenConns int64
}

// PoolStatus is the state of one pool and its members.
type PoolStatus struct {
	Name      string
	Algorithm string
	// Failover is the pool's policy (spread or priority); ActiveZone the
	// zone the priority policy sends traffic to ("" when every zone).
	Failover   string
	ActiveZone string `json:",omitempty"`
	Members    []MemberStatus
	// Requests counts the requests the pool answered since the process
	// started (reloads keep counting); Failures those that failed: a 5xx
	// from a member, a 502, 503 or 504 generated by the edge (member
	// connection failure, no healthy member, timeout). Requests whose
	// client went away before the answer count in neither.
	Requests, Failures uint64
	// UpstreamConns counts the connections opened to the pool's members
	// since the process started (reloads keep counting): per request, the
	// share of requests that did not reuse a kept-alive connection.
	UpstreamConns uint64
}

// Pools returns the state of every pool, in config order.
func (px *Proxy) Pools() []PoolStatus {
	out := make([]PoolStatus, 0, len(px.pools))
	for _, p := range px.pools {
		ps := PoolStatus{Name: p.name, Algorithm: string(p.algo), Members: make([]MemberStatus, 0, len(p.members)),
			Requests: p.stats.requests.Load(), Failures: p.stats.failures.Load(),
			UpstreamConns: p.stats.upstreamConns.Load()}
		ps.Failover, ps.ActiveZone = config.FailoverSpread, p.activeZoneName()
		if p.priority {
			ps.Failover = config.FailoverPriority
		}
		for _, m := range p.members {
			ms := MemberStatus{
				Address: m.addr, Up: m.up.Load(), InFlight: m.inflight.Load(), Weight: m.weight,
				Drained: m.drained.Load(), OpenConns: m.live.n.Load(),
			}
			if m.zone >= 0 {
				ms.Zone = p.zones[m.zone]
			}
			ps.Members = append(ps.Members, ms)
		}
		out = append(out, ps)
	}
	return out
}

var (
	pageNotFound       = []byte("no route for host\n")
	pageMisdirected    = []byte("421 misdirected request: this connection is not for this host; open a new connection for it\n")
	pageUnderscore     = []byte("400 bad request: header names with underscores are not accepted\n")
	pageBodyTimeout    = []byte("408 request timeout: the request body stalled\n")
	pageBadBody        = []byte("400 bad request: malformed request body\n")
	pageBadGateway     = []byte("502 bad gateway: the backend failed to answer\n")
	pageGatewayTimeout = []byte("504 gateway timeout: the backend did not answer in time\n")
)

func unavailablePage(statusURL string) []byte {
	link := ""
	if statusURL != "" {
		link = fmt.Sprintf(`<p>See the <a href="%s">status page</a>.</p>`, html.EscapeString(statusURL))
	}
	return []byte(`<!doctype html><html><head><meta charset="utf-8"><title>503 Service Unavailable</title></head>` +
		`<body><h1>Service unavailable</h1><p>No healthy backend is available right now. Please retry in a few seconds.</p>` +
		link + "</body></html>\n")
}

func writePage(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// serveLogged serves r and writes its access log line.
func (px *Proxy) serveLogged(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	host, path := r.Host, r.URL.Path
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	px.serve(sw, r)
	var dropped int64
	if r.Context().Err() != nil {
		// The client went away (a reset HTTP/2 stream, a closed
		// connection): a flood of those must not flood the log.
		var ok bool
		if ok, dropped = px.abortLog.allow(px.now()); !ok {
			return
		}
	}
	id := ""
	if ids := w.Header()[headerRequestID]; len(ids) > 0 {
		id = ids[0]
	}
	attrs := [...]slog.Attr{
		slog.String("method", r.Method),
		slog.String("host", host),
		slog.String("path", path),
		slog.String("proto", r.Proto),
		slog.String("remote", r.RemoteAddr),
		slog.Int(keyStatus, sw.status),
		slog.Int64("bytes", sw.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String(keyRequestID, id),
		slog.Int64("aborted_lines_dropped", dropped),
	}
	n := len(attrs)
	if dropped == 0 {
		n--
	}
	px.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs[:n]...)
}

// abortedLinesPerSecond bounds the access-log lines of aborted requests.
const abortedLinesPerSecond = 20

// statusWriter records the status and size of a response. Unwrap keeps
// http.ResponseController (flush, hijack, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.status, s.wrote = code, true
	} else if code == http.StatusSwitchingProtocols {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
