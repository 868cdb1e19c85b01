package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"gatehouse/internal/admin"
)

// reloadWith rewrites the node's configuration file, replacing old by new,
// and reloads it through the admin API (`gatehouse reload`).
func (tn *testNode) reloadWith(old, new string) {
	tn.t.Helper()
	tn.rewrite(old, new)
	if err := tn.client.Reload(context.Background()); err != nil {
		tn.t.Fatalf("reload with %q: %v", new, err)
	}
}

func (tn *testNode) rewrite(old, new string) {
	tn.t.Helper()
	b, err := os.ReadFile(tn.cfgPath)
	if err != nil {
		tn.t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		tn.t.Fatalf("configuration has no %q", old)
	}
	if err := os.WriteFile(tn.cfgPath, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		tn.t.Fatal(err)
	}
}

// TestRaisedCertificateLimitAdmitsNextAdd is the incident: a node at
// limits.max_certificates gets a raised limit by reload, and the next
// certificate must be admitted.
func TestRaisedCertificateLimitAdmitsNextAdd(t *testing.T) {
	tn := startTestNode(t, twoPools(t)+"limits: {max_certificates: 2}\n")
	tn.addCert("a.uni-a.test")
	tn.addCert("b.uni-a.test")
	c, k, _ := tn.ca.Issue("c.uni-a.test")
	_, err := tn.client.AddCert(context.Background(), c, k)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("third certificate at the limit: %v, want 409", err)
	}
	tn.reloadWith("max_certificates: 2", "max_certificates: 3")
	if _, err := tn.client.AddCert(context.Background(), c, k); err != nil {
		t.Fatalf("after raising limits.max_certificates to 3 by reload: %v", err)
	}
	if !strings.Contains(string(must(os.ReadFile(tn.cfgPath))), "max_certificates: 3") {
		t.Fatal("configuration not rewritten")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
