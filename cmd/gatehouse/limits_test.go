package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
)

func TestCertificateLimit(t *testing.T) {
	tn := startTestNode(t, twoPools(t)+"limits: {max_certificates: 2}\n")
	tn.addCert("a.uni-a.test")
	tn.addCert("b.uni-a.test")
	certPEM, keyPEM, _ := tn.ca.Issue("c.uni-a.test")
	_, err := tn.client.AddCert(context.Background(), certPEM, keyPEM)
	var apiErr *admin.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Code != "limit_exceeded" {
		t.Fatalf("third certificate: %v, want 409 limit_exceeded", err)
	}
	if !strings.Contains(apiErr.Message, "2 of 2 in use") || !strings.Contains(apiErr.Message, "limits.max_certificates") {
		t.Errorf("limit message %q does not name the usage and the limit", apiErr.Message)
	}
	if l := apiErr.Limit; l == nil || l.Resource != "certificates" || l.Usage != 2 || l.Limit != 2 || l.Adding != 1 {
		t.Errorf("limit numbers = %+v, want certificates 2 of 2 adding 1", l)
	}
	// A renewal of an installed name replaces, so it fits under the limit.
	certPEM, keyPEM, _ = tn.ca.Issue("a.uni-a.test")
	if _, err := tn.client.AddCert(context.Background(), certPEM, keyPEM); err != nil {
		t.Fatalf("renewal at the limit: %v", err)
	}
	// A batch that would cross the limit is refused whole.
	var items []admin.BatchItem
	for _, n := range []string{"d.uni-a.test", "e.uni-a.test"} {
		c, k, _ := tn.ca.Issue(n)
		items = append(items, admin.BatchItem{Source: n, CertPEM: string(c), KeyPEM: string(k)})
	}
	results, err := tn.client.AddCerts(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if r.Error == "" {
			t.Errorf("batch item %s was added past the limit", r.Source)
		}
	}
	if _, err := tn.handshake("d.uni-a.test"); err == nil {
		t.Error("refused batch item is served")
	}

	res, err := tn.client.Limits(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]capacity.Resource{}
	for _, r := range res {
		byName[r.Name] = r
	}
	if c := byName["certificates"]; c.Usage != 2 || c.Limit != 2 || c.Level != capacity.LevelCritical || !c.Hard {
		t.Errorf("certificates resource = %+v, want 2 of 2, critical, hard", c)
	}
	for _, name := range []string{"certificate_cache", "https_connections", "file_descriptors", "memory", "store", "backend_connections"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("resource %s not registered", name)
		}
	}
	if fd := byName["file_descriptors"]; fd.Limit <= 0 || fd.Usage <= 0 {
		t.Errorf("file_descriptors = %+v", fd)
	}
}

func TestMetricsNeedToken(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("a.uni-a.test")
	adminCA, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.crt"))
	tok, _ := os.ReadFile(filepath.Join(tn.cfg.DataDir, "admin.token"))
	hc := tn.adminHTTP(adminCA)
	req, _ := http.NewRequest("GET", "https://"+tn.Addr("admin")+"/metrics", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without token: %d, want 401", resp.StatusCode)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gatehouse_resource_usage{resource="certificates",unit="count"} 1`, `gatehouse_resource_limit{resource="file_descriptors",unit="count"}`, "go_goroutines", `gatehouse_certificates_expiring{within="30d"} 0`, "gatehouse_certificates_expired 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestExpiringCertificates(t *testing.T) {
	tn := startTestNode(t, twoPools(t))
	tn.addCert("later.uni-a.test")
	certPEM, keyPEM, err := tn.ca.IssueUntil(time.Now().Add(10*24*time.Hour), "soon.uni-a.test")
	if err != nil {
		t.Fatal(err)
	}
	res, err := tn.client.AddCert(context.Background(), certPEM, keyPEM)
	if err != nil {
		t.Fatalf("adding a certificate that expires in 10 days: %v", err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "expires in") {
		t.Errorf("warnings = %q, want one expiry warning", res.Warnings)
	}
	if res.Cert.Status != "expiring" {
		t.Errorf("status = %q, want expiring", res.Cert.Status)
	}
	list, err := tn.client.Expiring(context.Background(), "30d", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != res.Cert.ID {
		t.Fatalf("expiring within 30d = %+v, want only %s", list, res.Cert.ID)
	}
	if list, _ := tn.client.Expiring(context.Background(), "5d", 100); len(list) != 0 {
		t.Fatalf("expiring within 5d = %+v, want none", list)
	}
	var apiErr *admin.APIError
	if _, err := tn.client.Expiring(context.Background(), "soon", 100); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("bad horizon: %v, want 400", err)
	}
}
