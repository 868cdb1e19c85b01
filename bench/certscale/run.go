package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// runConfig holds the flags of a run.
type runConfig struct {
	work, gatehouse, hsload, backend, phases, serverCPU, loadCPU, readme string
	n, wild, conc, touch                                                 int
	loadDur, churnDur                                                    time.Duration
}

func (c *runConfig) want(phase string) bool {
	return c.phases == "all" || slices.Contains(strings.Split(c.phases, ","), phase)
}

// results is one row per measurement: name, value, target, verdict.
type results struct {
	mu   sync.Mutex
	rows [][4]string
}

func (r *results) add(name, value, target string, ok *bool) {
	verdict := ""
	if ok != nil {
		verdict = map[bool]string{true: "met", false: "MISSED"}[*ok]
	}
	r.mu.Lock()
	r.rows = append(r.rows, [4]string{name, value, target, verdict})
	r.mu.Unlock()
	log.Printf("%s: %s %s %s", name, value, target, verdict)
}

func ptr(b bool) *bool { return &b }

func (r *results) table() string {
	var sb strings.Builder
	sb.WriteString("| measurement | value | target | |\n|---|---|---|---|\n")
	for _, row := range r.rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", row[0], row[1], row[2], row[3])
	}
	return sb.String()
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func run(c *runConfig) error {
	for _, p := range []*string{&c.gatehouse, &c.hsload, &c.backend} {
		if *p == "" {
			return fmt.Errorf("-gatehouse, -hsload and -backend are required")
		}
	}
	total := c.n + c.wild
	res := &results{}
	certDir := filepath.Join(c.work, fmt.Sprintf("certs-%d", c.n))
	data := filepath.Join(c.work, fmt.Sprintf("data-%d", c.n))

	// 1. Generation.
	if _, err := os.Stat(filepath.Join(certDir, "import", hostName(c.n-1)+".pem")); err != nil {
		start := time.Now()
		if err := generate(certDir, c.n, c.wild, func(done, total int) {
			log.Printf("gen: %d/%d", done, total)
		}); err != nil {
			return err
		}
		d := time.Since(start)
		res.add("generate ECDSA P-256 bundles", fmt.Sprintf("%d in %s (%.0f/s)", total, d.Round(time.Second), float64(total)/d.Seconds()), "", nil)
	}
	caPEM, err := os.ReadFile(filepath.Join(certDir, "ca.pem"))
	if err != nil {
		return err
	}
	ca, err := loadOrMakeCA(certDir)
	if err != nil {
		return err
	}

	// 2. Bulk import, offline.
	if c.want("import") || !exists(filepath.Join(data, "gatehouse.db")) {
		os.RemoveAll(data)
		d, rss, summary, err := importOffline(c, filepath.Join(certDir, "import"), data)
		if err != nil {
			return err
		}
		res.add("offline import "+fmt.Sprint(total), fmt.Sprintf("%s, %.0f/s, peak RSS %s", d.Round(time.Second), float64(total)/d.Seconds(), mib(rss)),
			"≤ 10 min", ptr(d <= 10*time.Minute*time.Duration(max(total, 1))/1010000+time.Minute))
		res.add("import summary", summary, "", nil)
	}
	if fi, err := os.Stat(filepath.Join(data, "gatehouse.db")); err == nil {
		res.add("store file", fmt.Sprintf("%s, %.0f bytes per certificate", mib(fi.Size()), float64(fi.Size())/float64(total)), "", nil)
	}

	stopBackend, err := startBackend(c)
	if err != nil {
		return err
	}
	defer stopBackend()

	// 3. Start-up.
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	probe := hostName(rng.IntN(c.n))
	nd, err := startNode(c.gatehouse, data, c.serverCPU, caPEM)
	if err != nil {
		return err
	}
	defer func() { nd.stop() }()
	first, err := nd.waitServing(probe, 120*time.Second)
	if err != nil {
		return err
	}
	// The node serves while its index loads in the background: wait for
	// the load to end before measuring memory.
	for wait := time.Now(); nd.indexAt.Load() == 0 && time.Since(wait) < 120*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	idx := time.Duration(nd.indexAt.Load())
	res.add("start to first handshake (random name)", first.Round(time.Millisecond).String(), "≤ 1 s", ptr(first <= time.Second))
	res.add("start to \"index loaded\" log", fmt.Sprintf("%s (first handshake %s it)", idx.Round(time.Millisecond),
		map[bool]string{true: "before", false: "after"}[first < idx]), "", nil)
	rss, pss := nd.memory()
	anon, file := nd.memorySplit()
	res.add("memory after start (RSS / PSS)", fmt.Sprintf("%s / %s (heap %s, store pages %s)", mib(rss), mib(pss), mib(anon), mib(file)), "", nil)
	res.add("  per installed certificate (PSS)", fmt.Sprintf("%.0f bytes", float64(pss)/float64(total)), "", nil)

	// Online import through the admin API of the running node.
	if c.want("online") {
		if err := onlineImport(c, nd, ca, res); err != nil {
			return err
		}
	}

	// 4. Memory after touching many names: first a set that fits the
	// default cache (bytes per cached certificate), then the rest.
	if c.want("memory") {
		touch := min(c.touch, c.n)
		perm := rng.Perm(c.n)[:touch]
		small := min(10000, touch)
		start := time.Now()
		fails := touchNames(nd, perm[:small], 8)
		limit, cb1 := cacheUsage(nd)
		rss1, _ := nd.memory()
		fails += touchNames(nd, perm[small:], 8)
		_, cb2 := cacheUsage(nd)
		rss2, pss2 := nd.memory()
		res.add(fmt.Sprintf("handshakes touching %d distinct names", touch), fmt.Sprintf("%s, %d failed", time.Since(start).Round(time.Second), fails), "0 failed", ptr(fails == 0))
		anon2, file2 := nd.memorySplit()
		res.add("memory after touching (RSS / PSS)", fmt.Sprintf("%s / %s (heap %s, store pages %s)", mib(rss2), mib(pss2), mib(anon2), mib(file2)), "≤ 1.5 GiB", ptr(rss2 <= 1536<<20))
		res.add("  decoded cache after touching", fmt.Sprintf("%s of %s (accounted)", mib(cb2), mib(limit)), "", nil)
		if cb1 < limit {
			res.add("  per cached certificate", fmt.Sprintf("%.0f bytes accounted, %.0f bytes RSS growth (first %d names)",
				float64(cb1)/float64(small), float64(rss1-rss)/float64(small), small), "", nil)
		}
	}

	// 5. Flat cost: hot set at N vs at 1,000; cold misses.
	if c.want("flat") {
		if nd, err = flatCost(c, nd, data, caPEM, res); err != nil {
			return err
		}
	}

	// 6. Live change.
	if c.want("live") {
		if err := liveAdds(nd, ca, 1000, res); err != nil {
			return err
		}
	}
	if c.want("churn") {
		if err := churn(c, nd, ca, res); err != nil {
			return err
		}
	}

	table := res.table()
	fmt.Println(table)
	out := filepath.Join(c.work, fmt.Sprintf("results-%d.md", c.n))
	head := fmt.Sprintf("N = %d exact names + %d wildcards (%d bundles), %s\n\n", c.n, c.wild, total, time.Now().UTC().Format(time.DateOnly))
	log.Printf("results written to %s", out)
	return os.WriteFile(out, []byte(head+table), 0o644)
}

