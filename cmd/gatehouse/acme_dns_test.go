package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
)

// TestACMEDNS01: the operator's dns01 hook publishes the TXT record that
// the CA's DNS lookup reads; a wildcard hostname is issued and serves
// every name under it; the hook removes its records afterwards.
func TestACMEDNS01(t *testing.T) {
	txt := t.TempDir()
	hookLog := filepath.Join(t.TempDir(), "hook.log")
	hook := filepath.Join(t.TempDir(), "dns-hook.sh")
	script := fmt.Sprintf(`#!/bin/sh
# present|cleanup RECORD-NAME VALUE: the operator's DNS API, here files the
# test CA's DNS answers from.
echo "$1 $2" >> %[2]s
case "$1" in
present) printf '%%s\n' "$3" >> "%[1]s/$2" ;;
cleanup) rm -f "%[1]s/$2" ;;
*) echo "unknown action $1" >&2; exit 2 ;;
esac
`, txt, hookLog)
	if err := os.WriteFile(hook, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	tn, ca := startACMEWithLog(t, acmetest.Options{TXTDir: txt}, nil,
		fmt.Sprintf("  challenges: [dns-01]\n  dns01: {command: [/bin/sh, %s], timeout: 20s}\n", hook))
	ctx := context.Background()
	roots, err := ca.Roots()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, sni string }{
		{"*.uni-g.test", "portal.uni-g.test"},
		{"shop.uni-h.test", "shop.uni-h.test"},
	} {
		if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: tt.name, Tenant: "uni-g", Pool: "a"}); err != nil {
			t.Fatalf("adding %s: %v", tt.name, err)
		}
		waitState(t, tn.client, tt.name, hostnames.Active, 60*time.Second)
		leaf, err := verifiedHandshake(tn.Addr("https"), tt.sni, roots)
		if err != nil {
			t.Fatalf("handshake for %s: %v", tt.sni, err)
		}
		if err := leaf.VerifyHostname(tt.sni); err != nil || leaf.DNSNames[0] != tt.name {
			t.Errorf("%s served %v: %v", tt.sni, leaf.DNSNames, err)
		}
	}
	b, _ := os.ReadFile(hookLog)
	for _, want := range []string{"present _acme-challenge.uni-g.test", "cleanup _acme-challenge.uni-g.test", "present _acme-challenge.shop.uni-h.test", "cleanup _acme-challenge.shop.uni-h.test"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("hook calls %q lack %q", b, want)
		}
	}
	if left, _ := os.ReadDir(txt); len(left) != 0 {
		t.Errorf("%d TXT records left after the orders", len(left))
	}
}

// TestACMEBadEAB: a CA that requires External Account Binding refuses a
// wrong HMAC key and an unknown key id; the hostname fails with a reason
// naming acme.eab and no order reaches the CA. The right key issues.
func TestACMEBadEAB(t *testing.T) {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	good := base64.RawURLEncoding.EncodeToString(key)
	_, _ = rand.Read(key)
	wrong := base64.RawURLEncoding.EncodeToString(key)
	for _, tt := range []struct {
		name, kid, hmac string
		ok              bool
	}{
		{"wrong-hmac", "kid-1", wrong, false},
		{"unknown-kid", "kid-9", good, false},
		{"right", "kid-1", good, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hmacFile := filepath.Join(t.TempDir(), "eab.hmac")
			if err := os.WriteFile(hmacFile, []byte(tt.hmac+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			tn, ca := startACMEWithLog(t, acmetest.Options{EAB: map[string]string{"kid-1": good}}, nil,
				fmt.Sprintf("  challenges: [http-01]\n  eab: {key_id: %s, hmac_file: %s}\n", tt.kid, hmacFile))
			ctx := context.Background()
			name := "eab.uni-i.test"
			if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Pool: "a"}); err != nil {
				t.Fatal(err)
			}
			if tt.ok {
				waitState(t, tn.client, name, hostnames.Active, 60*time.Second)
				return
			}
			h := waitState(t, tn.client, name, hostnames.Failed, 60*time.Second)
			if !strings.Contains(h.Reason, "acme.eab") || h.Attempts != 1 || !h.NextAttempt.After(time.Now()) {
				t.Errorf("failed hostname: reason %q, attempts %d, next %v; want a reason naming acme.eab and a retry later", h.Reason, h.Attempts, h.NextAttempt)
			}
			if n := ca.Orders(); n != 0 {
				t.Errorf("%d orders reached the CA without an account", n)
			}
			if _, err := verifiedHandshake(tn.Addr("https"), name, nil); err == nil {
				t.Error("a handshake for the failed name verified")
			}
		})
	}
}
