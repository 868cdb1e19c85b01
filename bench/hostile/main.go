// Command hostile is a repeatable probe of Gatehouse against hostile
// clients (bench/hostile/run.sh, bench/README.md "Hostile clients"). It
// starts a node (the gatehouse binary named by -gatehouse) with a
// recording member on loopback, two tenants (app.uni-a.test and
// app.uni-b.test, one pool and one status component each), and runs one
// attack after the other, each for -d seconds at -rate attack connections
// a second, while a normal client sends GETs to tenant A. Per attack it
// prints the normal requests' success rate (goal 100%), the member
// ejections (goal 0) and the status components' state changes (goal 0).
//
// Attacks:
//
//	reset-upload   POST announcing 100,000 bytes, 100 sent, then RST (SO_LINGER 0)
//	bad-chunked    Transfer-Encoding: chunked with the body "zz\r\n"
//	slow-body      headers and 10 of 1,000 body bytes, then silence
//	unread-200MB   GET of a 200 MB response that is never read
//	cross-tenant   SNI app.uni-a.test, Host app.uni-b.test (HTTP/1.1, absolute URI, HTTP/2)
//	cl-te          Content-Length and Transfer-Encoding: chunked together
//
// Everything runs on 127.0.0.1; the count of attack connections and the
// time are bounded by -d and -rate.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/demo"
)

const token = "hostile-probe-admin-token-0123456789"

var (
	gatehouse = flag.String("gatehouse", "gatehouse", "gatehouse binary to start")
	work      = flag.String("work", "/tmp/hostile", "work directory (wiped)")
	dur       = flag.Duration("d", 10*time.Second, "duration of each attack")
	rate      = flag.Int("rate", 10, "attack connections a second")
	normalRPS = flag.Int("normal", 20, "normal GETs a second during each attack")
	timeouts  = flag.Bool("timeouts", true, "write body_read_timeout and write_idle_timeout (2s) to the config; off for builds without them")
	only      = flag.String("only", "", "run only this attack")
)

// member is the recording backend: it counts every byte it reads and its
// open connections.
type member struct {
	bytes, open, conns atomic.Int64
}

func (m *member) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/health":
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			fmt.Fprintf(w, "%d", n)
		}
	case "/big":
		w.Header().Set("Content-Length", "200000000")
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < 200_000_000; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	default:
		io.WriteString(w, "ok")
	}
}

type countingListener struct {
	net.Listener
	m *member
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.m.open.Add(1)
	l.m.conns.Add(1)
	return &countingConn{Conn: c, m: l.m}, nil
}

type countingConn struct {
	net.Conn
	m    *member
	once sync.Once
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.bytes.Add(int64(n))
	return n, err
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.m.open.Add(-1) })
	return c.Conn.Close()
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// node is the gatehouse process under test.
type node struct {
	cmd                  *exec.Cmd
	https, status, admin string
	logPath              string
	client               *admin.Client
}

func startNode(memberAddr string) (*node, error) {
	n := &node{https: freeAddr(), status: freeAddr(), admin: freeAddr()}
	dir := filepath.Join(*work, "node")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	lim := ""
	if *timeouts {
		lim = ", body_read_timeout: 2s, write_idle_timeout: 2s"
	}
	doc := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: %q, max_connections: 2000%s}
  status: {address: %q}
  admin: {address: %q}
admin: {token: %q}
pools:
  - name: tenant-a
    members: [{address: %q}]
    health_check: {path: /health, interval: 1s, fall: 3, rise: 2}
  - name: tenant-b
    members: [{address: %q}]
    health_check: {path: /health, interval: 1s, fall: 3, rise: 2}
routes:
  - {host: app.uni-a.test, pool: tenant-a}
  - {host: app.uni-b.test, pool: tenant-b}
status:
  hysteresis: 1s
  error_rate: {window: 10s, min_requests: 5}
