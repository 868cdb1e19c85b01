// Package status is Gatehouse's public status portal: components grouped by
// region whose state follows the health checks of the pools behind them.
package status

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"time"

	"gatehouse/internal/config"
)

// Component states, with the value names of the widely used status API.
const (
	Operational = "operational"
	Degraded    = "degraded_performance"
	Partial     = "partial_outage"
	Major       = "major_outage"
)

// Member is one backend's health.
type Member struct {
	Address string `json:"address"`
	Up      bool   `json:"up"`
}

// Pool is a pool's live health.
type Pool struct {
	Name    string   `json:"name"`
	Members []Member `json:"members"`
}

// Source returns the live state of every pool.
type Source func() []Pool

// Component is one row of the page.
type Component struct {
	Name        string `json:"name"`
	Region      string `json:"region,omitempty"`
	Description string `json:"description,omitempty"`
	Status      string `json:"status"`
	Healthy     int    `json:"healthy_members"`
	Total       int    `json:"total_members"`
}

// Page is what the portal shows at one moment.
type Page struct {
	Title      string      `json:"title"`
	Indicator  string      `json:"indicator"` // none, minor, major, critical
	Summary    string      `json:"description"`
	Regions    []Region    `json:"regions"`
	UpdatedAt  time.Time   `json:"updated_at"`
	Components []Component `json:"-"`
}

// Region groups components.
type Region struct {
	Name       string      `json:"name"`
	Components []Component `json:"components"`
}

//go:embed templates/*.html
var templatesFS embed.FS

// Portal serves the status pages.
type Portal struct {
	log   *slog.Logger
	title string
	comps []config.Component
	src   Source
	now   func() time.Time
	tmpl  *template.Template
	mux   *http.ServeMux
}

// Options configures a Portal.
type Options struct {
	Logger *slog.Logger
	Now    func() time.Time
}

// New returns the portal for the configured components (every pool is a
// component when none are configured), reading health from src.
func New(cfg config.Status, pools []config.Pool, src Source, opts Options) *Portal {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	comps := cfg.Components
	if len(comps) == 0 {
		for _, p := range pools {
			comps = append(comps, config.Component{Name: p.Name, Pools: []string{p.Name}})
		}
	}
	p := &Portal{
		log:   log.With("component", "status"),
		title: cfg.Title,
		comps: comps,
		src:   src,
		now:   now,
		tmpl:  template.Must(template.New("").Funcs(template.FuncMap{"statusText": StatusText}).ParseFS(templatesFS, "templates/*.html")),
		mux:   http.NewServeMux(),
	}
	p.mux.HandleFunc("GET /{$}", p.serveHTML)
	p.mux.HandleFunc("GET /api/v2/components.json", p.serveJSON)
	p.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	return p
}

// ServeHTTP serves the portal.
func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.mux.ServeHTTP(w, r) }

// Snapshot computes the page from the current pool health.
func (p *Portal) Snapshot() Page {
	byName := map[string]Pool{}
	for _, pl := range p.src() {
		byName[pl.Name] = pl
	}
	page := Page{Title: p.title, UpdatedAt: p.now().UTC()}
	regions := map[string]*Region{}
	var order []string
	worst := Operational
	for _, c := range p.comps {
		comp := Component{Name: c.Name, Region: c.Region, Description: c.Description}
		for _, name := range c.Pools {
			for _, m := range byName[name].Members {
				comp.Total++
				if m.Up {
					comp.Healthy++
				}
			}
		}
		comp.Status = stateOf(comp.Healthy, comp.Total)
		if rank(comp.Status) > rank(worst) {
			worst = comp.Status
		}
		page.Components = append(page.Components, comp)
		r := regions[c.Region]
		if r == nil {
			r = &Region{Name: c.Region}
			regions[c.Region] = r
			order = append(order, c.Region)
		}
		r.Components = append(r.Components, comp)
	}
	sort.Strings(order)
	for _, name := range order {
		page.Regions = append(page.Regions, *regions[name])
	}
	page.Indicator, page.Summary = indicator(worst)
	return page
}

func stateOf(healthy, total int) string {
	switch {
	case total == 0 || healthy == total:
		return Operational
	case healthy == 0:
		return Major
	case healthy*2 >= total:
		return Degraded
	}
	return Partial
}

func rank(s string) int {
	switch s {
	case Degraded:
		return 1
	case Partial:
		return 2
	case Major:
		return 3
	}
	return 0
}

func indicator(worst string) (string, string) {
	switch worst {
	case Degraded:
		return "minor", "Degraded Performance"
	case Partial:
		return "major", "Partial System Outage"
	case Major:
		return "critical", "Major System Outage"
	}
	return "none", "All Systems Operational"
}

func (p *Portal) serveHTML(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := p.tmpl.ExecuteTemplate(&buf, "index.html", p.Snapshot()); err != nil {
		p.log.Error("rendering status page", "err", err)
		http.Error(w, "status page unavailable", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:")
	h.Set("X-Content-Type-Options", "nosniff")
	w.Write(buf.Bytes())
}

func (p *Portal) serveJSON(w http.ResponseWriter, r *http.Request) {
	page := p.Snapshot()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	json.NewEncoder(w).Encode(map[string]any{
		"page":       map[string]any{"name": page.Title, "updated_at": page.UpdatedAt.Format("2006-01-02T15:04:05.000Z07:00")},
		"status":     map[string]string{"indicator": page.Indicator, "description": page.Summary},
		"components": page.Components,
	})
}

// StatusText is the human wording of a component state.
func StatusText(s string) string {
	switch s {
	case Operational:
		return "Operational"
	case Degraded:
		return "Degraded performance"
	case Partial:
		return "Partial outage"
	case Major:
		return "Major outage"
	}
	return s
}
