package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/capacity"
	"gatehouse/internal/store/bolt"
)

// BenchmarkOverview renders the overview for a signed-in session: 20
// resources with a full 24-hour ring (1,440 samples each), the last 20 of
// 1,000 audit records read from bbolt, the token re-checked in the store.
// The certificate counts are the node's cached figures and not part of it.
func BenchmarkOverview(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "gatehouse.db"), bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	tokens := admin.NewTokens(st)
	audit := admin.NewAudit(st, admin.AuditOptions{})
	srv, err := admin.NewServer(admin.Options{Token: "bench-bootstrap-token-0123456789", Tokens: tokens, Audit: audit})
	if err != nil {
		b.Fatal(err)
	}
	tok, err := tokens.Add(ctx, "viewer", []string{"read"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		if err := audit.Record(ctx, admin.AuditRecord{Token: "viewer", Action: "route.add", Object: fmt.Sprintf("routes/r-%d", i), Status: 201}); err != nil {
			b.Fatal(err)
		}
	}
	res := make([]capacity.Resource, 20)
	for i := range res {
		res[i] = capacity.Resource{Name: fmt.Sprintf("resource_%02d", i), Unit: "count", Limit: 1_000_000, Level: "ok"}
	}
	h := NewHistory(DefaultSamples)
	t0 := time.Now().Add(-24 * time.Hour)
	for s := range DefaultSamples {
		for i := range res {
			res[i].Usage = int64(s * 500)
		}
		h.Add(t0.Add(time.Duration(s)*time.Minute), res)
	}
	c, err := New(Options{Authenticate: srv.Authenticate, Limits: func() []capacity.Resource { return res }, History: h, Audit: audit})
	if err != nil {
		b.Fatal(err)
	}
	// Sign in once.
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/console/", nil))
	pre := rec.Result().Cookies()[0]
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())[1]
	req := httptest.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"csrf": {csrf}, "token": {tok.Secret}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(pre)
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		b.Fatalf("sign-in: %d %s", rec.Code, rec.Body)
	}
	session := rec.Result().Cookies()[1]
	var lat []time.Duration
	for b.Loop() {
		req := httptest.NewRequest("GET", "/console/", nil)
		req.AddCookie(session)
		rec := httptest.NewRecorder()
		start := time.Now()
		c.ServeHTTP(rec, req)
		lat = append(lat, time.Since(start))
		if rec.Code != http.StatusOK || strings.Count(rec.Body.String(), "<polyline") != 20 {
			b.Fatalf("overview: %d, %d charts", rec.Code, strings.Count(rec.Body.String(), "<polyline"))
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
