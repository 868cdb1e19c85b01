package config

import (
	"strings"
)

// Algorithm is how a pool spreads requests over its members. It is the
// one definition of the algorithm names: the proxy maps each value to
// its balancer.
type Algorithm string

// Algorithms of pools[].algorithm.
const (
	RoundRobin         Algorithm = "round_robin"
	WeightedRoundRobin Algorithm = "weighted_round_robin"
	LeastRequests      Algorithm = "least_requests"
	// ConsistentHash sends requests with the same key (pools[].hash) to
	// the same member, with bounded loads.
	ConsistentHash Algorithm = "consistent_hash"
)

// Algorithms lists every algorithm a pool may use, in the order error
// messages name them.
var Algorithms = []Algorithm{RoundRobin, WeightedRoundRobin, LeastRequests, ConsistentHash}

// Valid reports whether a is one of Algorithms.
func (a Algorithm) Valid() bool {
	for _, x := range Algorithms {
		if a == x {
			return true
		}
	}
	return false
}

func algorithmList() string {
	s := make([]string, len(Algorithms))
	for i, a := range Algorithms {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// HashBy is what the consistent_hash algorithm hashes.
type HashBy string

// Keys of pools[].hash.by.
const (
	// HashClientIP hashes the client's address (the connection's peer,
	// after the PROXY protocol if the listener accepts it).
	HashClientIP HashBy = "client_ip"
	// HashHeader hashes the value of the request header hash.name.
	HashHeader HashBy = "header"
	// HashCookie hashes the value of the cookie hash.name.
	HashCookie HashBy = "cookie"
)

// Bounds of pools[].hash.load_factor.
const (
	DefaultLoadFactor = 1.25
	MaxLoadFactor     = 10.0
)

// Hash configures the consistent_hash algorithm: requests with the same
// key go to the same member while that member is available and holds
// fewer than load_factor times the average number of requests in flight
// (consistent hashing with bounded loads); otherwise to the next member
// on the ring. A request without the header or cookie is hashed by its
// client address.
type Hash struct {
	// By is client_ip (default), header or cookie.
	By HashBy `yaml:"by"`
	// Name is the header or cookie name (required for header and cookie).
	Name string `yaml:"name"`
	// LoadFactor bounds each member's requests in flight to this multiple
	// of the pool's average (default 1.25, greater than 1, at most 10).
	LoadFactor float64 `yaml:"load_factor"`
}

// isZero reports whether the hash block was left out.
func (h Hash) isZero() bool { return h == Hash{} }

// applyBalancingDefaults fills the algorithm (consistent_hash when a hash
// block is given, else round_robin) and the hash defaults.
func (p *Pool) applyBalancingDefaults() {
	if p.Algorithm == "" {
		p.Algorithm = RoundRobin
		if !p.Hash.isZero() {
			p.Algorithm = ConsistentHash
		}
	}
	if p.Algorithm != ConsistentHash {
		return
	}
	if p.Hash.By == "" {
		p.Hash.By = HashClientIP
	}
	if p.Hash.LoadFactor == 0 {
		p.Hash.LoadFactor = DefaultLoadFactor
	}
}

// validateBalancing checks pools[i].algorithm and pools[i].hash; pp is
// the pool's field path.
func (p *Pool) validateBalancing(v *validator, pp string) {
	if !p.Algorithm.Valid() {
		v.add(pp+".algorithm", "%q must be one of %s", p.Algorithm, algorithmList())
		return
	}
	h := p.Hash
	hp := pp + ".hash"
	if p.Algorithm != ConsistentHash {
		if !h.isZero() {
			v.add(hp, "applies only to algorithm consistent_hash (the pool uses %s)", p.Algorithm)
		}
		return
	}
	switch h.By {
	case HashClientIP:
		if h.Name != "" {
			v.add(hp+".name", "must be empty when hashing by client_ip")
		}
	case HashHeader, HashCookie:
		switch {
		case h.Name == "":
			v.add(hp+".name", "is required when hashing by %s", h.By)
		case !validToken(h.Name):
			v.add(hp+".name", "%q is not a valid %s name", h.Name, h.By)
		}
	default:
		v.add(hp+".by", "%q must be one of client_ip, header, cookie", h.By)
	}
	if !(h.LoadFactor > 1 && h.LoadFactor <= MaxLoadFactor) {
		v.add(hp+".load_factor", "%g must be greater than 1 and at most %g", h.LoadFactor, MaxLoadFactor)
	}
}

// validToken reports whether s is an HTTP token (RFC 9110 section 5.6.2),
// the syntax of header and cookie names.
func validToken(s string) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
