package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client errors are failures a client causes: it resets or abandons its
// request, sends a malformed body, stalls while sending the body or while
// reading the response, or asks for a tenant on another tenant's TLS
// session. They are answered (400, 408, 421) or the connection is closed,
// counted by reason in ClientErrors, and never count against a member
// (passive ejection) or a pool's error rate (the status portal): only
// connect errors, resets and timeouts of the member connection and 5xx
// answers of members do.

// Reasons of client errors, the label values of ClientErrors.
const (
	// ReasonAborted: the client went away (canceled, closed, reset its
	// HTTP/2 stream) before its answer was complete.
	ReasonAborted = "aborted"
	// ReasonReset: the client's connection was reset (ECONNRESET) while
	// the request body was read.
	ReasonReset = "reset"
	// ReasonBadBody: the request body was malformed (bad chunked
	// encoding); answered 400.
	ReasonBadBody = "bad_body"
	// ReasonBodyTimeout: the client sent nothing of its body for the
	// body read timeout; answered 408.
	ReasonBodyTimeout = "body_timeout"
	// ReasonWriteTimeout: the client read nothing of its response for the
	// write idle timeout; the stream or connection is closed.
	ReasonWriteTimeout = "write_timeout"
	// ReasonMisdirected: the Host is not a name of the TLS session the
	// request came on; answered 421.
	ReasonMisdirected = "misdirected"
	// ReasonBadHeader: a header the edge refuses (an underscore in a name
	// with underscore_headers: reject); answered 400.
	ReasonBadHeader = "bad_header"
)

type clientReason uint32

const (
	noClientError clientReason = iota
	reasonAborted
	reasonReset
	reasonBadBody
	reasonBodyTimeout
	reasonWriteTimeout
	reasonMisdirected
	reasonBadHeader
	numReasons
)

var reasonNames = [numReasons]string{"", ReasonAborted, ReasonReset, ReasonBadBody, ReasonBodyTimeout,
	ReasonWriteTimeout, ReasonMisdirected, ReasonBadHeader}

// ClientErrorReasons lists every reason ClientErrors reports.
var ClientErrorReasons = reasonNames[1:]

// clientErrors counts client errors by reason over the process's life (a
// reload hands the counters on).
type clientErrors struct {
	n [numReasons]atomic.Uint64
}

func (c *clientErrors) add(r clientReason) { c.n[r].Add(1) }

// ClientErrors returns the client errors counted since the process
// started, by reason (every reason of ClientErrorReasons is present).
func (px *Proxy) ClientErrors() map[string]uint64 {
	out := make(map[string]uint64, numReasons-1)
	for r := clientReason(1); r < numReasons; r++ {
		out[reasonNames[r]] = px.clientErrs.n[r].Load()
	}
	return out
}

// bodyReason classifies an error reading a client's request body.
func bodyReason(err error) clientReason {
	switch {
	case isTimeout(err):
		return reasonBodyTimeout
	case errors.Is(err, syscall.ECONNRESET):
		return reasonReset
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.EPIPE),
		errors.Is(err, http.ErrBodyReadAfterClose):
		return reasonAborted
	}
	return reasonBadBody
}

