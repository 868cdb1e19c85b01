package status

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPublishedDraftHidesMachineText opens a draft automatically (a pool
// with no healthy member), publishes it with the operator's words, and
// checks every public output — pages, feeds, JSON API, webhook payloads
// and the static export — for the machine-written first update, which
// names the pool; the operator still sees it through the management API.
func TestPublishedDraftHidesMachineText(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	rc := &receiver{secret: secret}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, "", Options{WebhookBackoff: time.Millisecond})
	ctx := context.Background()
	if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL, Secret: secret}); err != nil {
		t.Fatal(err)
	}
	f.h.set("mobile", false)
	f.p.Tick()
	f.clock.Add(30 * time.Second)
	f.p.Tick()
	list := f.p.Incidents()
	if len(list) != 1 || !list[0].Draft {
		t.Fatalf("incidents after a major outage: %+v", list)
	}
	id := list[0].ID
	const machine = "No member of mobile passes its health checks"
	if u := list[0].Updates[0]; !strings.Contains(u.Body, machine) || !u.Internal {
		t.Fatalf("draft's first update %+v: want the machine text, marked internal", u)
	}
	const words = "Signing in to the mobile app fails for some users; we are working on it."
	if _, err := f.p.UpdateIncident(ctx, id, UpdateRequest{Status: Identified, Body: words, Publish: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the incident webhook", func() bool {
		for _, h := range rc.received() {
			if h.event == "incident_update" {
				return true
			}
		}
		return false
	})

	files := f.p.Files()
	for _, path := range []string{"index.html", "history.html", "incidents/" + id + ".html", "history.atom", "history.rss",
		"api/v2/summary.json", "api/v2/incidents.json", "api/v2/incidents/unresolved.json"} {
		body := string(files[path])
		if !strings.Contains(body, id) && !strings.Contains(body, "Signing in to the mobile app fails") {
			t.Errorf("%s does not show the published incident", path)
		}
	}
	for path, body := range files {
		if strings.Contains(string(body), machine) {
			t.Errorf("public %s contains the machine-written update %q", path, machine)
		}
	}
	// The JSON API's timeline is the operator's update alone.
	var doc IncidentsDoc
	if err := json.Unmarshal(files["api/v2/incidents.json"], &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Incidents) != 1 || len(doc.Incidents[0].IncidentUpdates) != 1 || doc.Incidents[0].IncidentUpdates[0].Body != words {
		t.Errorf("incidents.json timeline: %+v, want the operator's update alone", doc.Incidents)
	}
	// The public listener serves the same.
	pub := httptest.NewServer(f.p)
	defer pub.Close()
	for _, path := range []string{"/", "/incidents/" + id + ".html", "/history.atom", "/api/v2/incidents.json"} {
		resp, err := http.Get(pub.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), machine) {
			t.Errorf("GET %s on the public listener shows the machine-written update", path)
		}
	}
	// Webhooks.
	for _, h := range rc.received() {
		b, _ := json.Marshal(h.body)
		if strings.Contains(string(b), machine) {
			t.Errorf("%s webhook payload contains the machine-written update", h.event)
		}
		if !h.validSig {
			t.Errorf("%s webhook: invalid signature", h.event)
		}
	}
	// The static export.
	dir := t.TempDir()
	if err := f.p.Export(dir); err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(path); strings.Contains(string(b), machine) {
				t.Errorf("exported %s contains the machine-written update", path)
			}
		}
		return nil
	})
	// A post-incident report skeleton is written for publication: no
	// machine text in its timeline either.
	md, err := f.p.PostmortemSkeleton(id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(md, machine) || !strings.Contains(md, words) {
		t.Errorf("report skeleton timeline:\n%s\nwant the operator's update, not the machine text", md)
	}
	// The operator's view keeps the machine text, marked internal.
	rec := httptest.NewRecorder()
	f.p.ManagementHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/status/incidents/"+id, nil))
	var in Incident
	if err := json.Unmarshal(rec.Body.Bytes(), &in); err != nil {
		t.Fatal(err)
	}
	if len(in.Updates) != 2 || in.Updates[0].Body == "" || !strings.Contains(in.Updates[0].Body, machine) || !in.Updates[0].Internal || in.Updates[1].Internal {
		t.Errorf("operator view of the incident: %+v, want the internal machine update then the operator's", in.Updates)
	}
}

// TestOldAutoDraftFirstUpdateIsInternal reads an automatically opened
// incident written before updates were marked internal: its first update
// stays off the public outputs too.
func TestOldAutoDraftFirstUpdateIsInternal(t *testing.T) {
	in := &Incident{ID: "id0000000099", Auto: true, Updates: []Update{
		{ID: "a", Body: "No member of mobile passes its health checks."}, {ID: "b", Body: "We are on it."}}}
	pub := in.public()
	if len(pub.Updates) != 1 || pub.Updates[0].ID != "b" {
		t.Errorf("public updates %+v, want only the operator's", pub.Updates)
	}
	if len(in.Updates) != 2 {
		t.Error("public changed the incident it was given")
	}
}
