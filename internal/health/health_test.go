package health

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// backend is a real HTTP server whose health can be switched and which logs
// every answer it gives to a check.
type backend struct {
	*httptest.Server
	healthy atomic.Bool
	hang    atomic.Bool // block until the checker gives up

	mu      sync.Mutex
	answers []bool // true: healthy answer
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.healthy.Store(true)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if b.hang.Load() {
			b.log(false)
			<-r.Context().Done()
			return
		}
		ok := b.healthy.Load()
		b.log(ok)
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) log(ok bool) {
	b.mu.Lock()
	b.answers = append(b.answers, ok)
	b.mu.Unlock()
}

// tail returns how many of the last answers equal ok, counted back to the
// first that differs.
func (b *backend) tail(ok bool) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for i := len(b.answers) - 1; i >= 0 && b.answers[i] == ok; i-- {
		n++
	}
	return n
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.answers)
}

func (b *backend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// event is one report with the backend's answer streak at that moment.
type event struct {
	up     bool
	streak int
}

func fastCheck(rise, fall int) config.HealthCheck {
	return config.HealthCheck{
		Path:     "/healthz",
		Interval: config.Duration(15 * time.Millisecond),
		Timeout:  config.Duration(100 * time.Millisecond),
		Rise:     rise,
		Fall:     fall,
	}
}

func waitEvent(t *testing.T, ch <-chan event) event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no health transition within 5s")
		return event{}
	}
}

func TestRiseFall(t *testing.T) {
	tests := []struct {
		name       string
		rise, fall int
	}{
		{"defaults", 0, 0},
		{"rise1_fall1", 1, 1},
		{"rise3_fall2", 3, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := newBackend(t)
			c := New(Options{})
			defer c.Close()
			events := make(chan event, 4)
			w := c.Watch(Target{Pool: "p", Address: b.addr(), Check: fastCheck(tc.rise, tc.fall)}, func(up bool) {
				events <- event{up: up, streak: b.tail(up)}
			})
			if !w.Up() {
				t.Fatal("member starts down, want up (optimistic start)")
			}
			wantFall, wantRise := orDefaultInt(tc.fall, DefaultFall), orDefaultInt(tc.rise, DefaultRise)

			b.healthy.Store(false)
			if got, want := waitEvent(t, events), (event{up: false, streak: wantFall}); got != want {
				t.Errorf("after switching unhealthy got %+v, want %+v", got, want)
			}
			if w.Up() {
				t.Error("Up() = true after down transition")
			}
			b.healthy.Store(true)
			if got, want := waitEvent(t, events), (event{up: true, streak: wantRise}); got != want {
				t.Errorf("after switching healthy got %+v, want %+v", got, want)
			}
		})
	}
}

func TestFailureKinds(t *testing.T) {
	closedAddr := func(t *testing.T) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	tests := []struct {
		name  string
		setup func(t *testing.T) (addr string, check config.HealthCheck)
	}{
		{"timeout", func(t *testing.T) (string, config.HealthCheck) {
			b := newBackend(t)
			b.hang.Store(true)
			hc := fastCheck(1, 2)
			hc.Timeout = config.Duration(30 * time.Millisecond)
			return b.addr(), hc
		}},
		{"connection_refused", func(t *testing.T) (string, config.HealthCheck) {
			return closedAddr(t), fastCheck(1, 2)
		}},
		{"unexpected_status", func(t *testing.T) (string, config.HealthCheck) {
			b := newBackend(t) // answers 204
			hc := fastCheck(1, 2)
			hc.ExpectStatus = []int{200}
			return b.addr(), hc
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, hc := tc.setup(t)
			c := New(Options{})
			defer c.Close()
			events := make(chan event, 4)
			w := c.Watch(Target{Pool: "p", Address: addr, Check: hc}, func(up bool) { events <- event{up: up} })
			if got := waitEvent(t, events); got.up {
				t.Errorf("got transition up, want down")
			}
			if w.Up() {
				t.Error("Up() = true, want false")
			}
		})
	}
}

func TestStartDownAndEject(t *testing.T) {
	b := newBackend(t)
	c := New(Options{})
	defer c.Close()
	events := make(chan event, 4)
	w := c.Watch(Target{Pool: "p", Address: b.addr(), Check: fastCheck(2, 3), Down: true}, func(up bool) {
		events <- event{up: up, streak: b.tail(up)}
	})
	if w.Up() {
		t.Fatal("Target.Down: member starts up")
	}
	if got, want := waitEvent(t, events), (event{up: true, streak: 2}); got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	before := b.count()
	w.Eject(errors.New("connection refused"))
	if got := waitEvent(t, events); got.up {
		t.Fatal("Eject: got up transition, want down")
	}
	// The next successful check brings an ejected member back although
	// rise is 2 (it may be the one in flight when Eject ran).
	if got := waitEvent(t, events); !got.up {
		t.Fatal("after eject got down transition, want up")
	}
	if got := b.count() - before; got > 1 {
		t.Errorf("ejected member came back after %d checks, want 1 at most", got)
	}
}

func TestNoPathNoChecks(t *testing.T) {
	c := New(Options{})
	defer c.Close()
	w := c.Watch(Target{Pool: "p", Address: "127.0.0.1:1"}, nil)
	w.Eject(errors.New("x"))
	if !w.Up() {
		t.Error("member without active checks went down")
	}
	w.Stop()
}

func TestCloseStopsGoroutines(t *testing.T) {
	b := newBackend(t)
	c := New(Options{})
	for range 5 {
		c.Watch(Target{Pool: "p", Address: b.addr(), Check: fastCheck(1, 1)}, nil)
	}
	w := c.Watch(Target{Pool: "p", Address: b.addr(), Check: fastCheck(1, 1)}, nil)
	w.Stop()
	w.Stop() // idempotent
	c.Close()
	c.Close()
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "health.(*Watch).run") {
		t.Errorf("check goroutines still running after Close:\n%s", stacks)
	}
}

// TestCheckHost: the check's Host header is the configured host, or the
// member's address by default.
func TestCheckHost(t *testing.T) {
	for _, tt := range []struct {
		name, host string
		want       func(addr string) string
	}{
		{"default", "", func(addr string) string { return addr }},
		{"configured", "status.app.test", func(string) string { return "status.app.test" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hosts := make(chan string, 16)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				select {
				case hosts <- r.Host:
				default:
				}
			}))
			defer srv.Close()
			c := New(Options{})
			defer c.Close()
			hc := fastCheck(1, 1)
			hc.Host = tt.host
			addr := strings.TrimPrefix(srv.URL, "http://")
			c.Watch(Target{Pool: "p", Address: addr, Check: hc}, nil)
			select {
			case got := <-hosts:
				if want := tt.want(addr); got != want {
					t.Errorf("Host header %q, want %q", got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no check within 5s")
			}
		})
	}
}
