package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
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
	req, _ := http.NewRequest("GET", "https://"+tn.srv.Addr("admin")+"/metrics", nil)
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
