package acme

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	acmeproto "github.com/mholt/acmez/v3/acme"

	"gatehouse/internal/certs"
	"gatehouse/internal/store/bolt"
)

func newChallenges(t *testing.T) (*Challenges, *atomic.Int64) {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "g.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kek, err := certs.ParseKEK(make([]byte, certs.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	clock := new(atomic.Int64)
	clock.Store(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return NewChallenges(st, kek, nil, func() time.Time { return time.Unix(0, clock.Load()) }), clock
}

func TestHTTP01(t *testing.T) {
	c, clock := newChallenges(t)
	ctx := context.Background()
	ch := acmeproto.Challenge{Token: "tok_en-0123456789abcdef", KeyAuthorization: "tok_en-0123456789abcdef.thumb",
		Identifier: acmeproto.Identifier{Type: "dns", Value: "Shop.Example.com"}}
	if err := (httpSolver{c}).Present(ctx, ch); err != nil {
		t.Fatal(err)
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusPermanentRedirect) })
	h := c.HTTPHandler(next)
	get := func(host, path string) (int, string) {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	tests := []struct {
		name, host, path string
		code             int
		body             string
	}{
		{"answer", "shop.example.com", "/.well-known/acme-challenge/tok_en-0123456789abcdef", 200, ch.KeyAuthorization},
		{"answer with port", "shop.example.com:80", "/.well-known/acme-challenge/tok_en-0123456789abcdef", 200, ch.KeyAuthorization},
		{"other host", "other.example.com", "/.well-known/acme-challenge/tok_en-0123456789abcdef", 404, ""},
		{"unknown token", "shop.example.com", "/.well-known/acme-challenge/AAAAAAAAAAAAAAAAAAAAAAAA", 404, ""},
		{"junk token", "shop.example.com", "/.well-known/acme-challenge/../../etc/passwd", 404, ""},
		{"long token", "shop.example.com", "/.well-known/acme-challenge/" + strings.Repeat("a", 500), 404, ""},
		{"not a challenge", "shop.example.com", "/index.html", 308, ""},
	}
	for _, tc := range tests {
		code, body := get(tc.host, tc.path)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	// Expired: not answered; the sweep deletes it.
	clock.Add(int64(challengeTTL + time.Second))
	if code, _ := get("shop.example.com", "/.well-known/acme-challenge/tok_en-0123456789abcdef"); code != 404 {
		t.Errorf("expired challenge answered: %d", code)
	}
	if n, err := c.Sweep(ctx); n != 1 || err != nil {
		t.Errorf("Sweep = %d, %v; want 1", n, err)
	}
}

func TestTLSALPN01(t *testing.T) {
	c, _ := newChallenges(t)
	ctx := context.Background()
	ch := acmeproto.Challenge{Token: "tok_en-0123456789abcdef", KeyAuthorization: "tok_en-0123456789abcdef.thumb",
		Identifier: acmeproto.Identifier{Type: "dns", Value: "shop.example.com"}}
	if err := (alpnSolver{c}).Present(ctx, ch); err != nil {
		t.Fatal(err)
	}
	hello := func(name string, protos ...string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, SupportedProtos: protos}
	}
	// An ordinary handshake is not touched.
	if cfg, err := c.GetConfigForClient(hello("shop.example.com", "h2", "http/1.1")); cfg != nil || err != nil {
		t.Errorf("ordinary hello: %v %v", cfg, err)
	}
	cfg, err := c.GetConfigForClient(hello("shop.example.com", ACMETLS1))
	if err != nil || cfg == nil || len(cfg.Certificates) != 1 || cfg.NextProtos[0] != ACMETLS1 {
		t.Fatalf("acme-tls/1 hello: %+v %v", cfg, err)
	}
	if _, err := c.GetConfigForClient(hello("other.example.com", ACMETLS1)); err == nil {
		t.Error("acme-tls/1 for a name without a challenge was answered")
	}
	if _, err := c.GetConfigForClient(hello("", ACMETLS1)); err == nil {
		t.Error("acme-tls/1 without SNI was answered")
	}
	if err := (alpnSolver{c}).CleanUp(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetConfigForClient(hello("shop.example.com", ACMETLS1)); err == nil {
		t.Error("answered after cleanup")
	}
}
