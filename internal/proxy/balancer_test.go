package proxy

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"gatehouse/internal/config"
)

// hashPool returns a consistent_hash pool over addrs (weights 1) with its
// pick set built.
func hashPool(t testing.TB, h config.Hash, addrs ...string) *pool {
	t.Helper()
	pc := poolConfig("p", config.ConsistentHash, addrs...)
	pc.Hash = h
	p := newPool(pc)
	p.rebuild()
	return p
}

func memberAddrs(n int) []string {
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = fmt.Sprintf("10.0.0.%d:8080", i+1)
	}
	return addrs
}

// owners maps each of n keys to the address of the member it picks with
// no request in flight.
func owners(p *pool, n int) []string {
	set := p.ready.Load().set.(*hashSet)
	out := make([]string, n)
	for i := range out {
		out[i] = set.pickKey(fmt.Sprintf("user-%d", i)).addr
	}
	return out
}

func TestHashDistribution(t *testing.T) {
	const keys = 60000
	for _, tc := range []struct {
		name    string
		weights []int
	}{
		{"equal", []int{1, 1, 1, 1, 1}},
		{"weighted", []int{1, 1, 2, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := poolConfig("p", config.ConsistentHash, memberAddrs(len(tc.weights))...)
			pc.Hash = config.Hash{By: config.HashClientIP, LoadFactor: 1.25}
			total := 0
			for i, w := range tc.weights {
				pc.Members[i].Weight = w
				total += w
			}
			p := newPool(pc)
			p.rebuild()
			got := map[string]int{}
			for _, a := range owners(p, keys) {
				got[a]++
			}
			for i, w := range tc.weights {
				want := float64(keys) * float64(w) / float64(total)
				n := float64(got[pc.Members[i].Address])
				t.Logf("member %d (weight %d): %.3f of keys, expected %.3f", i, w, n/keys, want/keys)
				if math.Abs(n-want) > 0.15*want {
					t.Errorf("member %d (weight %d) owns %v keys, want %v ± 15%%", i, w, n, want)
				}
			}
		})
	}
}

func TestHashStickiness(t *testing.T) {
	addrs := memberAddrs(4)
	for _, tc := range []struct {
		name string
		hash config.Hash
		req  func(r *http.Request, key string)
	}{
		{"client_ip", config.Hash{By: config.HashClientIP, LoadFactor: 1.25},
			func(r *http.Request, key string) { r.RemoteAddr = key + ":" + fmt.Sprint(40000+rand.IntN(20000)) }},
		{"header", config.Hash{By: config.HashHeader, Name: "x-tenant", LoadFactor: 1.25},
			func(r *http.Request, key string) { r.Header.Set("X-Tenant", key) }},
		{"cookie", config.Hash{By: config.HashCookie, Name: "sid", LoadFactor: 1.25},
			func(r *http.Request, key string) { r.Header.Set("Cookie", "a=1; sid="+key+"; b=2") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := hashPool(t, tc.hash, addrs...)
			used := map[string]bool{}
			for k := range 200 {
				key := fmt.Sprintf("192.0.2.%d", k)
				var first string
				for i := range 10 {
					r := httptest.NewRequest("GET", "/", nil)
					r.RemoteAddr = fmt.Sprintf("198.51.100.%d:1234", i) // varies unless the key is the client
					tc.req(r, key)
					m := p.pick(r)
					if i == 0 {
						first = m.addr
						used[first] = true
					} else if m.addr != first {
						t.Fatalf("key %s: request %d went to %s, the first to %s", key, i, m.addr, first)
					}
				}
			}
			if len(used) != len(addrs) {
				t.Errorf("200 keys used %d of %d members", len(used), len(addrs))
			}
		})
	}
}

