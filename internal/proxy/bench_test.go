package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// cpuTime is the user+system CPU time of this process.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchBody = []byte("hello from the backend, a small keep-alive response\n")

func benchBackend(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(benchBody)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// runClient sends keep-alive GETs to url with the Host header host and
// reports CPU ns/op of the whole process (client, proxy and backend).
func runClient(b *testing.B, url, host string, parallel bool) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr}
	get := func() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		res, err := c.Do(req)
		if err != nil {
			b.Error(err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b.Errorf("status %d", res.StatusCode)
		}
	}
	get() // warm the connections
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	if parallel {
		b.SetParallelism(8) // 16 concurrent clients on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				get()
			}
		})
	} else {
		for range b.N {
			get()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkProxy measures a keep-alive request through a real http.Server
// running the Proxy to a real loopback backend.
func BenchmarkProxy(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			be := benchBackend(b)
			px, err := New(&config.Config{
				Pools:  []config.Pool{poolConfig("p", "", be.Listener.Addr().String())},
				Routes: []config.Route{{Host: host, Pool: "p"}},
			}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(px.Close)
			front := httptest.NewServer(px)
			b.Cleanup(front.Close)
			runClient(b, front.URL+"/", host, parallel)
		})
	}
}

// BenchmarkStdlibProxy is the starting point for comparison: a plain
// httputil.ReverseProxy (SetURL, SetXForwarded, a transport with the
// standard library's defaults) in the same setup as BenchmarkProxy.
func BenchmarkStdlibProxy(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			be := benchBackend(b)
			target, _ := url.Parse(be.URL)
			tr := http.DefaultTransport.(*http.Transport).Clone()
			b.Cleanup(tr.CloseIdleConnections)
			rp := &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.SetURL(target)
					pr.SetXForwarded()
					pr.Out.Host = pr.In.Host
				},
				Transport: tr,
			}
			front := httptest.NewServer(rp)
			b.Cleanup(front.Close)
			runClient(b, front.URL+"/", host, parallel)
		})
	}
}

// BenchmarkDirect is the baseline: the same client and backend without the
// proxy in between. The proxy's own cost is BenchmarkProxy minus this.
func BenchmarkDirect(b *testing.B) {
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			be := benchBackend(b)
			runClient(b, be.URL+"/", host, parallel)
		})
	}
}

// BenchmarkPick measures member selection alone, for each balancer (the
// consistent hash by client address, header and cookie).
func BenchmarkPick(b *testing.B) {
	cases := []struct {
		name string
		algo config.Algorithm
		hash config.Hash
	}{
		{"round_robin", config.RoundRobin, config.Hash{}},
		{"weighted_round_robin", config.WeightedRoundRobin, config.Hash{}},
		{"least_requests", config.LeastRequests, config.Hash{}},
		{"consistent_hash/client_ip", config.ConsistentHash, config.Hash{By: config.HashClientIP, LoadFactor: 1.25}},
		{"consistent_hash/header", config.ConsistentHash, config.Hash{By: config.HashHeader, Name: "X-Tenant", LoadFactor: 1.25}},
		{"consistent_hash/cookie", config.ConsistentHash, config.Hash{By: config.HashCookie, Name: "sid", LoadFactor: 1.25}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			pc := poolConfig("p", tc.algo, "a:1", "b:1", "c:1")
			pc.Hash = tc.hash
			pc.Members[0].Weight = 3
			p := newPool(pc)
			p.rebuild()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = "192.0.2.7:41234"
				r.Header.Set("X-Tenant", "tenant-42")
				r.Header.Set("Cookie", "theme=dark; sid=abc123; lang=en")
				for pb.Next() {
					if p.pick(r) == nil {
						b.Error("no member")
					}
				}
			})
		})
	}
}

// BenchmarkRoute measures a routing table lookup.
func BenchmarkRoute(b *testing.B) {
	rt := newRouter()
	p := &pool{}
	for i := range 10000 {
		rt.add("h"+string(rune('a'+i%26))+time.Duration(i).String()+".example.test", "/", p, nil)
	}
	rt.add("*.uni-c.test", "/", p, nil)
	rt.add("*.uni-c.test", "/api", p, nil)
	b.ReportAllocs()
	for b.Loop() {
		if rt.match("x.uni-c.test:443", "/api/v1") == nil {
			b.Fatal("no match")
		}
	}
}
