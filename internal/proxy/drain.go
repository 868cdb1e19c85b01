package proxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultUpgradeGrace is how long upgraded connections (WebSockets) to a
// drained member may go on before they are closed, when the drain does
// not say.
const DefaultUpgradeGrace = 30 * time.Second

// drainPoll is how often a drained member's watcher closes the
// connections that went idle and checks the upgrade grace.
const drainPoll = 50 * time.Millisecond

// liveConns tracks a member's open upstream connections (both paths), so
// that a drain can report them falling to zero and close upgraded ones
// after their grace. Only dial and close touch it, never a request.
type liveConns struct {
	n atomic.Int64
	// opened, if set, counts every connection tracked (the pool's
	// upstreamConns).
	opened *atomic.Uint64
	mu     sync.Mutex
	set    map[*trackedConn]struct{}
}

// track wraps c so that its close is counted.
func (l *liveConns) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, l: l}
	l.n.Add(1)
	if l.opened != nil {
		l.opened.Add(1)
	}
	l.mu.Lock()
	if l.set == nil {
		l.set = make(map[*trackedConn]struct{})
	}
	l.set[tc] = struct{}{}
	l.mu.Unlock()
	return tc
}

// closeUpgraded closes the connections that carry an upgraded protocol
// and returns how many.
func (l *liveConns) closeUpgraded() int {
	var up []*trackedConn
	l.mu.Lock()
	for c := range l.set {
		if c.upgraded.Load() {
			up = append(up, c)
		}
	}
	l.mu.Unlock()
	for _, c := range up {
		c.Close()
	}
	return len(up)
}

// trackedConn is an upstream connection counted in its member's liveConns.
type trackedConn struct {
	net.Conn
	l        *liveConns
	closed   atomic.Bool
	upgraded atomic.Bool // it carries a WebSocket or other upgrade
}

func (c *trackedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.n.Add(-1)
		c.l.mu.Lock()
		delete(c.l.set, c)
		c.l.mu.Unlock()
	}
	return c.Conn.Close()
}

// roundTrip sends req over m's transport. A request asking for an upgrade
// marks the connection it gets, for the drain's upgrade grace.
func (m *member) roundTrip(req *http.Request) (*http.Response, error) {
	if req.Header["Upgrade"] != nil {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if tc, ok := info.Conn.(*trackedConn); ok {
				tc.upgraded.Store(true)
			}
		}}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	}
	return m.tr.RoundTrip(req)
}

// drainers owns the goroutines that watch drained members.
type drainers struct {
	mu      sync.Mutex
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	stopped bool
}

func (d *drainers) start(f func(ctx context.Context)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return
	}
	if d.ctx == nil {
		d.ctx, d.cancel = context.WithCancel(context.Background())
	}
	d.wg.Go(func() { f(d.ctx) })
}

func (d *drainers) stop() {
	d.mu.Lock()
	d.stopped = true
	cancel := d.cancel
	d.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	d.wg.Wait()
}

// reopen lets the idle connections of the direct path be kept again.
func (cp *connPool) reopen() {
	cp.mu.Lock()
	cp.closed = false
	cp.mu.Unlock()
}

// Drain describes the drain of one member.
type Drain struct {
	// UpgradeGrace bounds how long upgraded connections (WebSockets) go
	// on after the drain began; 0: DefaultUpgradeGrace.
	UpgradeGrace time.Duration
}

// SetDrained makes exactly the members in drained (pool name, then
// member address) drained: they get no new request at once, requests in
// flight finish, their idle upstream connections are closed as they go
// idle and upgraded connections after their grace. Members no longer
// listed are undrained and take traffic again through slow start.
// Unknown pools and members are ignored (the drain may be for a pool of a
// newer configuration).
func (px *Proxy) SetDrained(drained map[string]map[string]Drain) {
	for _, p := range px.pools {
		for _, m := range p.members {
			d, want := drained[p.name][m.addr]
			switch {
			case want && !m.drained.Load():
				px.drain(m, d)
			case !want && m.drained.Load():
				px.undrain(m)
			}
		}
	}
}

func (px *Proxy) drain(m *member, d Drain) {
	if m.drained.Swap(true) {
		return
	}
	m.rampFrom.Store(0)
	m.pool.rebuild()
	m.conns.close()
	m.tr.CloseIdleConnections()
	grace := d.UpgradeGrace
	if grace <= 0 {
		grace = DefaultUpgradeGrace
	}
	px.log.Info("member drained: no new requests", "pool", m.pool.name, "member", m.addr,
		"in_flight", m.inflight.Load(), "open_connections", m.live.n.Load())
	start := time.Now()
	px.drains.start(func(ctx context.Context) {
		t := time.NewTicker(drainPoll)
		defer t.Stop()
		graceOver := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if !m.drained.Load() {
				return
			}
			// Requests that finished on the ReverseProxy path left
			// their connections idle: close them.
			m.tr.CloseIdleConnections()
			if !graceOver && time.Since(start) >= grace {
				graceOver = true
				if n := m.live.closeUpgraded(); n > 0 {
					px.log.Info("drain: closed upgraded connections after their grace", "pool", m.pool.name, "member", m.addr, "connections", n, "grace", grace)
				}
			}
			if m.live.n.Load() == 0 && m.inflight.Load() == 0 {
				px.log.Info("member drained: no connection left", "pool", m.pool.name, "member", m.addr,
					"after", time.Since(start).Round(time.Millisecond))
				return
			}
		}
	})
}

func (px *Proxy) undrain(m *member) {
	if !m.drained.Swap(false) {
		return
	}
	m.conns.reopen()
	if m.pool.slowStart > 0 {
		m.rampFrom.Store(m.pool.now().UnixNano())
	}
	m.pool.rebuild()
	px.log.Info("member undrained: taking traffic again", "pool", m.pool.name, "member", m.addr, "slow_start", m.pool.slowStart)
}
