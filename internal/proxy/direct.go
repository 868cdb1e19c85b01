package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// The direct path proxies the common request, one without a body and
// without Upgrade or TE, in the goroutine that serves it: it writes the
// request on an idle keep-alive connection to the member with
// http.Request.Write and reads the answer with http.ReadResponse, with no
// hand-off to the transport's reader and writer goroutines, no clone of
// the request's context and header maps reused from a pool. Everything
// else (request bodies, WebSockets and other upgrades, TE: trailers,
// pools with MaxConnsPerMember) goes through httputil.ReverseProxy and
// http.Transport. Both paths send the same headers and map failures to the
// same answers: they rewrite the forwarding headers with setForwarded,
// retry with pool.withRetries and answer failures with answerError
// (TestOneForwardingBehaviour compares them byte for byte).

// max1xxResponses bounds the informational responses forwarded before
// the final one (http.Transport's limit).
const max1xxResponses = 5

// maxResponseHeaderBytes bounds a member's response head on the direct
// path (http.Transport's default).
const maxResponseHeaderBytes = 1 << 20

// errResponseHeaderTooLarge is returned for a member's response head over
// maxResponseHeaderBytes.
var errResponseHeaderTooLarge = errors.New("response header from member too large")

// aLongTimeAgo is a deadline in the past: setting it aborts pending I/O.
var aLongTimeAgo = time.Unix(1, 0)

// emptyValue is the header value that keeps http.Request.Write from
// adding its default User-Agent (as httputil.ReverseProxy does).
var emptyValue = []string{""}

// directOK reports whether r can take the direct path: it has no body,
// has a Host (the ReverseProxy path sends the member's address without
// one) and may be sent again if a kept-alive connection to the member
// turns out to be closed (the direct path does not watch idle connections
// for the member closing them, as http.Transport does).
//
// The servers of net/http set ContentLength to 0 only for a request
// without a body (HTTP/1 sets Body to http.NoBody then; HTTP/2 does not).
func directOK(r *http.Request) bool {
	return r.ContentLength == 0 && r.Host != "" && replayable(r) &&
		r.Header["Upgrade"] == nil && r.Header["Te"] == nil && r.Header["Transfer-Encoding"] == nil
}

// backendConn is a keep-alive HTTP/1.1 connection to a member.
type backendConn struct {
	conn   net.Conn
	lr     io.LimitedReader // bounds the response head
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	// abort makes pending and future I/O fail; it runs when the client's
	// request is canceled (made once per connection, not per request).
	abort func()
}

// connPool holds the idle direct-path connections of one member, most
// recently used last.
type connPool struct {
	mu     sync.Mutex // mu guards idle and closed
	idle   []*backendConn
	closed bool
}

// get returns the most recently used idle connection that has not been
// idle longer than maxIdle, closing the ones that have, or nil.
func (cp *connPool) get(now time.Time, maxIdle time.Duration) *backendConn {
	cp.mu.Lock()
	n := len(cp.idle)
	if n == 0 {
		cp.mu.Unlock()
		return nil
	}
	bc := cp.idle[n-1]
	cp.idle[n-1] = nil
	cp.idle = cp.idle[:n-1]
	var stale []*backendConn
	if now.Sub(bc.idleAt) > maxIdle {
		// Everything older than the newest idle connection is stale too.
		stale = append(cp.idle, bc)
		cp.idle = nil
		bc = nil
	}
	cp.mu.Unlock()
	for _, s := range stale {
		s.conn.Close()
	}
	return bc
}

// put keeps bc for reuse, or closes it if the pool is closed or full. It
// also closes the oldest idle connection if it has been idle too long.
func (cp *connPool) put(bc *backendConn, now time.Time, maxIdle time.Duration) {
	bc.idleAt = now
	var drop *backendConn
	cp.mu.Lock()
	switch {
	case cp.closed || len(cp.idle) >= maxIdleConnsPerMember:
		drop = bc
	default:
		if len(cp.idle) > 0 && now.Sub(cp.idle[0].idleAt) > maxIdle {
			drop = cp.idle[0]
			copy(cp.idle, cp.idle[1:])
			cp.idle[len(cp.idle)-1] = nil
			cp.idle = cp.idle[:len(cp.idle)-1]
		}
		cp.idle = append(cp.idle, bc)
	}
	cp.mu.Unlock()
	if drop != nil {
		drop.conn.Close()
	}
}

// close closes the idle connections; connections in use are closed when
// they are put back.
func (cp *connPool) close() {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle, cp.closed = nil, true
	cp.mu.Unlock()
	for _, bc := range idle {
		bc.conn.Close()
	}
}

// outRequest is a pooled outbound request and its header map.
type outRequest struct {
	req http.Request
	hdr http.Header
	fwd forwarded
}

var outRequests = sync.Pool{New: func() any { return &outRequest{hdr: make(http.Header, 16)} }}

