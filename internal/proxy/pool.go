package proxy

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/health"
)

// maxSchedule bounds the weighted round-robin schedule (the sum of the
// weights after dividing by their gcd); larger weights are scaled down.
const maxSchedule = 4096

// member is one backend server of a pool.
type member struct {
	addr     string
	weight   int
	pool     *pool
	up       atomic.Bool
	inflight atomic.Int64
	// connFails counts consecutive connection failures of live traffic.
	connFails atomic.Int32
	watch     *health.Watch // nil until checks start
	// conns are the idle connections of the direct path.
	conns connPool

	// zone is the index of the member's zone in pool.zones, -1 for none.
	zone int
	// drained members get no new request; see drain.go.
	drained atomic.Bool
	// rampFrom is when the member's slow start began (Unix nanoseconds),
	// 0 when it takes its full share.
	rampFrom atomic.Int64
	// tr is the member's HTTP/1.1 transport (the ReverseProxy path), one
	// per member so that a drain closes only its idle connections.
	tr *http.Transport
	// live tracks the member's open upstream connections (drain.go).
	live liveConns
}

// pool is a group of members with a balancer and its reverse proxy.
type pool struct {
	name    string
	algo    config.Algorithm
	bal     balancer
	members []*member
	byAddr  map[string]*member
	retries int
	// ejectAfter consecutive connection failures mark a member down until
	// its next successful active check; 0 disables passive ejection.
	ejectAfter int32

	rr atomic.Uint64
	// ready is what pick chooses from: the available members and the
	// balancer's pick set over them (balancer.go). It is rebuilt on every
	// health transition, so picks never skip members.
	ready atomic.Pointer[ready]
	mu    sync.Mutex // mu serialises rebuilds of ready

	// Failover (config.Failover): the zones in order of preference, the
	// share of a zone's weight that must be available for it to take
	// traffic under the priority policy, the hysteresis before traffic
	// returns to a preferred zone, and the slow start of undrained members.
	priority    bool
	zones       []string
	minShare    float64
	returnAfter time.Duration
	slowStart   time.Duration
	// Guarded by mu: the zone priority traffic goes to (-1: every zone),
	// since when each zone has had enough available capacity, and the
	// timer that rebuilds when a preferred zone's hysteresis ends.
	activeZone int
	okSince    []time.Time
	returnT    *time.Timer
	closed     bool
	now        func() time.Time

	rp        *httputil.ReverseProxy
	transport *poolTransport

	// direct enables the direct path (see direct.go); it is off when
	// connections per member are limited, which http.Transport enforces.
	direct                bool
	dialer                *net.Dialer
	responseHeaderTimeout time.Duration
	idleTimeout           time.Duration
	onChange              func(pool, address string, up bool)

	// stats counts the pool's requests and failures; a reload hands the
	// same counters to the pool of the same name, so they are cumulative
	// over the process's life.
	stats *poolStats
}

// poolStats are a pool's cumulative request counters: two atomic adds on
// the request path, no allocation. Padded so that the counters of two
// pools never share a cache line.
type poolStats struct {
	_        [64]byte
	requests atomic.Uint64 // requests routed to the pool and answered
	failures atomic.Uint64 // of which failed: see countAnswer
	// upstreamConns counts the connections opened to the pool's members
	// (both paths): against requests, the upstream reuse.
	upstreamConns atomic.Uint64
	_             [40]byte
}

// countAnswer counts one answered request; failed is a 5xx from a member,
// a 502/503/504 generated here, or a connection failure or timeout.
func (p *pool) countAnswer(failed bool) {
	p.stats.requests.Add(1)
	if failed {
		p.stats.failures.Add(1)
	}
}

func newPool(pc config.Pool) *pool {
	p := &pool{
		name:    pc.Name,
		algo:    pc.Algorithm,
		byAddr:  make(map[string]*member, len(pc.Members)),
		retries: pc.Retries,

		direct:                pc.MaxConnsPerMember <= 0,
		dialer:                newDialer(pc),
		responseHeaderTimeout: orDefault(pc.Timeouts.ResponseHeader.D(), DefaultResponseHeaderTimeout),
		idleTimeout:           orDefault(pc.Timeouts.IdleConn.D(), DefaultIdleConnTimeout),
		stats:                 new(poolStats),

		priority:    pc.Failover.Policy == config.FailoverPriority,
		minShare:    pc.Failover.MinHealthyShare,
		returnAfter: pc.Failover.ReturnAfter.D(),
		slowStart:   pc.Failover.SlowStart.D(),
		activeZone:  -1,
		now:         time.Now,
	}
	p.zones = pc.Zones()
	p.okSince = make([]time.Time, len(p.zones))
	if p.minShare <= 0 {
		p.minShare = config.DefaultMinHealthyShare
	}
	if p.algo == "" {
		p.algo = config.RoundRobin
	}
	p.bal, _ = newBalancer(pc) // New rejects an unknown algorithm
	switch {
	case p.retries == 0:
		p.retries = 1
	case p.retries < 0:
		p.retries = 0
	}
	if pc.HealthCheck.Path != "" {
		p.ejectAfter = int32(pc.HealthCheck.Fall)
		if p.ejectAfter <= 0 {
			p.ejectAfter = health.DefaultFall
		}
	}
	for _, mc := range pc.Members {
		m := &member{addr: mc.Address, weight: max(mc.Weight, 1), pool: p, zone: slices.Index(p.zones, mc.Zone)}
		m.up.Store(true)
		p.members = append(p.members, m)
		p.byAddr[m.addr] = m
	}
	return p
}

