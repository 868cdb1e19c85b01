package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/status"
)

// publicJSON reads a document of tn's public status API.
func publicJSON(t *testing.T, tn *testNode, path string, v any) {
	t.Helper()
	resp, err := http.Get("http://" + tn.Addr("status") + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type apiMaint struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Status     string `json:"status"`
	Components []struct {
		Name string `json:"name"`
	} `json:"components"`
	Updates []struct {
		Status string `json:"status"`
		Body   string `json:"body"`
	} `json:"incident_updates"`
}

func maintByID(t *testing.T, tn *testNode, id string) (apiMaint, status.MaintenanceWindow) {
	t.Helper()
	var doc struct {
		Maints []apiMaint `json:"scheduled_maintenances"`
	}
	publicJSON(t, tn, "/api/v2/scheduled-maintenances.json", &doc)
	var pub apiMaint
	for _, m := range doc.Maints {
		if m.ID == id {
			pub = m
		}
	}
	list, err := tn.client.Maintenances(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		if m.ID == id {
			return pub, m
		}
	}
	t.Fatalf("maintenance %s not found", id)
	return pub, status.MaintenanceWindow{}
}

func componentStatus(t *testing.T, tn *testNode, name string) string {
	var doc struct {
		Components []struct{ Name, Status string } `json:"components"`
	}
	publicJSON(t, tn, "/api/v2/summary.json", &doc)
	for _, c := range doc.Components {
		if c.Name == name {
			return c.Status
		}
	}
	return ""
}

func waitWithin(t *testing.T, what string, cond func() bool) {
	within := 10 * time.Second
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMaintenanceDrain runs maintenance windows with drains on a short
// real schedule: the window drains its zone when it starts (components
// under maintenance on the portal's JSON), restores it when it ends with
// the health in the completion update; a window whose drain would empty a
// pool does not start; verify restores early.
func TestMaintenanceDrain(t *testing.T) {
	a1, b1, s1 := backend(t, "a1"), backend(t, "b1"), backend(t, "s1")
	tn := startTestNode(t, `pools:
  - name: web
    health_check: {path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 2}
    members: [{address: "`+addrOf(a1)+`", zone: dc1}, {address: "`+addrOf(b1)+`", zone: dc2}]
    failover: {policy: priority, zones: [dc1, dc2], return_after: 10ms, slow_start: 1ms}
  - name: solo
    members: [{address: "`+addrOf(s1)+`", zone: dc1}]
routes:
  - {host: app.uni-a.test, pool: web}
status:
  components:
    - {name: Web app, pools: [web]}
    - {name: Solo, pools: [solo]}
`)
	at := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(time.RFC3339Nano) }
	schedule := func(args ...string) string {
		t.Helper()
		out, err := statusCLI(t, tn, append([]string{"maintenance", "schedule", "--json"}, args...)...)
		if err != nil {
			t.Fatalf("schedule: %v\n%s", err, out)
		}
		var m status.MaintenanceWindow
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("schedule printed %q", out)
		}
		return m.ID
	}

	// A drain of dc1 in every pool would leave solo without a member:
	// the window does not start, and says why.
	refused := schedule("DC1 everything", "--drain-zone", "dc1", "--from", at(500*time.Millisecond), "--until", at(2*time.Second))
	waitWithin(t, "the refusal", func() bool {
		_, m := maintByID(t, tn, refused)
		return m.DrainState == status.DrainRefused
	})
	pub, m := maintByID(t, tn, refused)
	if pub.Status != status.Scheduled || !strings.Contains(m.DrainError, `pool "solo" would have no healthy member: 1 of 1 members healthy now`) {
		t.Errorf("refused window: public status %q, drain error %q", pub.Status, m.DrainError)
	}
	if drained(tn, "web", addrOf(a1)) || drained(tn, "solo", addrOf(s1)) {
		t.Error("a refused window drained members")
	}

	// A window on dc1 of web: drains when it starts, restores at its end.
	id := schedule("DC1 upgrade", "--drain-zone", "dc1", "--drain-pool", "web", "--from", at(time.Second), "--until", at(3*time.Second))
	pub, m = maintByID(t, tn, id)
	if m.DrainState != status.DrainPending || len(pub.Components) != 1 || pub.Components[0].Name != "Web app" {
		t.Errorf("scheduled: drain state %q, components %+v (want pending, Web app from the pool)", m.DrainState, pub.Components)
	}
	waitWithin(t, "the window to start", func() bool {
		pub, _ := maintByID(t, tn, id)
		return pub.Status == status.InProgress
	})
	if !drained(tn, "web", addrOf(a1)) || drained(tn, "web", addrOf(b1)) {
		t.Error("in progress: a1 (dc1) should be drained, b1 not")
	}
	if got := componentStatus(t, tn, "Web app"); got != status.Maintenance {
		t.Errorf("Web app during the window: %q", got)
	}
	tn.addCert("app.uni-a.test")
	c := tn.httpClient(false)
	for range 5 {
		if code, body := get(t, c, "https://app.uni-a.test/"); code != 200 || body != "b1" {
			t.Fatalf("during the window: %d %q, want b1", code, body)
		}
	}
	c.CloseIdleConnections()
	waitWithin(t, "the window to end", func() bool {
		pub, _ := maintByID(t, tn, id)
		return pub.Status == status.Completed
	})
	pub, m = maintByID(t, tn, id)
	last := pub.Updates[0].Body
	if m.DrainState != status.DrainRestored || drained(tn, "web", addrOf(a1)) ||
		!strings.Contains(last, "Traffic is back on zone dc1, pool web (1 of 1 members healthy)") {
		t.Errorf("completed: drain state %q, a1 drained %v, update %q", m.DrainState, drained(tn, "web", addrOf(a1)), last)
	}
	if got := componentStatus(t, tn, "Web app"); got != status.Operational {
		t.Errorf("Web app after the window: %q", got)
	}

	// verify restores before the window's end.
	id = schedule("Member swap", "--drain-member", addrOf(a1), "--from", at(300*time.Millisecond), "--until", at(time.Hour))
	waitWithin(t, "the second window to start", func() bool { return drained(tn, "web", addrOf(a1)) })
	if out, err := statusCLI(t, tn, "maintenance", "verify", id); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if drained(tn, "web", addrOf(a1)) {
		t.Error("verify did not restore a1")
	}
	pub, _ = maintByID(t, tn, id)
	if pub.Status != status.Verifying || !strings.Contains(pub.Updates[0].Body, "(1 of 1 members healthy)") {
		t.Errorf("after verify: %q %q", pub.Status, pub.Updates[0].Body)
	}
	if out, err := statusCLI(t, tn, "maintenance", "complete", id); err != nil {
		t.Fatalf("complete: %v\n%s", err, out)
	}
}
