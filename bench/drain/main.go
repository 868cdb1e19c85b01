// Command drain measures a zone drain and a zone failure under keep-alive
// load on loopback: four members in two zones behind a Gatehouse proxy
// (priority policy, dc1 first), a paced client at -rate requests/s over
// -conns keep-alive connections. At -at, dc1 is drained (or, with -kill,
// its members are closed). It reports the time until dc1 got its last
// request, the time until its last connection closed, and failed requests.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/proxy"
)

type member struct {
	srv      *httptest.Server
	zone     string
	requests atomic.Int64
	last     atomic.Int64 // Unix ns of the last request
	open     atomic.Int64 // open connections
	closedAt atomic.Int64 // Unix ns when open last fell to 0
}

func newMember(zone string) *member {
	m := &member{zone: zone}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			return
		}
		m.requests.Add(1)
		m.last.Store(time.Now().UnixNano())
		io.WriteString(w, "ok")
	}))
	m.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			m.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			if m.open.Add(-1) == 0 {
				m.closedAt.Store(time.Now().UnixNano())
			}
		}
	}
	m.srv.Start()
	return m
}

func main() {
	rate := flag.Int("rate", 5000, "requests per second")
	conns := flag.Int("conns", 32, "keep-alive client connections")
	dur := flag.Duration("d", 6*time.Second, "load duration")
	at := flag.Duration("at", 2*time.Second, "when to drain or kill dc1")
	kill := flag.Bool("kill", false, "close dc1's members instead of draining them")
	retries := flag.Int("retries", 1, "pools[].retries (the retry budget after a connection failure)")
	flag.Parse()

	ms := []*member{newMember("dc1"), newMember("dc1"), newMember("dc2"), newMember("dc2")}
	pc := config.Pool{Name: "p", Algorithm: config.RoundRobin, Retries: *retries,
		HealthCheck: config.HealthCheck{Path: "/health", Interval: config.Duration(200 * time.Millisecond),
			Timeout: config.Duration(200 * time.Millisecond), Rise: 2, Fall: 2},
		Failover: config.Failover{Policy: config.FailoverPriority, Zones: []string{"dc1", "dc2"}, MinHealthyShare: 0.5,
			ReturnAfter: config.Duration(30 * time.Second), SlowStart: config.Duration(30 * time.Second)}}
	for _, m := range ms {
		pc.Members = append(pc.Members, config.Member{Address: m.srv.Listener.Addr().String(), Weight: 1, Zone: m.zone})
	}
	px, err := proxy.New(&config.Config{Pools: []config.Pool{pc},
		Routes: []config.Route{{Host: "app.test", PathPrefix: "/", Pool: "p"}}},
		proxy.Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	front := httptest.NewServer(px)
	defer front.Close()
	defer px.Close()

	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var sent, failed, skipped, drainedAt atomic.Int64
	tick := time.NewTicker(time.Second / time.Duration(*rate/100)) // 100 requests per tick
	defer tick.Stop()
	work := make(chan struct{}, *conns)
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			for range work {
				req, _ := http.NewRequest(http.MethodGet, front.URL+"/", nil)
				req.Host = "app.test"
				res, err := client.Do(req)
				sent.Add(1)
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if err == nil && res.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
				}
			}
		})
	}
	start := time.Now()
	var actAt time.Time
	acted := false
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick.C:
			if !acted && time.Since(start) >= *at {
				acted, actAt = true, time.Now()
				if *kill {
					for _, m := range ms[:2] {
						m.srv.Listener.Close()
						m.srv.CloseClientConnections()
					}
				} else {
					px.SetDrained(map[string]map[string]proxy.Drain{"p": {
						ms[0].srv.Listener.Addr().String(): {}, ms[1].srv.Listener.Addr().String(): {}}})
					// The proxy's own count of upstream connections to dc1
					// (health checks use their own and go on).
					wg.Go(func() {
						for time.Since(actAt) < 30*time.Second {
							var open int64
							for _, st := range px.Pools()[0].Members[:2] {
								open += st.OpenConns + st.InFlight
							}
							if open == 0 {
								drainedAt.Store(time.Now().UnixNano())
								return
							}
							time.Sleep(time.Millisecond)
						}
					})
				}
			}
			for range 100 {
				select {
				case work <- struct{}{}:
				default: // the client cannot keep up: skip
					skipped.Add(1)
				}
			}
		}
	}
	close(work)
	wg.Wait()
	el := time.Since(start)
	mode := "drain"
	if *kill {
		mode = "kill"
	}
	fmt.Printf("mode=%s retries=%d target=%d/s conns=%d duration=%s sent=%d (%.0f/s, %d skipped: the client could not keep up) failed=%d\n",
		mode, *retries, *rate, *conns, el.Round(time.Millisecond), sent.Load(), float64(sent.Load())/el.Seconds(), skipped.Load(), failed.Load())
	var lastReq int64
	for _, m := range ms[:2] {
		lastReq = max(lastReq, m.last.Load())
	}
	fmt.Printf("dc1: last request %s after the %s; ", time.Duration(lastReq-actAt.UnixNano()).Round(time.Microsecond), mode)
	if *kill {
		fmt.Println("connections closed by the kill")
	} else {
		if d := drainedAt.Load(); d != 0 {
			fmt.Printf("no request in flight and no upstream connection left %s after the drain\n", time.Duration(d-actAt.UnixNano()).Round(time.Microsecond))
		} else {
			fmt.Println("upstream connections still open after 30 s")
		}
	}
	for _, m := range ms {
		fmt.Printf("  %s %s requests=%d\n", m.zone, m.srv.Listener.Addr(), m.requests.Load())
	}
}
