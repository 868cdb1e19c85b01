package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/webhook"
)

func testKEK(t *testing.T) *certs.KEK {
	t.Helper()
	k, err := certs.ParseKEK(bytes.Repeat([]byte{0x5a}, certs.KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedBytes returns the store's value under key and the whole store file.
func storedBytes(t *testing.T, f *fixture, key string) (value, file []byte) {
	t.Helper()
	kv, err := f.st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	file, err = os.ReadFile(filepath.Join(f.dir, "status.db"))
	if err != nil {
		t.Fatal(err)
	}
	return kv.Value, file
}

// componentEvent sets an override and waits for the receiver to get the
// component update it announces; it returns that delivery.
func componentEvent(t *testing.T, f *fixture, rc *receiver, status string) receivedHook {
	t.Helper()
	n := len(rc.received())
	if _, err := f.p.SetOverride(context.Background(), "EU01/Mobile app", OverrideRequest{Status: status}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the component update at the receiver", func() bool { return len(rc.received()) > n })
	return rc.received()[n]
}

// TestWebhookSecretSealed subscribes with a secret on a portal that has
// the node's KEK: neither the record nor the store file holds the secret,
// a real receiver verifies the signature, and a portal started again on
// the store reads the secret back.
func TestWebhookSecretSealed(t *testing.T) {
	const secret = "webhook-secret-0123456789abcdef"
	rc := &receiver{secret: secret}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	kek := testKEK(t)
	f := newFixture(t, "", Options{Secrets: kek, WebhookBackoff: time.Millisecond})
	ctx := context.Background()
	s, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL + "/hook", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if s.Secret != secret {
		t.Errorf("the answer to the subscription carries secret %q, want the one given", s.Secret)
	}
	value, file := storedBytes(t, f, keyWebhooks+s.ID)
	if bytes.Contains(value, []byte(secret)) || bytes.Contains(file, []byte(secret)) {
		t.Fatal("the store holds the webhook secret in clear")
	}
	var st storedSubscriber
	if err := json.Unmarshal(value, &st); err != nil || len(st.SealedSecret) == 0 || st.Secret != "" {
		t.Fatalf("stored record %s: want sealed_secret and no secret (%v)", value, err)
	}
	if got := componentEvent(t, f, rc, Major); !got.validSig {
		t.Error("the receiver could not verify the signature of a delivery")
	}

	// Read back by a portal started again on the same store.
	p2 := New(testStatus, nil, f.h.source, Options{Store: f.st, Now: f.clock.Now, Interval: time.Hour, Secrets: kek})
	if err := p2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	p2.mu.Lock()
	got := p2.subs[s.ID].Secret
	p2.mu.Unlock()
	if got != secret {
		t.Errorf("a portal started on the store reads secret %q, want the one subscribed", got)
	}
	// Without the KEK the sealed record is skipped rather than used
	// unsigned.
	p3 := New(testStatus, nil, f.h.source, Options{Store: f.st, Now: f.clock.Now, Interval: time.Hour})
	if err := p3.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	p3.mu.Lock()
	_, loaded := p3.subs[s.ID]
	p3.mu.Unlock()
	if loaded {
		t.Error("a portal without the KEK loaded a subscriber whose secret it cannot open")
	}
}

// TestWebhookClearSecretSealedAtStart starts a portal on a store whose
// subscriber an older version wrote with its secret in clear: deliveries
// keep verifying, and the leader's first tick seals the secret.
func TestWebhookClearSecretSealedAtStart(t *testing.T) {
	const secret = "older-version-secret-0123456789"
	rc := &receiver{secret: secret}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "status.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := `{"id":"oldsub000001","url":"` + srv.URL + `/hook","secret":"` + secret + `","created_at":"2026-01-01T00:00:00Z"}`
	if _, err := store.PutKV(context.Background(), st, keyWebhooks+"oldsub000001", []byte(old)); err != nil {
		t.Fatal(err)
	}
	st.Close()

	f := newFixture(t, dir, Options{Secrets: testKEK(t), WebhookBackoff: time.Millisecond})
	if got := componentEvent(t, f, rc, Major); !got.validSig {
		t.Error("a delivery with the secret read in clear did not verify")
	}
	f.p.Tick() // the leader seals
	value, _ := storedBytes(t, f, keyWebhooks+"oldsub000001")
	if bytes.Contains(value, []byte(secret)) || !bytes.Contains(value, []byte(`"sealed_secret"`)) {
		t.Fatalf("record after the leader's tick: %s; want the secret sealed", value)
	}
	if got := componentEvent(t, f, rc, Partial); !got.validSig {
		t.Error("a delivery after sealing did not verify")
	}
}

// TestWebhookURLRefused subscribes to addresses the policy refuses, with
// no allow-list: each is refused naming the url field, nothing is stored;
// private ranges are accepted.
func TestWebhookURLRefused(t *testing.T) {
	f := newFixture(t, "", Options{})
	noAllow := testStatus
	noAllow.Webhooks = config.StatusWebhooks{}
	f.p.Reconfigure(noAllow, nil)
	ctx := context.Background()
	for _, tt := range []struct{ url, want string }{
		{"http://127.0.0.1:9/hook", "url: http://127.0.0.1:9/hook: 127.0.0.1 is a loopback address"},
		{"http://127.1.2.3/", "127.1.2.3 is a loopback address"},
		{"http://[::1]:9/", "::1 is a loopback address"},
		{"http://[::ffff:127.0.0.1]:9/", "127.0.0.1 is a loopback address"},
		{"http://localhost:9/", "is a loopback address"},
		{"http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"},
		{"https://[fe80::1]/", "fe80::1 is a link-local address"},
		{"http://0.0.0.0:80/", "0.0.0.0 is an unspecified address"},
		{"http://0.1.2.3/", "0.1.2.3 is an unspecified address"},
		{"http://[::]/", ":: is an unspecified address"},
		{"http://239.1.2.3/", "239.1.2.3 is a multicast or broadcast address"},
		{"http://224.0.0.1/", "224.0.0.1 is a link-local address"}, // link-local multicast
		{"http://255.255.255.255/", "255.255.255.255 is a multicast or broadcast address"},
		{"http://no-such-host.invalid/", `url: host "no-such-host.invalid" of http://no-such-host.invalid/ does not resolve`},
	} {
		_, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: tt.url})
		var in *InputError
		if !errors.As(err, &in) || in.Field != "url" || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("subscribing %s: %v, want an input error on url containing %q", tt.url, err, tt.want)
		}
	}
	if subs := f.p.Subscribers(); len(subs) != 0 {
		t.Errorf("refused subscriptions left subscribers: %+v", subs)
	}
	// Private ranges are where internal chat hooks live: allowed.
	for _, u := range []string{"http://10.1.2.3/hook", "https://192.168.1.10:8443/", "https://[fd00::1]/x", "http://100.64.0.9/"} {
		if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: u}); err != nil {
			t.Errorf("subscribing %s (a private address): %v", u, err)
		}
	}
	// The admin API answers 400 with the message.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/v1/status/webhooks", strings.NewReader(`{"url":"http://169.254.169.254/"}`))
	f.p.ManagementHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"message": "url: http://169.254.169.254/: 169.254.169.254 is a link-local address`) {
		t.Errorf("admin API: %d %s, want 400 naming url", rec.Code, rec.Body)
	}
}