// newOutRequest builds the request sent to a member for r: r's method,
// URI, Host and end-to-end headers, with the forwarding headers and the
// request id set as the ReverseProxy path sets them.
func newOutRequest(r *http.Request, ids []string) *outRequest {
	o := outRequests.Get().(*outRequest)
	h := o.hdr
	for k, vv := range r.Header {
		if !hopByHop(k) {
			h[k] = vv
		}
	}
	for _, v := range r.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = emptyValue
	}
	h[headerRequestID] = ids
	setForwarded(h, r, &o.fwd)
	o.req = http.Request{
		Method:     r.Method,
		URL:        r.URL,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Host:       r.Host,
	}
	return o
}

func (o *outRequest) release() {
	clear(o.hdr)
	o.fwd = forwarded{}
	o.req = http.Request{}
	outRequests.Put(o)
}

// hopByHop reports whether the canonical header key k is a hop-by-hop
// header (RFC 9110, section 7.6.1, and the list of httputil.ReverseProxy).
func hopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// replayable reports whether a body-less request may be sent again after
// a reused connection failed without an answer (http.Transport's rule).
// CONNECT is not.
func replayable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// serveDirect proxies the body-less request r to m (whose in-flight count
// the caller has raised and lowers), retrying on other members like
// poolTransport does.
func (px *Proxy) serveDirect(w http.ResponseWriter, r *http.Request, p *pool, m *member, ids []string, writeIdle time.Duration) {
	out := newOutRequest(r, ids)
	defer out.release()
	ctx := r.Context()
	var (
		res  *http.Response
		bc   *backendConn
		stop func() bool
	)
	cur, err := p.withRetries(ctx, m, true, nil, func(cur *member) (err error) {
		res, bc, stop, err = p.roundTrip(ctx, cur, &out.req, w)
		return err
	})
	if err != nil {
		px.fail(w, r, p, cur, err)
		return
	}
	if cur != m {
		defer cur.inflight.Add(-1)
	}
	px.copyResponse(w, r, p, cur, res, bc, stop, writeIdle)
}

// roundTrip sends req to m and reads the response head, forwarding 1xx
// responses to w. On success the caller owns bc and must call stop (which
// reports whether the connection's deadlines were left alone) before
// reusing it.
func (p *pool) roundTrip(ctx context.Context, m *member, req *http.Request, w http.ResponseWriter) (*http.Response, *backendConn, func() bool, error) {
	now := time.Now()
	bc := m.conns.get(now, p.idleTimeout)
	for {
		reused := bc != nil
		if !reused {
			var err error
			bc, err = p.dial(ctx, m)
			if err != nil {
				return nil, nil, nil, err
			}
			now = time.Now()
		}
		stop := context.AfterFunc(ctx, bc.abort)
		res, err := p.exchange(bc, req, now, w)
		if err == nil {
			return res, bc, stop, nil
		}
		stop()
		bc.conn.Close()
		// An idle connection the member has closed fails before any
		// answer: try once more on a new connection (requests on the
		// direct path are replayable).
		if !reused || ctx.Err() != nil || !noAnswer(err) {
			return nil, nil, nil, err
		}
		bc = nil
	}
}

// errNoAnswer marks a connection that ended before the first byte of a
// response.
type errNoAnswer struct{ err error }

func (e *errNoAnswer) Error() string { return "member closed the connection: " + e.err.Error() }
func (e *errNoAnswer) Unwrap() error { return e.err }

func noAnswer(err error) bool {
	var na *errNoAnswer
	return errors.As(err, &na)
}

// exchange writes req on bc and reads the response head, forwarding 1xx
// responses (such as 103 Early Hints) to w as ReverseProxy does. An error
// before the first byte of an answer that is not a timeout is an
// *errNoAnswer.
func (p *pool) exchange(bc *backendConn, req *http.Request, now time.Time, w http.ResponseWriter) (res *http.Response, err error) {
	if err := bc.conn.SetReadDeadline(now.Add(p.responseHeaderTimeout)); err != nil {
		return nil, &errNoAnswer{err}
	}
	if err := req.Write(bc.bw); err != nil {
		return nil, &errNoAnswer{err}
	}
	if err := bc.bw.Flush(); err != nil {
		return nil, &errNoAnswer{err}
	}
	bc.lr.N = maxResponseHeaderBytes
	if _, err := bc.br.Peek(1); err != nil {
		if timeoutError(err) {
			return nil, err
		}
		return nil, &errNoAnswer{err}
	}
	for n1xx := 0; ; n1xx++ {
		res, err = http.ReadResponse(bc.br, req)
		if err != nil {
			if bc.lr.N <= 0 {
				err = errResponseHeaderTooLarge
			}
			return nil, err
		}
		if res.StatusCode >= 200 {
			break
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("member answered %d to a request without Upgrade", res.StatusCode)
		}
		if n1xx >= max1xxResponses {
			return nil, errors.New("too many 1xx informational responses from member")
		}
		forward1xx(w, res)
		bc.lr.N = maxResponseHeaderBytes
	}
	// The body is not bounded; after the head, reads go to the connection.
	bc.lr.N = 1<<63 - 1
	if res.ContentLength >= 0 && int64(bc.br.Buffered()) >= res.ContentLength {
		// The body was read with the head: no read waits on the
		// connection before the next exchange sets a new deadline.
		return res, nil
	}
	if err := bc.conn.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return res, nil
}

