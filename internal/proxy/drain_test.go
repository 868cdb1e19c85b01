package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// h1Client is an HTTP/1.1 keep-alive client of the front (its default
// client speaks HTTP/2).
func (f *front) h1Client() *http.Client {
	tr := f.c.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.MaxIdleConnsPerHost = 16
	return &http.Client{Transport: tr}
}

func memberStatus(px *Proxy, pool, addr string) MemberStatus {
	for _, p := range px.Pools() {
		if p.Name == pool {
			for _, m := range p.Members {
				if m.Address == addr {
					return m
				}
			}
		}
	}
	return MemberStatus{}
}

// TestDrainUnderLoad drains a member while HTTP/1.1 keep-alive and
// HTTP/2 clients send GETs (direct path) and POSTs (ReverseProxy path)
// and long requests are in flight on it: nothing fails, the member gets
// no new request once SetDrained returns, its requests in flight finish,
// and its upstream connections close.
func TestDrainUnderLoad(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	pc := poolConfig("p", config.RoundRobin, a.addr(), b.addr())
	pc.Members[0].Zone, pc.Members[1].Zone = "dc1", "dc2"
	pc.Failover.SlowStart = config.Duration(time.Millisecond)
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: "app.test", PathPrefix: "/", Pool: "p"}}}, Options{})

	// Long requests in flight on a (and b), over HTTP/2 and HTTP/1.1.
	h1 := f.h1Client()
	var longWG sync.WaitGroup
	var longFailed atomic.Int32
	long := func(c *http.Client, method string) {
		defer longWG.Done()
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader("payload")
		}
		req, _ := http.NewRequest(method, f.srv.URL+"/hold", body)
		req.Host = "app.test"
		res, err := c.Do(req)
		if err != nil {
			longFailed.Add(1)
			t.Errorf("long %s: %v", method, err)
			return
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			longFailed.Add(1)
			t.Errorf("long %s: status %d", method, res.StatusCode)
		}
	}
	for _, c := range []*http.Client{f.c, h1} {
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			longWG.Add(2)
			go long(c, m)
			go long(c, m)
		}
	}
	waitFor(t, "long requests held", func() bool { return a.held.Load()+b.held.Load() == 8 })
	heldOnA := a.held.Load()
	if heldOnA == 0 {
		t.Fatal("no long request on a")
	}

	// Load from four clients.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	for i, c := range []*http.Client{f.c, h1, f.c, h1} {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				var body io.Reader
				method := http.MethodGet
				if (n+i)%2 == 1 {
					method, body = http.MethodPost, strings.NewReader("x")
				}
				req, _ := http.NewRequest(method, f.srv.URL+"/", body)
				req.Host = "app.test"
				res, err := c.Do(req)
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
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	waitFor(t, "load on both members", func() bool { return len(a.requests()) > 50 && len(b.requests()) > 50 })
	if memberStatus(f.px, "p", a.addr()).OpenConns == 0 {
		t.Error("a has no open upstream connection before the drain")
	}

	f.px.SetDrained(map[string]map[string]Drain{"p": {a.addr(): {}}})
	// Requests that picked a before the drain are in flight on it: wait
	// for them (all but the long ones) to arrive and finish.
	waitFor(t, "requests picked before the drain", func() bool {
		return memberStatus(f.px, "p", a.addr()).InFlight == heldOnA
	})
	seenAtDrain := len(a.requests())
	sentAtDrain := sent.Load()
	waitFor(t, "load after the drain", func() bool { return sent.Load() > sentAtDrain+400 })

	if got := len(a.requests()); got != seenAtDrain {
		t.Errorf("a got %d new requests after the drain returned", got-seenAtDrain)
	}
	if st := memberStatus(f.px, "p", a.addr()); !st.Drained || st.InFlight != heldOnA {
		t.Errorf("a during the drain: %+v, want drained with %d in flight", st, heldOnA)
	}
	// The long requests finish.
	a.unhold()
	b.unhold()
	longWG.Wait()
	waitFor(t, "a's upstream connections closed", func() bool {
		st := memberStatus(f.px, "p", a.addr())
		return st.InFlight == 0 && st.OpenConns == 0
	})
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 || longFailed.Load() != 0 {
		t.Errorf("%d of %d requests failed (first: %v), %d long ones", n, sent.Load(), firstErr.Load(), longFailed.Load())
	}
	if got := len(a.requests()); got != seenAtDrain {
		t.Errorf("a got %d new requests after the drain", got-seenAtDrain)
	}

	// Undrain: a takes traffic again.
	f.px.SetDrained(nil)
	waitFor(t, "a takes traffic again", func() bool {
		f.get(t, "app.test", "/")
		return len(a.requests()) > seenAtDrain
	})
}

