// Package routes manages the routes added at run time through the admin
// API, as opposed to those of the configuration file. They live in the
// store under routes/, one key per host and path prefix (so the key is what
// makes a route unique), and every node follows them with a watch and hands
// the full set to its proxy on every change.
//
// A dynamic route may only name a pool of the node's configuration and may
// not redefine a host and path prefix that the configuration file routes:
// the file stays the authority for what it defines.
package routes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"gatehouse/internal/fault"
	"gatehouse/internal/syntax"
)

// Prefix is the store prefix of the routes: Prefix + ID holds one Route as
// JSON.
const Prefix = "routes/"

// Input limits.
const (
	maxPathPrefix = 1024
	maxTenant     = 128
	idLen         = 16
)

// DefaultMaxRoutes caps the routes in the store when Options.MaxRoutes is 0.
const DefaultMaxRoutes = 100000

// Route sends requests whose host and path match to a pool, like a route
// of the configuration file.
type Route struct {
	// ID names the route in the admin API; it is derived from Host and
	// PathPrefix, so the same host and prefix always have the same ID.
	ID string `json:"id"`
	// Host is an exact name, a wildcard "*.example.com" (one label) or "*"
	// for every host no other route matches; stored lower-case without a
	// trailing dot.
	Host string `json:"host"`
	// PathPrefix starts with "/" (default "/") and matches on a segment
	// boundary.
	PathPrefix string `json:"path_prefix"`
	// Pool names a pool of the node's configuration.
	Pool string `json:"pool"`
	// Tenant is an optional label for the operator (whose route it is).
	Tenant    string    `json:"tenant,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Update changes an existing route; nil fields stay as they are.
type Update struct {
	Pool   *string `json:"pool,omitempty"`
	Tenant *string `json:"tenant,omitempty"`
}

// ID returns the ID of the route for host and path prefix (normalized as
// stored: lower case, no trailing dot, "/" for an empty prefix).
func ID(host, pathPrefix string) string {
	host, pathPrefix = normalize(host, pathPrefix)
	sum := sha256.Sum256([]byte(host + " " + pathPrefix))
	return hex.EncodeToString(sum[:idLen/2])
}

func key(id string) string { return Prefix + id }

// validID reports whether id has the form ID returns.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func normalize(host, pathPrefix string) (string, string) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if pathPrefix == "" {
		pathPrefix = "/"
	}
	return host, pathPrefix
}

// InputError is a problem with a route supplied by a user; the admin API
// answers it with 400. Field is the JSON name of the input.
type InputError struct {
	Field   string
	Problem string
}

// Error returns "field: problem".
func (e *InputError) Error() string { return e.Field + ": " + e.Problem }

// Is makes an InputError a fault.ErrInvalid.
func (e *InputError) Is(target error) bool { return target == fault.ErrInvalid }

// FieldName is the field (fault.Field).
func (e *InputError) FieldName() string { return e.Field }

func inputErr(field, format string, args ...any) *InputError {
	return &InputError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// ConflictError refuses a route whose host and path prefix are taken: by
// another dynamic route, by the configuration file, or by a concurrent
// change. The admin API answers it with 409.
type ConflictError struct {
	Host, PathPrefix string
	// Reason says by what.
	Reason string
}

// Error names the route and the reason.
// Is makes a ConflictError a fault.ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == fault.ErrConflict }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("route for host %q path_prefix %q: %s", e.Host, e.PathPrefix, e.Reason)
}

// Fixed is what the node's configuration fixes for dynamic routes; the node
// maps its configuration file to it.
type Fixed struct {
	// Pools names the pools a route may name.
	Pools []string
	// Routes are the configuration file's routes (Host and PathPrefix
	// count), which a dynamic route may not redefine.
	Routes []Route
	// MaxRoutes is limits.max_routes (0: not set).
	MaxRoutes int64
}

// check normalizes r and validates it against f (nil: only the form of
// its fields). It returns the route to store, without times.
func check(r Route, f *Fixed) (Route, error) {
	r.Host, r.PathPrefix = normalize(strings.TrimSpace(r.Host), r.PathPrefix)
	if err := syntax.RouteHost(r.Host); err != nil {
		return Route{}, inputErr("host", "%s", err.Error())
	}
	if err := checkPathPrefix(r.PathPrefix); err != nil {
		return Route{}, err
	}
	if err := checkPool(r.Pool, f); err != nil {
		return Route{}, err
	}
	if err := checkTenant(r.Tenant); err != nil {
		return Route{}, err
	}
	if f != nil {
		for _, sr := range f.Routes {
			h, p := normalize(sr.Host, sr.PathPrefix)
			if h == r.Host && p == r.PathPrefix {
				return Route{}, &ConflictError{Host: r.Host, PathPrefix: r.PathPrefix,
					Reason: "defined in the configuration file; change it there"}
			}
		}
	}
	r.ID = ID(r.Host, r.PathPrefix)
	return r, nil
}

func checkPathPrefix(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return inputErr("path_prefix", "%q must start with /", p)
	case len(p) > maxPathPrefix:
		return inputErr("path_prefix", "%d bytes exceed the limit of %d", len(p), maxPathPrefix)
	case strings.ContainsAny(p, "?#"):
		return inputErr("path_prefix", "%q must not contain a query (?) or fragment (#)", p)
	}
	for _, c := range p {
		if c == unicode.ReplacementChar || unicode.IsSpace(c) || unicode.IsControl(c) {
			return inputErr("path_prefix", "%q must not contain spaces, control characters or invalid UTF-8", p)
		}
	}
	return nil
}

func checkPool(pool string, f *Fixed) error {
	if pool == "" {
		return inputErr("pool", "is required")
	}
	if f == nil || slices.Contains(f.Pools, pool) {
		return nil
	}
	return inputErr("pool", "%q is not a pool of this node's configuration", pool)
}

func checkTenant(t string) error {
	if len(t) > maxTenant {
		return inputErr("tenant", "%d bytes exceed the limit of %d", len(t), maxTenant)
	}
	for _, c := range t {
		if c == unicode.ReplacementChar || unicode.IsControl(c) {
			return inputErr("tenant", "%q must not contain control characters or invalid UTF-8", t)
		}
	}
	return nil
}
