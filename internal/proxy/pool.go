package proxy

import (
	"math/rand/v2"
	"net"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/health"
)

// Algorithms accepted in config.Pool.Algorithm.
const (
	RoundRobin         = "round_robin"
	WeightedRoundRobin = "weighted_round_robin"
	LeastRequests      = "least_requests"
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
}

// pool is a group of members with a balancer and its reverse proxy.
type pool struct {
	name    string
	algo    string
	members []*member
	byAddr  map[string]*member
	retries int
	// ejectAfter consecutive connection failures mark a member down until
	// its next successful active check; 0 disables passive ejection.
	ejectAfter int32

	rr atomic.Uint64
	// ready is what pick chooses from: the healthy members, or for
	// weighted_round_robin the smooth weighted schedule over them. It is
	// rebuilt on every health transition, so picks never skip members.
	ready atomic.Pointer[[]*member]
	mu    sync.Mutex // mu serialises rebuilds of ready

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
	_        [48]byte
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
	}
	if p.algo == "" {
		p.algo = RoundRobin
	}
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
		m := &member{addr: mc.Address, weight: max(mc.Weight, 1), pool: p}
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

// rebuild recomputes ready from the members' up flags.
func (p *pool) rebuild() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var healthy []*member
	for _, m := range p.members {
		if m.up.Load() {
			healthy = append(healthy, m)
		}
	}
	if p.algo == WeightedRoundRobin {
		healthy = schedule(healthy)
	}
	p.ready.Store(&healthy)
}

// pick chooses a healthy member, or returns nil if there is none. It is
// lock-free: an atomic counter (round robin over the healthy members or
// over the precomputed weighted schedule) or two random choices compared
// by in-flight requests.
func (p *pool) pick() *member {
	ms := *p.ready.Load()
	n := len(ms)
	switch {
	case n == 0:
		return nil
	case n == 1:
		return ms[0]
	case p.algo == LeastRequests:
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := ms[i], ms[j]
		if b.inflight.Load() < a.inflight.Load() {
			return b
		}
		return a
	default:
		return ms[(p.rr.Add(1)-1)%uint64(n)]
	}
}

// pickExcept chooses a healthy member not in tried, for a retry.
func (p *pool) pickExcept(tried []*member) *member {
	ms := *p.ready.Load()
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