// TestDrainUpgradeGrace: a WebSocket-like upgraded connection to a
// drained member goes on during its grace and is closed after it.
func TestDrainUpgradeGrace(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			io.WriteString(w, "plain")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(conn, brw)
	})}
	go echo.Serve(ln)
	t.Cleanup(func() { echo.Close() })
	other := newBackend(t, "other")
	pc := poolConfig("p", config.RoundRobin, ln.Addr().String(), other.addr())
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: "ws.test", PathPrefix: "/", Pool: "p"}}}, Options{})

	// Open the upgrade through the front until it lands on the echo member.
	var conn *tls.Conn
	var br *bufio.Reader
	for range 4 {
		c, err := tls.Dial("tcp", f.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: ws.test\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		r := bufio.NewReader(c)
		res, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			conn, br = c, r
			break
		}
		c.Close()
	}
	if conn == nil {
		t.Fatal("no upgrade reached the echo member")
	}
	defer conn.Close()
	roundTrip := func() error {
		if _, err := io.WriteString(conn, "ping\n"); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := br.ReadString('\n')
		if err == nil && line != "ping\n" {
			err = fmt.Errorf("echo %q", line)
		}
		return err
	}
	if err := roundTrip(); err != nil {
		t.Fatalf("before the drain: %v", err)
	}
	const grace = 300 * time.Millisecond
	start := time.Now()
	f.px.SetDrained(map[string]map[string]Drain{"p": {ln.Addr().String(): {UpgradeGrace: grace}}})
	if err := roundTrip(); err != nil && time.Since(start) < grace {
		t.Fatalf("during the grace: %v", err)
	}
	// After the grace the member's upgraded connection is closed, and so
	// is the client's.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.Copy(io.Discard, br)
	if err != nil {
		t.Fatalf("the upgraded connection was not closed after the grace: %v", err)
	}
	if el := time.Since(start); el < grace {
		t.Errorf("closed after %s, before the grace of %s", el, grace)
	}
	waitFor(t, "no connection to the drained member", func() bool {
		return memberStatus(f.px, "p", ln.Addr().String()).OpenConns == 0
	})
}

// TestUndrainSlowStart: an undrained member takes a small share of new
// requests at first and its full share once slow start is over.
func TestUndrainSlowStart(t *testing.T) {
	a, b := newBackend(t, "a"), newBackend(t, "b")
	pc := poolConfig("p", config.RoundRobin, a.addr(), b.addr())
	const slow = 400 * time.Millisecond
	pc.Failover.SlowStart = config.Duration(slow)
	clock := newFakeClock()
	f := newFront(t, &config.Config{Pools: []config.Pool{pc}, Routes: []config.Route{{Host: "app.test", PathPrefix: "/", Pool: "p"}}}, Options{Now: clock.Now})
	f.px.SetDrained(map[string]map[string]Drain{"p": {a.addr(): {}}})
	if got := count(t, f, "app.test", "/", 20); got["a"] != 0 {
		t.Fatalf("drained a got %d requests", got["a"])
	}
	f.px.SetDrained(nil)
	early := count(t, f, "app.test", "/", 100)
	if early["a"] > 35 {
		// Without slow start a would get 50 of 100; at its start about 5.
		t.Errorf("at the start of slow start a got %d of 100", early["a"])
	}
	clock.Advance(slow / 2)
	mid := count(t, f, "app.test", "/", 100)
	t.Logf("a's share of 100 requests: %d at the start of slow start, %d halfway", early["a"], mid["a"])
	if mid["a"] <= early["a"] || mid["a"] >= 50 {
		t.Errorf("halfway through slow start a got %d of 100 (at the start %d)", mid["a"], early["a"])
	}
	clock.Advance(slow/2 + time.Millisecond)
	if late := count(t, f, "app.test", "/", 100); late["a"] != 50 {
		t.Errorf("after slow start a got %d of 100, want 50", late["a"])
	}
}
