package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"gatehouse/internal/browsertest"
	"gatehouse/internal/status"
)

// TestStatusPageInBrowser loads the status page in headless Chromium, then
// stops a pool's only backend and checks that a person sees the component
// as a major outage.
func TestStatusPageInBrowser(t *testing.T) {
	bctx := browsertest.New(t)
	a := backend(t, "a1")
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("b1")) }))
	defer b.Close()
	tn := startTestNode(t, fmt.Sprintf(`pools:
  - name: web
    members: [{address: %q}]
    health_check: {path: /, interval: 50ms, timeout: 40ms, rise: 1, fall: 1}
  - name: mobile
    members: [{address: %q}]
    health_check: {path: /, interval: 50ms, timeout: 40ms, rise: 1, fall: 1}
routes:
  - {host: app.uni-a.test, pool: web}
status:
  title: University services
  hysteresis: 100ms
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [mobile]}
`, addrOf(a), addrOf(b)))
	url := "http://" + tn.Addr("status") + "/"

	read := func() (banner, web, mobile string) {
		ctx, cancel := context.WithTimeout(bctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("loading %s: %v", url, err)
		}
		text := func(sel string) string {
			s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
			if err != nil {
				t.Fatalf("reading %s on %s: %v", sel, url, err)
			}
			return s
		}
		return text(".banner"), text(`[data-component="Web app"]`), text(`[data-component="Mobile app"]`)
	}
	banner, web, mobile := read()
	if banner != "All Systems Operational" || web != "Operational" || mobile != "Operational" {
		t.Fatalf("healthy page: banner %q, web %q, mobile %q", banner, web, mobile)
	}
	browsertest.Screenshot(t, bctx, "status-operational")

	b.Close() // the mobile pool loses its only member
	deadline := time.Now().Add(10 * time.Second)
	for {
		banner, web, mobile = read()
		if mobile == "Major outage" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after stopping the backend: banner %q, mobile %q; want Major outage", banner, mobile)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if banner != "Major System Outage" || web != "Operational" {
		t.Errorf("outage page: banner %q, web %q", banner, web)
	}
	browsertest.Screenshot(t, bctx, "status-outage")

	// An operator publishes an incident: a person sees it with its latest
	// update, and each component's 90-day uptime bar.
	ctx := context.Background()
	in, err := tn.client.OpenIncident(ctx, status.IncidentRequest{Name: "Mobile app unavailable", Impact: "critical",
		Body: "We are investigating.", Components: []string{"EU01/Mobile app"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.client.UpdateIncident(ctx, in.ID, status.UpdateRequest{Status: "identified", Body: "The mobile API host lost power."}); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(bctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(pctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	incident, err := chromedp.Run(pctx, chromedp.Text(chromedp.CSS(`[data-incident="`+in.ID+`"]`)))
	if err != nil {
		t.Fatalf("reading the incident: %v", err)
	}
	if !strings.Contains(incident, "Mobile app unavailable") || !strings.Contains(incident, "The mobile API host lost power.") {
		t.Errorf("incident on the page: %q; want its name and latest update", incident)
	}
	uptime, err := chromedp.Run(pctx, chromedp.Text(chromedp.CSS(`[data-uptime="Mobile app"]`)))
	if err != nil {
		t.Fatalf("reading the uptime: %v", err)
	}
	if !strings.HasSuffix(uptime, "% uptime") {
		t.Errorf("uptime label %q", uptime)
	}
	days, err := chromedp.Run(pctx, chromedp.Nodes(chromedp.CSSAll(`[data-uptime-bar="Mobile app"] li`)))
	if err != nil {
		t.Fatalf("reading the uptime bar: %v", err)
	}
	if len(days) != status.HistoryDays {
		t.Errorf("uptime bar has %d days, want %d", len(days), status.HistoryDays)
	}
	browsertest.Screenshot(t, bctx, "status-incident")
}
