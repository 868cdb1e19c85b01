package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// countingListener counts open connections and, with max > 0, stops
// accepting while max are open (the kernel backlog holds the rest), like
// HAProxy's maxconn.
type countingListener struct {
	net.Listener
	open atomic.Int64
	// fresh counts the open connections that have not yet begun their
	// first request (http.StateNew).
	fresh     atomic.Int64
	max       int
	sem       chan struct{}
	closeOnce sync.Once
	closeErr  error
	// closed is closed by Close: an Accept waiting for a connection slot
	// returns then (http.Server's Shutdown and Close wait for Serve to
	// return before they close connections, which would free a slot).
	closed chan struct{}
}

func newCountingListener(ln net.Listener, max int) *countingListener {
	cl := &countingListener{Listener: ln, max: max, closed: make(chan struct{})}
	if max > 0 {
		cl.sem = make(chan struct{}, max)
	}
	return cl
}

func (l *countingListener) Accept() (net.Conn, error) {
	if l.sem != nil {
		select {
		case l.sem <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.sem != nil {
			<-l.sem
		}
		return nil, err
	}
	l.open.Add(1)
	l.fresh.Add(1)
	cc := &countedConn{Conn: c, l: l}
	cc.fresh.Store(true)
	return cc, nil
}

// Close closes the listener once; later calls return the first's result.
func (l *countingListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// connState is the http.Server's ConnState hook: a connection leaves the
// fresh count once it is in any state but new.
func (l *countingListener) connState(c net.Conn, st http.ConnState) {
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

type countedConn struct {
	net.Conn
	l     *countingListener
	fresh atomic.Bool
	once  sync.Once
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
		c.l.open.Add(-1)
		if c.l.sem != nil {
			<-c.l.sem
		}
	})
	return err
}
