// Command fleet measures a Gatehouse fleet on one machine: a three-member
// etcd cluster (embedded in this process) and three gatehouse processes
// sharing it, with N certificates installed. It reports the propagation
// latency of certificate additions (p50/p99), the start-to-serving time of
// a fresh node, and the full-handshake rate of one node on etcd against a
// node on the embedded bolt store holding the same N. See run.sh and
// bench/README.md ("Fleet").
package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"gatehouse/internal/admin"
	"gatehouse/internal/certs"
	"gatehouse/internal/demo"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"

	"gatehouse/bench/internal/proc"
)

type config struct {
	work, gatehouse      string
	n, adds, conc        int
	hsDur, warmDur       time.Duration
	serverCPU, importers int
	loadCPU              int
	skipBolt             bool
	fromBolt             string
	reuse                bool
	repeat               int
	logLevel             string // of the nodes (default warn)
	routedAddr           string // member of the "routed" pool (routes.go); "": no such pool
	preRoutes            int    // dynamic routes stored before the nodes start (routes.go)
}

func main() {
	log.SetFlags(log.Ltime)
	log.SetPrefix("fleet: ")
	var c config
	flag.StringVar(&c.work, "work", "/tmp/fleet", "work directory")
	flag.StringVar(&c.gatehouse, "gatehouse", "", "gatehouse binary")
	flag.IntVar(&c.n, "n", 100000, "installed certificates")
	flag.IntVar(&c.adds, "adds", 200, "certificate additions timed for propagation")
	flag.IntVar(&c.preRoutes, "routes", 0, "dynamic routes stored before the nodes start (route propagation then rebuilds that many)")
	flag.IntVar(&c.conc, "c", 16, "handshake load concurrency")
	flag.DurationVar(&c.hsDur, "d", 10*time.Second, "duration of each measured handshake load")
	flag.DurationVar(&c.warmDur, "warm", 10*time.Second, "handshake load before each measured one (fills the decoded cache)")
	flag.IntVar(&c.serverCPU, "server-cpu", 0, "CPU the measured node is pinned to (taskset); -1: no pinning")
	flag.IntVar(&c.loadCPU, "load-cpu", 1, "CPU this process (etcd and the load) is pinned to after the import; -1: no pinning")
	flag.IntVar(&c.importers, "importers", 4, "parallel importers")
	flag.BoolVar(&c.skipBolt, "skip-bolt", false, "skip the bolt comparison")
	flag.StringVar(&c.fromBolt, "from-bolt", "", "start-up mode: fill etcd from the bolt data dir DIR (its kek file included) instead of issuing -n certificates, then time a cold and a warm node start")
	flag.IntVar(&c.repeat, "repeat", 2, "with -from-bolt: cold and warm starts to time, each with a fresh node")
	flag.BoolVar(&c.reuse, "reuse", false, "with -from-bolt: keep an etcd already filled in -work by an earlier run")
	flag.Parse()
	if c.gatehouse == "" {
		log.Fatal("-gatehouse is required")
	}
	runFn := run
	if c.fromBolt != "" {
		runFn = runStartup
	}
	if err := runFn(&c); err != nil {
		log.Fatal(err)
	}
}

