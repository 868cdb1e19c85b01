package admin

import (
	"context"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/status"
)

// TestNewClientRefusesPlainHTTP checks that no client is built for an
// http:// admin URL (the token would travel in clear), with a message
// that says why and what to use instead.
func TestNewClientRefusesPlainHTTP(t *testing.T) {
	for _, tt := range []struct{ url, want string }{
		{"http://127.0.0.1:9443", `admin URL "http://127.0.0.1:9443": http:// would send the admin token in clear; the admin API serves HTTPS only: use https://127.0.0.1:9443`},
		{"HTTP://admin.example:9443/", "would send the admin token in clear"},
		{"ftp://127.0.0.1:9443", "want https://host:port"},
		{"127.0.0.1:9443", "want https://host:port"},
		{"https://", "want https://host:port"},
	} {
		c, err := NewClient(tt.url, testToken, nil)
		if err == nil {
			t.Errorf("NewClient(%q) = %v, want an error", tt.url, c)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewClient(%q): %v, want it to contain %q", tt.url, err, tt.want)
		}
	}
	if _, err := NewClient("https://127.0.0.1:9443", testToken, nil); err != nil {
		t.Errorf("NewClient(https): %v", err)
	}
}

// TestStatusSiteWaitCapped long-polls the status site through a real admin
// server whose write timeout is 2s, asking to wait 4 minutes for a change
// that never comes: the server answers at its cap (below the write
// timeout) with the revision the client has, instead of waiting past the
// timeout and losing the answer.
func TestStatusSiteWaitCapped(t *testing.T) {
	p := status.New(config.Status{Title: "Acme"}, nil, nil, status.Options{})
	defer p.Close()
	s, err := NewServer(Options{Token: testToken, Status: p.ManagementHandler()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s)
	srv.Config.WriteTimeout = 2 * time.Second
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewClient(srv.URL, testToken, ca)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	rev := p.Revision()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	site, err := c.StatusSite(ctx, rev, 4*time.Minute)
	if err != nil {
		t.Fatalf("long poll of 4m on a server with a 2s write timeout: %v; want an answer at the cap", err)
	}
	if site.Revision != rev || site.Files["index.html"] == "" {
		t.Errorf("answer: revision %d with %d files, want revision %d and the site", site.Revision, len(site.Files), rev)
	}
	t.Logf("answered after %v", time.Since(start).Round(time.Millisecond))

	// Beyond the documented maximum is refused, naming the parameter.
	_, err = c.StatusSite(ctx, rev, status.MaxSiteWait+time.Second)
	if err == nil || !strings.Contains(err.Error(), "wait: must be a duration up to 5m") {
		t.Errorf("wait beyond the maximum: %v, want a refusal naming wait", err)
	}
}
