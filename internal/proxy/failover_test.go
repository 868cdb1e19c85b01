package proxy

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// zonedConfig is a pool "p" with a1, a2 in dc1 and b1, b2 in dc2 under
// the priority policy, and a route app.test to it.
func zonedConfig(returnAfter time.Duration, bs ...*backend) *config.Config {
	pc := config.Pool{Name: "p", Algorithm: config.RoundRobin, HealthCheck: fastHealth(), Retries: 2,
		Failover: config.Failover{Policy: config.FailoverPriority, Zones: []string{"dc1", "dc2"},
			MinHealthyShare: 0.5, ReturnAfter: config.Duration(returnAfter), SlowStart: config.Duration(time.Millisecond)}}
	for i, b := range bs {
		zone := "dc1"
		if i >= len(bs)/2 {
			zone = "dc2"
		}
		pc.Members = append(pc.Members, config.Member{Address: b.addr(), Weight: 1, Zone: zone})
	}
	return &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: "app.test", PathPrefix: "/", Pool: "p"}}}
}

// loop sends GETs until stop is closed, tallying answers by body and
// counting failures (anything but a 200 or a transport error).
type clientLoop struct {
	stop   chan struct{}
	done   chan struct{}
	mu     chanMutex
	counts map[string]int
	first  map[string]time.Time
	failed int
	errs   []string
}

type chanMutex chan struct{}

func (m chanMutex) lock()   { m <- struct{}{} }
func (m chanMutex) unlock() { <-m }

func startLoop(f *front, path string) *clientLoop {
	l := &clientLoop{stop: make(chan struct{}), done: make(chan struct{}), mu: make(chanMutex, 1),
		counts: map[string]int{}, first: map[string]time.Time{}}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
			req.Host = "app.test"
			res, err := f.c.Do(req)
			body := ""
			ok := err == nil && res.StatusCode == http.StatusOK
			if err == nil {
				var sb strings.Builder
				_, rerr := sbCopy(&sb, res)
				body = sb.String()
				ok = ok && rerr == nil
			}
			l.mu.lock()
			if ok {
				l.counts[body]++
				if _, seen := l.first[body]; !seen {
					l.first[body] = time.Now()
				}
			} else {
				l.failed++
				if len(l.errs) < 5 {
					l.errs = append(l.errs, errString(res, err, body))
				}
			}
			l.mu.unlock()
		}
	}()
	return l
}

func (l *clientLoop) end() {
	close(l.stop)
	<-l.done
}

// reset returns the tallies so far and starts new ones.
func (l *clientLoop) reset() (map[string]int, map[string]time.Time, int) {
	l.mu.lock()
	defer l.mu.unlock()
	c, f, n := l.counts, l.first, l.failed
	l.counts, l.first, l.failed = map[string]int{}, map[string]time.Time{}, 0
	return c, f, n
}

func (l *clientLoop) total() int {
	l.mu.lock()
	defer l.mu.unlock()
	n := l.failed
	for _, c := range l.counts {
		n += c
	}
	return n
}

func TestPriorityFailoverAndReturn(t *testing.T) {
	a1, a2 := newBackend(t, "a1"), newBackend(t, "a2")
	b1, b2 := newBackend(t, "b1"), newBackend(t, "b2")
	const returnAfter = 400 * time.Millisecond
	f := newFront(t, zonedConfig(returnAfter, a1, a2, b1, b2), Options{})
	l := startLoop(f, "/")
	defer l.end()
	settle := func(n int) {
		t.Helper()
		start := l.total()
		waitFor(t, "requests", func() bool { return l.total() >= start+n })
	}

	settle(100)
	got, _, failed := l.reset()
	if failed != 0 || got["b1"]+got["b2"] != 0 || got["a1"] == 0 || got["a2"] == 0 {
		t.Fatalf("all members healthy: got %v, %d failed; want dc1 (a1, a2) only", got, failed)
	}

	// dc1 fails its health checks: traffic moves to dc2.
	a1.healthy.Store(false)
	a2.healthy.Store(false)
	waitFor(t, "dc1 down", func() bool { return !memberUp(f.px, "p", a1.addr()) && !memberUp(f.px, "p", a2.addr()) })
	if z := f.px.Pools()[0].ActiveZone; z != "dc2" {
		t.Errorf("ActiveZone = %q, want dc2", z)
	}
	settle(2) // a request picked before the transition may still answer from dc1
	l.reset()
	settle(100)
	got, _, failed = l.reset()
	if failed != 0 || got["a1"]+got["a2"] != 0 || got["b1"] == 0 || got["b2"] == 0 {
		t.Fatalf("dc1 down: got %v, %d failed (%v); want dc2 (b1, b2) only", got, failed, l.errs)
	}

	// dc1 recovers: traffic comes back only after returnAfter.
	tUp := time.Now()
	a1.healthy.Store(true)
	a2.healthy.Store(true)
	waitFor(t, "traffic back on dc1", func() bool {
		l.mu.lock()
		defer l.mu.unlock()
		return l.counts["a1"] > 0
	})
	_, first, failed := l.reset()
	if back := first["a1"].Sub(tUp); back < returnAfter {
		t.Errorf("traffic returned to dc1 %s after it recovered, before the hysteresis of %s", back, returnAfter)
	}
	if failed != 0 {
		t.Errorf("%d requests failed during the return", failed)
	}
	settle(2)
	l.reset()
	settle(50)
	got, _, _ = l.reset()
	if got["b1"]+got["b2"] != 0 {
		t.Errorf("after the return: got %v, want dc1 only", got)
	}

	// dc1's members are killed: with a retry budget of 2 (the size of
	// the zone), a request that meets a dead member spills to dc2.
	a1.Close()
	a2.Close()
	waitFor(t, "dc1 ejected", func() bool { return !memberUp(f.px, "p", a1.addr()) && !memberUp(f.px, "p", a2.addr()) })
	settle(100)
	got, _, failed = l.reset()
	if failed != 0 {
		t.Errorf("dc1 killed: %d failed requests (%v), want 0 within a retry budget of 2", failed, l.errs)
	}
	if got["b1"] == 0 || got["b2"] == 0 {
		t.Errorf("dc1 killed: got %v, want dc2", got)
	}
}

func TestSpreadIgnoresZones(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	cfg := zonedConfig(time.Second, a, b)
	cfg.Pools[0].Failover = config.Failover{Policy: config.FailoverSpread}
	f := newFront(t, cfg, Options{})
	got := count(t, f, "app.test", "/", 20)
	if got["a"] != 10 || got["b"] != 10 {
		t.Errorf("spread: got %v, want 10 each", got)
	}
}

func sbCopy(sb *strings.Builder, res *http.Response) (int64, error) {
	defer res.Body.Close()
	return io.Copy(sb, res.Body)
}

func errString(res *http.Response, err error, body string) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", res.StatusCode, body)
}