// TestWebhookOwnListenersRefused refuses the node's own listeners, even
// where the allow-list permits their address, on a specific and on a
// wildcard address.
func TestWebhookOwnListenersRefused(t *testing.T) {
	f := newFixture(t, "", Options{}) // allows 127.0.0.1
	f.p.SetListeners(map[string]string{"admin": "127.0.0.1:9443", "status": "0.0.0.0:8081", "https": "[::]:8443"})
	ctx := context.Background()
	for _, tt := range []struct{ url, want string }{
		{"https://127.0.0.1:9443/v1/certs", "127.0.0.1:9443 is this node's own admin listener"},
		{"http://127.0.0.1:8081/", "127.0.0.1:8081 is this node's own status listener"},
		{"https://127.0.0.1:8443/", "127.0.0.1:8443 is this node's own https listener"},
	} {
		_, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: tt.url})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "url: ") {
			t.Errorf("subscribing %s: %v, want %q", tt.url, err, tt.want)
		}
	}
	// An interface address of this machine on a wildcard listener's port.
	for _, a := range webhook.InterfaceAddrs() {
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		u := "http://" + net.JoinHostPort(a.String(), "8081") + "/"
		if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: u}); err == nil || !strings.Contains(err.Error(), "own status listener") {
			t.Errorf("subscribing %s: %v, want the own status listener refused", u, err)
		}
		break
	}
	// Another port on the allowed address is fine.
	if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "http://127.0.0.1:9444/"}); err != nil {
		t.Errorf("allowed loopback on another port: %v", err)
	}
}

// TestWebhookRefusedAtDelivery subscribes a loopback receiver while the
// allow-list permits it, then removes it from the list (as a changed DNS
// answer would move a name to a refused address): the delivery is refused
// at the dialled address and the receiver gets nothing. A host name on
// the allow-list is delivered to, whatever it resolves to.
func TestWebhookRefusedAtDelivery(t *testing.T) {
	rc := &receiver{secret: "0123456789abcdef"}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	f := newFixture(t, "", Options{WebhookTries: 1})
	ctx := context.Background()
	sub, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: srv.URL, Secret: "0123456789abcdef"})
	if err != nil {
		t.Fatal(err)
	}
	noAllow := testStatus
	noAllow.Webhooks = config.StatusWebhooks{}
	f.p.Reconfigure(noAllow, nil)
	if _, err := f.p.SetOverride(ctx, "EU01/Mobile app", OverrideRequest{Status: Major}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refused delivery in the log", func() bool { return len(f.p.Deliveries(sub.ID)) == 1 })
	d := f.p.Deliveries(sub.ID)[0]
	if d.OK || !d.Final || !strings.Contains(d.Error, "webhook refused: 127.0.0.1 is a loopback address") {
		t.Errorf("delivery %+v, want it refused at the dialled loopback address", d)
	}
	if n := len(rc.received()); n != 0 {
		t.Errorf("the receiver got %d requests, want none", n)
	}

	// Allowed by name: localhost, whatever it resolves to.
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	byName := testStatus
	byName.Webhooks = config.StatusWebhooks{AllowHosts: []string{"localhost"}}
	f.p.Reconfigure(byName, nil)
	if err := f.p.RemoveSubscriber(ctx, sub.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.AddSubscriber(ctx, SubscriberRequest{URL: "http://localhost:" + port + "/", Secret: "0123456789abcdef"}); err != nil {
		t.Fatalf("subscribing localhost allowed by name: %v", err)
	}
	if got := componentEvent(t, f, rc, Partial); !got.validSig {
		t.Error("delivery to a host allowed by name: invalid signature")
	}
}
