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
	res, err := first.roundTrip(req)
	if err == nil {
		first.succeeded()
		return res, nil
	}
	if !connFailure(err) || clientFault(req) {
		// A reset, timeout or malformed body of the client's is not
		// the member's failure.
		return nil, err
	}
	first.failed(err)
	// Only body-less requests are retried: the body of any other request
	// may already be consumed. ReverseProxy sends a nil Body when the
	// inbound request had none.
	if req.Body != nil && req.Body != http.NoBody {
		return nil, err
	}
	var triedBuf [8]*member
	tried := append(triedBuf[:0], first)
	for range p.retries {
		if req.Context().Err() != nil {
			break
		}
		m := p.pickExcept(tried)
		if m == nil {
			break
		}
		tried = append(tried, m)
		r2 := new(http.Request)
		*r2 = *req
		u := *req.URL
		u.Host = m.addr
		r2.URL = &u
		m.inflight.Add(1)
		res, err = m.roundTrip(r2)
		if err == nil {
			m.succeeded()
			res.Body = countBody(res.Body, m)
			return res, nil
		}
		m.inflight.Add(-1)
		if !connFailure(err) || clientFault(r2) {
			return nil, err
		}
		m.failed(err)
	}
	return nil, err
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
