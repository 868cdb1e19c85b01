package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

const bootstrapToken = "bootstrap-token-0123456789abcdef"

func boltStore(t testing.TB) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// tokenAPI serves an admin API with named tokens kept in st.
func tokenAPI(t *testing.T, st store.Store, opts Options) *httptest.Server {
	t.Helper()
	opts.Token = bootstrapToken
	opts.Tokens = NewTokens(st)
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func clientFor(t *testing.T, srv *httptest.Server, token string) *Client {
	t.Helper()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	c, err := NewClient(srv.URL, token, ca)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.http.CloseIdleConnections)
	return c
}

// TestEndpointScopes sends a request to every endpoint of the table with a
// token of every scope: a scope that does not grant the endpoint's is
// refused with 403 naming the scope needed; one that does is let through
// (the endpoint then answers for itself: here mostly 404, as the server has
// no hooks, or 400 for an empty body).
func TestEndpointScopes(t *testing.T) {
	st := boltStore(t)
	srv := tokenAPI(t, st, Options{})
	tokens := NewTokens(st)
	secrets := map[Scope]string{}
	for _, sc := range Scopes {
		out, err := tokens.Add(context.Background(), "only-"+string(sc), []string{string(sc)}, "test")
		if err != nil {
			t.Fatal(err)
		}
		secrets[sc] = out.Secret
	}
	hc := srv.Client()
	param := regexp.MustCompile(`\{[a-z]+\}`)
	for _, e := range endpoints {
		method, path, _ := strings.Cut(e.Pattern, " ")
		path = param.ReplaceAllString(path, "x")
		if strings.HasSuffix(path, "/v1/status/") {
			path += "incidents"
		}
		for _, sc := range Scopes {
			t.Run(e.Pattern+"/"+string(sc), func(t *testing.T) {
				req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
				req.Header.Set("Authorization", "Bearer "+secrets[sc])
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				allowed := sc == e.Scope || sc == ScopeAdmin
				if allowed {
					if resp.StatusCode == http.StatusForbidden || resp.StatusCode == http.StatusUnauthorized {
						t.Fatalf("%s with a %s token: got %d %s, want it let through", e.Pattern, sc, resp.StatusCode, body)
					}
					return
				}
				if resp.StatusCode != http.StatusForbidden {
					t.Fatalf("%s with a %s token: got %d %s, want 403", e.Pattern, sc, resp.StatusCode, body)
				}
				var eb ErrorBody
				if err := json.Unmarshal(body, &eb); err != nil {
					t.Fatal(err)
				}
				if eb.Error.Code != "forbidden" || eb.Error.Scope != string(e.Scope) || !strings.Contains(eb.Error.Message, `"`+string(e.Scope)+`" scope`) {
					t.Fatalf("refusal %+v: want code forbidden naming scope %q", eb.Error, e.Scope)
				}
			})
		}
	}
	// A path no endpoint declares needs the admin scope.
	req, _ := http.NewRequest("GET", srv.URL+"/v1/nothing-here", nil)
	req.Header.Set("Authorization", "Bearer "+secrets[ScopeRead])
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("undeclared path with a read token: got %d, want 403", resp.StatusCode)
	}
}

// TestEveryEndpointDeclared builds the API with every hook: registering an
// endpoint missing from the table panics.
func TestEveryEndpointDeclared(t *testing.T) {
	type anyCerts struct{ Certs }
	type anyRoutes struct{ Routes }
	type anyHostnames struct{ Hostnames }
	type anyDrains struct{ Drains }
	defer func() {
		if r := recover(); r != nil {
			t.Fatal(r)
		}
	}()
	_, err := NewServer(Options{
		Token: bootstrapToken, Certs: anyCerts{}, Routes: anyRoutes{}, Hostnames: anyHostnames{}, Drains: anyDrains{},
		Pools: func() []Pool { return nil }, Limits: func() []capacity.Resource { return nil }, Metrics: http.NotFoundHandler(), Status: http.NotFoundHandler(),
		Reload: func(context.Context) error { return nil }, Upgrade: func(context.Context) error { return nil }, Tokens: NewTokens(boltStore(t)),
	})
	if err != nil {
		t.Fatal(err)
	}
}

