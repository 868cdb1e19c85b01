package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/demo"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
)

// reloadWith rewrites the node's configuration file, replacing old by new,
// and reloads it through the admin API (`gatehouse reload`).
func (tn *testNode) reloadWith(old, new string) {
	tn.t.Helper()
	tn.rewrite(old, new)
	if err := tn.client.Reload(context.Background()); err != nil {
		tn.t.Fatalf("reload with %q: %v", new, err)
	}
}

func (tn *testNode) rewrite(old, new string) {
	tn.t.Helper()
	b, err := os.ReadFile(tn.cfgPath)
	if err != nil {
		tn.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		tn.t.Fatalf("configuration has no %q", old)
	}
	if err := os.WriteFile(tn.cfgPath, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		tn.t.Fatal(err)
	}
}

// TestRaisedCertificateLimitAdmitsNextAdd is the incident: a node at
// limits.max_certificates gets a raised limit by reload, and the next
// certificate must be admitted.
func TestRaisedCertificateLimitAdmitsNextAdd(t *testing.T) {
	tn := startTestNode(t, twoPools(t)+"limits: {max_certificates: 2}\n")
	tn.addCert("a.uni-a.test")
	tn.addCert("b.uni-a.test")
	c, k, _ := tn.ca.Issue("c.uni-a.test")
	_, err := tn.client.AddCert(context.Background(), c, k)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("third certificate at the limit: %v, want 409", err)
	}
	tn.reloadWith("max_certificates: 2", "max_certificates: 3")
	if _, err := tn.client.AddCert(context.Background(), c, k); err != nil {
		t.Fatalf("after raising limits.max_certificates to 3 by reload: %v", err)
	}
	if !strings.Contains(string(must(os.ReadFile(tn.cfgPath))), "max_certificates: 3") {
		t.Fatal("configuration not rewritten")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// syncBuffer collects a node's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// linesWith returns the log lines that contain every one of subs.
func (s *syncBuffer) linesWith(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

// resource returns the named resource as `gatehouse limits` shows it.
func (tn *testNode) resource(name string) capacity.Resource {
	tn.t.Helper()
	res, err := tn.client.Limits(context.Background())
	if err != nil {
		tn.t.Fatal(err)
	}
	for _, r := range res {
		if r.Name == name {
			return r
		}
	}
	tn.t.Fatalf("no resource %s", name)
	return capacity.Resource{}
}

// metric returns the value of one sample of the node's /metrics.
func (tn *testNode) metric(sample string) string {
	tn.t.Helper()
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	req, _ := http.NewRequest("GET", "https://"+tn.Addr("admin")+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := tn.adminHTTP(adminCA).Do(req)
	if err != nil {
		tn.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			return v
		}
	}
	return ""
}

// sighup reloads the node's configuration by SIGHUP and waits until
// done reports the new configuration in force.
func (tn *testNode) sighup(done func() bool) {
	tn.t.Helper()
	// Keep the signal from ending the test binary whatever happens.
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		tn.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			tn.t.Fatal("SIGHUP: the new configuration is not in force after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tn *testNode) tryCert(name string) error {
	c, k, err := tn.ca.Issue(name)
	if err != nil {
		tn.t.Fatal(err)
	}
	_, err = tn.client.AddCert(context.Background(), c, k)
	return err
}

// limitRefusal returns the numbers of a refusal by a limit, or nil.
func limitRefusal(err error) *capacity.LimitError {
	var apiErr *admin.APIError
	if errors.As(err, &apiErr) && (apiErr.Status == http.StatusConflict || apiErr.Status == http.StatusInsufficientStorage) {
		return apiErr.Limit
	}
	return nil
}

// TestHardLimitsFollowReload runs each limit that admission enforces
// through the life of a limit: fill to a low value and be refused (the
// refusal in the log, the metric and `gatehouse limits`); raise it by
// reload (by SIGHUP for certificates) and have the next request admitted;
// lower it below usage and have new additions refused, nothing removed,
// and a warning logged.
func TestHardLimitsFollowReload(t *testing.T) {
	long := strings.Repeat("x", 40)
	tests := []struct {
		name, resource, source string
		yaml                   string
		low, high, below       string // the configuration text of each value
		// add makes the i-th addition.
		add func(tn *testNode, i int) error
		// kept counts what a lowered limit must not remove.
		kept string
		// grow, if set, adds after the raise until usage exceeds the
		// lowered value.
		grow      int64
		bySIGHUP  bool
		wantLimit [3]int64 // low, high, below
	}{
		{
			name: "certificates", resource: "certificates", source: "limits.max_certificates",
			yaml: "limits: {max_certificates: 3}\n", low: "max_certificates: 3", high: "max_certificates: 5", below: "max_certificates: 2",
			add:  func(tn *testNode, i int) error { return tn.tryCert(fmt.Sprintf("c%d.uni-a.test", i)) },
			kept: "certificates", bySIGHUP: true, wantLimit: [3]int64{3, 5, 2},
		},
		{
			name: "routes", resource: "routes", source: "limits.max_routes",
			yaml: "limits: {max_routes: 3}\n", low: "max_routes: 3", high: "max_routes: 5", below: "max_routes: 2",
			add: func(tn *testNode, i int) error {
				_, err := tn.client.AddRoute(context.Background(), admin.RouteRequest{Host: fmt.Sprintf("r%d.uni-d.test", i), Pool: "a"})
				return err
			},
			kept: "routes", wantLimit: [3]int64{3, 5, 2},
		},
		{
			name: "store quota", resource: "store", source: "limits.store_quota",
			yaml: "limits: {store_quota: 1MiB}\n", low: "store_quota: 1MiB", high: "store_quota: 8MiB", below: "store_quota: 1MiB",
			add:  func(tn *testNode, i int) error { return tn.tryCert(fmt.Sprintf("q%s-%d.uni-a.test", long, i)) },
			kept: "certificates", grow: 1 << 20, wantLimit: [3]int64{1 << 20, 8 << 20, 1 << 20},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			tn := startTestNodeLog(t, twoPools(t)+tc.yaml, &logs)
			if got := tn.resource(tc.resource).Limit; got != tc.wantLimit[0] {
				t.Fatalf("limit at start = %d, want %d", got, tc.wantLimit[0])
			}
			// Fill to the limit: the next addition is refused.
			i := 0
			var refused *capacity.LimitError
			for ; i < 3000; i++ {
				err := tc.add(tn, i)
				if err == nil {
					continue
				}
				if refused = limitRefusal(err); refused == nil {
					t.Fatalf("addition %d: %v, want success or a refusal by the limit", i, err)
				}
				break
			}
			if refused == nil || refused.Resource != tc.resource || refused.Limit != tc.wantLimit[0] {
				t.Fatalf("filling: refusal %+v, want one of %s at %d", refused, tc.resource, tc.wantLimit[0])
			}
			// The refusal leaves a trace: log, metric, gatehouse limits.
			lines := logs.linesWith("change refused", "resource="+tc.resource, fmt.Sprintf("usage=%d", refused.Usage),
				fmt.Sprintf("limit=%d", refused.Limit), fmt.Sprintf("adding=%d", refused.Adding), "remote=127.0.0.1:", `identity="admin token sha256:`, "request_id=admin-")
			if len(lines) != 1 {
				t.Errorf("refusal log lines = %q, want one with the numbers and the caller", lines)
			}
			if got := tn.metric(`gatehouse_admission_refused_total{resource="` + tc.resource + `"}`); got != "1" {
				t.Errorf("gatehouse_admission_refused_total = %q, want 1", got)
			}
			if got := tn.resource(tc.resource).Refused24h; got != 1 {
				t.Errorf("refused in the last 24h = %d, want 1", got)
			}

			// Raise it: the next request is admitted.
			if tc.bySIGHUP {
				tn.rewrite(tc.low, tc.high)
				tn.sighup(func() bool { return tn.resource(tc.resource).Limit == tc.wantLimit[1] })
			} else {
				tn.reloadWith(tc.low, tc.high)
			}
			if got := tn.resource(tc.resource).Limit; got != tc.wantLimit[1] {
				t.Fatalf("limit after raising = %d, want %d", got, tc.wantLimit[1])
			}
			if err := tc.add(tn, i); err != nil {
				t.Fatalf("the refused addition again after raising the limit: %v", err)
			}
			for i++; tn.resource(tc.resource).Usage <= tc.grow; i++ {
				if err := tc.add(tn, i); err != nil {
					t.Fatalf("growing past %d: %v", tc.grow, err)
				}
			}

			// Lower it below usage: refused, nothing removed, a warning.
			kept := tn.resource(tc.kept).Usage
			if tc.bySIGHUP {
				tn.rewrite(tc.high, tc.below)
				tn.sighup(func() bool { return tn.resource(tc.resource).Limit == tc.wantLimit[2] })
			} else {
				tn.reloadWith(tc.high, tc.below)
			}
			res := tn.resource(tc.resource)
			if res.Limit != tc.wantLimit[2] || res.Usage <= res.Limit || res.Level != capacity.LevelCritical {
				t.Fatalf("after lowering below usage: %+v, want limit %d under usage, critical", res, tc.wantLimit[2])
			}
			if lines := logs.linesWith("limit set below usage", "resource="+tc.resource); len(lines) != 1 {
				t.Errorf("lowering below usage logged %q, want one warning", lines)
			}
			err := tc.add(tn, i+1)
			if le := limitRefusal(err); le == nil || le.Limit != tc.wantLimit[2] {
				t.Fatalf("addition after lowering the limit below usage: %v, want refused at %d", err, tc.wantLimit[2])
			}
			if got := tn.resource(tc.kept).Usage; got != kept {
				t.Errorf("%s after lowering the limit = %d, want %d (nothing removed)", tc.kept, got, kept)
			}
			if got := tn.metric(`gatehouse_admission_refused_total{resource="` + tc.resource + `"}`); got != "2" {
				t.Errorf("gatehouse_admission_refused_total = %q, want 2", got)
			}
		})
	}
}

// TestSoftLimitsFollowReload checks the limits that bound something
// rather than refuse a change (cache bytes, the Go soft memory limit) and
// the registry's own settings: each takes the reloaded value at once, and
// `gatehouse limits` shows the value the part enforces.
func TestSoftLimitsFollowReload(t *testing.T) {
	const cachingRoute = "  - {host: cached.uni-a.test, pool: a, cache: {enabled: true}}\n"
	tests := []struct {
		name             string
		yaml             string
		low, high, below string
		check            func(t *testing.T, tn *testNode, want int64)
		wantLimit        [3]int64
		fill             func(tn *testNode)
	}{
		{
			name: "tls.cache_bytes", yaml: "tls: {cache_bytes: 2MiB}\n",
			low: "cache_bytes: 2MiB", high: "cache_bytes: 16MiB", below: "cache_bytes: 1MiB",
			wantLimit: [3]int64{2 << 20, 16 << 20, 1 << 20},
			fill: func(tn *testNode) {
				if _, err := tn.handshake("cached.uni-a.test"); err != nil {
					tn.t.Fatal(err)
				}
			},
			check: func(t *testing.T, tn *testNode, want int64) {
				r := tn.resource("certificate_cache")
				b, l, _, _, _ := tn.Certs().CacheStats()
				if r.Limit != want || l != want || b > l {
					t.Errorf("certificate_cache %+v, cache holds %d of %d; want limit %d shown and enforced", r, b, l, want)
				}
			},
		},
		{
			name: "response_cache.max_bytes", yaml: "response_cache: {max_bytes: 4MiB, max_object_bytes: 1MiB}\n",
			low: "max_bytes: 4MiB, max_object_bytes: 1MiB", high: "max_bytes: 16MiB, max_object_bytes: 2MiB", below: "max_bytes: 1MiB, max_object_bytes: 256KiB",
			wantLimit: [3]int64{4 << 20, 16 << 20, 1 << 20},
			check: func(t *testing.T, tn *testNode, want int64) {
				r := tn.resource("response_cache")
				s := tn.Proxy().CacheStats()
				if r.Limit != want || s.Limit != want || s.Bytes > s.Limit {
					t.Errorf("response_cache %+v, cache %d of %d; want limit %d shown and enforced", r, s.Bytes, s.Limit, want)
				}
			},
		},
		{
			name: "limits.memory_soft_limit", yaml: "limits: {memory_soft_limit: 300MiB}\n",
			low: "memory_soft_limit: 300MiB", high: "memory_soft_limit: 400MiB", below: "memory_soft_limit: 100MiB",
			wantLimit: [3]int64{300 << 20, 400 << 20, 100 << 20},
			check: func(t *testing.T, tn *testNode, want int64) {
				if os.Getenv("GOMEMLIMIT") != "" {
					want = runtimeMemoryLimit() // GOMEMLIMIT wins, by design
				}
				if r := tn.resource("go_heap"); r.Limit != want || runtimeMemoryLimit() != want {
					t.Errorf("go_heap %+v, runtime limit %d; want %d shown and enforced", r, runtimeMemoryLimit(), want)
				}
			},
		},
		{
			name: "limits.warn_percent", yaml: "limits: {max_certificates: 4, warn_percent: 90}\n",
			low: "warn_percent: 90", high: "warn_percent: 40", below: "warn_percent: 95",
			wantLimit: [3]int64{90, 40, 95},
			fill: func(tn *testNode) {
				tn.addCert("w1.uni-a.test")
				tn.addCert("w2.uni-a.test")
			},
			check: func(t *testing.T, tn *testNode, want int64) {
				wantLevel := capacity.LevelOK
				if want < 50 {
					wantLevel = capacity.LevelWarning
				}
				if got := tn.Capacity().Settings().WarnPercent; got != float64(want) {
					t.Errorf("warn percent in force = %v, want %d", got, want)
				}
				if r := tn.resource("certificates"); r.Level != wantLevel {
					t.Errorf("certificates %+v at warn_percent %d, want level %s", r, want, wantLevel)
				}
			},
		},
		{
			name: "limits.check_interval", yaml: "limits: {check_interval: 15s}\n",
			low: "check_interval: 15s", high: "check_interval: 2s", below: "check_interval: 1m",
			wantLimit: [3]int64{int64(15 * time.Second), int64(2 * time.Second), int64(time.Minute)},
			check: func(t *testing.T, tn *testNode, want int64) {
				if got := tn.Capacity().Settings().CheckInterval; got != time.Duration(want) {
					t.Errorf("check interval in force = %v, want %v", got, time.Duration(want))
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs syncBuffer
			tn := startTestNodeLog(t, twoPools(t)+cachingRoute+tc.yaml, &logs)
			tn.addCert("cached.uni-a.test")
			if tc.fill != nil {
				tc.fill(tn)
			}
			if code, _ := get(t, tn.httpClient(false), "https://cached.uni-a.test/"); code != http.StatusOK {
				t.Fatalf("caching route: %d", code)
			}
			tc.check(t, tn, tc.wantLimit[0])
			tn.reloadWith(tc.low, tc.high)
			tc.check(t, tn, tc.wantLimit[1])
			tn.reloadWith(tc.high, tc.below)
			tc.check(t, tn, tc.wantLimit[2])
			if lines := logs.linesWith("take effect at the next restart"); len(lines) != 0 {
				t.Errorf("a live limit was reported as needing a restart: %q", lines)
			}
		})
	}
	t.Run("warning logged at once", func(t *testing.T) {
		var logs syncBuffer
		tn := startTestNodeLog(t, twoPools(t)+"limits: {max_certificates: 4, warn_percent: 90}\n", &logs)
		tn.addCert("w1.uni-a.test")
		tn.addCert("w2.uni-a.test")
		tn.reloadWith("warn_percent: 90", "warn_percent: 40")
		if lines := logs.linesWith("resource above warning level", "resource=certificates", "usage=2", "limit=4", "percent=50"); len(lines) != 1 {
			t.Errorf("lowering warn_percent under usage logged %q, want one warning", lines)
		}
	})
}

// TestImportCrossesBothLevelsInOrder imports one batch that takes the
// certificates from below the warning level past the critical level: the
// node's log has the warning line and then the critical line, at the
// moment of the import, with the usage, the limit and the percentage.
func TestImportCrossesBothLevelsInOrder(t *testing.T) {
	var logs syncBuffer
	tn := startTestNodeLog(t, twoPools(t)+"limits: {max_certificates: 20}\n", &logs)
	for i := range 3 {
		tn.addCert(fmt.Sprintf("pre%d.uni-a.test", i))
	}
	dir := t.TempDir()
	for i := range 16 {
		c, k, _ := tn.ca.Issue(fmt.Sprintf("imp%d.uni-a.test", i))
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("imp%d.pem", i)), append(c, k...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if lines := logs.linesWith("resource=certificates"); len(lines) != 0 {
		t.Fatalf("below the warning level the log has %q", lines)
	}
	var out, errOut bytes.Buffer
	if err := runImport(context.Background(), tn.client.AddCerts, dir, 100, &out, &errOut); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut.String())
	}
	// No periodic check has run since start (15s): the lines come from
	// the import itself.
	lines := logs.linesWith("resource=certificates")
	if len(lines) != 2 {
		t.Fatalf("import from 3 to 19 of 20 logged %d lines, want 2:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, want := range []string{`level=WARN msg="resource above warning level"`, `level=ERROR msg="resource near its limit"`} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d = %q, want %q", i+1, lines[i], want)
		}
		for _, num := range []string{"usage=19", "limit=20", "percent=95"} {
			if !strings.Contains(lines[i], num) {
				t.Errorf("line %d = %q lacks %s", i+1, lines[i], num)
			}
		}
	}
}

// TestFleetCapsExact has many writers add certificates and routes through
// three nodes on a three-member etcd cluster at once: the counters
// compared-and-swapped in each write's transaction keep both at their cap
// exactly, and each counter equals what it counts.
func TestFleetCapsExact(t *testing.T) {
	const certCap, routeCap, writers = 12, 9, 36
	f := startFleetWith(t, 3, 3, fmt.Sprintf("limits: {max_certificates: %d, max_routes: %d}\n", certCap, routeCap))
	type pem struct{ c, k []byte }
	pems := make([]pem, writers)
	for i := range pems {
		pems[i].c, pems[i].k, _ = f.nodes[0].ca.Issue(fmt.Sprintf("w%d.uni-a.test", i))
	}
	var mu sync.Mutex
	outcome := map[string]int{}
	count := func(kind string, err error) {
		mu.Lock()
		defer mu.Unlock()
		var apiErr *admin.APIError
		switch {
		case err == nil:
			outcome[kind+" added"]++
		case limitRefusal(err) != nil:
			outcome[kind+" refused by the limit"]++
		case errors.As(err, &apiErr) && apiErr.Code == "conflict":
			outcome[kind+" lost a race (conflict)"]++
		case errors.As(err, &apiErr) && apiErr.Status == http.StatusServiceUnavailable:
			// etcd slower than request_timeout on a loaded machine: the
			// write may or may not stand, the counter must still be exact.
			outcome[kind+" store did not answer in time"]++
		default:
			t.Errorf("%s: %v", kind, err)
		}
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		tn := f.nodes[i%len(f.nodes)]
		wg.Go(func() {
			<-start
			_, err := tn.client.AddCert(context.Background(), pems[i].c, pems[i].k)
			count("certificate", err)
		})
		wg.Go(func() {
			<-start
			_, err := tn.client.AddRoute(context.Background(), admin.RouteRequest{Host: fmt.Sprintf("w%d.uni-d.test", i), Pool: "a"})
			count("route", err)
		})
	}
	// Batch imports race the single additions too.
	for i := range 6 {
		tn := f.nodes[i%len(f.nodes)]
		var items []admin.BatchItem
		for j := range 3 {
			c, k, _ := tn.ca.Issue(fmt.Sprintf("b%d-%d.uni-a.test", i, j))
			items = append(items, admin.BatchItem{Source: fmt.Sprint(j), CertPEM: string(c), KeyPEM: string(k)})
		}
		wg.Go(func() {
			<-start
			res, err := tn.client.AddCerts(context.Background(), items)
			if err != nil {
				t.Errorf("batch: %v", err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range res {
				switch {
				case r.Error == "":
					outcome["certificate added"]++
				case r.Limit != nil:
					outcome["certificate refused by the limit"]++
				case strings.Contains(r.Error, "store: unavailable"):
					outcome["certificate store did not answer in time"]++
				default:
					t.Errorf("batch item: %s", r.Error)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("outcomes: %v", outcome)
	ctx := context.Background()
	st := f.nodes[1].Store()
	for _, c := range []struct {
		kind, counter, prefix string
		limit                 int64
	}{
		{"certificate", "counters/certificates", "certs/bundles/", certCap},
		{"route", "counters/routes", "routes/", routeCap},
	} {
		kv, err := st.Get(ctx, c.counter)
		if err != nil {
			t.Fatalf("%s counter: %v", c.kind, err)
		}
		n, err := store.CountPrefix(ctx, st, c.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if string(kv.Value) != fmt.Sprint(n) || n > c.limit {
			t.Errorf("%ss: counter %s, stored %d, cap %d; want the counter exact and the cap held", c.kind, kv.Value, n, c.limit)
		}
		if added := int64(outcome[c.kind+" added"]); added > n || (added < n && outcome[c.kind+" store did not answer in time"] == 0) {
			t.Errorf("%ss: %d additions answered success, %d stored", c.kind, added, n)
		}
		if n != c.limit {
			t.Logf("%ss: %d of %d installed (writers that lost races gave up)", c.kind, n, c.limit)
		}
	}
}

// TestCounterAcrossOfflineImportAndMigrate checks that an offline import
// keeps the certificate counter exact and that a migration carries it.
func TestCounterAcrossOfflineImportAndMigrate(t *testing.T) {
	ca, err := demo.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pemDir, data, moved := t.TempDir(), t.TempDir(), t.TempDir()
	for i := range 5 {
		c, k, _ := ca.Issue(fmt.Sprintf("off%d.uni-a.test", i))
		if err := os.WriteFile(filepath.Join(pemDir, fmt.Sprintf("off%d.pem", i)), append(c, k...), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runCLI(t, "cert", "import", pemDir, "--offline", "--data", data); err != nil {
		t.Fatalf("offline import: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "store", "migrate", "--from", "bolt:"+data, "--to", "bolt:"+moved); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	for _, dir := range []string{data, moved} {
		st, err := bolt.Open(filepath.Join(dir, "gatehouse.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		kv, err := st.Get(ctx, "counters/certificates")
		n, cerr := store.CountPrefix(ctx, st, "certs/bundles/")
		st.Close()
		if err != nil || cerr != nil || string(kv.Value) != "5" || n != 5 {
			t.Errorf("%s: counter %q (%v), %d bundles (%v); want 5 and 5", dir, kv.Value, err, n, cerr)
		}
	}
}

// TestEtcdLimitsFollowReload checks store.etcd.local_cache_bytes, the
// bound of a fleet node's local bundle cache, and limits.store_quota, which
// on etcd lowers etcd's own quota, on reload.
func TestEtcdLimitsFollowReload(t *testing.T) {
	f := startFleetWith(t, 1, 1, "limits: {store_quota: 64MiB}\n")
	tn := f.nodes[0]
	if got := tn.resource("store").Limit; got != 64<<20 {
		t.Fatalf("store limit on etcd with limits.store_quota 64MiB = %d, want 64MiB (below etcd's own quota)", got)
	}
	tn.reloadWith("store_quota: 64MiB", "store_quota: 1GiB")
	if got := tn.resource("store").Limit; got != 1<<30 {
		t.Fatalf("store limit after reload = %d, want 1GiB", got)
	}
	if got := tn.resource("local_bundle_cache").Limit; got != 512<<20 {
		t.Fatalf("local_bundle_cache limit = %d, want the default 512MiB", got)
	}
	tn.reloadWith("dial_timeout: 2s\n", "dial_timeout: 2s\n    local_cache_bytes: 8MiB\n")
	if got := tn.resource("local_bundle_cache").Limit; got != 8<<20 {
		t.Fatalf("local_bundle_cache limit after reload = %d, want 8MiB", got)
	}
	if _, l, _ := tn.Certs().LocalCacheStats(); l != 8<<20 {
		t.Fatalf("local cache enforces %d, want 8MiB", l)
	}
}

func TestPrintLimitsShowsRefusals(t *testing.T) {
	var buf bytes.Buffer
	printLimits(&buf, []capacity.Resource{
		{Name: "certificates", Unit: "count", Usage: 5, Limit: 5, Percent: 100, Level: capacity.LevelCritical, Hard: true, Refused24h: 7},
		{Name: "memory", Unit: "bytes", Usage: 1 << 20, Limit: 1 << 30, Percent: 0.1, Level: capacity.LevelOK},
	})
	lines := strings.Split(buf.String(), "\n")
	last := func(l string) string { f := strings.Fields(l); return f[len(f)-1] }
	if !strings.HasSuffix(strings.TrimSpace(lines[0]), "REFUSED 24H") || last(lines[1]) != "7" || last(lines[2]) != "-" {
		t.Errorf("gatehouse limits prints:\n%s", buf.String())
	}
}

// runtimeMemoryLimit is the Go runtime's soft memory limit, 0 for none.
func runtimeMemoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}