func TestHashMinimalMovement(t *testing.T) {
	const keys = 30000
	addrs := memberAddrs(6)
	h := config.Hash{By: config.HashClientIP, LoadFactor: 1.25}
	five := owners(hashPool(t, h, addrs[:5]...), keys)

	// Adding a sixth member moves only keys to it, about 1/6 of them.
	six := owners(hashPool(t, h, addrs...), keys)
	moved := 0
	for i := range five {
		if five[i] != six[i] {
			moved++
			if six[i] != addrs[5] {
				t.Fatalf("key %d moved from %s to %s, not to the added member", i, five[i], six[i])
			}
		}
	}
	share := float64(moved) / keys
	t.Logf("adding 1 member to 5 moved %.3f of the keys (ideal 1/6 = %.3f)", share, 1.0/6)
	if share < 0.10 || share > 0.24 {
		t.Errorf("adding a member moved %.3f of the keys, want about 1/6", share)
	}

	// A member going down moves only its own keys; when it is back they
	// return.
	p := hashPool(t, h, addrs[:5]...)
	down := p.byAddr[addrs[2]]
	down.setUp(false)
	after := owners(p, keys)
	for i := range five {
		switch {
		case five[i] == addrs[2] && after[i] == addrs[2]:
			t.Fatalf("key %d still goes to the member that is down", i)
		case five[i] != addrs[2] && after[i] != five[i]:
			t.Fatalf("key %d of %s moved to %s when another member went down", i, five[i], after[i])
		}
	}
	down.setUp(true)
	for i, a := range owners(p, keys) {
		if a != five[i] {
			t.Fatalf("key %d goes to %s after the member came back, before to %s", i, a, five[i])
		}
	}
}

// TestHashLoadBound sends a skewed stream (90% one hot key) and holds the
// requests in flight, finishing some at random: no pick may take a member
// past its bound, ceil(c × in-flight total × weight share), and the hot
// key stays on its owner while the bound allows.
func TestHashLoadBound(t *testing.T) {
	const c = 1.25
	addrs := memberAddrs(4)
	pc := poolConfig("p", config.ConsistentHash, addrs...)
	pc.Hash = config.Hash{By: config.HashHeader, Name: "X-Key", LoadFactor: c}
	pc.Members[3].Weight = 2
	p := newPool(pc)
	p.rebuild()
	set := p.ready.Load().set.(*hashSet)
	owner := set.pickKey("hot")

	rng := rand.New(rand.NewPCG(1, 2))
	var held []*member
	hotOnOwner, hot := 0, 0
	for i := range 5000 {
		key := "hot"
		if rng.IntN(10) == 0 {
			key = fmt.Sprintf("cold-%d", rng.IntN(1000))
		}
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("X-Key", key)
		m := p.pick(r)
		m.inflight.Add(1)
		held = append(held, m)
		var total int64
		for _, x := range p.members {
			total += x.inflight.Load()
		}
		bound := math.Ceil(c * float64(total) * float64(m.weight) / 5)
		if float64(m.inflight.Load()) > bound {
			t.Fatalf("pick %d: %s holds %d of %d in flight, above its bound %v", i, m.addr, m.inflight.Load(), total, bound)
		}
		if key == "hot" {
			hot++
			if m == owner {
				hotOnOwner++
			}
		}
		// Now and then finish about a third of the requests in flight.
		if rng.IntN(100) == 0 {
			for range len(held) / 3 {
				j := rng.IntN(len(held))
				held[j].inflight.Add(-1)
				held[j] = held[len(held)-1]
				held = held[:len(held)-1]
			}
		}
	}
	var total int64
	for _, x := range p.members {
		total += x.inflight.Load()
		t.Logf("%s (weight %d): %d in flight", x.addr, x.weight, x.inflight.Load())
	}
	t.Logf("hot key on its owner %d of %d times; %d in flight", hotOnOwner, hot, total)
	// The owner's bound is at least c×weight/5 = 25% (50% for weight 2) of
	// the load, so it must take a good part of the hot key.
	if float64(hotOnOwner) < 0.2*float64(hot) {
		t.Errorf("hot key reached its owner %d of %d times", hotOnOwner, hot)
	}
	if hotOnOwner == hot {
		t.Errorf("the hot key never spilled over: the bound did not act")
	}
}