log: {level: info}
`, dir, n.https, lim, n.status, n.admin, token, memberAddr, memberAddr)
	cfg := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		return nil, err
	}
	n.logPath = filepath.Join(dir, "log.txt")
	lf, err := os.Create(n.logPath)
	if err != nil {
		return nil, err
	}
	n.cmd = exec.Command(*gatehouse, "serve", "-c", cfg)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		ca, err := os.ReadFile(filepath.Join(dir, "admin.crt"))
		if err == nil {
			if n.client, err = admin.NewClient("https://"+n.admin, token, ca); err == nil {
				if _, err = n.client.Pools(context.Background()); err == nil {
					break
				}
			}
		}
		if i > 300 {
			return n, fmt.Errorf("node not up after 30s (see %s): %v", n.logPath, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return n, nil
}

func (n *node) stop() {
	n.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

// ejections counts member ejections and active-check downs in the log.
func (n *node) ejections() int {
	b, _ := os.ReadFile(n.logPath)
	return bytes.Count(b, []byte(`msg="member ejected"`)) + bytes.Count(b, []byte(`msg="member down"`))
}

// components returns the status portal's state of each component.
func (n *node) components() (map[string]string, error) {
	res, err := http.Get("http://" + n.status + "/api/v2/components.json")
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var doc struct {
		Components []struct{ Name, Status string }
	}
	if err := json.NewDecoder(res.Body).Decode(&doc); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range doc.Components {
		out[c.Name] = c.Status
	}
	return out, nil
}

// dialTLS opens a TLS connection to the node with SNI sni.
func (n *node) dialTLS(sni string, protos ...string) (*tls.Conn, error) {
	if protos == nil {
		protos = []string{"http/1.1"}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", n.https, &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: protos})
}

// h2Client sends every request to the node over HTTP/2.
func (n *node) h2Client() *http.Client {
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, n.https)
		},
		MaxIdleConnsPerHost: 4,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// outcome tallies the attack's own answers.
type outcome struct {
	mu     sync.Mutex
	counts map[string]int
}

func (o *outcome) add(s string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.counts == nil {
		o.counts = map[string]int{}
	}
	o.counts[s]++
}

func (o *outcome) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	keys := make([]string, 0, len(o.counts))
	for k := range o.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s×%d", k, o.counts[k])
	}
	return b.String()
}

// answer reads one response from br and names it by status, with "+close"
// when the connection closed after it.
func answer(conn net.Conn, br *bufio.Reader) string {
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return "closed"
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "no-answer-30s"
		}
		return "error"
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	s := fmt.Sprint(res.StatusCode)
	if _, err := br.ReadByte(); errors.Is(err, io.EOF) {
		s += "+close"
	}
	return s
}

func rst(conn *tls.Conn) {
	tcp := conn.NetConn().(*net.TCPConn)
	tcp.SetLinger(0)
	tcp.Close()
}

type attack struct {
	name string
	// once runs one attack connection; it may block until its stall is
	// resolved (bounded by the node's timeouts and a 30s read deadline).
	once func(n *node, o *outcome)
}

var attacks = []attack{
	{"reset-upload", func(n *node, o *outcome) {
		c, err := n.dialTLS("app.uni-a.test")
		if err != nil {
			o.add("dial-error")
			return
		}
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("x", 100))
		time.Sleep(20 * time.Millisecond)
		rst(c)
		o.add("reset")
	}},
	{"bad-chunked", func(n *node, o *outcome) {
		c, err := n.dialTLS("app.uni-a.test")
		if err != nil {
			o.add("dial-error")
			return
		}
		defer c.Close()
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
		o.add(answer(c, bufio.NewReader(c)))
	}},
	{"slow-body", func(n *node, o *outcome) {
		c, err := n.dialTLS("app.uni-a.test")
		if err != nil {
			o.add("dial-error")
			return
		}
		defer c.Close()
		start := time.Now()
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nContent-Length: 1000\r\n\r\n0123456789")
		a := answer(c, bufio.NewReader(c))
		o.add(fmt.Sprintf("%s-after-%ds", a, int(time.Since(start).Seconds()+0.5)))
	}},
	{"unread-200MB", func(n *node, o *outcome) {
		c, err := n.dialTLS("app.uni-a.test")
		if err != nil {
			o.add("dial-error")
			return
		}
		defer c.Close()
		io.WriteString(c, "GET /big HTTP/1.1\r\nHost: app.uni-a.test\r\n\r\n")
		// Read nothing for 5 s, then drain what the kernel buffers hold:
		// a node that gave up on us has cut the response short; one that
		// still holds the member connection streams all 200 MB.
		time.Sleep(5 * time.Second)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.Copy(io.Discard, c)
		var ne net.Error
		switch {
		case got >= 200_000_000:
			o.add("streamed-all")
		case errors.As(err, &ne) && ne.Timeout():
			o.add("still-streaming-at-35s")
		default:
			o.add("cut")
		}
	}},
	{"cross-tenant", func(n *node, o *outcome) {
		for _, line := range []string{"GET / HTTP/1.1\r\nHost: app.uni-b.test", "GET https://app.uni-b.test/ HTTP/1.1\r\nHost: app.uni-a.test"} {
			c, err := n.dialTLS("app.uni-a.test")
			if err != nil {
				o.add("dial-error")
				return
			}
			fmt.Fprintf(c, "%s\r\nConnection: close\r\n\r\n", line)
			o.add("h1:" + strings.TrimSuffix(answer(c, bufio.NewReader(c)), "+close"))
			c.Close()
		}
		req, _ := http.NewRequest(http.MethodGet, "https://app.uni-a.test/", nil)
		req.Host = "app.uni-b.test"
		res, err := h2.Do(req)
		if err != nil {
			o.add("h2:error")
			return
		}
		res.Body.Close()
		o.add(fmt.Sprintf("h2:%d", res.StatusCode))
	}},
	{"cl-te", func(n *node, o *outcome) {
		c, err := n.dialTLS("app.uni-a.test")
		if err != nil {
			o.add("dial-error")
			return
		}
		defer c.Close()
		io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: app.uni-a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nsmuggle\r\n0\r\n\r\n")
		o.add(answer(c, bufio.NewReader(c)))
	}},
}

var h2 *http.Client

func main() {
	flag.Parse()
	log.SetFlags(0)
	os.RemoveAll(*work)
	if err := os.MkdirAll(*work, 0o700); err != nil {
		log.Fatal(err)
	}
	m := &member{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	msrv := &http.Server{Handler: http.HandlerFunc(m.serve), ReadHeaderTimeout: 10 * time.Second}
	go msrv.Serve(countingListener{Listener: ln, m: m})
	defer msrv.Close()

	n, err := startNode(ln.Addr().String())
	if n != nil {
		defer n.stop()
	}
	if err != nil {
		log.Fatal(err)
	}
	ca, err := demo.LoadOrCreateCA(filepath.Join(*work, "ca"))
	if err != nil {
		log.Fatal(err)
	}
	for _, name := range []string{"app.uni-a.test", "app.uni-b.test"} {
		certPEM, keyPEM, err := ca.Issue(name)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := n.client.AddCert(context.Background(), certPEM, keyPEM); err != nil {
			log.Fatal(err)
		}
	}
	h2 = n.h2Client()
	normal := n.h2Client()
	// Let the checks mark everything up and the portal settle.
	time.Sleep(3 * time.Second)

	fmt.Printf("gatehouse %s, %d attack connections/s for %s per attack, %d normal GETs/s (HTTP/2, tenant A)\n\n",
		*gatehouse, *rate, *dur, *normalRPS)
	fmt.Printf("%-13s %8s %16s %10s %14s %12s  %s\n", "attack", "attacks", "normal ok", "ejections", "state changes", "member conns", "attack answers")
	for _, a := range attacks {
		if *only != "" && a.name != *only {
			continue
		}
		run(n, m, normal, a)
	}
	fmt.Printf("\nmember: %d connections accepted, %d bytes received; node log: %s\n", m.conns.Load(), m.bytes.Load(), n.logPath)
}

// run runs one attack for -d with normal traffic beside it, then lets
// stalled attack connections resolve (bounded).
func run(n *node, m *member, normal *http.Client, a attack) {
	ej0 := n.ejections()
	comp0, err := n.components()
	if err != nil {
		log.Fatalf("status portal: %v", err)
	}
	var changes atomic.Int64
	stop := make(chan struct{})
	var bg sync.WaitGroup
	bg.Go(func() { // watch the status components
		prev := comp0
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			cur, err := n.components()
			if err != nil {
				continue
			}
			for k, v := range cur {
				if prev[k] != v {
					changes.Add(1)
				}
			}
			prev = cur
		}
	})
	var ok, total atomic.Int64
	bg.Go(func() { // normal traffic
		t := time.NewTicker(time.Second / time.Duration(*normalRPS))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			total.Add(1)
			res, err := normal.Get("https://app.uni-a.test/")
			if err != nil {
				continue
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == 200 && string(body) == "ok" {
				ok.Add(1)
			}
		}
	})
	o := &outcome{}
	var attackers sync.WaitGroup
	count := 0
	deadline := time.Now().Add(*dur)
	t := time.NewTicker(time.Second / time.Duration(*rate))
	for time.Now().Before(deadline) {
		<-t.C
		count++
		attackers.Go(func() { a.once(n, o) })
	}
	t.Stop()
	attackers.Wait()
	open := m.open.Load() // member connections still open once the attack is over
	close(stop)
	bg.Wait()
	pct := 100.0
	if total.Load() > 0 {
		pct = 100 * float64(ok.Load()) / float64(total.Load())
	}
	fmt.Printf("%-13s %8d %6.1f%% %4d/%-4d %10d %14d %12d  %s\n", a.name, count, pct, ok.Load(), total.Load(),
		n.ejections()-ej0, changes.Load(), open, o)
}
