package proxy

import (
	"math/rand/v2"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"gatehouse/internal/config"
)

// A balancer chooses the member of a pool that takes a request. On every
// health transition the pool gives its balancer the available members and
// publishes the pickSet it builds; requests then pick from that set
// without a lock. A new algorithm is a new balancer and one line in
// newBalancer.
type balancer interface {
	// build returns the pick set over ms, the pool's available members
	// (at least one). It is never called concurrently.
	build(p *pool, ms []*member) pickSet
}

// A pickSet chooses among a fixed set of members; pick is called
// concurrently, must not allocate and is called only with two or more
// members in the set.
type pickSet interface {
	pick(r *http.Request) *member
	// order is the sequence a retry walks to find a member not yet tried
	// (for weighted round robin the weighted schedule).
	order() []*member
}

// newBalancer returns the balancer of pc's algorithm: the one place that
// maps config.Algorithm to code.
func newBalancer(pc config.Pool) (balancer, bool) {
	switch pc.Algorithm {
	case config.RoundRobin, "":
		return roundRobin{weighted: false}, true
	case config.WeightedRoundRobin:
		return roundRobin{weighted: true}, true
	case config.LeastRequests:
		return leastRequests{}, true
	case config.ConsistentHash:
		return newHashBalancer(pc.Hash), true
	}
	return nil, false
}

// ready is what a pool picks from: the available members (for retries
// and status) and the balancer's pick set over them.
type ready struct {
	members []*member
	set     pickSet
}

// roundRobin takes the members in turn, or with weighted the smooth
// weighted schedule over them (see schedule).
type roundRobin struct{ weighted bool }

func (b roundRobin) build(p *pool, ms []*member) pickSet {
	if b.weighted {
		ms = schedule(ms)
	}
	return &rrSet{p: p, ms: ms}
}

type rrSet struct {
	p  *pool
	ms []*member
}

// pick takes the next member in turn; a member in slow start that is not
// admitted passes its turn (twice at most).
func (s *rrSet) order() []*member { return s.ms }

func (s *rrSet) pick(*http.Request) *member {
	n := uint64(len(s.ms))
	m := s.ms[(s.p.rr.Add(1)-1)%n]
	for range 2 {
		if s.p.admit(m) {
			return m
		}
		m = s.ms[(s.p.rr.Add(1)-1)%n]
	}
	return m
}

// leastRequests compares two members chosen at random by their requests
// in flight (the power of two choices).
type leastRequests struct{}

func (leastRequests) build(p *pool, ms []*member) pickSet { return &lrSet{p: p, ms: ms} }

type lrSet struct {
	p  *pool
	ms []*member
}

func (s *lrSet) order() []*member { return s.ms }

func (s *lrSet) pick(*http.Request) *member {
	n := len(s.ms)
	i := rand.IntN(n)
	j := rand.IntN(n - 1)
	if j >= i {
		j++
	}
	a, b := s.ms[i], s.ms[j]
	if b.inflight.Load() < a.inflight.Load() || !s.p.admit(a) {
		return b
	}
	return a
}

// Consistent hashing with bounded loads (Mirrokni, Thorup and Zadimoghaddam,
// 2018): each member owns points on a ring of 64-bit hashes, in proportion
// to its weight; a request's key is hashed onto the ring and goes to the
// owner of the next point clockwise, unless that member already holds its
// share of the requests in flight, ceil(loadFactor * (total+1) * weight /
// totalWeight), in which case the next distinct member on the ring is
// tried. Keys stay with their member as long as loads allow, and adding
// or removing a member moves only the keys of the points it gains or
// loses (about 1/n of them).

// pointsPerWeight is how many ring points a member gets per unit of
// weight; maxPoints caps a ring (weights are scaled down beyond it).
const (
	pointsPerWeight = 512
	maxPoints       = 1 << 16
)

type hashBalancer struct {
	by         config.HashBy
	name       string // canonical header name, or cookie name
	loadFactor float64
}

func newHashBalancer(h config.Hash) *hashBalancer {
	b := &hashBalancer{by: h.By, name: h.Name, loadFactor: h.LoadFactor}
	if b.by == "" {
		b.by = config.HashClientIP
	}
	if b.by == config.HashHeader {
		b.name = textproto.CanonicalMIMEHeaderKey(b.name)
	}
	if b.loadFactor <= 1 {
		b.loadFactor = config.DefaultLoadFactor
	}
	return b
}