// progressLines passes the import's progress lines through to our log.
type progressLines struct{}

func (progressLines) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(l, "progress:") {
			log.Print("import ", l)
		}
	}
	return len(b), nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// importOffline runs `gatehouse cert import --offline` and returns its
// duration, peak RSS and summary line.
func importOffline(c *runConfig, dir, data string) (time.Duration, int64, string, error) {
	// Every CPU: run.sh pins this program to the load CPUs.
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return 0, 0, "", err
	}
	cmd := exec.Command("taskset", "-c", strings.TrimSpace(string(online)), c.gatehouse, "cert", "import", "--offline", "--data", data, "--batch", "500", dir)
	var out strings.Builder
	cmd.Stdout = &out
	errf, err := os.Create(data + "-import.log")
	if err != nil {
		return 0, 0, "", err
	}
	defer errf.Close()
	cmd.Stderr = io.MultiWriter(errf, progressLines{})
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, "", fmt.Errorf("offline import: %w (see %s)", err, errf.Name())
	}
	d := time.Since(start)
	var peak int64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		peak = ru.Maxrss * 1024
	}
	return d, peak, strings.TrimSpace(out.String()), nil
}

// onlineImport imports 1,000 new bundles through the admin API of the
// running node with the CLI (`gatehouse cert import` without --offline).
func onlineImport(c *runConfig, nd *node, ca *ca, res *results) error {
	dir := filepath.Join(c.work, "online-import")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("online%04d.example.test", i)
		b, _, err := ca.leaf(names[i])
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, names[i]+".pem"), b, 0o644); err != nil {
			return err
		}
	}
	cmd := exec.Command(c.gatehouse, "cert", "import", "--data", nd.data, "--admin", "https://"+adminAddr, "--batch", "200", dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("online import: %w\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	fails := touchNames(nd, nil, 4, names...)
	res.add("online import (admin API) 1000", lines[len(lines)-1]+fmt.Sprintf("; %d of 1000 not served after", fails), "0 not served", ptr(fails == 0))
	return nil
}

// touchNames does one handshake for each host index (and each extra name)
// with conc workers and returns how many failed.
func touchNames(nd *node, idx []int, conc int, extra ...string) int {
	names := make(chan string, 1024)
	var fails atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for name := range names {
				leaf, err := nd.handshake(context.Background(), name)
				if err != nil || leaf.VerifyHostname(name) != nil {
					if fails.Add(1) <= 3 {
						log.Printf("handshake %s: %v", name, err)
					}
				}
			}
		})
	}
	for _, i := range idx {
		names <- hostName(i)
	}
	for _, n := range extra {
		names <- n
	}
	close(names)
	wg.Wait()
	return int(fails.Load())
}

