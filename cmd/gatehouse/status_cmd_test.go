package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/status"
)

// statusCLI runs the gatehouse CLI against tn's admin API.
func statusCLI(t *testing.T, tn *testNode, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--data", tn.cfg.DataDir, "--admin", "https://"+tn.Addr("admin")))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestStatusCLI drives incidents, maintenance, overrides and export
// through the CLI and checks what the public JSON shows, and that bad
// input is refused with the field named.
func TestStatusCLI(t *testing.T) {
	a := backend(t, "a1")
	tn := startTestNode(t, `pools:
  - name: web
    members: [{address: "`+addrOf(a)+`"}]
routes:
  - {host: app.uni-a.test, pool: web}
status:
  title: University services
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [web]}
`)
	public := "http://" + tn.Addr("status")
	summary := func() map[string]any {
		t.Helper()
		resp, err := http.Get(public + "/api/v2/summary.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}

	out, err := statusCLI(t, tn, "incident", "open", "Slow grades", "-m", "Investigating slow pages.", "--impact", "major", "--component", "EU01/Web app", "--json")
	if err != nil {
		t.Fatalf("incident open: %v\n%s", err, out)
	}
	var in struct{ ID string }
	if err := json.Unmarshal([]byte(out), &in); err != nil || len(in.ID) != 12 {
		t.Fatalf("incident open printed %q", out)
	}
	if got := summary()["status"].(map[string]any)["indicator"]; got != "major" {
		t.Errorf("indicator after opening a major incident: %v", got)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad status", []string{"incident", "update", in.ID, "--status", "fixed", "-m", "x"}, "status: \"fixed\" must be one of"},
		{"unknown component", []string{"component", "set", "EU09/Nothing", "major_outage"}, "component: \"EU09/Nothing\" is not a configured component"},
		{"window ends first", []string{"maintenance", "schedule", "DB", "--from", "2030-01-01T10:00:00Z", "--until", "2030-01-01T09:00:00Z"}, "scheduled_until"},
		{"unknown incident", []string{"incident", "resolve", "nosuchincide"}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := summary()
			out, err := statusCLI(t, tn, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (%s), want an error with %q", err, out, tt.want)
			}
			if after := summary(); !jsonEqual(before, after) {
				t.Errorf("refused input changed the page")
			}
		})
	}

	if out, err := statusCLI(t, tn, "component", "set", "Mobile app", "partial_outage", "--reason", "slow push"); err != nil {
		t.Fatalf("component set: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "maintenance", "schedule", "Network upgrade", "--component", "EU01/Web app",
		"--from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--until", time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339)); err != nil {
		t.Fatalf("maintenance schedule: %v\n%s", err, out)
	}
	if out, err := statusCLI(t, tn, "incident", "resolve", in.ID, "-m", "Index rebuilt."); err != nil {
		t.Fatalf("incident resolve: %v\n%s", err, out)
	}
	sum := summary()
	var mobile string
	for _, c := range sum["components"].([]any) {
		if c := c.(map[string]any); c["name"] == "Mobile app" {
			mobile = c["status"].(string)
		}
	}
	if mobile != "partial_outage" || len(sum["incidents"].([]any)) != 0 || len(sum["scheduled_maintenances"].([]any)) != 1 {
		t.Errorf("summary: mobile %s, %d unresolved incidents, %d maintenances", mobile, len(sum["incidents"].([]any)), len(sum["scheduled_maintenances"].([]any)))
	}

	// The report skeleton has every section and the timeline.
	md, err := statusCLI(t, tn, "incident", "postmortem", in.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Introduction", "## Event Timeline", "## Root Cause Analysis",
		"## Technical Action Items and Preventive Measures", "## Customer Communication", "Index rebuilt."} {
		if !strings.Contains(md, want) {
			t.Errorf("postmortem skeleton lacks %q", want)
		}
	}
	report := filepath.Join(t.TempDir(), "report.md")
	os.WriteFile(report, []byte(md), 0o644)
	if out, err := statusCLI(t, tn, "incident", "postmortem", in.ID, "--publish", report); err != nil || !strings.Contains(out, "postmortem") {
		t.Fatalf("publishing the report: %v\n%s", err, out)
	}

	dir := t.TempDir()
	if out, err := statusCLI(t, tn, "status", "export", "--out", dir); err != nil {
		t.Fatalf("status export: %v\n%s", err, out)
	}
	for _, f := range []string{"index.html", "history.html", "api/v2/summary.json", "history.atom", "incidents/" + in.ID + "-report.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("export lacks %s", f)
		}
	}

	// --watch re-exports when something changes.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- exportSite(ctx, tn.client, dir, true, io.Discard) }()
	if _, err := statusCLI(t, tn, "incident", "open", "Watched incident", "-m", "Seen by the exporter."); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "index.html"))
		if strings.Contains(string(b), "Watched incident") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watching export did not pick up the new incident")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("export --watch ended with %v", err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// componentStatuses reads "Region/Name" → status from a node's public
