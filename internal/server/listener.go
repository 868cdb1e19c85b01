package server

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Reasons a connection is refused, as counted in Stats and metrics.
const (
	RefusedMaxConnections       = "max_connections"        // listener full and its queue full
	RefusedQueueTimeout         = "queue_timeout"          // waited queue_timeout for a slot
	RefusedPerClientConnections = "per_client_connections" // its address holds per_client.max_connections
	RefusedPerClientRate        = "per_client_rate"        // its address opened connections faster than per_client.max_new_per_second
)

var refusalReasons = []string{RefusedMaxConnections, RefusedQueueTimeout, RefusedPerClientConnections, RefusedPerClientRate}

// maxRefusing bounds the refusals being written at once; beyond it a
// refused connection is closed without an answer, so that a flood of
// refused clients cannot hold more than this many sockets.
const maxRefusing = 256

// limits are a listener's connection limits; a reload swaps them.
type limits struct {
	max          int // 0: none
	maxQueued    int // 0: no queue
	queueTimeout time.Duration
	perClient    clientLimits
}

// limitListener is a listener with a connection limit, a bounded queue in
// front of it and per-client-address limits.
//
// At the limit a client never waits in the kernel's backlog, where it would
// hang until it gives up: its connection is accepted at once and either
// waits in a bounded queue (max_queued, at most queue_timeout) for a slot,
// as with HAProxy's maxconn and timeout queue, or is refused. A queue
// absorbs bursts (a slot freed a moment later serves the client) without
// letting a client wait without end; the refusal is a well-formed answer
// rather than a reset: on TLS listeners the ClientHello is read and a fatal
// internal_error alert is sent (the client reports "tls: internal error"
// at once and may retry), on plain HTTP a 503 with Retry-After.
//
// An accept goroutine takes every connection from the socket; Accept hands
// the admitted ones to the http.Server in order.
type limitListener struct {
	inner  net.Listener
	name   string
	log    *slog.Logger
	now    func() time.Time
	refuse func(net.Conn) // writes the refusal; the caller closes

	mu sync.Mutex
	// mu guards everything below up to the counters.
	lim      limits
	open     int           // admitted: served, or waiting in ready
	queue    []*queuedConn // waiting for a slot, oldest first
	ready    []*countedConn
	clients  *clientTable
	refusing map[net.Conn]struct{}
	err      error // a permanent accept error for Accept to return
	closed   bool

	notify chan struct{} // capacity 1: ready or err changed
	done   chan struct{} // closed by Close
	// loopDone is closed when the accept loop has ended.
	loopDone chan struct{}
	wg       sync.WaitGroup
	slots    chan struct{} // capacity maxRefusing

	// fresh counts the admitted connections that have not yet begun their
	// first request (http.StateNew).
	fresh       atomic.Int64
	queuedTotal atomic.Uint64
	refused     map[string]*atomic.Uint64 // by reason; fixed keys
}

type queuedConn struct {
	c     *countedConn
	timer *time.Timer
	done  bool // admitted or expired (under mu)
}

func newLimitListener(ln net.Listener, name string, lim limits, isTLS bool, log *slog.Logger, now func() time.Time) *limitListener {
	l := &limitListener{
		inner:    ln,
		name:     name,
		log:      log,
		now:      now,
		lim:      lim,
		clients:  newClientTable(),
		refusing: map[net.Conn]struct{}{},
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
		slots:    make(chan struct{}, maxRefusing),
		refused:  map[string]*atomic.Uint64{},
		refuse:   refuseHTTP,
	}
	if isTLS {
		l.refuse = refuseTLS
	}
	for _, r := range refusalReasons {
		l.refused[r] = new(atomic.Uint64)
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Addr implements net.Listener.
func (l *limitListener) Addr() net.Addr { return l.inner.Addr() }

// Accept implements net.Listener: the next admitted connection.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		switch {
		case len(l.ready) > 0:
			// Also after Close: a connection taken from the socket is
			// served, never dropped (a binary upgrade's old process
			// closes its listener while clients keep connecting).
			c := l.ready[0]
			l.ready[0] = nil
			l.ready = l.ready[1:]
			l.mu.Unlock()
			l.fresh.Add(1)
			c.fresh.Store(true)
			return c, nil
		case l.closed:
			l.mu.Unlock()
			select {
			case <-l.loopDone:
				// The accept loop has ended and nothing is ready: closed.
				l.mu.Lock()
				empty := len(l.ready) == 0
				l.mu.Unlock()
				if empty {
					return nil, net.ErrClosed
				}
			case <-time.After(time.Second):
				return nil, net.ErrClosed
			}
			continue
		case l.err != nil:
			err := l.err
			l.mu.Unlock()
			return nil, err
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-l.done:
		}
	}
}

