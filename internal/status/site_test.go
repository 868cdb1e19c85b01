package status

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenSite builds a portal with an incident history, a report and
// maintenance, at a fixed time with sequential ids.
func goldenSite(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, "", Options{})
	ctx := context.Background()
	f.h.set("mobile", false)
	f.p.Tick()
	f.clock.Add(time.Minute)
	f.p.Tick() // mobile: major outage; a draft incident (not shown)
	old, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Grades not loading", Impact: ImpactMajor, Body: "We are investigating.", Components: []string{"EU01/Web app"}})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(20 * time.Minute)
	if _, err := f.p.UpdateIncident(ctx, old.ID, UpdateRequest{Status: Resolved, Body: "A database index was rebuilt."}); err != nil {
		t.Fatal(err)
	}
	md := "# Report\n\n## Introduction\n\nGrades did not load for **20 minutes**.\n\n<script>alert('x')</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
	if _, err := f.p.PublishPostmortem(ctx, old.ID, md); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Minute)
	if _, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Mobile app unavailable", Impact: ImpactCritical, Body: "The mobile API is down; we are on it.", Components: []string{"Mobile app"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.ScheduleMaintenance(ctx, MaintenanceRequest{Name: "Network upgrade", Body: "Short interruptions possible.", Components: []string{"US01/Web app"},
		ScheduledFor: t0.Add(48 * time.Hour), ScheduledUntil: t0.Add(50 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestGoldenPages(t *testing.T) {
	f := goldenSite(t)
	files := f.p.Files()
	for _, name := range []string{"index.html", "history.html", "incidents/id0000000003.html", "incidents/id0000000003-report.html"} {
		t.Run(name, func(t *testing.T) {
			got, ok := files[name]
			if !ok {
				t.Fatalf("%s not rendered; have %d files", name, len(files))
			}
			path := filepath.Join("testdata", "golden", strings.ReplaceAll(name, "/", "_"))
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from %s (run with -update to accept):\n%s", name, path, firstDiff(string(got), string(want)))
			}
		})
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return fmt.Sprintf("line %d:\n got: %s\nwant: %s", i+1, x, y)
		}
	}
	return ""
}

func TestPagesContent(t *testing.T) {
	f := goldenSite(t)
	files := f.p.Files()
	tests := []struct {
		file    string
		want    []string
		notWant []string
	}{
		{"index.html", []string{
			`<p class="banner critical" role="status">Major System Outage</p>`,
			`Mobile app unavailable`, `The mobile API is down; we are on it.`,
			`data-component="Mobile app">Major outage</span>`,
			`Network upgrade`, `class="bar"`,
			`href="assets/status.css"`, `href="history.html"`,
		}, []string{"Grades not loading", "<script", "major outage</a>" /* the draft */, "http://", "https://"}},
		{"history.html", []string{"Grades not loading", "Mobile app unavailable", `href="incidents/id0000000003-report.html"`}, []string{"<script"}},
		{"incidents/id0000000003-report.html", []string{"<strong>20 minutes</strong>", "<table>", `href="../assets/status.css"`}, []string{"<script", "alert("}},
	}
	for _, tt := range tests {
		body := string(files[tt.file])
		for _, w := range tt.want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %q", tt.file, w)
			}
		}
		for _, w := range tt.notWant {
			if strings.Contains(body, w) {
				t.Errorf("%s contains %q", tt.file, w)
			}
		}
	}
	// The uptime bar has one day per day shown.
	if n := strings.Count(string(files["index.html"]), `<li class=`) - strings.Count(string(files["index.html"]), `<li class="incident`) - strings.Count(string(files["index.html"]), `<li class="component`); n != 3*HistoryDays {
		t.Errorf("uptime bars have %d days, want %d", n, 3*HistoryDays)
	}
}

// TestExportIsSelfContained writes the site and checks every local link
// resolves inside it and nothing points elsewhere.
func TestExportIsSelfContained(t *testing.T) {
	f := goldenSite(t)
	dir := t.TempDir()
	start := time.Now()
	if err := f.p.Export(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("export: %d files in %v", len(f.p.Files()), time.Since(start))
	link := regexp.MustCompile(`(?:href|src)="([^"]*)"`)
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			ref := m[1]
			if strings.Contains(ref, "://") || strings.HasPrefix(ref, "//") || strings.HasPrefix(ref, "/") {
				t.Errorf("%s: external or absolute reference %q", path, ref)
				continue
			}
			if strings.HasPrefix(ref, "#") {
				continue
			}
			target := filepath.Join(filepath.Dir(path), filepath.FromSlash(ref))
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: link %q does not resolve: %v", path, ref, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"index.html", "api/v2/summary.json", "history.atom", "history.rss", "assets/status.css"} {
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil {
			t.Errorf("export lacks %s", want)
		}
	}
	if err := WriteSite(dir, map[string][]byte{"../escape.html": nil}); err == nil {
		t.Error("WriteSite accepted a path outside the directory")
	}
}

var (
	benchOnce   sync.Once
	benchPortal *Portal
)

// benchSite is a page with 20 components and 200 incidents in history,
// built once per test binary.
func benchSite(b testing.TB) *Portal {
	benchOnce.Do(func() { benchPortal = buildBenchSite(b) })
	return benchPortal
}

func buildBenchSite(b testing.TB) *Portal {
	cfg := config.Status{Title: "Bench"}
	for i := range 20 {
		cfg.Components = append(cfg.Components, config.Component{Name: fmt.Sprintf("Service %d", i%5), Region: fmt.Sprintf("R%02d", i/5), Pools: []string{"p"}})
	}
	clk := &clock{t: t0}
	p := New(cfg, nil, nil, Options{Now: clk.Now})
	ctx := context.Background()
	for i := range 200 {
		in, err := p.OpenIncident(ctx, IncidentRequest{Name: fmt.Sprintf("Incident %d", i), Body: "Investigating.", Components: []string{fmt.Sprintf("R%02d/Service %d", i%4, i%5)}})
		if err != nil {
			b.Fatal(err)
		}
		clk.Add(time.Hour)
		if _, err := p.UpdateIncident(ctx, in.ID, UpdateRequest{Status: Resolved, Body: "Resolved."}); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkServe measures requests per second over loopback HTTP with
// keep-alive for a page of 20 components and 200 incidents.
func BenchmarkServe(b *testing.B) {
	p := benchSite(b)
	srv := httptest.NewServer(p)
	defer srv.Close()
	for _, path := range []string{"/api/v2/summary.json", "/api/v2/incidents.json", "/index.html", "/history.atom"} {
		b.Run(strings.TrimPrefix(path, "/"), func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 64<<10)
				for pb.Next() {
					resp, err := c.Get(srv.URL + path)
					if err != nil {
						b.Error(err)
						return
					}
					for {
						if _, err := resp.Body.Read(buf); err != nil {
							break
						}
					}
					resp.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}

// BenchmarkServeHandler measures the handler alone, without the network.
func BenchmarkServeHandler(b *testing.B) {
	p := benchSite(b)
	req := httptest.NewRequest(http.MethodGet, "/api/v2/summary.json", nil)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := httptest.NewRecorder()
			p.ServeHTTP(w, req)
		}
	})
}

// BenchmarkRenderAndExport measures one full render and an export of it.
func BenchmarkRenderAndExport(b *testing.B) {
	p := benchSite(b)
	dir := b.TempDir()
	for b.Loop() {
		p.mu.Lock()
		p.renderLocked()
		p.unlock()
		if err := p.Export(dir); err != nil {
			b.Fatal(err)
		}
	}
}