type hashSet struct {
	b      *hashBalancer
	p      *pool
	ms     []*member
	points []uint64 // sorted
	owners []int32  // owners[i] is the index in ms of points[i]'s member
	// weights are the members' weights, totalWeight their sum.
	weights     []float64
	totalWeight float64
}

func (b *hashBalancer) build(p *pool, ms []*member) pickSet {
	s := &hashSet{b: b, p: p, ms: ms, weights: make([]float64, len(ms))}
	perWeight := pointsPerWeight
	total := 0
	for i, m := range ms {
		s.weights[i] = float64(m.weight)
		s.totalWeight += float64(m.weight)
		total += m.weight
	}
	if total*perWeight > maxPoints {
		perWeight = max(1, maxPoints/total)
	}
	type point struct {
		h     uint64
		owner int32
	}
	pts := make([]point, 0, total*perWeight)
	var buf []byte
	for i, m := range ms {
		for k := range m.weight * perWeight {
			// A point depends only on the member's address and its
			// number, so a member keeps its points across rebuilds.
			buf = append(buf[:0], m.addr...)
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, int64(k), 10)
			pts = append(pts, point{hashString(string(buf)), int32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b point) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return strings.Compare(ms[a.owner].addr, ms[b.owner].addr)
	})
	s.points = make([]uint64, len(pts))
	s.owners = make([]int32, len(pts))
	for i, pt := range pts {
		s.points[i], s.owners[i] = pt.h, pt.owner
	}
	return s
}

// pick returns the member that owns r's key, or the next member clockwise
// that is under its load bound and admitted by slow start. If every
// member is at its bound (a moment of skew while loads are read), it
// returns the key's owner.
func (s *hashSet) order() []*member { return s.ms }

func (s *hashSet) pick(r *http.Request) *member {
	return s.pickKey(s.b.key(r))
}

func (s *hashSet) pickKey(key string) *member {
	var total int64
	for _, m := range s.ms {
		total += m.inflight.Load()
	}
	h := hashString(key)
	i, _ := slices.BinarySearch(s.points, h)
	n := len(s.points)
	if i == n {
		i = 0
	}
	first := s.owners[i]
	var tried uint64 // members already passed over, when there are at most 64
	for k := 0; k < n; k++ {
		o := s.owners[(i+k)%n]
		if len(s.ms) <= 64 {
			if tried&(1<<uint(o)) != 0 {
				continue
			}
			tried |= 1 << uint(o)
		} else if k > 0 && o == s.owners[(i+k-1)%n] {
			continue
		}
		m := s.ms[o]
		if s.underBound(m, o, total) && s.p.admit(m) {
			return m
		}
		if len(s.ms) <= 64 && tried == 1<<uint(len(s.ms))-1 {
			break
		}
	}
	return s.ms[first]
}

// underBound reports whether member o (m) holds fewer requests in flight
// than its bound: ceil(c * (total+1) * w / W), at least 1.
func (s *hashSet) underBound(m *member, o int32, total int64) bool {
	bound := s.b.loadFactor * float64(total+1) * s.weights[o] / s.totalWeight
	return float64(m.inflight.Load()) < ceil(bound)
}

func ceil(f float64) float64 {
	i := float64(int64(f))
	if i < f {
		return i + 1
	}
	return i
}

// key returns r's hash key without allocating: the header's first value,
// the cookie's value, or the client's address (the host of RemoteAddr),
// which is also the fallback when the header or cookie is missing.
func (b *hashBalancer) key(r *http.Request) string {
	switch b.by {
	case config.HashHeader:
		if v := r.Header[b.name]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	case config.HashCookie:
		if v, ok := cookieValue(r.Header["Cookie"], b.name); ok {
			return v
		}
	}
	return remoteHost(r.RemoteAddr)
}

// remoteHost returns the host of a host:port address (IPv6 in brackets
// included) without allocating; an address without port is returned
// whole.
func remoteHost(addr string) string {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 || strings.IndexByte(addr[i:], ']') >= 0 {
		return addr
	}
	host := addr[:i]
	if len(host) >= 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return host
}

// cookieValue finds the value of the cookie name in the Cookie header
// lines without allocating (http.Request.Cookie parses every cookie).
// Surrounding double quotes are removed, as net/http does.
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if v == "" {
				return "", false
			}
			return v, true
		}
	}
	return "", false
}

// hashString is 64-bit FNV-1a followed by a finaliser (from SplitMix64)
// that spreads similar keys, such as neighbouring addresses, over the
// whole ring.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func mix64(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