// cacheUsage reads the decoded cache's limit and accounted bytes from the
// admin API's resources.
func cacheUsage(nd *node) (limit, bytes int64) {
	rs, err := nd.admin.Limits(context.Background())
	if err != nil {
		log.Printf("limits: %v", err)
		return 0, 0
	}
	for _, r := range rs {
		if r.Name == "certificate_cache" {
			return r.Limit, r.Usage
		}
	}
	return 0, 0
}

// hsResult is the JSON output of hsload.
type hsResult struct {
	OK     int64            `json:"ok"`
	Errors int64            `json:"errors"`
	Kinds  map[string]int64 `json:"error_kinds"`
	Rate   float64          `json:"rate"`
	P50    float64          `json:"p50_ms"`
	P99    float64          `json:"p99_ms"`
}

// hsload runs the shared load client pinned to the load CPUs and returns its
// result and the server CPU seconds spent meanwhile.
func hsload(c *runConfig, nd *node, hosts string, d time.Duration) (hsResult, float64, error) {
	cmd := exec.Command("taskset", "-c", c.loadCPU, c.hsload, "-addr", httpsAddr, "-mode", "hs", "-hosts", hosts,
		"-c", fmt.Sprint(c.conc), "-d", d.String(), "-tls", "1.3")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cpu0 := nd.cpuSeconds()
	out, err := cmd.Output()
	cpu := nd.cpuSeconds() - cpu0
	var r hsResult
	if err == nil {
		err = json.Unmarshal(out, &r)
	}
	if err != nil {
		return r, 0, fmt.Errorf("hsload: %w\n%s", err, stderr.String())
	}
	return r, cpu, nil
}

func startBackend(c *runConfig) (func(), error) {
	cmd := exec.Command("taskset", "-c", c.loadCPU, c.backend, "-addr", backendAddr)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}