type member struct {
	name         string
	client, peer url.URL
	e            *embed.Etcd
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startEtcd starts three members with their data in dir.
func startEtcd(dir string) ([]*member, error) {
	var ms []*member
	var initial []string
	// The members keep each other's peer addresses in their data: a
	// cluster restarted from dir must listen where it did before.
	addrsFile := filepath.Join(dir, "addrs")
	addrs := strings.Fields(readFileString(addrsFile))
	if len(addrs) != 6 {
		addrs = nil
		for range 6 {
			addrs = append(addrs, freePort())
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(addrsFile, []byte(strings.Join(addrs, "\n")), 0o600); err != nil {
			return nil, err
		}
	}
	for i := range 3 {
		m := &member{name: fmt.Sprintf("m%d", i), client: url.URL{Scheme: "http", Host: addrs[2*i]}, peer: url.URL{Scheme: "http", Host: addrs[2*i+1]}}
		initial = append(initial, m.name+"="+m.peer.String())
		ms = append(ms, m)
	}
	for _, m := range ms {
		cfg := embed.NewConfig()
		cfg.Name = m.name
		cfg.Dir = filepath.Join(dir, m.name)
		cfg.ListenClientUrls = []url.URL{m.client}
		cfg.AdvertiseClientUrls = []url.URL{m.client}
		cfg.ListenPeerUrls = []url.URL{m.peer}
		cfg.AdvertisePeerUrls = []url.URL{m.peer}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "gatehouse-bench"
		cfg.QuotaBackendBytes = 8 << 30
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.LogLevel = "error"
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			return nil, fmt.Errorf("etcd member %s: %w", m.name, err)
		}
		m.e = e
	}
	for _, m := range ms {
		select {
		case <-m.e.Server.ReadyNotify():
		case <-time.After(10 * time.Minute): // a member of a million keys replays its log first
			return nil, fmt.Errorf("etcd member %s not ready", m.name)
		}
	}
	return ms, nil
}

// cluster is the three embedded etcd members and a store client on them.
type cluster struct {
	members []*member
	store   *etcd.Store
}

// openCluster starts the three members with their data in dir and opens a
// store on them (prefix /gatehouse) whose calls time out after
// requestTimeout. Close stops both.
func openCluster(ctx context.Context, dir string, requestTimeout time.Duration) (*cluster, error) {
	ms, err := startEtcd(dir)
	if err != nil {
		return nil, err
	}
	cl := &cluster{members: ms}
	cl.store, err = etcd.Open(ctx, etcd.Options{Endpoints: cl.endpoints(), Prefix: "/gatehouse", RequestTimeout: requestTimeout})
	if err != nil {
		cl.Close()
		return nil, err
	}
	return cl, nil
}

// Close closes the store client, then the members.
func (cl *cluster) Close() {
	if cl.store != nil {
		cl.store.Close()
	}
	for _, m := range cl.members {
		m.e.Close()
	}
}

func (cl *cluster) endpoints() []string {
	var out []string
	for _, m := range cl.members {
		out = append(out, m.client.String())
	}
	return out
}

// storeYAML is the store section of a node's config that points it at the
// cluster.
func (cl *cluster) storeYAML() string {
	var quoted []string
	for _, ep := range cl.endpoints() {
		quoted = append(quoted, strconv.Quote(ep))
	}
	return fmt.Sprintf("store:\n  etcd:\n    endpoints: [%s]\n    prefix: /gatehouse", strings.Join(quoted, ", "))
}

// newReport returns the results of a run and the function that adds a
// line to them (and logs it).
func newReport() (*strings.Builder, func(format string, args ...any)) {
	out := &strings.Builder{}
	return out, func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		log.Print(line)
		fmt.Fprintln(out, line)
	}
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func host(i int) string { return fmt.Sprintf("h%07d.fleet.bench", i) }

// importAll installs n certificates from ca into st with parallel managers.
func importAll(ctx context.Context, st store.Store, kek *certs.KEK, ca *demo.CA, n, workers int) (time.Duration, error) {
	start := time.Now()
	var next atomic.Int64
	var firstErr atomic.Value
	var done atomic.Int64
	var wg sync.WaitGroup
	const batch = 500
	for range workers {
		wg.Go(func() {
			m := certs.NewManager(st, kek, certs.Options{})
			for {
				lo := int(next.Add(batch)) - batch
				if lo >= n || firstErr.Load() != nil {
					return
				}
				hi := min(lo+batch, n)
				items := make([]certs.Item, 0, hi-lo)
				for i := lo; i < hi; i++ {
					c, k, err := ca.Issue(host(i))
					if err != nil {
						firstErr.Store(err)
						return
					}
					items = append(items, certs.Item{Source: host(i), CertPEM: c, KeyPEM: k})
				}
				for _, r := range m.AddBatch(ctx, items) {
					if r.Err != nil {
						firstErr.Store(fmt.Errorf("%s: %w", r.Source, r.Err))
						return
					}
				}
				if d := done.Add(int64(hi - lo)); d%20000 < batch {
					log.Printf("import: %d/%d (%.0f/s)", d, n, float64(d)/time.Since(start).Seconds())
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// node is a gatehouse process.
type node struct {
	name    string
	dir     string
	https   string
	admin   string
	cmd     *exec.Cmd
	started time.Time
	client  *admin.Client
	logf    *os.File
}

const token = "fleet-bench-token"

func startNode(c *config, name, storeYAML, backend string, pin bool) (*node, error) {
	n := &node{name: name, dir: filepath.Join(c.work, name), https: freePort(), admin: freePort()}
	if err := os.MkdirAll(n.dir, 0o700); err != nil {
		return nil, err
	}
	doc := fmt.Sprintf(`data_dir: %s
listeners:
  https: {address: %q, per_client: {allow: ["127.0.0.0/8"]}}
  admin: {address: %q}
admin: {token: %q}
tls:
  kek_file: %s
  unknown_sni: reject
%s
pools:
  - name: origin
    members: [{address: %q}]
%sroutes:
  - {host: "*", pool: origin}
log: {level: %s}
`, n.dir, n.https, n.admin, token, filepath.Join(c.work, "kek"), storeYAML, backend, routedPoolYAML(c), cmp.Or(c.logLevel, "warn"))
	cfgPath := filepath.Join(n.dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgPath, []byte(doc), 0o600); err != nil {
		return nil, err
	}
	args := []string{c.gatehouse, "serve", "-c", cfgPath}
	if pin && c.serverCPU >= 0 {
		args = append([]string{"taskset", "-c", strconv.Itoa(c.serverCPU)}, args...)
	}
	lf, err := os.Create(filepath.Join(n.dir, "log.txt"))
	if err != nil {
		return nil, err
	}
	n.logf = lf
	n.cmd = exec.Command(args[0], args[1:]...)
	n.cmd.Stdout, n.cmd.Stderr = lf, lf
	n.started = time.Now()
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	return n, nil
}

// waitServing polls until the node completes a handshake for sni, and
// returns the time since the process started.
func (n *node) waitServing(sni string, within time.Duration) (time.Duration, error) {
	for time.Since(n.started) < within {
		if handshake(n.https, sni) == nil {
			return time.Since(n.started), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("%s: not serving %s after %v (see %s/log.txt)", n.name, sni, within, n.dir)
}

func (n *node) connect() error {
	ca, err := os.ReadFile(filepath.Join(n.dir, "admin.crt"))
	if err != nil {
		return err
	}
	n.client, err = admin.NewClient("https://"+n.admin, token, ca)
	return err
}

func (n *node) stop() {
	if n.cmd.Process != nil {
		n.cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { n.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			n.cmd.Process.Kill()
			<-done
		}
	}
	n.logf.Close()
}

// serverPID is the gatehouse process (taskset execs it, keeping the pid).
func (n *node) pid() int { return n.cmd.Process.Pid }

func handshake(addr, sni string) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	return conn.Close()
}

// servedSerial returns the serial of the leaf served for sni.
func servedSerial(addr, sni string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", addr, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Text(16), nil
}

type hsResult struct {
	rate, cpuPer1000 float64
	errors           int64
}

// load runs full handshakes with random SNI among n names against addr.
func load(addr string, n, conc int, d time.Duration, pid int) hsResult {
	var ok, bad atomic.Int64
	stop := time.Now().Add(d)
	cpu0 := proc.CPUSeconds(pid)
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if handshake(addr, host(rand.IntN(n))) == nil {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	cpu := proc.CPUSeconds(pid) - cpu0
	r := hsResult{rate: float64(ok.Load()) / el, errors: bad.Load()}
	if ok.Load() > 0 {
		r.cpuPer1000 = cpu / float64(ok.Load()) * 1000
	}
	return r
}

func pct(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func run(c *config) error {
	ctx := context.Background()
	if err := os.MkdirAll(c.work, 0o700); err != nil {
		return err
	}
	out, report := newReport()
	ca, err := demo.LoadOrCreateCA(filepath.Join(c.work, "ca"))
	if err != nil {
		return err
	}
	kek, err := certs.LoadOrCreateKEK(filepath.Join(c.work, "kek"))
	if err != nil {
		return err
	}
	backend := httptestServer()
	defer backend.Close()
	routed := routedServer()
	defer routed.Close()
	c.routedAddr = routed.addr

	cl, err := openCluster(ctx, filepath.Join(c.work, "etcd"), 30*time.Second)
	if err != nil {
		return err
	}
	defer cl.Close()
	st := cl.store
	report("N = %d certificates (ECDSA P-256, one name each), etcd: 3 embedded members, gatehouse %s", c.n, c.gatehouse)
	took, err := importAll(ctx, st, kek, ca, c.n, c.importers)
	if err != nil {
		return fmt.Errorf("import into etcd: %w", err)
	}
	u, _ := st.Usage(ctx)
	report("import into etcd: %d in %s (%.0f/s), etcd db %.1f MiB (%.0f bytes per certificate, history included)",
		c.n, took.Round(time.Millisecond), float64(c.n)/took.Seconds(), float64(u.Bytes)/(1<<20), float64(u.Bytes)/float64(c.n))

	if err := preloadRoutes(ctx, st, c.preRoutes, report); err != nil {
		return err
	}
	if c.loadCPU >= 0 {
		// Every thread of this process: etcd and the load client.
		if out, err := exec.Command("taskset", "-a", "-p", "-c", strconv.Itoa(c.loadCPU), strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("pinning to CPU %d: %v: %s", c.loadCPU, err, out)
		}
	}
	etcdYAML := cl.storeYAML()
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for i := range 3 {
		n, err := startNode(c, fmt.Sprintf("node%d", i+1), etcdYAML, backend.addr, i == 0)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		d, err := n.waitServing(host(0), 5*time.Minute)
		if err != nil {
			return err
		}
		report("node%d start to first handshake: %s", i+1, d.Round(time.Millisecond))
		if err := n.connect(); err != nil {
			return err
		}
	}

	// Propagation: add through each node in turn; time until every node
	// serves the new certificate.
	var all, others []time.Duration
	for i := range c.adds {
		via := nodes[i%3]
		name := fmt.Sprintf("add%05d.fleet.bench", i)
		certPEM, keyPEM, err := ca.Issue(name)
		if err != nil {
			return err
		}
		t0 := time.Now()
		res, err := via.client.AddCert(ctx, certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("adding %s via %s: %w", name, via.name, err)
		}
		lat := untilEach(len(nodes), t0, func(j int) bool {
			s, err := servedSerial(nodes[j].https, name)
			return err == nil && s == res.Cert.Serial
		})
		all = append(all, slices.Max(lat))
		for j := range nodes {
			if j != i%3 {
				others = append(others, lat[j])
			}
		}
	}
	report("propagation of %d additions (admin call start to served): all three nodes p50 %s p99 %s max %s; other nodes p50 %s p99 %s",
		c.adds, pct(all, .5).Round(100*time.Microsecond), pct(all, .99).Round(100*time.Microsecond), slices.Max(all).Round(100*time.Microsecond),
		pct(others, .5).Round(100*time.Microsecond), pct(others, .99).Round(100*time.Microsecond))
	if err := routePropagation(ctx, c, nodes, report); err != nil {
		return err
	}

	fresh, err := startNode(c, "node4-fresh", etcdYAML, backend.addr, false)
	if err != nil {
		return err
	}
	nodes = append(nodes, fresh)
	d, err := fresh.waitServing(host(c.n-1), 5*time.Minute)
	if err != nil {
		return err
	}
	report("fresh node (empty data dir) start to first handshake: %s", d.Round(time.Millisecond))
	fresh.stop()
	nodes = nodes[:3]

	n1 := nodes[0]
	load(n1.https, c.n, c.conc, c.warmDur, n1.pid())
	r := load(n1.https, c.n, c.conc, c.hsDur, n1.pid())
	report("handshakes, node1 on etcd: %.0f/s, %.3f server CPU s per 1000, %d errors (c=%d, %s, random SNI among N, after %s warm-up)", r.rate, r.cpuPer1000, r.errors, c.conc, c.hsDur, c.warmDur)

	if !c.skipBolt {
		for _, n := range nodes[1:] {
			n.stop()
		}
		nodes = nodes[:1]
		bdir := filepath.Join(c.work, "node-bolt")
		os.MkdirAll(bdir, 0o700)
		bst, err := bolt.Open(filepath.Join(bdir, "gatehouse.db"), bolt.Options{})
		if err != nil {
			return err
		}
		took, err := importAll(ctx, bst, kek, ca, c.n, 2)
		bst.Close()
		if err != nil {
			return fmt.Errorf("import into bolt: %w", err)
		}
		report("import into bolt: %d in %s (%.0f/s)", c.n, took.Round(time.Millisecond), float64(c.n)/took.Seconds())
		n1.stop()
		nodes = nil
		bn, err := startNode(c, "node-bolt", "", backend.addr, true)
		if err != nil {
			return err
		}
		nodes = append(nodes, bn)
		d, err := bn.waitServing(host(0), 5*time.Minute)
		if err != nil {
			return err
		}
		report("bolt node start to first handshake: %s", d.Round(time.Millisecond))
		load(bn.https, c.n, c.conc, c.warmDur, bn.pid())
		r := load(bn.https, c.n, c.conc, c.hsDur, bn.pid())
		report("handshakes, node on bolt: %.0f/s, %.3f server CPU s per 1000, %d errors", r.rate, r.cpuPer1000, r.errors)
	}
	return os.WriteFile(filepath.Join(c.work, "results.txt"), []byte(out.String()), 0o644)
}

type origin struct {
	addr string
	srv  *http.Server
}

func (o *origin) Close() { o.srv.Close() }

func httptestServer() *origin {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(l)
	return &origin{addr: l.Addr().String(), srv: srv}
}

// untilEach polls done(j) every millisecond for each of n nodes in
// parallel and returns, per node, the time from t0 until it first held
// (10 s if it never did).
func untilEach(n int, t0 time.Time, done func(j int) bool) []time.Duration {
	var wg sync.WaitGroup
	lat := make([]time.Duration, n)
	for j := range n {
		wg.Go(func() {
			for {
				if done(j) {
					lat[j] = time.Since(t0)
					return
				}
				if time.Since(t0) > 10*time.Second {
					lat[j] = 10 * time.Second
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	return lat
}