// isTimeout reports whether err or an error it wraps is a timeout, like
// timeoutError but without errors.As's allocation.
func isTimeout(err error) bool {
	for err != nil {
		if te, ok := err.(interface{ Timeout() bool }); ok && te.Timeout() {
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

// writeReason classifies an error writing a response to a client.
func writeReason(err error) clientReason {
	if isTimeout(err) {
		return reasonWriteTimeout
	}
	return reasonAborted
}

// Deadline setters of the servers' ResponseWriters (http.ResponseController
// finds the same ones).
type (
	writeDeadliner interface{ SetWriteDeadline(time.Time) error }
	readDeadliner  interface{ SetReadDeadline(time.Time) error }
)

// deadlines returns the connection (HTTP/1) or stream (HTTP/2) deadline
// setters behind w, looking through the proxy's own wrappers, or nils.
func deadlines(w http.ResponseWriter) (writeDeadliner, readDeadliner) {
	for {
		if wd, ok := w.(writeDeadliner); ok {
			rd, _ := w.(readDeadliner)
			return wd, rd
		}
		switch x := w.(type) {
		case *cacheWriter:
			w = x.w
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil, nil
		}
	}
}

// writeClock bounds the wait between two writes of one response: before
// a write it moves the write deadline to now plus the timeout, at most
// once per eighth of the timeout, so the limit holds within 1/8.
//
// On HTTP/2 the stream's write deadline is a timer that resets the stream
// when it fires, whether a write waits or not. So that it bounds the wait
// for the client only, never a pause of the member, it is armed before a
// write and lifted (wrote) before the edge waits for the member again; and
// armed (finish) when the response is complete, for the last bytes the
// server flushes after the handler returns: a client that grants no flow
// control window holds even a small response there.
type writeClock struct {
	dl      writeDeadliner
	timeout time.Duration
	armed   time.Time // zero: no deadline set by this clock
	h2      bool
}

func newWriteClock(w http.ResponseWriter, r *http.Request, timeout time.Duration) writeClock {
	if timeout <= 0 {
		return writeClock{}
	}
	dl, _ := deadlines(w)
	return writeClock{dl: dl, timeout: timeout, h2: r.ProtoMajor == 2}
}

// tick runs before writing n bytes (0 for a header; HTTP/2 headers are not
// flow-controlled and arm nothing).
func (c *writeClock) tick(n int) {
	if c.dl == nil || c.h2 && n == 0 {
		return
	}
	now := time.Now()
	if !c.armed.IsZero() && now.Sub(c.armed) < c.timeout>>3 {
		return
	}
	c.armed = now
	_ = c.dl.SetWriteDeadline(now.Add(c.timeout))
}

// wrote runs after a write, before the edge waits for the member again:
// on HTTP/2 it lifts the stream's deadline.
func (c *writeClock) wrote() {
	if c.h2 && c.dl != nil && !c.armed.IsZero() {
		c.armed = time.Time{}
		_ = c.dl.SetWriteDeadline(time.Time{})
	}
}

// finish runs when the response is complete and anything was written: on
// HTTP/2 it arms the deadline for the bytes flushed after the handler.
func (c *writeClock) finish() {
	if c.h2 && c.dl != nil && c.armed.IsZero() {
		c.armed = time.Now()
		_ = c.dl.SetWriteDeadline(c.armed.Add(c.timeout))
	}
}

// armWrite sets w's write deadline to now plus timeout: for an HTTP/1
// connection at the start of each request (so a deadline left by the
// previous response on the connection never cuts this one short) and
// before the edge writes a page of its own.
func armWrite(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if timeout <= 0 || r.ProtoMajor != 1 {
		return
	}
	if dl, _ := deadlines(w); dl != nil {
		_ = dl.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// armPage arms the write deadline before the edge writes an answer of its
// own (a page, a cached response): as armWrite on HTTP/1, and on HTTP/2
// the stream's deadline, which no wait for a member follows there; without
// it a client granting no flow control window holds the answer, its stream
// and its connection without end.
func armPage(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if r.ProtoMajor != 2 {
		armWrite(w, r, timeout)
		return
	}
	if timeout <= 0 {
		return
	}
	if dl, _ := deadlines(w); dl != nil {
		_ = dl.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// clientBody is the request body as the member's transport reads it: it
// moves the read deadline before each read (the body read timeout),
// records why a read failed, and does not close the inbound body (the
// server does).
type clientBody struct {
	rc      io.ReadCloser
	st      *rpState // the state it is part of
	dl      readDeadliner
	timeout time.Duration
	armed   time.Time
	reason  atomic.Uint32 // a clientReason; set once
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.dl != nil {
		if now := time.Now(); now.Sub(b.armed) >= b.timeout>>3 {
			b.armed = now
			_ = b.dl.SetReadDeadline(now.Add(b.timeout))
		}
	}
	n, err := b.rc.Read(p)
	if err != nil {
		if err == io.EOF {
			if b.dl != nil && !b.armed.IsZero() {
				// The server reads the connection in the background
				// after the body: no deadline may remain for it.
				_ = b.dl.SetReadDeadline(time.Time{})
				b.armed = time.Time{}
			}
		} else {
			b.reason.CompareAndSwap(0, uint32(bodyReason(err)))
		}
	}
	return n, err
}

func (b *clientBody) state() *rpState { return b.st }

// Close does nothing: the server closes the inbound body.
func (b *clientBody) Close() error { return nil }

// failed returns why reading the body failed, or noClientError.
func (b *clientBody) failed() clientReason { return clientReason(b.reason.Load()) }

// rpState is the per-request state of the ReverseProxy path, in one
// allocation: the ResponseWriter handed to the ReverseProxy (it arms the
// write deadline and notes a failed write), the client's body as the
// transport reads it, and the forwarding header values.
type rpState struct {
	http.ResponseWriter
	px    *Proxy
	clock writeClock
	body  clientBody
	fwd   forwarded
	// counted is set once a client error of this request is counted.
	counted bool
	// wroteBody is set once a body byte went to the client.
	wroteBody bool
}

func (s *rpState) WriteHeader(code int) {
	s.clock.tick(0)
	s.ResponseWriter.WriteHeader(code)
}

func (s *rpState) Write(b []byte) (int, error) {
	s.clock.tick(len(b))
	n, err := s.ResponseWriter.Write(b)
	if err != nil {
		s.clientError(writeReason(err))
	}
	s.clock.wrote() // ReverseProxy reads the member next
	s.wroteBody = s.wroteBody || n > 0
	return n, err
}

// FlushError flushes what Write buffered (ReverseProxy flushes after each
// write of a response of unknown length) within the write deadline.
func (s *rpState) FlushError() error {
	s.clock.tick(1)
	err := http.NewResponseController(s.ResponseWriter).Flush()
	if err != nil {
		s.clientError(writeReason(err))
	}
	s.clock.wrote()
	return err
}

// clientError counts reason, once per request.
func (s *rpState) clientError(reason clientReason) {
	if !s.counted {
		s.counted = true
		s.px.clientErrs.add(reason)
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (s *rpState) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// clientFault reports whether a failed exchange with a member is the
// client's doing: the client went away, or reading its body failed.
func clientFault(req *http.Request) bool {
	if req.Context().Err() != nil {
		return true
	}
	cb, ok := req.Body.(*clientBody)
	return ok && cb.failed() != noClientError
}

// logSampler bounds the access-log lines of aborted requests (a flood of
// reset HTTP/2 streams) to perSecond a second; the next line logged says
// how many were left out.
type logSampler struct {
	perSecond int
	mu        sync.Mutex // guards the fields below
	window    time.Time
	n         int
	dropped   int64
}

// allow reports whether a line may be logged at now and how many were
// dropped since the last one that was.
func (s *logSampler) allow(now time.Time) (ok bool, dropped int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.window) >= time.Second || now.Before(s.window) {
		s.window, s.n = now, 0
	}
	if s.n >= s.perSecond {
		s.dropped++
		return false, 0
	}
	s.n++
	dropped, s.dropped = s.dropped, 0
	return true, dropped
}
