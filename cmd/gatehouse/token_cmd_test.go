package main

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// webAppNode starts a node with one pool "web" of one member (returned),
// a route and a status component "Web app".
func webAppNode(t *testing.T) (*testNode, *httptest.Server) {
	a := backend(t, "a1")
	return startTestNode(t, `pools:
  - name: web
    members: [{address: "`+addrOf(a)+`"}]
routes:
  - {host: app.test, pool: web}
status:
  title: Example
  components:
    - {name: Web app, pools: [web]}
`), a
}

// TestTokenCLI adds a status-scoped token with the CLI, uses it on a node
// (reads pass, a route change is refused naming the routes scope, an
// incident is opened), rotates it (the old secret is refused) and removes it.
func TestTokenCLI(t *testing.T) {
	tn, _ := webAppNode(t)
	secretRE := regexp.MustCompile(`gh_ops_[0-9a-f]{64}`)
	out, err := statusCLI(t, tn, "token", "add", "ops", "--scopes", "read,status")
	if err != nil {
		t.Fatalf("token add: %v\n%s", err, out)
	}
	secret := secretRE.FindString(out)
	if secret == "" || !strings.Contains(out, "scopes read,status") {
		t.Fatalf("token add printed %q: want the scopes and the secret", out)
	}
	out, err = statusCLI(t, tn, "token", "list")
	if err != nil || !strings.Contains(out, "ops") || !strings.Contains(out, "read,status") || strings.Contains(out, secret[7:]) {
		t.Fatalf("token list: %v\n%s", err, out)
	}

	if out, err := statusCLI(t, tn, "route", "list", "--token", secret); err != nil {
		t.Fatalf("route list with a read token: %v\n%s", err, out)
	}
	_, err = statusCLI(t, tn, "route", "add", "--host", "new.test", "--pool", "web", "--token", secret)
	if err == nil || !strings.Contains(err.Error(), `"routes" scope`) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("route add with read,status: %v, want 403 naming the routes scope", err)
	}
	if out, err := statusCLI(t, tn, "incident", "open", "Slow logins", "-m", "Looking into it.", "--component", "Web app", "--token", secret); err != nil {
		t.Fatalf("incident open with the status scope: %v\n%s", err, out)
	}
	if _, err := statusCLI(t, tn, "token", "list", "--token", secret); err == nil || !strings.Contains(err.Error(), `"admin" scope`) {
		t.Fatalf("token list with read,status: %v, want 403 naming the admin scope", err)
	}

	out, err = statusCLI(t, tn, "token", "rotate", "ops")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	rotated := secretRE.FindString(out)
	if rotated == "" || rotated == secret {
		t.Fatalf("rotate printed %q: want a new secret", out)
	}
	if _, err := statusCLI(t, tn, "route", "list", "--token", secret); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("old secret after rotation: %v, want 401", err)
	}
	if out, err := statusCLI(t, tn, "token", "rm", "ops"); err != nil || !strings.Contains(out, "removed token ops") {
		t.Fatalf("rm: %v\n%s", err, out)
	}
	if _, err := statusCLI(t, tn, "route", "list", "--token", rotated); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("removed token: %v, want 401", err)
	}
}
