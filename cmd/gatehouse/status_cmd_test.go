package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// statusCLI runs the gatehouse CLI against tn's admin API.
func statusCLI(t *testing.T, tn *testNode, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--data", tn.cfg.DataDir, "--admin", "https://"+tn.srv.Addr("admin")))
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
	public := "http://" + tn.srv.Addr("status")
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