// forward1xx sends the informational response res to the client with
// its end-to-end fields, then takes them out of w's header again (the
// server writes the whole header map with a 1xx and keeps it). The
// X-Request-Id already set for the final response is left out of the 1xx,
// as on the ReverseProxy path.
func forward1xx(w http.ResponseWriter, res *http.Response) {
	h := w.Header()
	if ids, ok := h[headerRequestID]; ok {
		delete(h, headerRequestID)
		defer func() { h[headerRequestID] = ids }()
	}
	var addedBuf [8]string
	added := addedBuf[:0]
	for k, vv := range res.Header {
		if hopByHop(k) || h[k] != nil {
			continue
		}
		h[k] = vv
		added = append(added, k)
	}
	w.WriteHeader(res.StatusCode)
	for _, k := range added {
		delete(h, k)
	}
}

// dial opens a new connection to m.
func (p *pool) dial(ctx context.Context, m *member) (*backendConn, error) {
	conn, err := p.dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return nil, err
	}
	conn = m.live.track(conn)
	bc := &backendConn{conn: conn}
	bc.lr = io.LimitedReader{R: conn, N: maxResponseHeaderBytes}
	bc.br = bufio.NewReaderSize(&bc.lr, 4<<10)
	bc.bw = bufio.NewWriterSize(conn, 4<<10)
	bc.abort = func() { conn.SetDeadline(aLongTimeAgo) }
	return bc, nil
}

// copyResponse sends res to the client and then returns bc to m's idle
// connections or closes it.
//
// Each write to the client may wait at most writeIdle: a client that stops
// reading loses its connection (HTTP/1) or stream (HTTP/2), and bc is
// closed.
func (px *Proxy) copyResponse(w http.ResponseWriter, r *http.Request, p *pool, m *member,
	res *http.Response, bc *backendConn, stop func() bool, writeIdle time.Duration) {
	reuse := false
	defer func() {
		if stopped := stop(); reuse && stopped && !res.Close {
			m.conns.put(bc, time.Now(), p.idleTimeout)
		} else {
			bc.conn.Close()
		}
	}()

	for _, v := range res.Header["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				delete(res.Header, textproto.CanonicalMIMEHeaderKey(tok))
			}
		}
	}
	h := w.Header()
	for k, vv := range res.Header {
		if hopByHop(k) || k == headerRequestID {
			continue
		}
		h[k] = vv
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	p.countAnswer(res.StatusCode >= 500)
	clock := newWriteClock(w, r, writeIdle)
	clock.tick(0)
	w.WriteHeader(res.StatusCode)

	// Like ReverseProxy: a body of unknown length is flushed as it comes.
	flush := res.ContentLength < 0
	wrote := false
	buf := px.buffers.Get()
	defer px.buffers.Put(buf)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			clock.tick(n)
			wrote = true
			if _, werr := w.Write(buf[:n]); werr != nil {
				// The client went away or stopped reading.
				px.clientErrs.add(writeReason(werr))
				return
			}
			if flush {
				if err := http.NewResponseController(w).Flush(); err != nil {
					px.clientErrs.add(writeReason(err))
					return
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if n > 0 && rerr == nil {
			clock.wrote() // the member is read next
		}
		if rerr != nil {
			if ctx := r.Context(); ctx.Err() != nil {
				// The client went away: its cancellation aborted the
				// member connection.
				px.clientErrs.add(reasonAborted)
			} else {
				px.log.Warn("reading the body from the member failed", keyPool, p.name, keyMember, m.addr,
					keyRequestID, h.Get(headerRequestID), keyError, rerr)
			}
			// Abort the client's response: it is truncated.
			panic(http.ErrAbortHandler)
		}
	}
	if wrote {
		clock.finish()
	}
	if len(res.Trailer) == announced {
		for k, vv := range res.Trailer {
			h[k] = vv
		}
	} else {
		for k, vv := range res.Trailer {
			h[http.TrailerPrefix+k] = vv
		}
	}
	reuse = true
}

// fail answers a request whose member did not answer, as the ReverseProxy
// path's error handler does.
func (px *Proxy) fail(w http.ResponseWriter, r *http.Request, p *pool, m *member, err error) {
	if r.Context().Err() != nil {
		err = fmt.Errorf("%w: %w", context.Canceled, err)
	}
	px.answerError(w, r, p, m.addr, err)
}
