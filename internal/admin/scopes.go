package admin

import (
	"net/http"
	"slices"
	"strings"

	"gatehouse/internal/fault"
)

// Scope is a permission a token carries. A request needs the one scope its
// endpoint declares in the endpoints table; the admin scope grants every other.
type Scope string

// The scopes, from the narrowest.
const (
	// ScopeRead reads everything the admin API shows; it changes nothing.
	ScopeRead Scope = "read"
	// ScopeCertificates adds and removes certificates and customer hostnames.
	ScopeCertificates Scope = "certificates"
	// ScopeRoutes changes dynamic routes and drains pool members.
	ScopeRoutes Scope = "routes"
	// ScopeStatus changes the status portal: incidents, maintenance,
	// component overrides, webhooks and subscribers.
	ScopeStatus Scope = "status"
	// ScopeAdmin grants every scope, and alone manages tokens, reloads and
	// upgrades. The bootstrap token (admin.token) holds it.
	ScopeAdmin Scope = "admin"
)

// Scopes lists every scope.
var Scopes = []Scope{ScopeRead, ScopeCertificates, ScopeRoutes, ScopeStatus, ScopeAdmin}

// ParseScopes reads a list of scope names, refusing unknown ones and
// duplicates; the result is sorted in the order of Scopes.
func ParseScopes(names []string) ([]Scope, error) {
	if len(names) == 0 {
		return nil, fault.Invalid("scopes", "at least one of %s is required", scopeNames(Scopes))
	}
	var out []Scope
	for _, n := range names {
		sc := Scope(strings.TrimSpace(n))
		if !slices.Contains(Scopes, sc) {
			return nil, fault.Invalid("scopes", "%q is not a scope (want %s)", n, scopeNames(Scopes))
		}
		if slices.Contains(out, sc) {
			return nil, fault.Invalid("scopes", "%q is given twice", n)
		}
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b Scope) int { return slices.Index(Scopes, a) - slices.Index(Scopes, b) })
	return out, nil
}

func scopeNames(list []Scope) string { return JoinScopes(list, ", ") }

// JoinScopes writes scopes as one string, sep between them.
func JoinScopes(list []Scope, sep string) string {
	s := make([]string, len(list))
	for i, sc := range list {
		s[i] = string(sc)
	}
	return strings.Join(s, sep)
}

// grants reports whether a token holding have may call an endpoint that
// needs need.
func grants(have []Scope, need Scope) bool {
	return slices.Contains(have, ScopeAdmin) || slices.Contains(have, need)
}

// endpoints is the one table of the admin API's endpoints and the scope
// each needs. A pattern registered on the API that is missing here makes
// NewServer panic; a request no pattern matches needs the admin scope.
var endpoints = []struct {
	Pattern string
	Scope   Scope
}{
	{"GET /v1/health", ScopeRead},
	{"GET /metrics", ScopeRead},
	{"GET /v1/pools", ScopeRead},
	{"GET /v1/limits", ScopeRead},

	{"GET /v1/certs", ScopeRead},
	{"GET /v1/certs/expiring", ScopeRead},
	{"GET /v1/certs/{id}", ScopeRead},
	{"GET /v1/hosts/{hostname}", ScopeRead},
	{"POST /v1/certs", ScopeCertificates},
	{"POST /v1/certs/batch", ScopeCertificates},
	{"DELETE /v1/certs/{id}", ScopeCertificates},

	{"GET /v1/hostnames", ScopeRead},
	{"GET /v1/hostnames/{name}", ScopeRead},
	{"POST /v1/hostnames", ScopeCertificates},
	{"DELETE /v1/hostnames/{name}", ScopeCertificates},
	{"POST /v1/hostnames/{name}/retry", ScopeCertificates},

	{"GET /v1/routes", ScopeRead},
	{"GET /v1/routes/{id}", ScopeRead},
	{"POST /v1/routes", ScopeRoutes},
	{"PUT /v1/routes/{id}", ScopeRoutes},
	{"DELETE /v1/routes/{id}", ScopeRoutes},

	{"GET /v1/drain", ScopeRead},
	{"POST /v1/drain", ScopeRoutes},
	{"POST /v1/undrain", ScopeRoutes},

	// The portal's management API, by method.
	{"GET /v1/status/", ScopeRead},
	{"POST /v1/status/", ScopeStatus},
	{"PUT /v1/status/", ScopeStatus},
	{"DELETE /v1/status/", ScopeStatus},

	{"POST /v1/reload", ScopeAdmin},
	{"POST /v1/upgrade", ScopeAdmin},

	{"GET /v1/audit", ScopeRead},

	{"GET /v1/tokens", ScopeAdmin},
	{"POST /v1/tokens", ScopeAdmin},
	{"POST /v1/tokens/{name}/rotate", ScopeAdmin},
	{"DELETE /v1/tokens/{name}", ScopeAdmin},

	// The operator's console (SetConsole): it authenticates by its own
	// session, not a bearer header, and needs at least the read scope of
	// the session's token, re-checked on every request.
	{"GET /console/", ScopeRead},
	{"POST /console/", ScopeRead},
}

// scopeTable finds the scope a request needs.
type scopeTable struct {
	mux   *http.ServeMux
	scope map[string]Scope
}

func newScopeTable() *scopeTable {
	t := &scopeTable{mux: http.NewServeMux(), scope: make(map[string]Scope, len(endpoints))}
	for _, e := range endpoints {
		t.mux.HandleFunc(e.Pattern, http.NotFound)
		t.scope[e.Pattern] = e.Scope
	}
	return t
}

// need returns the scope r needs and the pattern that decided it ("" when
// none matched: the admin scope is needed).
func (t *scopeTable) need(r *http.Request) (Scope, string) {
	_, pattern := t.mux.Handler(r)
	if sc, ok := t.scope[pattern]; ok {
		return sc, pattern
	}
	return ScopeAdmin, ""
}

// handleFunc registers an endpoint of the API; its pattern must be in the
// endpoints table.
func (s *Server) handleFunc(pattern string, h http.HandlerFunc) { s.handle(pattern, h) }

func (s *Server) handle(pattern string, h http.Handler) {
	if _, ok := s.scopes.scope[pattern]; !ok {
		panic("admin: endpoint " + pattern + " has no scope in the endpoints table")
	}
	s.mux.Handle(pattern, h)
}
