package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxDelta caps delta-seconds values (RFC 9111, section 1.2.2).
const maxDelta = 1 << 31

// Directives are the Cache-Control directives a shared cache acts on.
// The durations are -1 when the directive is absent.
type Directives struct {
	NoStore, NoCache, Private, Public bool
	MustRevalidate, ProxyRevalidate   bool
	MaxAge, SMaxAge, StaleIfError     time.Duration
}

// ParseCacheControl parses the Cache-Control field lines vv. Qualified
// no-cache and private ("private=Set-Cookie") count as unqualified; a
// malformed delta-seconds counts as 0 (stale); of a directive given twice
// the smaller value counts.
func ParseCacheControl(vv []string) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1, StaleIfError: -1}
	for _, v := range vv {
		for v != "" {
			var name, arg string
			name, arg, v = nextDirective(v)
			switch strings.ToLower(name) {
			case "no-store":
				d.NoStore = true
			case "no-cache":
				d.NoCache = true
			case "private":
				d.Private = true
			case "public":
				d.Public = true
			case "must-revalidate":
				d.MustRevalidate = true
			case "proxy-revalidate":
				d.ProxyRevalidate = true
			case "max-age":
				d.MaxAge = minDelta(d.MaxAge, arg)
			case "s-maxage":
				d.SMaxAge = minDelta(d.SMaxAge, arg)
			case "stale-if-error":
				d.StaleIfError = minDelta(d.StaleIfError, arg)
			}
		}
	}
	return d
}

// nextDirective splits the first directive off a Cache-Control value:
// its name, its argument (unquoted) and the rest after the comma.
func nextDirective(v string) (name, arg, rest string) {
	v = strings.TrimLeft(v, " \t,")
	i := strings.IndexAny(v, "=,")
	if i < 0 {
		return strings.TrimSpace(v), "", ""
	}
	name = strings.TrimSpace(v[:i])
	if v[i] == ',' {
		return name, "", v[i+1:]
	}
	v = strings.TrimLeft(v[i+1:], " \t")
	if strings.HasPrefix(v, `"`) {
		// A quoted string, with backslash escapes.
		var b strings.Builder
		for j := 1; j < len(v); j++ {
			switch c := v[j]; {
			case c == '\\' && j+1 < len(v):
				j++
				b.WriteByte(v[j])
			case c == '"':
				rest = v[j+1:]
				if k := strings.IndexByte(rest, ','); k >= 0 {
					rest = rest[k+1:]
				} else {
					rest = ""
				}
				return name, b.String(), rest
			default:
				b.WriteByte(c)
			}
		}
		return name, b.String(), ""
	}
	if k := strings.IndexByte(v, ','); k >= 0 {
		return name, strings.TrimSpace(v[:k]), v[k+1:]
	}
	return name, strings.TrimSpace(v), ""
}

// minDelta parses a delta-seconds argument and returns the smaller of it
// and cur (cur < 0 means unset).
func minDelta(cur time.Duration, arg string) time.Duration {
	var n uint64
	if arg != "" && strings.Trim(arg, "0123456789") == "" {
		var err error
		if n, err = strconv.ParseUint(arg, 10, 64); err != nil {
			n = maxDelta // all digits: too large
		}
	}
	d := time.Duration(min(n, maxDelta)) * time.Second
	if cur >= 0 && cur < d {
		return cur
	}
	return d
}

// Request holds the request directives the cache honours.
type Request struct {
	// NoCache (also max-age=0, or Pragma: no-cache without
	// Cache-Control) asks for a response validated with the member.
	NoCache bool
	// NoStore asks that the response not be stored.
	NoStore bool
}

// ParseRequest reads the cache directives of a request's header.
func ParseRequest(h http.Header) Request {
	cc, ok := h["Cache-Control"]
	if !ok {
		for _, v := range h["Pragma"] {
			if strings.Contains(strings.ToLower(v), "no-cache") {
				return Request{NoCache: true}
			}
		}
		return Request{}
	}
	d := ParseCacheControl(cc)
	return Request{NoCache: d.NoCache || d.MaxAge == 0, NoStore: d.NoStore}
}

// heuristic reports whether status is cacheable without explicit
// freshness (RFC 9110, section 15.1, less 206 and 501: partial content is
// not stored, and an error is no stand-in for an error).
func heuristic(status int) bool {
	switch status {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414:
		return true
	}
	return false
}

// Reasons Storable gives for not storing a response.
const (
	ReasonMethod       = "method"         // not a GET
	ReasonRequestStore = "request-store"  // request said no-store
	ReasonStatus       = "status"         // status not storable
	ReasonNoStore      = "no-store"       // response said no-store
	ReasonPrivate      = "private"        // response said private
	ReasonSetCookie    = "set-cookie"     // response sets a cookie
	ReasonVaryAll      = "vary-star"      // Vary: *
	ReasonCredentials  = "credentials"    // Authorization or Cookie without public
	ReasonTrailers     = "trailers"       // response announced trailers
	ReasonRange        = "content-range"  // a partial response
	ReasonNoFreshness  = "no-freshness"   // status needs explicit freshness
	ReasonWrongLength  = "content-length" // body length differs from Content-Length
)

// Storable reports whether a shared cache may store the response (status
// and header h) to a request (method and header req), or why not:
//
//   - only GET responses, with a status cacheable by default (200, 203,
//     204, 300, 301, 308, 404, 405, 410, 414) or 302 and 307 with
//     explicit freshness;
//   - never with no-store (request or response), private, Set-Cookie,
//     Vary: *, trailers or Content-Range;
//   - a request with Authorization or Cookie only when the response
//     says public (stricter than RFC 9111, which also accepts s-maxage
//     and must-revalidate for Authorization).
func Storable(method string, req http.Header, status int, h http.Header) (reason string) {
	if method != http.MethodGet {
		return ReasonMethod
	}
	if ParseRequest(req).NoStore {
		return ReasonRequestStore
	}
	d := ParseCacheControl(h["Cache-Control"])
	switch {
	case heuristic(status):
	case status == 302 || status == 307:
		if d.MaxAge < 0 && d.SMaxAge < 0 && h["Expires"] == nil {
			return ReasonNoFreshness
		}
	default:
		return ReasonStatus
	}
	switch {
	case d.NoStore:
		return ReasonNoStore
	case d.Private:
		return ReasonPrivate
	case h["Set-Cookie"] != nil:
		return ReasonSetCookie
	case h["Trailer"] != nil:
		return ReasonTrailers
	case h["Content-Range"] != nil:
		return ReasonRange
	case !d.Public && Credentialed(req):
		return ReasonCredentials
	}
	for _, name := range varyNames(h) {
		if name == "*" {
			return ReasonVaryAll
		}
	}
	return ""
}

// Credentialed reports whether a request carries credentials
// (Authorization or Cookie): only responses marked public are stored for
// it or served to it.
func Credentialed(req http.Header) bool {
	return req["Authorization"] != nil || req["Cookie"] != nil
}
