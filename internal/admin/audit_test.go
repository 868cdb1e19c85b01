package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// TestAuditBounds keeps the trail at its count and age bounds: the oldest
// records go, in the write that passes a bound, and the counter and the
// capacity probe follow.
func TestAuditBounds(t *testing.T) {
	st := boltStore(t)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := NewAudit(st, AuditOptions{MaxRecords: 5, MaxAge: time.Hour, Now: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 8 {
		now = now.Add(time.Second)
		if err := a.Record(ctx, AuditRecord{Action: "routes.create", Object: fmt.Sprintf("routes/r%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	list, more, err := a.List(ctx, AuditQuery{Limit: 100})
	if err != nil || more {
		t.Fatal(err, more)
	}
	var objs []string
	for _, r := range list {
		objs = append(objs, r.Object)
	}
	if got := strings.Join(objs, ","); got != "routes/r3,routes/r4,routes/r5,routes/r6,routes/r7" {
		t.Fatalf("kept %s, want the newest five", got)
	}
	if u, l := a.Probe(); u != 5 || l != 5 {
		t.Fatalf("probe %d of %d, want 5 of 5", u, l)
	}
	if n, err := store.CountPrefix(ctx, st, AuditPrefix); err != nil || n != 5 {
		t.Fatalf("%d records stored (%v), want 5", n, err)
	}

	// Past the age bound, the next write removes every expired record.
	now = now.Add(2 * time.Hour)
	if err := a.Record(ctx, AuditRecord{Action: "reload", Object: "reload"}); err != nil {
		t.Fatal(err)
	}
	list, _, _ = a.List(ctx, AuditQuery{Limit: 100})
	if len(list) != 1 || list[0].Object != "reload" {
		t.Fatalf("after the age bound: %+v, want only the new record", list)
	}
	// Since and object filters.
	if list, _, _ := a.List(ctx, AuditQuery{Since: now.Add(time.Second), Limit: 10}); len(list) != 0 {
		t.Fatalf("since the future: %+v", list)
	}
	if list, _, _ := a.List(ctx, AuditQuery{Object: "routes/", Limit: 10}); len(list) != 0 {
		t.Fatalf("object routes/: %+v", list)
	}
	if u, _ := a.Probe(); u != 1 {
		t.Fatalf("probe %d, want 1", u)
	}
}

// TestAuditSummaryRedacts: secrets, keys, PEM text and hashes never reach
// a summary; other fields do, cut to size.
func TestAuditSummaryRedacts(t *testing.T) {
	body := `{"token":{"name":"ci","scopes":["read"]},"secret":"gh_ci_` + strings.Repeat("a", 64) + `",
	"cert":{"id":"c1","names":["a.test"],"key_pem":"-----BEGIN PRIVATE KEY-----\nAAAA","sha256":"abcd"},
	"webhook":{"url":"https://hooks.test/x","signing_secret":"s3cr3t"},"note":"` + strings.Repeat("x", 500) + `",
	"other":"gh_ops_` + strings.Repeat("b", 64) + `","password":"hunter2","kek":"k","private":"p"}`
	got := string(summarize([]byte(body)))
	for _, bad := range []string{"aaaaaaaa", "bbbbbbbb", "PRIVATE KEY", "abcd", "s3cr3t", "hunter2", `"kek"`, `"private"`, strings.Repeat("x", 201)} {
		if strings.Contains(got, bad) {
			t.Errorf("summary holds %q: %s", bad, got)
		}
	}
	for _, good := range []string{`"name":"ci"`, `"a.test"`, "https://hooks.test/x", `"id":"c1"`} {
		if !strings.Contains(got, good) {
			t.Errorf("summary lacks %s: %s", good, got)
		}
	}
	if summarize([]byte("not json")) != nil || summarize(nil) != nil {
		t.Error("a body that is not JSON has a summary")
	}
}

func TestAuditAction(t *testing.T) {
	for _, c := range []struct{ method, pattern, path, want string }{
		{"POST", "POST /v1/routes", "/v1/routes", "routes.create"},
		{"PUT", "PUT /v1/routes/{id}", "/v1/routes/r1", "routes.update"},
		{"DELETE", "DELETE /v1/certs/{id}", "/v1/certs/abc", "certs.delete"},
		{"POST", "POST /v1/certs/batch", "/v1/certs/batch", "certs.batch.create"},
		{"POST", "POST /v1/hostnames/{name}/retry", "/v1/hostnames/a.test/retry", "hostnames.retry"},
		{"POST", "POST /v1/tokens/{name}/rotate", "/v1/tokens/ci/rotate", "tokens.rotate"},
		{"POST", "POST /v1/reload", "/v1/reload", "reload"},
		{"POST", "POST /v1/upgrade", "/v1/upgrade", "upgrade"},
		{"POST", "POST /v1/status/", "/v1/status/incidents", "status.incidents.create"},
		{"POST", "POST /v1/status/", "/v1/status/incidents/wl4u0h9m/updates", "status.incidents.updates"},
		{"POST", "POST /v1/status/", "/v1/status/maintenances/5a9v/complete", "status.maintenances.complete"},
		{"PUT", "PUT /v1/status/", "/v1/status/components/Web app/override", "status.components.override.update"},
	} {
		if got := auditAction(c.method, c.pattern, c.path); got != c.want {
			t.Errorf("%s %s: %q, want %q", c.method, c.path, got, c.want)
		}
	}
}

// TestAuditOnlySuccess: a change that succeeds is recorded once, one that
// fails (or is refused for its scope) is not; reads are never recorded.
func TestAuditOnlySuccess(t *testing.T) {
	st := boltStore(t)
	audit := NewAudit(st, AuditOptions{})
	fail := false
	srv := tokenAPI(t, st, Options{Audit: audit, Upgrade: func(context.Context) error {
		if fail {
			return errors.New("the new binary did not start")
		}
		return nil
	}})
	boot := clientFor(t, srv, bootstrapToken)
	ctx := context.Background()
	reader, err := boot.AddToken(ctx, "reader", []string{"read"})
	if err != nil {
		t.Fatal(err)
	}
	post := func(token string) int {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/upgrade", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(bootstrapToken); got != http.StatusOK {
		t.Fatalf("upgrade: %d", got)
	}
	fail = true
	if got := post(bootstrapToken); got != http.StatusConflict {
		t.Fatalf("failed upgrade: %d", got)
	}
	if got := post(reader.Secret); got != http.StatusForbidden {
		t.Fatalf("upgrade with a read token: %d", got)
	}
	if _, _, err := boot.Audit(ctx, time.Hour, "", 0); err != nil {
		t.Fatal(err)
	}
	recs, _, err := audit.List(ctx, AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Action+" "+r.Object)
	}
	if got := strings.Join(actions, ","); got != "tokens.create tokens/reader,upgrade upgrade" {
		t.Fatalf("records %q, want the token's creation and one upgrade", got)
	}
}

// TestAuditFleet: two nodes of a fleet write one trail at once; the bound
// holds exactly (the count is kept in the same transactions).
func TestAuditFleet(t *testing.T) {
	c := etcdtest.Start(t, 1)
	open := func() store.Store {
		st, err := etcd.Open(context.Background(), etcd.Options{Endpoints: c.Endpoints(), Prefix: "/audit-fleet"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := NewAudit(open(), AuditOptions{MaxRecords: 30}), NewAudit(open(), AuditOptions{MaxRecords: 30})
	ctx := context.Background()
	errs := make(chan error, 2)
	for i, au := range []*Audit{a, b} {
		go func() {
			for j := range 25 {
				if err := au.Record(ctx, AuditRecord{Action: "reload", Object: fmt.Sprintf("node%d/%d", i, j)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := b.List(ctx, AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n, err := store.CountPrefix(ctx, a.st, AuditPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cnt, err := store.ReadCounter(ctx, a.st, auditCounter, AuditPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 30 || n != 30 || cnt.Value != 30 {
		t.Fatalf("kept %d records (%d keys, counter %d), want 30", len(recs), n, cnt.Value)
	}
}
