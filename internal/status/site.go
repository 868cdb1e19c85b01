package status

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
)

//go:embed templates/*.html
var templatesFS embed.FS

//go:embed assets/status.css
var styleCSS []byte

// templates are parsed once, at New.
type templates struct {
	pages map[string]*template.Template // index, history, incident, report
	md    goldmark.Markdown
}

func parseTemplates() *templates {
	funcs := template.FuncMap{
		"statusText": StatusText,
		"join":       strings.Join,
		"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"human":      func(t time.Time) string { return t.UTC().Format("Jan 2, 2006 15:04 UTC") },
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templatesFS, "templates/layout.html"))
	t := &templates{pages: map[string]*template.Template{},
		// Raw HTML in Markdown is omitted: goldmark escapes it unless
		// WithUnsafe is given, and it is not.
		md: goldmark.New(goldmark.WithExtensions(extension.GFM))}
	for _, name := range []string{"index", "history", "incident", "report"} {
		t.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(templatesFS, "templates/"+name+".html"))
	}
	return t
}

// file is one rendered document with its precomputed headers.
type file struct {
	body  []byte
	ctype []string
	etag  []string
	clen  []string
	html  bool
	csp   []string // replaces hdrCSP for this page
}

// site is an immutable rendering of the whole portal: path → file.
type site struct {
	rev   uint64
	files map[string]*file
}

var (
	hdrCacheControl = []string{"no-cache"} // revalidate (cheap: ETag) so updates show at once
	hdrNoSniff      = []string{"nosniff"}
	hdrCSP          = []string{"default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"}
	hdrAnyOrigin    = []string{"*"}
	hdrAllow        = []string{"GET, HEAD"}
)

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	if path == "" {
		path = "index.html"
	}
	if path == "healthz" {
		w.Write([]byte("ok\n"))
		return
	}
	f := s.files[path]
	if f == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h["Allow"] = hdrAllow
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h["Etag"] = f.etag
	h["Cache-Control"] = hdrCacheControl
	h["X-Content-Type-Options"] = hdrNoSniff
	if f.csp != nil {
		h["Content-Security-Policy"] = f.csp
	} else if f.html {
		h["Content-Security-Policy"] = hdrCSP
	} else {
		h["Access-Control-Allow-Origin"] = hdrAnyOrigin
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == f.etag[0] {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h["Content-Type"] = f.ctype
	h["Content-Length"] = f.clen
	if r.Method == http.MethodHead {
		return
	}
	w.Write(f.body)
}

// Files returns the rendered site as path → content, for export.
func (p *Portal) Files() map[string][]byte {
	s := p.site.Load()
	out := make(map[string][]byte, len(s.files))
	for k, f := range s.files {
		out[k] = f.body
	}
	return out
}

// siteBuilder collects the documents of one rendering. renderLocked
// gathers, under the portal's lock, immutable values for every document
// and queues a job per document; unlock runs the jobs (template
// execution, JSON, XML, Markdown) after releasing the lock.
type siteBuilder struct {
	files map[string]*file
	err   error
	jobs  []func(*siteBuilder)
	seq   uint64 // the snapshot's number: a later one supersedes it
}

// do queues a job; jobs run in order, and may queue more.
func (b *siteBuilder) do(job func(*siteBuilder)) { b.jobs = append(b.jobs, job) }

// build runs the queued jobs.
func (b *siteBuilder) build() {
	for i := 0; i < len(b.jobs); i++ {
		b.jobs[i](b)
	}
	b.jobs = nil
}

func (b *siteBuilder) add(path, ctype string, body []byte) {
	sum := sha256.Sum256(body)
	b.files[path] = &file{
		body: body, ctype: []string{ctype}, clen: []string{strconv.Itoa(len(body))},
		etag: []string{`"` + hex.EncodeToString(sum[:8]) + `"`}, html: strings.HasPrefix(ctype, "text/html"),
	}
}

// json queues v, encoded as JSON, as the document at path.
func (b *siteBuilder) json(path string, v any) {
	b.do(func(b *siteBuilder) {
		body, err := json.Marshal(v)
		if err != nil && b.err == nil {
			b.err = err
		}
		b.add(path, "application/json", body)
	})
}

// page queues the page t renders from v as the document at path.
func (b *siteBuilder) page(t *template.Template, path string, v any) {
	b.do(func(b *siteBuilder) {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, "layout", v); err != nil && b.err == nil {
			b.err = err
		}
		b.add(path, "text/html; charset=utf-8", buf.Bytes())
	})
}

// View models of the HTML templates.
type (
	viewBase struct {
		Title, PageTitle, Root string
		UpdatedAt              time.Time
		Refresh                bool
	}
	indexView struct {
		viewBase
		Banner APIStatus
		// Subscribe links the email subscription form (status.email).
		Subscribe bool
		Active    []itemView
		Maint     []itemView
		Regions   []regionView
	}
	regionView struct {
		ID, Name   string
		Components []componentView
	}
	componentView struct {
		ID, Name, Description, Status string
		Days                          []Day
		Uptime                        string
	}
	itemView struct {
		ID, Name, Status, Impact string
		Maintenance              bool
		CreatedAt, From, Until   time.Time
		ReportAt                 time.Time
		Latest                   Update
		Updates                  []Update // newest first
		ComponentNames           []string
		HasReport                bool
		Report                   template.HTML
	}
	historyView struct {
		viewBase
		Incidents []itemView
		Months    []monthView
	}
	monthView struct {
		ID, Name string
		Items    []itemView
	}
	incidentView struct {
		viewBase
		Incident itemView
	}
)