// components.json.
func componentStatuses(t *testing.T, tn *testNode) map[string]string {
	t.Helper()
	resp, err := http.Get("http://" + tn.Addr("status") + "/api/v2/components.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Components []struct {
			Name, Status string
			Group        bool
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range doc.Components {
		if !c.Group {
			out[c.Name] = c.Status
		}
	}
	return out
}

// waitStatuses polls the public components.json until it shows want.
func waitStatuses(t *testing.T, tn *testNode, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := componentStatuses(t, tn)
		if jsonEqual(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("components: got %v, want %v", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStatusErrorRate sends real traffic through the edge to a backend
// that answers 500: the component goes to major outage by its error rate
// while its member passes every health check, and recovers when the
// backend does.
func TestStatusErrorRate(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" && failing.Load() {
			http.Error(w, "database unavailable", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(flaky.Close)
	ok := backend(t, "ok")
	tn := startTestNode(t, fmt.Sprintf(`pools:
  - name: web
    members: [{address: %q}]
    # Generous: on a loaded machine a 40 ms check timed out and the
    # member was marked down (503), which is not what this test is about.
    health_check: {path: /health, interval: 1s, timeout: 900ms, rise: 1, fall: 3}
  - name: mobile
    members: [{address: %q}]
routes:
  - {host: app.uni-a.test, pool: web}
  - {host: m.uni-a.test, pool: mobile}
status:
  hysteresis: 100ms
  error_rate: {window: 10s, min_requests: 10}
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [mobile]}
`, addrOf(flaky), addrOf(ok)))
	tn.addCert("app.uni-a.test", "m.uni-a.test")
	c := tn.httpClient(false)
	for range 12 {
		if code, _ := get(t, c, "https://app.uni-a.test/grades"); code != http.StatusInternalServerError {
			t.Fatalf("backend answered %d, want 500", code)
		}
		if code, _ := get(t, c, "https://m.uni-a.test/"); code != http.StatusOK {
			t.Fatalf("mobile answered %d, want 200", code)
		}
	}
	waitStatuses(t, tn, map[string]string{"Web app": "major_outage", "Mobile app": "operational"})
	list, err := tn.client.StatusComponents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range list {
		if cs.Name == "Web app" && (cs.HealthyMembers != 1 || cs.ErrorRate != 100 || cs.Requests < 12) {
			t.Errorf("Web app: %d/%d members up, %v%% of %d requests failed; want 1/1, 100%% of ≥12", cs.HealthyMembers, cs.TotalMembers, cs.ErrorRate, cs.Requests)
		}
	}
	out, err := statusCLI(t, tn, "component", "list")
	if err != nil || !strings.Contains(out, "100%") {
		t.Errorf("component list: %v\n%s", err, out)
	}
	// The backend recovers; successful traffic brings the rate under 5%
	// (12 of 262).
	failing.Store(false)
	for range 250 {
		get(t, c, "https://app.uni-a.test/grades")
	}
	waitStatuses(t, tn, map[string]string{"Web app": "operational", "Mobile app": "operational"})
}

// twoComponentNode starts a node with one pool behind two components,
// EU01/Web app and EU01/Mobile app.
func twoComponentNode(t *testing.T) *testNode {
	t.Helper()
	a := backend(t, "a1")
	return startTestNode(t, fmt.Sprintf(`pools:
  - name: web
    members: [{address: %q}]
routes:
  - {host: app.uni-a.test, pool: web}
status:
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [web]}
  webhooks: {allow_hosts: [127.0.0.1]} # the tests' receivers
`, addrOf(a)))
}

// TestStatusReloadComponents reloads a config that adds and removes
// components: the page follows, the remaining component keeps its state.
func TestStatusReloadComponents(t *testing.T) {
	tn := twoComponentNode(t)
	if out, err := statusCLI(t, tn, "component", "set", "EU01/Web app", "degraded_performance"); err != nil {
		t.Fatalf("component set: %v\n%s", err, out)
	}
	waitStatuses(t, tn, map[string]string{"Web app": "degraded_performance", "Mobile app": "operational"})
	orig, _ := os.ReadFile(tn.cfgPath)
	next := strings.Replace(string(orig), "    - {name: Mobile app, region: EU01, pools: [web]}\n",
		"    - {name: Offline content, region: EU01, pools: [web]}\n", 1)
	if err := os.WriteFile(tn.cfgPath, []byte(next), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tn.client.Reload(context.Background()); err != nil {
		t.Fatalf("reload: %v", err)
	}
	waitStatuses(t, tn, map[string]string{"Web app": "degraded_performance", "Offline content": "operational"})
}

// TestStatusSubscribersCLI drives `gatehouse status subscribers` against a
// real receiver: the secret is shown once, signed deliveries arrive and
// the log shows them.
func TestStatusSubscribersCLI(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	var sigs []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies, sigs = append(bodies, b), append(sigs, r.Header.Get(status.SignatureHeader))
		mu.Unlock()
	}))
	t.Cleanup(recv.Close)
	tn := twoComponentNode(t)

	out, err := statusCLI(t, tn, "status", "subscribers", "add", "--url", recv.URL+"/hook", "--component", "EU01/Web app", "--json")
	if err != nil {
		t.Fatalf("subscribers add: %v\n%s", err, out)
	}
	var sub status.Subscriber
	if err := json.Unmarshal([]byte(out), &sub); err != nil || len(sub.ID) != 12 || len(sub.Secret) != 64 || len(sub.Components) != 1 {
		t.Fatalf("subscribers add printed %q", out)
	}
	// The store holds the secret sealed with the node's KEK.
	db, err := os.ReadFile(filepath.Join(tn.cfg.DataDir, "gatehouse.db"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(db, []byte(sub.ID)) || bytes.Contains(db, []byte(sub.Secret)) {
		t.Errorf("store file: holds subscriber %s %v, its secret in clear %v; want the record, without the secret", sub.ID,
			bytes.Contains(db, []byte(sub.ID)), bytes.Contains(db, []byte(sub.Secret)))
	}
	out, err = statusCLI(t, tn, "status", "subscribers", "list")
	if err != nil || !strings.Contains(out, sub.ID) || !strings.Contains(out, recv.URL+"/hook") || strings.Contains(out, sub.Secret) {
		t.Fatalf("subscribers list (must not show the secret): %v\n%s", err, out)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no url", []string{"status", "subscribers", "add"}, "--url: is required"},
		{"relative url", []string{"status", "subscribers", "add", "--url", "/hook"}, `url: "/hook" is not an absolute http(s) URL`},
		{"short secret", []string{"status", "subscribers", "add", "--url", recv.URL, "--secret", "short"}, "secret: is 5 characters"},
		{"unknown component", []string{"status", "subscribers", "add", "--url", recv.URL, "--component", "EU09/Nothing"}, `components[0]: "EU09/Nothing" is not a configured component`},
		{"cloud metadata", []string{"status", "subscribers", "add", "--url", "http://169.254.169.254/latest/"}, "url: http://169.254.169.254/latest/: 169.254.169.254 is a link-local address"},
		// Loopback is allowed here, but not the node's own listeners.
		{"own admin listener", []string{"status", "subscribers", "add", "--url", "https://" + tn.Addr("admin") + "/v1/certs"}, tn.Addr("admin") + " is this node's own admin listener"},
		{"own status listener", []string{"status", "subscribers", "add", "--url", "http://" + tn.Addr("status") + "/"}, "own status listener"},
		{"rm unknown", []string{"status", "subscribers", "rm", "nosuchsubscr"}, "not found"},
		{"deliveries of unknown", []string{"status", "subscribers", "deliveries", "nosuchsubscr"}, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := statusCLI(t, tn, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v (%s), want an error with %q", err, out, tt.want)
			}
			list, err := tn.client.StatusWebhooks(context.Background())
			if err != nil || len(list) != 1 {
				t.Errorf("subscribers after refused input: %v, %v", list, err)
			}
		})
	}

	// Only the subscribed component's update is delivered, signed.
	for _, ref := range []string{"EU01/Mobile app", "EU01/Web app"} {
		if out, err := statusCLI(t, tn, "component", "set", ref, "major_outage"); err != nil {
			t.Fatalf("component set: %v\n%s", err, out)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err = statusCLI(t, tn, "status", "subscribers", "deliveries", sub.ID)
		if err == nil && strings.Contains(out, "component_update") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries: %v\n%s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	if len(bodies) != 1 || sigs[0] != status.Sign(sub.Secret, bodies[0]) || !strings.Contains(string(bodies[0]), `"name":"Web app"`) {
		t.Errorf("received %d deliveries (want 1, for Web app, signed): %s", len(bodies), bodies)
	}
	mu.Unlock()
	if !strings.Contains(out, " ok") {
		t.Errorf("deliveries log lacks a successful attempt:\n%s", out)
	}

	if out, err := statusCLI(t, tn, "status", "subscribers", "rm", sub.ID); err != nil || !strings.Contains(out, "removed") {
		t.Fatalf("subscribers rm: %v\n%s", err, out)
	}
	if list, err := tn.client.StatusWebhooks(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("subscribers after rm: %v, %v", list, err)
	}
}
