package status

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/waittest"
)

// receiver is a real local webhook endpoint that fails the first n
// requests with 500.
type receiver struct {
	mu     sync.Mutex
	failN  int
	got    []receivedHook
	secret string
}

type receivedHook struct {
	event    string
	validSig bool
	body     map[string]any
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.failN > 0 {
		rc.failN--
		http.Error(w, "try later", http.StatusInternalServerError)
		return
	}
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	rc.got = append(rc.got, receivedHook{event: r.Header.Get(EventHeader), validSig: r.Header.Get(SignatureHeader) == Sign(rc.secret, body), body: m})
}

func (rc *receiver) received() []receivedHook {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receivedHook(nil), rc.got...)
}

func TestWebhookDeliveryWithRetry(t *testing.T) {
	const secret = "0123456789abcdef-secret"
	rc := &receiver{failN: 1, secret: secret}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, "", Options{WebhookBackoff: 5 * time.Millisecond, WebhookTries: 3})
	ctx := context.Background()
	if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL + "/hook", Secret: secret}); err != nil {
		t.Fatal(err)
	}
	// A component update: an override to major outage.
	if _, err := f.p.SetOverride(ctx, "Mobile app", OverrideRequest{Status: Major}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the component update after a 500", func() bool { return len(rc.received()) == 1 })
	got := rc.received()[0]
	if got.event != "component_update" || !got.validSig {
		t.Fatalf("got event %q, valid signature %v", got.event, got.validSig)
	}
	cu := got.body["component_update"].(map[string]any)
	if diff := cmp.Diff([]any{cu["old_status"], cu["new_status"], cu["component_type"]}, []any{"operational", "major_outage", "Component"}); diff != "" {
		t.Errorf("component_update (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(keys(got.body["component"].(map[string]any)), componentKeys); diff != "" {
		t.Errorf("component keys (-got +want):\n%s", diff)
	}
	if pg := got.body["page"].(map[string]any); pg["status_indicator"] != "critical" {
		t.Errorf("page.status_indicator = %v, want critical", pg["status_indicator"])
	}
	// An incident update.
	in, err := f.p.OpenIncident(ctx, IncidentRequest{Name: "Mobile down", Impact: ImpactCritical, Body: "Investigating."})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the incident update", func() bool { return len(rc.received()) == 2 })
	got = rc.received()[1]
	inc := got.body["incident"].(map[string]any)
	if got.event != "incident_update" || !got.validSig || inc["id"] != in.ID {
		t.Errorf("incident hook: event %q valid %v id %v", got.event, got.validSig, inc["id"])
	}
	if diff := cmp.Diff(keys(inc), incidentKeys); diff != "" {
		t.Errorf("incident keys (-got +want):\n%s", diff)
	}
	// The log shows the failed attempt and its successful retry.
	waitFor(t, "the delivery log", func() bool { return len(f.p.Deliveries("")) == 3 })
	var log []string
	for _, d := range f.p.Deliveries("") {
		log = append(log, d.Event+" "+map[bool]string{true: "ok", false: "failed"}[d.OK])
	}
	if diff := cmp.Diff(log, []string{"component_update failed", "component_update ok", "incident_update ok"}); diff != "" {
		t.Errorf("delivery log (-got +want):\n%s", diff)
	}
}

func TestWebhookFailingSubscriberDoesNotSlowThePage(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	f := newFixture(t, "", Options{WebhookBackoff: time.Hour})
	ctx := context.Background()
	if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL, Secret: "0123456789abcdef"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := range 20 {
		state := []string{Major, Operational}[i%2]
		if _, err := f.p.SetOverride(ctx, "Mobile app", OverrideRequest{Status: state}); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 changes with a hanging subscriber took %v", d)
	}
	if got := f.p.Components(); got[1].Status != Operational {
		t.Errorf("state %s", got[1].Status)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, 0, what, cond)
}
