package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAuthorize measures a read through the admin handler (no TLS):
// with the bootstrap token, and with a named token (one store read and a
// SHA-256 more).
func BenchmarkAuthorize(b *testing.B) {
	st := boltStore(b)
	s, err := NewServer(Options{Token: bootstrapToken, Tokens: NewTokens(st)})
	if err != nil {
		b.Fatal(err)
	}
	named, err := NewTokens(st).Add(context.Background(), "bench", []string{"read"}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ name, token string }{{"bootstrap", bootstrapToken}, {"named", named.Secret}} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "/v1/health", nil)
			req.Header.Set("Authorization", "Bearer "+c.token)
			for b.Loop() {
				w := httptest.NewRecorder()
				s.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatal(w.Code)
				}
			}
		})
	}
}

// BenchmarkAuditRecord measures one audit record written to bolt at its
// count bound (each write also removes the oldest record).
func BenchmarkAuditRecord(b *testing.B) {
	a := NewAudit(boltStore(b), AuditOptions{MaxRecords: 1000})
	ctx := context.Background()
	rec := AuditRecord{Token: `token "ci"`, Remote: "127.0.0.1:1", Action: "routes.create", Object: "routes/r1", Status: 201,
		After: []byte(`{"id":"r1","host":"a.test","path_prefix":"/","pool":"web"}`)}
	for range 1000 {
		if err := a.Record(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if err := a.Record(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}