// setUp records a health transition of m and rebuilds the pick set.
func (m *member) setUp(up bool) {
	m.up.Store(up)
	if up {
		m.connFails.Store(0)
	}
	m.pool.rebuild()
	if f := m.pool.onChange; f != nil {
		f(m.pool.name, m.addr, up)
	}
}

// available reports whether m may take new requests: healthy and not
// drained.
func (m *member) available() bool { return m.up.Load() && !m.drained.Load() }

// rebuild recomputes ready from the members' up and drained flags and,
// under the priority policy, the zone traffic goes to.
func (p *pool) rebuild() {
	p.mu.Lock()
	defer p.mu.Unlock()
	zone := -1
	if p.priority && len(p.zones) > 0 {
		zone = p.chooseZoneLocked(p.now())
	}
	var healthy []*member
	for _, m := range p.members {
		if m.available() && (zone < 0 || m.zone == zone) {
			healthy = append(healthy, m)
		}
	}
	rd := &ready{members: healthy}
	if len(healthy) > 1 && p.bal != nil {
		rd.set = p.bal.build(p, healthy)
	}
	p.ready.Store(rd)
}

// chooseZoneLocked returns the zone the priority policy sends traffic
// to: the first zone in order whose available share of member weight is
// at least minShare, except that traffic returns to a zone before the
// current one only once that zone has been good for returnAfter (a timer
// rebuilds then). With no good zone it returns -1: every available member
// of every zone takes traffic.
func (p *pool) chooseZoneLocked(now time.Time) int {
	cur := p.activeZone
	good := func(z int) bool { return !p.okSince[z].IsZero() }
	for z := range p.zones {
		var avail, total int
		for _, m := range p.members {
			if m.zone != z {
				continue
			}
			total += m.weight
			if m.available() {
				avail += m.weight
			}
		}
		ok := total > 0 && float64(avail) >= p.minShare*float64(total)
		switch {
		case !ok:
			p.okSince[z] = time.Time{}
		case p.okSince[z].IsZero():
			p.okSince[z] = now
		}
	}
	choice := -1
	for z := range p.zones {
		if !good(z) {
			continue
		}
		if cur >= 0 && z < cur && good(cur) {
			if wait := p.returnAfter - now.Sub(p.okSince[z]); wait > 0 {
				p.armReturnLocked(wait)
				continue
			}
		}
		choice = z
		break
	}
	p.activeZone = choice
	return choice
}

// armReturnLocked rebuilds after d, when a preferred zone's hysteresis
// ends.
func (p *pool) armReturnLocked(d time.Duration) {
	if p.closed {
		return
	}
	if p.returnT == nil {
		p.returnT = time.AfterFunc(d, p.rebuild)
		return
	}
	p.returnT.Reset(d)
}

// stop ends the pool's timers.
func (p *pool) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.returnT != nil {
		p.returnT.Stop()
	}
}

// ActiveZone returns the zone the priority policy sends traffic to, ""
// when it is every zone (spread, or no zone good enough).
func (p *pool) activeZoneName() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.priority || p.activeZone < 0 {
		return ""
	}
	return p.zones[p.activeZone]
}

// pick chooses an available member for r, or returns nil if there is
// none. It is lock-free: the pool's balancer chooses from the pick set
// built at the last health transition (balancer.go). A member in slow
// start is passed over with a probability that falls as its ramp goes
// on.
func (p *pool) pick(r *http.Request) *member {
	rd := p.ready.Load()
	switch len(rd.members) {
	case 0:
		return nil
	case 1:
		return rd.members[0]
	}
	return rd.set.pick(r)
}

// admit reports whether m takes a request now: always, unless it is in
// slow start, where its chance grows linearly over slowStart (at least
// 1 in 20 from the start).
func (p *pool) admit(m *member) bool {
	from := m.rampFrom.Load()
	if from == 0 {
		return true
	}
	el := p.now().UnixNano() - from
	if el >= int64(p.slowStart) {
		m.rampFrom.CompareAndSwap(from, 0)
		return true
	}
	share := max(float64(el)/float64(p.slowStart), 0.05)
	return rand.Float64() < share
}

// pickExcept chooses a healthy member not in tried, for a retry.
func (p *pool) pickExcept(tried []*member) *member {
	rd := p.ready.Load()
	ms := rd.members
	if rd.set != nil {
		ms = rd.set.order()
	}
	n := len(ms)
	if n == 0 {
		return nil
	}
	start := int(p.rr.Add(1) % uint64(n))
outer:
	for k := range n {
		m := ms[(start+k)%n]
		for _, t := range tried {
			if t == m {
				continue outer
			}
		}
		return m
	}
	if p.priority {
		// Under the priority policy, a retry may spill to an available
		// member of another zone before health checks move the traffic.
	spill:
		for _, m := range p.members {
			if !m.available() {
				continue
			}
			for _, t := range tried {
				if t == m {
					continue spill
				}
			}
			return m
		}
	}
	return nil
}

// schedule returns the smooth weighted round-robin sequence (as nginx
// computes it) over one full cycle: each member appears weight times,
// interleaved, e.g. weights a=5 b=1 c=1 give a a b a c a a.
func schedule(ms []*member) []*member {
	if len(ms) == 0 {
		return nil
	}
	g := 0
	total := 0
	for _, m := range ms {
		g = gcd(g, m.weight)
	}
	weights := make([]int, len(ms))
	for i, m := range ms {
		weights[i] = m.weight / g
		total += weights[i]
	}
	if total > maxSchedule {
		sum := total
		total = 0
		for i := range weights {
			weights[i] = max(1, weights[i]*maxSchedule/sum)
			total += weights[i]
		}
	}
	out := make([]*member, 0, total)
	current := make([]int, len(ms))
	for range total {
		best := 0
		for i := range ms {
			current[i] += weights[i]
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out = append(out, ms[best])
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
