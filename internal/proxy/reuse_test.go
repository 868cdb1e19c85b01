package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"gatehouse/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestUpstreamReuse sends keep-alive requests through both paths, one
// client at a time and eight at once, and counts the connections opened to
// the member per 1,000 requests after a warm-up: at most one (99.9 %
// reuse) for one client; at most 1 % for eight (a client may send its next
// request before the proxy has put the previous connection back). The
// count is the pool's UpstreamConns and its Prometheus counter.
func TestUpstreamReuse(t *testing.T) {
	const host = "reuse.example"
	be := newBackend(t, "a")
	for _, direct := range []bool{true, false} {
		for _, clients := range []int{1, 8} {
			name := "reverseproxy"
			if direct {
				name = "direct"
			}
			t.Run(name+"/clients="+strconv.Itoa(clients), func(t *testing.T) {
				px, err := New(&config.Config{
					Pools:  []config.Pool{poolConfig("p", "", be.addr())},
					Routes: []config.Route{{Host: host, Pool: "p"}},
				}, Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(px.Close)
				px.pools[0].direct = direct
				front := httptest.NewServer(px)
				t.Cleanup(front.Close)
				tr := &http.Transport{MaxIdleConnsPerHost: clients}
				t.Cleanup(tr.CloseIdleConnections)
				c := &http.Client{Transport: tr}
				send := func(n int) {
					var wg sync.WaitGroup
					for range clients {
						wg.Go(func() {
							for range n / clients {
								req, _ := http.NewRequest(http.MethodGet, front.URL+"/x", nil)
								req.Host = host
								res, err := c.Do(req)
								if err != nil {
									t.Error(err)
									return
								}
								io.Copy(io.Discard, res.Body)
								res.Body.Close()
								if res.StatusCode != http.StatusOK {
									t.Errorf("status %d", res.StatusCode)
								}
							}
						})
					}
					wg.Wait()
				}
				send(200) // warm-up
				before := px.Pools()[0]
				send(1000)
				after := px.Pools()[0]
				reqs := after.Requests - before.Requests
				opened := after.UpstreamConns - before.UpstreamConns
				if reqs != 1000 {
					t.Fatalf("the pool counted %d requests, want 1000", reqs)
				}
				limit := uint64(1)
				if clients > 1 {
					limit = 10
				}
				t.Logf("%d clients: %d new upstream connections per 1,000 requests (%d in the warm-up)", clients, opened, before.UpstreamConns)
				if opened > limit {
					t.Errorf("%d new upstream connections per 1,000 requests, want at most %d", opened, limit)
				}
				if before.UpstreamConns == 0 {
					t.Error("no upstream connection counted in the warm-up")
				}
				reg := prometheus.NewPedanticRegistry()
				reg.MustRegister(Collector(func() *Proxy { return px }))
				exp := "# HELP gatehouse_pool_upstream_connections_opened_total Connections opened to a pool's members; over gatehouse_pool_requests_total, the share of requests that did not reuse a kept-alive connection.\n" +
					"# TYPE gatehouse_pool_upstream_connections_opened_total counter\n" +
					"gatehouse_pool_upstream_connections_opened_total{pool=\"p\"} " + strconv.FormatUint(after.UpstreamConns, 10) + "\n"
				if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "gatehouse_pool_upstream_connections_opened_total"); err != nil {
					t.Error(err)
				}
			})
		}
	}
}
