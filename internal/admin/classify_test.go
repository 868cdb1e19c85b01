package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"

	"gatehouse/internal/capacity"
	"gatehouse/internal/certs"
	"gatehouse/internal/drain"
	"gatehouse/internal/fault"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/routes"
	"gatehouse/internal/status"
	"gatehouse/internal/store"
)

// TestClassifyByKind: every domain package's errors reach one mapper
// through their kind, wrapped or not, with the field of invalid input.
func TestClassifyByKind(t *testing.T) {
	for _, tt := range []struct {
		err    error
		status int
		code   string
		field  string
	}{
		{&certs.InputError{Part: "private key", Problem: "does not match"}, 400, "invalid_input", "private key"},
		{&routes.InputError{Field: "pool", Problem: "unknown"}, 400, "invalid_input", "pool"},
		{&hostnames.InputError{Field: "name", Problem: "an IP literal"}, 400, "invalid_input", "name"},
		{&status.InputError{Field: "impact", Msg: "unknown"}, 400, "invalid_input", "impact"},
		{fault.Invalid("limit", "not a number"), 400, "invalid_input", "limit"},
		{drain.ErrBadRequest, 400, "invalid_input", ""},
		{&routes.ConflictError{Host: "a", PathPrefix: "/", Reason: "taken"}, 409, "conflict", ""},
		{&hostnames.ConflictError{Name: "a"}, 409, "conflict", ""},
		{store.ErrConflict, 409, "conflict", ""},
		{drain.ErrUnsafe, 409, "unsafe", ""},
		{&capacity.LimitError{Resource: capacity.Certificates, Usage: 2, Limit: 2, Adding: 1}, 409, "limit_exceeded", ""},
		{&capacity.LimitError{Resource: capacity.Store, Unit: "bytes", Usage: 2, Limit: 2, Adding: 1}, 507, "quota_exceeded", ""},
		{store.ErrTooLarge, 507, "quota_exceeded", ""},
		{syscall.ENOSPC, 507, "disk_full", ""},
		{store.ErrNotFound, 404, "not_found", ""},
		{&status.NotFoundError{Kind: "incident", ID: "x"}, 404, "not_found", ""},
		{drain.ErrNoMatch, 404, "not_found", ""},
		{store.ErrUnavailable, 503, "store_unavailable", ""},
		{store.ErrClosed, 503, "store_unavailable", ""},
		{context.DeadlineExceeded, 503, "timeout", ""},
		{errors.New("open /var/lib/secret: permission denied"), 500, "internal", ""},
	} {
		for _, err := range []error{tt.err, fmt.Errorf("adding: %w", tt.err)} {
			rec := httptest.NewRecorder()
			(&Server{log: slog.New(slog.DiscardHandler)}).fail(rec, httptest.NewRequest(http.MethodGet, "/v1/x", nil), err)
			var b ErrorBody
			if jerr := json.Unmarshal(rec.Body.Bytes(), &b); jerr != nil {
				t.Fatal(jerr)
			}
			if rec.Code != tt.status || b.Error.Code != tt.code || b.Error.Field != tt.field {
				t.Errorf("%v: %d %s field %q, want %d %s field %q", err, rec.Code, b.Error.Code, b.Error.Field, tt.status, tt.code, tt.field)
			}
			if tt.status == 500 && b.Error.Message != "internal error (see the server log)" {
				t.Errorf("%v: a 500 shows %q", err, b.Error.Message)
			}
		}
	}
}