func (p *Portal) names(ids []string) []string {
	var out []string
	for _, id := range ids {
		if c := p.byID[id]; c != nil {
			if c.Region != "" {
				out = append(out, c.Region+" "+c.Name)
			} else {
				out = append(out, c.Name)
			}
		}
	}
	return out
}

func newestFirst(ups []Update) []Update {
	out := make([]Update, len(ups))
	for i, u := range ups {
		out[len(ups)-1-i] = u
	}
	return out
}

func (p *Portal) incidentItem(in *Incident) itemView {
	v := itemView{ID: in.ID, Name: in.Name, Status: in.Status, Impact: in.Impact, CreatedAt: in.CreatedAt,
		Latest: in.Latest(), Updates: newestFirst(in.Updates), ComponentNames: p.names(in.Components),
		HasReport: in.Postmortem != ""}
	if in.PostmortemAt != nil {
		v.ReportAt = *in.PostmortemAt
	}
	return v
}

func (p *Portal) maintItem(m *MaintenanceWindow) itemView {
	return itemView{ID: m.ID, Name: m.Name, Status: m.Status, Impact: "maintenance", Maintenance: true,
		CreatedAt: m.CreatedAt, From: m.ScheduledFor, Until: m.ScheduledUntil, Latest: m.Latest(),
		Updates: newestFirst(m.Updates), ComponentNames: p.names(m.Components)}
}

// renderLocked takes the snapshot of everything the site shows and
// announces pending events; unlock renders the snapshot and swaps it in
// once the lock is released (renderSite).
func (p *Portal) renderLocked() {
	now := p.now()
	p.lastRender = now
	m := p.buildAPILocked(now)
	b := &siteBuilder{files: map[string]*file{}}
	queueAPI(b, m)
	b.add("assets/status.css", "text/css; charset=utf-8", styleCSS)

	base := viewBase{Title: p.title, UpdatedAt: p.updatedAt}
	incidents := p.sortedIncidentsLocked()
	maints := p.sortedMaintenancesLocked()
	p.queueIndexLocked(b, base, m, incidents, maints, now)
	p.queueHistoryLocked(b, base, incidents, maints)
	p.queueIncidentPagesLocked(b, base, incidents, maints)
	p.addFeeds(b, incidents, maints)

	p.flushEventsLocked(m)
	p.snapshots++
	b.seq = p.snapshots
	p.pendingSite = b
}

// queueAPI queues the documents of the status API v2.
func queueAPI(b *siteBuilder, m *apiModel) {
	b.json("api/v2/summary.json", Summary{Page: m.page, Components: m.components, Incidents: limit(m.unresolved),
		ScheduledMaintenances: limit(m.summaryMain), Status: m.status})
	b.json("api/v2/status.json", StatusDoc{Page: m.page, Status: m.status})
	b.json("api/v2/components.json", ComponentsDoc{Page: m.page, Components: m.components})
	b.json("api/v2/incidents.json", IncidentsDoc{Page: m.page, Incidents: limit(m.incidents)})
	b.json("api/v2/incidents/unresolved.json", IncidentsDoc{Page: m.page, Incidents: limit(m.unresolved)})
	b.json("api/v2/scheduled-maintenances.json", MaintenancesDoc{Page: m.page, ScheduledMaintenances: limit(m.maints)})
	b.json("api/v2/scheduled-maintenances/upcoming.json", MaintenancesDoc{Page: m.page, ScheduledMaintenances: limit(m.upcoming)})
	b.json("api/v2/scheduled-maintenances/active.json", MaintenancesDoc{Page: m.page, ScheduledMaintenances: limit(m.active)})
}

