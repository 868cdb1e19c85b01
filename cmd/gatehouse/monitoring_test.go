package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Metrics that the node exports only once they have a value: a counter
// vector without any label set yet (no refusal so far).
var metricsOnFirstEvent = []string{"gatehouse_admission_refused_total"}

// Resources registered only with an etcd store.
var etcdOnlyResources = []string{"store_unreachable", "local_bundle_cache"}

// Rows of the registry that count events since start and have no limit:
// no capacity alert can fire for them.
var counterResources = []string{"https_connections_queued", "https_connections_refused"}

// TestMonitoringExamplesMatchMetrics scrapes a real node's /metrics and
// checks the shipped alerting rules, their promtool test and the Grafana
// dashboard against it: every gatehouse_ metric they use is exported, every
// resource they name is registered, and the rules test fires the capacity
// alerts for every resource the node registers.
func TestMonitoringExamplesMatchMetrics(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	req, _ := http.NewRequest("GET", "https://"+tn.Addr("admin")+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := tn.adminHTTP(adminCA).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported := map[string]bool{}
	var resources []string
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		exported[name] = true
		if name == "gatehouse_resource_usage" {
			if m := regexp.MustCompile(`resource="([^"]+)"`).FindStringSubmatch(line); m != nil {
				resources = append(resources, m[1])
			}
		}
	}
	if len(resources) < 8 {
		t.Fatalf("the node exports %d resources (%v); want the capacity registry's", len(resources), resources)
	}
	known := append(slices.Clone(resources), etcdOnlyResources...)

	root := filepath.Join("..", "..", "examples")
	rulesDoc, err := os.ReadFile(filepath.Join(root, "prometheus", "gatehouse-rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rulesDoc, &rules); err != nil {
		t.Fatalf("gatehouse-rules.yml: %v", err)
	}
	var exprs []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	dashDoc, err := os.ReadFile(filepath.Join(root, "grafana", "gatehouse-capacity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dashDoc, &dash); err != nil {
		t.Fatalf("gatehouse-capacity.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("found %d expressions in the rules and the dashboard", len(exprs))
	}
	metricRe := regexp.MustCompile(`gatehouse_[a-z_]+`)
	resRe := regexp.MustCompile(`resource(=~?)"([^"]+)"`)
	for _, e := range exprs {
		for _, m := range metricRe.FindAllString(e, -1) {
			if !exported[m] && !slices.Contains(metricsOnFirstEvent, m) {
				t.Errorf("expression %q uses %s, which the node does not export", e, m)
			}
		}
		for _, m := range resRe.FindAllStringSubmatch(e, -1) {
			for _, r := range strings.Split(m[2], "|") {
				if !slices.Contains(known, r) {
					t.Errorf("expression %q names resource %q, which the node does not register", e, r)
				}
			}
		}
	}

	// The promtool test fires the warning and critical alerts for every
	// resource the node registers.
	testDoc, err := os.ReadFile(filepath.Join(root, "prometheus", "gatehouse-rules.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resources {
		for _, alert := range []string{"warning", "critical"} {
			want := `{severity: "` + alert + `", instance: "n`
			found := false
			for _, line := range strings.Split(string(testDoc), "\n") {
				if strings.Contains(line, want) && strings.Contains(line, `resource: "`+r+`"`) {
					found = true
				}
			}
			// Per-pool rows (pool_unavailable:<pool>) are named after the
			// configuration; the generic capacity rules cover them.
			if !found && r != "store_unreachable" && !slices.Contains(counterResources, r) && !strings.HasPrefix(r, "pool_unavailable:") {
				t.Errorf("gatehouse-rules.test.yml does not fire the %s capacity alert for resource %s", alert, r)
			}
		}
	}
}
