package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/demo"
	"gatehouse/internal/node"
	"gatehouse/internal/store/bolt"
)

// TestRestartWithBackgroundIndexLoad starts a node on a data directory
// that already holds certificates, with the embedded store's index loading
// in the background: it serves them from its first handshake, applies the
// unknown-name policy and the wildcard fallback, and counts every
// certificate in `gatehouse limits` once the load is done. (42 names load
// in well under a millisecond, so the handshakes here may come after the
// load; internal/certs's *WhileLoading tests hold a load open.)
func TestRestartWithBackgroundIndexLoad(t *testing.T) {
	dir := t.TempDir()
	ca, err := demo.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// Install offline, as `gatehouse cert import --offline` does.
	kek, err := certs.LoadOrCreateKEK(filepath.Join(dir, "kek"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := bolt.Open(filepath.Join(dir, "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := certs.NewManager(st, kek, certs.Options{})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var items []certs.Item
	names := []string{"app.uni-a.test", "*.uni-c.test"}
	for i := range 40 {
		names = append(names, fmt.Sprintf("t%d.uni-b.test", i))
	}
	for _, n := range names {
		c, k, err := ca.Issue(n)
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, certs.Item{Source: n, CertPEM: c, KeyPEM: k})
	}
	for _, r := range m.AddBatch(context.Background(), items) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.Source, r.Err)
		}
	}
	m.Close()
	st.Close()

	doc := fmt.Sprintf("data_dir: %s\nlisteners:\n  https: {address: \"127.0.0.1:0\"}\n  admin: {address: \"127.0.0.1:0\"}\n", dir)
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(ctx, cfg, node.Options{Logger: log})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			t.Error("node did not stop")
		}
	})
	loadingAtFirst := n.Certs().Loading()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	hs := func(sni string) (*x509.Certificate, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", n.Addr("https"),
			&tls.Config{ServerName: sni, RootCAs: roots})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0], nil
	}
	for _, sni := range []string{"app.uni-a.test", "x.uni-c.test", "t39.uni-b.test"} {
		leaf, err := hs(sni)
		if err != nil {
			t.Fatalf("first handshakes after start: %s: %v", sni, err)
		}
		if err := leaf.VerifyHostname(sni); err != nil {
			t.Errorf("%s: served %v", sni, leaf.DNSNames)
		}
	}
	if _, err := hs("unknown.uni-a.test"); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("unknown name after start: %v, want the unrecognized name alert", err)
	}
	t.Logf("index still loading at the first handshake: %v", loadingAtFirst)
	select {
	case <-n.Certs().Loaded():
	case <-time.After(30 * time.Second):
		t.Fatal("the certificate index did not load")
	}
	if got, want := n.Certs().Count(), int64(len(names)); got != want {
		t.Errorf("Count after the load = %d, want %d", got, want)
	}
	for _, r := range n.Capacity().Snapshot() {
		if r.Name == "certificates" && r.Usage != int64(len(names)) {
			t.Errorf("limits: certificates usage %d, want %d", r.Usage, len(names))
		}
	}
}
