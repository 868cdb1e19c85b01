package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gatehouse/internal/config"
)

// Defaults for zero config.Timeouts fields and transport sizing.
const (
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleConnTimeout       = 90 * time.Second
	maxIdleConnsPerMember        = 256
)

// newTransport returns the HTTP/1.1 transport toward a member of a pool;
// its connections are tracked in live.
func newTransport(pc config.Pool, live *liveConns) *http.Transport {
	d := newDialer(pc)
	return &http.Transport{
		Proxy: nil, // never an environment proxy toward members
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return live.track(c), nil
		},
		ResponseHeaderTimeout: orDefault(pc.Timeouts.ResponseHeader.D(), DefaultResponseHeaderTimeout),
		IdleConnTimeout:       orDefault(pc.Timeouts.IdleConn.D(), DefaultIdleConnTimeout),
		MaxIdleConnsPerHost:   maxIdleConnsPerMember,
		MaxConnsPerHost:       max(pc.MaxConnsPerMember, 0),
		ForceAttemptHTTP2:     false,
		// A non-nil empty map disables HTTP/2 toward members.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		// A proxy passes Accept-Encoding and bodies through untouched.
		DisableCompression: true,
	}
}

// newDialer returns the dialer toward the members of a pool.
func newDialer(pc config.Pool) *net.Dialer {
	return &net.Dialer{Timeout: orDefault(pc.Timeouts.Dial.D(), DefaultDialTimeout), KeepAlive: 30 * time.Second}
}

// poolTransport sends a request to the member its URL names and, when the
// connection to that member fails before any response and the request has
// no body, retries it on other healthy members. It also feeds passive
// ejection.
type poolTransport struct {
	pool *pool
}

// RoundTrip implements http.RoundTripper.
func (t *poolTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := t.pool
	first := p.byAddr[req.URL.Host]
	// Only body-less requests are retried: the body of any other request
	// may already be consumed. ReverseProxy sends a nil Body when the
	// inbound request had none.
	replay := req.Body == nil || req.Body == http.NoBody
	var res *http.Response
	m, err := p.withRetries(req.Context(), first, replay, func() bool { return clientFault(req) }, func(m *member) (err error) {
		r := req
		if m != first {
			r = new(http.Request)
			*r = *req
			u := *req.URL
			u.Host = m.addr
			r.URL = &u
		}
		res, err = m.roundTrip(r)
		return err
	})
	if err != nil {
		return nil, err
	}
	if m != first {
		res.Body = countBody(res.Body, m)
	}
	return res, nil
}

// withRetries is the retry loop of both paths. It runs try on first (whose
// in-flight count the caller raised) and, while try fails because the
// connection to the member failed before any response (connFailure), the
// client is still there (ctx, clientFault) and the request may be sent
// again (replay), on up to p.retries other healthy members, feeding
// passive ejection. It returns the member that answered, whose in-flight
// count stays raised (the caller lowers it unless it is first), or the
// last member tried and its error (then only first's count is raised).
func (p *pool) withRetries(ctx context.Context, first *member, replay bool, clientFault func() bool, try func(*member) error) (*member, error) {
	var triedBuf [8]*member
	tried := triedBuf[:0]
	m := first
	for {
		tried = append(tried, m)
		err := try(m)
		if err == nil {
			m.succeeded()
			return m, nil
		}
		if m != first {
			m.inflight.Add(-1)
		}
		if !connFailure(err) || ctx.Err() != nil || (clientFault != nil && clientFault()) {
			// A reset, timeout or malformed body of the client's is
			// not the member's failure.
			return m, err
		}
		m.failed(err)
		if !replay || len(tried) > p.retries {
			return m, err
		}
		next := p.pickExcept(tried)
		if next == nil {
			return m, err
		}
		next.inflight.Add(1)
		m = next
	}
}

func (m *member) succeeded() {
	if m != nil && m.connFails.Load() != 0 {
		m.connFails.Store(0)
	}
}

// failed counts a connection failure and ejects the member after
// ejectAfter consecutive ones.
func (m *member) failed(err error) {
	if m == nil || m.pool.ejectAfter == 0 {
		return
	}
	if m.connFails.Add(1) >= m.pool.ejectAfter && m.watch != nil {
		m.watch.Eject(err)
	}
}

// connFailure reports whether err means the request never got a response
// because the connection failed: dial errors (refused, unreachable, dial
// timeout) and resets.
func connFailure(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// timeoutError reports whether err is a timeout (dial or response header).
func timeoutError(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

// countBody wraps a response body so that the member's in-flight count
// drops when the body is closed. Upgraded (101) bodies stay writable.
func countBody(body io.ReadCloser, m *member) io.ReadCloser {
	c := &countedBody{ReadCloser: body, m: m}
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &countedRWC{countedBody: c, w: rwc}
	}
	return c
}

type countedBody struct {
	io.ReadCloser
	m    *member
	done atomic.Bool
}

func (b *countedBody) Close() error {
	if b.done.CompareAndSwap(false, true) {
		b.m.inflight.Add(-1)
	}
	return b.ReadCloser.Close()
}

type countedRWC struct {
	*countedBody
	w io.Writer
}

func (b *countedRWC) Write(p []byte) (int, error) { return b.w.Write(p) }

// bufferPool is the httputil.BufferPool of 32 KiB copy buffers. It pools
// array pointers so Put does not allocate.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([copyBufferSize]byte) }}}
}

// Get implements httputil.BufferPool.
func (b *bufferPool) Get() []byte { return b.p.Get().(*[copyBufferSize]byte)[:] }

// Put implements httputil.BufferPool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) >= copyBufferSize {
		b.p.Put((*[copyBufferSize]byte)(buf[:copyBufferSize]))
	}
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