// queueIndexLocked queues the front page (and the subscription form):
// active incidents and maintenance, and every component with its uptime.
func (p *Portal) queueIndexLocked(b *siteBuilder, base viewBase, m *apiModel, incidents []*Incident, maints []*MaintenanceWindow, now time.Time) {
	idx := indexView{viewBase: base, Banner: m.status}
	idx.Refresh = true
	for _, in := range incidents {
		if in.Unresolved() {
			idx.Active = append(idx.Active, p.incidentItem(in))
		}
	}
	for _, mw := range maints {
		if mw.Status == InProgress || mw.Status == Verifying || (mw.Status == Scheduled && now.Before(mw.ScheduledUntil)) {
			idx.Maint = append(idx.Maint, p.maintItem(mw))
		}
	}
	compView := func(c *component) componentView {
		days, pct := p.uptimeLocked(c.ID, now)
		return componentView{ID: c.ID, Name: c.Name, Description: c.Description, Status: c.status, Days: days,
			Uptime: strconv.FormatFloat(pct, 'f', 2, 64)}
	}
	for _, g := range p.groups {
		rv := regionView{ID: g.ID, Name: g.Name}
		for _, c := range g.Components {
			rv.Components = append(rv.Components, compView(c))
		}
		idx.Regions = append(idx.Regions, rv)
	}
	var loose regionView
	for _, c := range p.comps {
		if c.GroupID == "" {
			loose.Components = append(loose.Components, compView(c))
		}
	}
	if len(loose.Components) > 0 {
		loose.ID, loose.Name = "services", "Services"
		idx.Regions = append(idx.Regions, loose)
	}
	if p.mail != nil {
		idx.Subscribe = true
		p.renderSubscribeLocked(b)
	}
	b.page(p.tmpl.pages["index"], "index.html", idx)
}

// queueHistoryLocked queues the history page: incidents and maintenance by
// month, newest first.
func (p *Portal) queueHistoryLocked(b *siteBuilder, base viewBase, incidents []*Incident, maints []*MaintenanceWindow) {
	var items []itemView
	for _, in := range incidents {
		items = append(items, p.incidentItem(in))
	}
	for _, mw := range maints {
		if mw.Status == Completed || mw.Status == InProgress || mw.Status == Verifying {
			items = append(items, p.maintItem(mw))
		}
	}
	sort.SliceStable(items, func(i, j int) bool { return items[i].sortTime().After(items[j].sortTime()) })
	hv := historyView{viewBase: base, Incidents: items}
	hv.PageTitle = "Incident history"
	for _, it := range items {
		id := it.sortTime().Format("2006-01")
		if len(hv.Months) == 0 || hv.Months[len(hv.Months)-1].ID != id {
			hv.Months = append(hv.Months, monthView{ID: id, Name: it.sortTime().Format("January 2006")})
		}
		hv.Months[len(hv.Months)-1].Items = append(hv.Months[len(hv.Months)-1].Items, it)
	}
	b.page(p.tmpl.pages["history"], "history.html", hv)
}

// queueIncidentPagesLocked queues a page per incident and maintenance, and the
// post-incident reports.
func (p *Portal) queueIncidentPagesLocked(b *siteBuilder, base viewBase, incidents []*Incident, maints []*MaintenanceWindow) {
	sub := base
	sub.Root = "../"
	for _, in := range incidents {
		it := p.incidentItem(in)
		v := incidentView{viewBase: sub, Incident: it}
		v.PageTitle = in.Name
		b.page(p.tmpl.pages["incident"], "incidents/"+in.ID+".html", v)
		if in.Postmortem != "" {
			md, report, name, id := p.tmpl.md, p.tmpl.pages["report"], in.Name, in.ID
			postmortem := in.Postmortem
			b.do(func(b *siteBuilder) {
				var buf bytes.Buffer
				if err := md.Convert([]byte(postmortem), &buf); err != nil && b.err == nil {
					b.err = err
				}
				v.Incident.Report = template.HTML(buf.String()) // goldmark output with raw HTML omitted
				v.PageTitle = "Post-incident report: " + name
				b.page(report, "incidents/"+id+"-report.html", v)
			})
		}
	}
	for _, mw := range maints {
		v := incidentView{viewBase: sub, Incident: p.maintItem(mw)}
		v.PageTitle = mw.Name
		b.page(p.tmpl.pages["incident"], "incidents/"+mw.ID+".html", v)
	}
}

// unlock releases p.mu and then renders the snapshot the locked section
// took and writes the history and decisions it asked for, if any:
// neither rendering nor these store writes hold the portal's lock.
func (p *Portal) unlock() {
	b, due := p.pendingSite, p.flushDue
	p.pendingSite, p.flushDue = nil, ""
	p.mu.Unlock()
	if b != nil {
		p.renderSite(b)
	}
	if due != "" {
		ctx, cancel := context.WithTimeout(p.life, flushTimeout)
		defer cancel()
		if err := p.flush(ctx); err != nil {
			p.log.Warn(due, "err", err)
		}
	}
}

// flushTimeout bounds a flush of history and decisions to the store.
const flushTimeout = 10 * time.Second

// renderSite renders a snapshot and swaps it in, unless a later snapshot
// was swapped in meanwhile (renderings of two snapshots may overlap).
func (p *Portal) renderSite(b *siteBuilder) {
	b.build()
	if b.err != nil {
		p.log.Error("rendering the status site; keeping the previous rendering", "err", b.err)
		return
	}
	p.renderMu.Lock()
	defer p.renderMu.Unlock()
	if b.seq <= p.renderedSeq {
		return
	}
	p.renderedSeq = b.seq
	p.renderCount++
	p.site.Store(&site{rev: p.renderCount, files: b.files})
	next := make(chan struct{})
	old := p.changed.Swap(&next)
	close(*old)
}

func (it itemView) sortTime() time.Time {
	if it.Maintenance {
		return it.From
	}
	return it.CreatedAt
}
