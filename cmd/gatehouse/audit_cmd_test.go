package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/status"
)

// TestAuditTrail makes one change of each kind through the admin API (CLI
// and client) and reads the trail with "gatehouse audit": each change left
// exactly one record, with the token's name, the source address, the
// object and its before/after summary; no secret appears in any record.
func TestAuditTrail(t *testing.T) {
	tn, a := webAppNode(t)
	ctx := context.Background()
	start := time.Now()
	run := func(args ...string) string {
		t.Helper()
		out, err := statusCLI(t, tn, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	// Tokens: the secrets are what must never reach the trail.
	secret := regexp.MustCompile(`gh_ops_[0-9a-f]{64}`).FindString(run("token", "add", "ops", "--scopes", "read,status"))
	rotated := regexp.MustCompile(`gh_ops_[0-9a-f]{64}`).FindString(run("token", "rotate", "ops"))
	if secret == "" || rotated == "" {
		t.Fatal("no secret printed")
	}
	// Certificates.
	cert := tn.addCert("audit.test")
	if err := tn.client.RemoveCert(ctx, cert.Cert.ID); err != nil {
		t.Fatal(err)
	}
	// Routes.
	var route struct{ ID string }
	if err := json.Unmarshal([]byte(run("route", "add", "--host", "new.test", "--pool", "web", "--json")), &route); err != nil || route.ID == "" {
		t.Fatalf("route add: %v %+v", err, route)
	}
	run("route", "rm", route.ID)
	// Incidents, with the named token.
	var in status.Incident
	if err := json.Unmarshal([]byte(run("incident", "open", "Slow logins", "-m", "Looking.", "--component", "Web app", "--json", "--token", rotated)), &in); err != nil {
		t.Fatal(err)
	}
	run("incident", "resolve", in.ID, "-m", "Fixed.")
	// Maintenance, overrides, reload, drains.
	run("maintenance", "schedule", "Upgrade", "--from", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--until", time.Now().Add(2*time.Hour).UTC().Format(time.RFC3339))
	run("component", "set", "Web app", "degraded_performance", "--reason", "slow")
	run("component", "clear", "Web app")
	run("reload")
	run("drain", "--member", addrOf(a), "--force", "--timeout", "5s")
	run("undrain", "--member", addrOf(a))
	run("token", "rm", "ops")

	bootstrap, err := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	out := run("audit", "--since", "1h", "-o", "json")
	var recs []admin.AuditRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("audit -o json: %v\n%s", err, out)
	}
	byAction := map[string][]admin.AuditRecord{}
	for _, r := range recs {
		byAction[r.Action] = append(byAction[r.Action], r)
		t.Logf("%s %s %s %s", r.Action, r.Object, r.Token, r.Remote)
	}
	want := map[string]string{ // action → object prefix
		"tokens.create": "tokens/ops", "tokens.rotate": "tokens/ops/rotate", "tokens.delete": "tokens/ops",
		"certs.create": "certs/" + cert.Cert.ID, "certs.delete": "certs/" + cert.Cert.ID,
		"routes.create": "routes/" + route.ID, "routes.delete": "routes/" + route.ID,
		"status.incidents.create": "status/incidents/" + in.ID, "status.incidents.updates": "status/incidents/" + in.ID + "/updates",
		"status.maintenances.create":        "status/maintenances/",
		"status.components.override.update": "status/components/", "status.components.override.delete": "status/components/",
		"reload": "reload", "drain": "drain", "undrain": "undrain",
	}
	for action, obj := range want {
		got := byAction[action]
		if len(got) != 1 {
			t.Errorf("%s: %d records, want exactly 1", action, len(got))
			continue
		}
		r := got[0]
		if !strings.HasPrefix(r.Object, obj) || r.Remote == "" || r.Token == "" || r.Time.Before(start.Add(-time.Second)) || r.Status < 200 || r.Status > 299 {
			t.Errorf("%s: record %+v, want object %q, a token, a source address and a time", action, r, obj)
		}
	}
	if len(recs) != len(want) {
		t.Errorf("%d records, want %d (one per change)", len(recs), len(want))
	}
	if r := byAction["status.incidents.create"]; len(r) == 1 && r[0].Token != `token "ops"` {
		t.Errorf("incident opened with the ops token recorded as by %q", r[0].Token)
	}
	if r := byAction["routes.delete"]; len(r) == 1 && !strings.Contains(string(r[0].Before), "new.test") {
		t.Errorf("route removal: before %s, want the route", r[0].Before)
	}
	if r := byAction["routes.create"]; len(r) == 1 && !strings.Contains(string(r[0].After), "new.test") {
		t.Errorf("route added: after %s, want the route", r[0].After)
	}
	if r := byAction["certs.create"]; len(r) == 1 && !strings.Contains(string(r[0].After), "audit.test") {
		t.Errorf("certificate added: after %s, want its names", r[0].After)
	}
	for _, s := range []string{secret, rotated, secret[7:], rotated[7:], "PRIVATE KEY", strings.TrimSpace(string(bootstrap))} {
		if strings.Contains(out, s) {
			t.Errorf("the audit trail holds a secret (%.12s…)", s)
		}
	}

	// Filters: by object, and a bad --since is refused by name.
	out = run("audit", "--object", "routes/")
	if !strings.Contains(out, "routes.create") || strings.Contains(out, "certs.") {
		t.Errorf("audit --object routes/:\n%s", out)
	}
	// The limits table shows the trail's usage.
	if out := run("limits"); !strings.Contains(out, "audit_records") {
		t.Errorf("limits has no audit_records row:\n%s", out)
	}
}