func TestHashKey(t *testing.T) {
	tests := []struct {
		name   string
		hash   config.Hash
		remote string
		header http.Header
		want   string
	}{
		{"client ipv4", config.Hash{By: config.HashClientIP}, "192.0.2.1:5555", nil, "192.0.2.1"},
		{"client ipv6", config.Hash{By: config.HashClientIP}, "[2001:db8::1]:5555", nil, "2001:db8::1"},
		{"header", config.Hash{By: config.HashHeader, Name: "x-tenant"}, "192.0.2.1:5555", http.Header{"X-Tenant": {"t1", "t2"}}, "t1"},
		{"header missing: client", config.Hash{By: config.HashHeader, Name: "X-Tenant"}, "192.0.2.1:5555", nil, "192.0.2.1"},
		{"header empty: client", config.Hash{By: config.HashHeader, Name: "X-Tenant"}, "192.0.2.1:5555", http.Header{"X-Tenant": {""}}, "192.0.2.1"},
		{"cookie among others", config.Hash{By: config.HashCookie, Name: "sid"}, "192.0.2.1:5555",
			http.Header{"Cookie": {"xsid=no; sid=yes;theme=dark"}}, "yes"},
		{"cookie quoted, second line", config.Hash{By: config.HashCookie, Name: "sid"}, "192.0.2.1:5555",
			http.Header{"Cookie": {"a=1", `sid="q"`}}, "q"},
		{"cookie missing: client", config.Hash{By: config.HashCookie, Name: "sid"}, "192.0.2.1:5555",
			http.Header{"Cookie": {"sidx=1; s=2"}}, "192.0.2.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newHashBalancer(tc.hash)
			r := &http.Request{RemoteAddr: tc.remote, Header: tc.header}
			if got := b.key(r); got != tc.want {
				t.Errorf("key = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestPickAllocs(t *testing.T) {
	for _, h := range []config.Hash{
		{By: config.HashClientIP, LoadFactor: 1.25},
		{By: config.HashHeader, Name: "X-Tenant", LoadFactor: 1.25},
		{By: config.HashCookie, Name: "sid", LoadFactor: 1.25},
	} {
		p := hashPool(t, h, memberAddrs(8)...)
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "[2001:db8::7]:41234"
		r.Header.Set("X-Tenant", "tenant-42")
		r.Header.Set("Cookie", "theme=dark; sid=abc123; lang=en")
		if n := testing.AllocsPerRun(1000, func() { p.pick(r) }); n != 0 {
			t.Errorf("hash by %s: %v allocations per pick, want 0", h.By, n)
		}
	}
}

// TestConsistentHashThroughProxy sends requests through the proxy to real
// members on loopback: each tenant keeps its member, the tenants spread
// over the members, and when a member stops, its tenants are answered by
// the others (retry) while every other tenant stays where it was.
func TestConsistentHashThroughProxy(t *testing.T) {
	bs := []*backend{newBackend(t, "a"), newBackend(t, "b"), newBackend(t, "c")}
	pc := poolConfig("h", config.ConsistentHash, bs[0].addr(), bs[1].addr(), bs[2].addr())
	pc.Hash = config.Hash{By: config.HashCookie, Name: "tenant", LoadFactor: 1.25}
	f := newFront(t, &config.Config{
		Pools:  []config.Pool{pc},
		Routes: []config.Route{{Host: host, Pool: "h"}},
	}, Options{})
	ask := func(tenant string) (int, string) {
		res, body := f.do(t, http.MethodGet, host, "/", nil, http.Header{"Cookie": {"lang=en; tenant=" + tenant}})
		return res.StatusCode, body
	}
	home := map[string]string{}
	spread := map[string]int{}
	for k := range 30 {
		tenant := fmt.Sprintf("t%d", k)
		for i := range 3 {
			code, body := ask(tenant)
			if code != http.StatusOK {
				t.Fatalf("tenant %s: status %d, body %q", tenant, code, body)
			}
			if i == 0 {
				home[tenant] = body
				spread[body]++
			} else if body != home[tenant] {
				t.Fatalf("tenant %s: request %d answered by %s, the first by %s", tenant, i, body, home[tenant])
			}
		}
	}
	t.Logf("30 tenants over the members: %v", spread)
	if len(spread) < 2 {
		t.Fatalf("every tenant went to one member: %v", spread)
	}

	var gone string
	for name, n := range spread {
		if n > 0 {
			gone = name
			break
		}
	}
	for _, b := range bs {
		if b.name == gone {
			b.Close()
		}
	}
	for tenant, was := range home {
		code, body := ask(tenant)
		switch {
		case code != http.StatusOK:
			t.Errorf("tenant %s after %s stopped: status %d", tenant, gone, code)
		case was != gone && body != was:
			t.Errorf("tenant %s moved from %s to %s when %s stopped", tenant, was, body, gone)
		case was == gone && body == gone:
			t.Errorf("tenant %s still answered by the stopped member", tenant)
		}
	}
}