func (l *limitListener) signal() {
	select {
	case l.notify <- struct{}{}:
	default:
	}
}

// acceptLoop takes connections from the socket until it is closed.
func (l *limitListener) acceptLoop() {
	defer l.wg.Done()
	defer close(l.loopDone)
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				if !closed {
					l.mu.Lock()
					l.err = err
					l.mu.Unlock()
					l.signal()
				}
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait and retry, as
				// http.Server does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				l.log.Warn("accept failed; retrying", "listener", l.name, "err", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-l.done:
					return
				}
				continue
			}
			l.mu.Lock()
			l.err = err
			l.mu.Unlock()
			l.signal()
			return
		}
		backoff = 0
		l.admit(c)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// admit serves, queues or refuses a new connection.
func (l *limitListener) admit(c net.Conn) {
	ip, keyOK := remoteIP(c.RemoteAddr())
	key := unitOf(ip)
	now := l.now()
	l.mu.Lock()
	if l.closed {
		// Taken from the socket as it closed: serve it (see Accept).
		l.open++
		l.ready = append(l.ready, &countedConn{Conn: c, l: l, key: key})
		l.mu.Unlock()
		l.signal()
		return
	}
	tracked := false
	if keyOK {
		var reason string
		tracked, reason = l.clients.admit(&l.lim.perClient, ip, now)
		if reason != "" {
			l.rejectLocked(c, reason)
			l.mu.Unlock()
			return
		}
	}
	cc := &countedConn{Conn: c, l: l, key: key, tracked: tracked}
	switch {
	case (l.lim.max <= 0 || l.open < l.lim.max) && len(l.queue) == 0:
		l.open++
		l.ready = append(l.ready, cc)
		l.signal()
	case len(l.queue) < l.lim.maxQueued:
		q := &queuedConn{c: cc}
		q.timer = time.AfterFunc(l.lim.queueTimeout, func() { l.expire(q) })
		l.queue = append(l.queue, q)
		l.queuedTotal.Add(1)
	default:
		l.releaseClientLocked(cc)
		l.rejectLocked(c, RefusedMaxConnections)
	}
	l.mu.Unlock()
}

// expire refuses a connection that waited queue_timeout.
func (l *limitListener) expire(q *queuedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if q.done || l.closed {
		return
	}
	q.done = true
	for i, o := range l.queue {
		if o == q {
			l.queue = append(l.queue[:i], l.queue[i+1:]...)
			break
		}
	}
	l.releaseClientLocked(q.c)
	l.rejectLocked(q.c.Conn, RefusedQueueTimeout)
}

// promoteLocked admits queued connections while slots are free.
func (l *limitListener) promoteLocked() {
	for len(l.queue) > 0 && (l.lim.max <= 0 || l.open < l.lim.max) {
		q := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		q.done = true
		q.timer.Stop()
		l.open++
		l.ready = append(l.ready, q.c)
		l.signal()
	}
}

// rejectLocked counts a refusal and answers it in the background (bounded
// by maxRefusing and refuseWait).
func (l *limitListener) rejectLocked(c net.Conn, reason string) {
	l.refused[reason].Add(1)
	if l.closed {
		c.Close()
		return
	}
	select {
	case l.slots <- struct{}{}:
	default:
		c.Close()
		return
	}
	l.refusing[c] = struct{}{}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.refuse(c)
		c.Close()
		l.mu.Lock()
		delete(l.refusing, c)
		l.mu.Unlock()
		<-l.slots
	}()
}