func apiStatus(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// TestTokenLifecycle adds, uses, rotates and removes a named token through
// the client, and checks that the store keeps only its hash.
func TestTokenLifecycle(t *testing.T) {
	st := boltStore(t)
	srv := tokenAPI(t, st, Options{})
	boot := clientFor(t, srv, bootstrapToken)
	ctx := context.Background()

	out, err := boot.AddToken(ctx, "ci", []string{"status", "read"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.Secret, "gh_ci_") || len(out.Secret) != len("gh_ci_")+64 {
		t.Fatalf("secret %q: want gh_ci_ and 64 hex digits", out.Secret)
	}
	if got := JoinScopes(out.Token.Scopes, ","); got != "read,status" {
		t.Fatalf("scopes %s, want read,status", got)
	}
	if out.Token.CreatedBy == "" || strings.Contains(out.Token.CreatedBy, bootstrapToken) {
		t.Fatalf("created_by %q: want the bootstrap token's name, never the token", out.Token.CreatedBy)
	}
	kv, err := st.Get(ctx, TokenPrefix+"ci")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(kv.Value), out.Secret) || strings.Contains(string(kv.Value), out.Secret[6:]) {
		t.Fatalf("stored record holds the secret: %s", kv.Value)
	}

	ci := clientFor(t, srv, out.Secret)
	if _, err := ci.ListRoutes(ctx); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("read with a read token: %v, want let through (404: no routes here)", err)
	}
	_, err = ci.ListTokens(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden || !strings.Contains(ae.Message, `"admin" scope`) || !strings.Contains(ae.Message, `token "ci"`) {
		t.Fatalf("token list with read,status: %v, want 403 naming the admin scope and the token", err)
	}

	list, err := boot.ListTokens(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "ci" {
		t.Fatalf("list: %v %+v", err, list)
	}
	raw, _ := json.Marshal(list)
	sum := sha256.Sum256([]byte(out.Secret))
	if strings.Contains(string(raw), out.Secret[6:]) || strings.Contains(string(raw), hex.EncodeToString(sum[:])) || !strings.Contains(string(kv.Value), hex.EncodeToString(sum[:])) {
		t.Fatalf("list shows a secret or its hash: %s", raw)
	}

	// Bad input names the field; a duplicate is a conflict.
	for _, c := range []struct {
		name   string
		scopes []string
		status int
		want   string
	}{
		{"ci", []string{"read"}, http.StatusConflict, `token "ci" already exists`},
		{"Bad_Name", []string{"read"}, http.StatusBadRequest, "name:"},
		{"", []string{"read"}, http.StatusBadRequest, "name:"},
		{"ok", []string{"root"}, http.StatusBadRequest, `scopes: "root" is not a scope`},
		{"ok", nil, http.StatusBadRequest, "scopes: at least one"},
		{"ok", []string{"read", "read"}, http.StatusBadRequest, "given twice"},
	} {
		_, err := boot.AddToken(ctx, c.name, c.scopes)
		if !errors.As(err, &ae) || ae.Status != c.status || !strings.Contains(ae.Message, c.want) {
			t.Errorf("add %q %v: %v, want %d %q", c.name, c.scopes, err, c.status, c.want)
		}
	}

	rot, err := boot.RotateToken(ctx, "ci")
	if err != nil {
		t.Fatal(err)
	}
	if rot.Secret == out.Secret || rot.Token.RotatedAt.IsZero() {
		t.Fatalf("rotation kept the secret or set no time: %+v", rot.Token)
	}
	if _, err := ci.ListRoutes(ctx); apiStatus(err) != http.StatusUnauthorized {
		t.Fatalf("old secret after rotation: %v, want 401", err)
	}
	ci2 := clientFor(t, srv, rot.Secret)
	if _, err := ci2.ListRoutes(ctx); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("new secret: %v, want let through", err)
	}
	if err := boot.RemoveToken(ctx, "ci"); err != nil {
		t.Fatal(err)
	}
	if _, err := ci2.ListRoutes(ctx); apiStatus(err) != http.StatusUnauthorized {
		t.Fatalf("removed token: %v, want 401", err)
	}
	if err := boot.RemoveToken(ctx, "ci"); apiStatus(err) != http.StatusNotFound {
		t.Fatalf("removing twice: %v, want 404", err)
	}
	// A forged secret naming a real token, and one naming none.
	if _, err := boot.AddToken(ctx, "ops", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	for _, forged := range []string{"gh_ops_" + strings.Repeat("0", 64), "gh_nobody_" + strings.Repeat("0", 64), "gh_", "gh__x"} {
		if _, err := clientFor(t, srv, forged).ListRoutes(ctx); apiStatus(err) != http.StatusUnauthorized {
			t.Fatalf("forged secret %q: %v, want 401", forged, err)
		}
	}
}

// TestTokensFleet runs two nodes on one etcd cluster: a token added on one
// is accepted by the other, and once removed there it is refused here from
// the next request.
func TestTokensFleet(t *testing.T) {
	c := etcdtest.Start(t, 1)
	open := func() store.Store {
		st, err := etcd.Open(context.Background(), etcd.Options{Endpoints: c.Endpoints(), Prefix: "/tokens-fleet"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a := tokenAPI(t, open(), Options{})
	b := tokenAPI(t, open(), Options{})
	ctx := context.Background()
	out, err := clientFor(t, a, bootstrapToken).AddToken(ctx, "fleet", []string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	onB := clientFor(t, b, out.Secret)
	if list, err := onB.ListTokens(ctx); err != nil || len(list) != 1 {
		t.Fatalf("token of node a on node b: %v %v", list, err)
	}
	if err := onB.RemoveToken(ctx, "fleet"); err != nil {
		t.Fatal(err)
	}
	if _, err := clientFor(t, a, out.Secret).ListTokens(ctx); apiStatus(err) != http.StatusUnauthorized {
		t.Fatalf("token removed on b, used on a: %v, want 401", err)
	}
}
