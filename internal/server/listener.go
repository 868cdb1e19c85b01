package server

import (
	"net"
	"sync"
	"sync/atomic"
)

// countingListener counts open connections and, with max > 0, stops
// accepting while max are open (the kernel backlog holds the rest), like
// HAProxy's maxconn.
type countingListener struct {
	net.Listener
	open atomic.Int64
	max  int
	sem  chan struct{}
}

func newCountingListener(ln net.Listener, max int) *countingListener {
	cl := &countingListener{Listener: ln, max: max}
	if max > 0 {
		cl.sem = make(chan struct{}, max)
	}
	return cl
}

func (l *countingListener) Accept() (net.Conn, error) {
	if l.sem != nil {
		l.sem <- struct{}{}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if l.sem != nil {
			<-l.sem
		}
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.open.Add(-1)
		if c.l.sem != nil {
			<-c.l.sem
		}
	})
	return err
}
