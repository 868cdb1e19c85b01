package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"gatehouse/internal/browsertest"
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
  components:
    - {name: Web app, region: EU01, pools: [web]}
    - {name: Mobile app, region: EU01, pools: [mobile]}
`, addrOf(a), addrOf(b)))
	url := "http://" + tn.srv.Addr("status") + "/"

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
}
