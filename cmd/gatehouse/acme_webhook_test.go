package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/acme"
	"gatehouse/internal/acmetest"
	"gatehouse/internal/admin"
	"gatehouse/internal/config"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/node"
	"gatehouse/internal/webhook"
)

// stateReceiver is an operator's endpoint for hostname state changes: it
// answers 500 to the first delivery and records every request.
type stateReceiver struct {
	secret string
	mu     sync.Mutex
	got    []receivedState
}

type receivedState struct {
	delivery, event string
	validSig        bool
	status          int
	p               acme.StatePayload
}

func (r *stateReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rs := receivedState{delivery: req.Header.Get(webhook.DeliveryHeader), event: req.Header.Get(webhook.EventHeader),
		validSig: req.Header.Get(webhook.SignatureHeader) == webhook.Sign(r.secret, body)}
	_ = json.Unmarshal(body, &rs.p)
	r.mu.Lock()
	rs.status = http.StatusOK
	if len(r.got) == 0 {
		rs.status = http.StatusInternalServerError
	}
	r.got = append(r.got, rs)
	r.mu.Unlock()
	w.WriteHeader(rs.status)
}

// delivered returns the payloads answered 200, in arrival order.
func (r *stateReceiver) delivered() []receivedState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedState
	for _, g := range r.got {
		if g.status == http.StatusOK {
			out = append(out, g)
		}
	}
	return out
}

// TestACMEStateWebhook: every state change of a hostname reaches the
// operator's webhook, signed with its secret, once, retried after a 500;
// the key and secret never appear in it.
func TestACMEStateWebhook(t *testing.T) {
	const secret = "an-operator-secret-0123456789"
	rc := &stateReceiver{secret: secret}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	tn, _ := startACMEWithLog(t, acmetest.Options{}, &logs, fmt.Sprintf("  challenges: [http-01]\n  webhook:\n    url: %s/hooks\n    secret_file: %s\n    allow_hosts: [127.0.0.1]\n", srv.URL, secretFile))
	ctx := context.Background()
	name := "shop.uni-d.test"
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: name, Tenant: "uni-d", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	h := waitState(t, tn.client, name, hostnames.Active, 60*time.Second)
	if err := tn.client.RemoveHostname(ctx, name); err != nil {
		t.Fatal(err)
	}
	want := []string{"->pending_validation", "pending_validation->issuing", "issuing->active", "active->removed"}
	var got []receivedState
	deadline := time.Now().Add(30 * time.Second) // the first delivery is retried after a 500 (5 s backoff)
	for {
		got = rc.delivered()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // nothing more may arrive
	got = rc.delivered()
	var seen []string
	for _, g := range got {
		seen = append(seen, string(g.p.From)+"->"+string(g.p.To))
	}
	// Deliveries run concurrently: compare as sets, then check each.
	if len(seen) != len(want) {
		t.Fatalf("delivered %v, want %v", seen, want)
	}
	for _, w := range want {
		found := false
		for _, s := range seen {
			found = found || s == w
		}
		if !found {
			t.Fatalf("delivered %v, missing %s", seen, w)
		}
	}
	for _, g := range got {
		if !g.validSig || g.event != acme.StateEvent || g.p.Event != acme.StateEvent || g.p.Name != name || g.p.Tenant != "uni-d" || g.p.Pool != "a" || g.p.Source != "acme" || g.p.At.IsZero() {
			t.Errorf("delivery %+v", g)
		}
		if g.p.To == hostnames.Active && (g.p.Serial != h.Serial || g.p.NotAfter == nil || !g.p.NotAfter.Equal(h.NotAfter)) {
			t.Errorf("active delivery: serial %q not_after %v, want %q %v", g.p.Serial, g.p.NotAfter, h.Serial, h.NotAfter)
		}
	}
	// The refused first attempt was retried with the same delivery id.
	rc.mu.Lock()
	first := rc.got[0]
	retried := false
	for _, g := range rc.got[1:] {
		retried = retried || (g.delivery == first.delivery && g.status == http.StatusOK)
	}
	rc.mu.Unlock()
	if first.status != http.StatusInternalServerError || !retried {
		t.Errorf("first delivery %+v was not retried after its 500", first)
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the webhook secret appears in the node's log")
	}
}

// TestACMEStateWebhookBadConfig: a webhook URL the policy refuses or a
// missing secret file keeps the node from starting, naming the field.
func TestACMEStateWebhookBadConfig(t *testing.T) {
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	goodSecret := filepath.Join(t.TempDir(), "good.secret")
	if err := os.WriteFile(goodSecret, []byte("0123456789abcdef0123"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ tail, want string }{
		{"  webhook:\n    url: http://127.0.0.1:9/x\n    secret_file: " + secretFile + "\n", "acme.webhook.secret_file"},
		{"  webhook:\n    url: http://127.0.0.1:9/x\n    secret_file: /nonexistent/secret\n", "acme.webhook.secret_file"},
		{"  webhook:\n    url: ftp://x/\n    secret_file: " + secretFile + "\n", "acme.webhook.url"},
		{"  webhook:\n    url: https://hooks.example/\n", "acme.webhook.secret_file: is required"},
		{"  webhook:\n    url: http://127.0.0.1:9/x\n    secret_file: " + goodSecret + "\n", "acme.webhook.url: http://127.0.0.1:9/x: 127.0.0.1 is a loopback address; allow it in acme.webhook.allow_hosts"},
	} {
		err := startNodeErr(t, twoPools(t)+"acme:\n  directories: [https://127.0.0.1:1/dir]\n"+tt.tail)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: start error %v, want it to name %s", tt.tail, err, tt.want)
		}
	}
}

// startNodeErr loads a config and starts a node from it, returning the
// first error (a started node is shut down at once).
func startNodeErr(t *testing.T, yamlTail string) error {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	doc := fmt.Sprintf("data_dir: %s\nlisteners:\n  https: {address: \"127.0.0.1:0\"}\n  http: {address: \"127.0.0.1:0\"}\n  admin: {address: \"127.0.0.1:0\"}\n%s", dir, yamlTail)
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	n, err := node.New(context.Background(), cfg, node.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	_ = n.Shutdown(context.Background())
	return nil
}