func (l *limitListener) releaseClientLocked(c *countedConn) {
	if c.tracked {
		c.tracked = false
		l.clients.release(&l.lim.perClient, c.key)
	}
}

// setLimits swaps the limits (a reload): a higher max admits queued
// connections at once; a lower one closes nothing, new connections queue or
// are refused until enough have ended.
func (l *limitListener) setLimits(lim limits) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lim = lim
	l.clients.trim(&l.lim.perClient)
	l.promoteLocked()
}

// Close stops accepting: queued connections and those not yet handed to
// Accept are closed, refusals in progress end, and Close waits for the
// listener's goroutines. Later calls return nil.
func (l *limitListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	// Admitted connections already taken from the socket are served, not
	// dropped: Accept hands out the ready ones before it reports the
	// listener closed, and closeUnserved closes any that no Accept takes.
	// Queued ones (over the limit) are closed.
	var drop []net.Conn
	for _, q := range l.queue {
		q.done = true
		q.timer.Stop()
		drop = append(drop, q.c.Conn)
	}
	l.queue = nil
	for c := range l.refusing {
		c.SetDeadline(time.Now())
	}
	l.mu.Unlock()
	l.signal()
	close(l.done)
	err := l.inner.Close()
	for _, c := range drop {
		c.Close()
	}
	l.wg.Wait()
	time.AfterFunc(2*time.Second, l.closeUnserved)
	return err
}

// closeUnserved closes the connections that no Accept took after Close (no
// server is serving the listener any more).
func (l *limitListener) closeUnserved() {
	l.mu.Lock()
	drop := l.ready
	l.ready = nil
	l.mu.Unlock()
	for _, c := range drop {
		c.Conn.Close()
	}
}

// ListenerStats are a listener's connections and refusals.
type ListenerStats struct {
	Open      int64 // admitted connections
	Max       int64 // max_connections (0: none)
	Queued    int64 // waiting for a slot now
	MaxQueued int64
	// QueuedTotal counts connections that ever waited in the queue.
	QueuedTotal uint64
	// Refused counts refusals since start, by reason (Refused… constants).
	Refused map[string]uint64
	// BusiestClient is the most connections one client address holds;
	// PerClientMax its cap (0: none). TrackedClients is the size of the
	// address table, TrackedMax its bound.
	BusiestClient, PerClientMax int64
	TrackedClients, TrackedMax  int64
}

func (l *limitListener) stats() ListenerStats {
	l.mu.Lock()
	st := ListenerStats{
		Open:           int64(l.open),
		Max:            int64(l.lim.max),
		Queued:         int64(len(l.queue)),
		MaxQueued:      int64(l.lim.maxQueued),
		BusiestClient:  int64(l.clients.busiest()),
		PerClientMax:   int64(max(l.lim.perClient.maxConns, 0)),
		TrackedClients: int64(l.clients.len()),
		TrackedMax:     int64(l.lim.perClient.maxTracked),
	}
	l.mu.Unlock()
	st.QueuedTotal = l.queuedTotal.Load()
	st.Refused = map[string]uint64{}
	for r, n := range l.refused {
		st.Refused[r] = n.Load()
	}
	return st
}

// connState is the http.Server's ConnState hook: a connection leaves the
// fresh count once it is in any state but new.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	if st == http.StateNew {
		return
	}
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*countedConn); ok {
		cc.notFresh()
	}
}

// countedConn is an admitted connection; Close frees its slot.
type countedConn struct {
	net.Conn
	l       *limitListener
	key     clientAddr
	tracked bool // counted in the client table (under l.mu)
	fresh   atomic.Bool
	once    sync.Once
}

func (c *countedConn) notFresh() {
	if c.fresh.CompareAndSwap(true, false) {
		c.l.fresh.Add(-1)
	}
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.notFresh()
	c.once.Do(func() {
		l := c.l
		l.mu.Lock()
		l.open--
		l.releaseClientLocked(c)
		l.promoteLocked()
		l.mu.Unlock()
	})
	return err
}
