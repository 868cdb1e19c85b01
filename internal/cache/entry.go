package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// entryOverhead approximates the memory of an Entry beyond its key,
// header and body.
const entryOverhead = 256

// Entry is one stored response. It is immutable once built: a
// revalidation makes a new Entry (Refresh) that shares the body.
type Entry struct {
	// Status is the response's status code.
	Status int
	// Header holds the response's end-to-end fields. Callers must not
	// modify it; its value slices have no spare capacity, so appending
	// to one copies it.
	Header http.Header
	// Body is the whole response body.
	Body []byte
	// RequestTime and ResponseTime bracket the exchange with the member
	// that produced or last validated the entry.
	RequestTime, ResponseTime time.Time
	// Directives are the response's Cache-Control directives.
	Directives Directives
	// Lifetime is the freshness lifetime: s-maxage, max-age, Expires
	// minus Date, or else the route's default TTL.
	Lifetime time.Duration
	// Explicit says whether Lifetime came from the response itself.
	Explicit bool

	// initialAge is the corrected initial age (RFC 9111, section 4.2.3).
	initialAge time.Duration
	// vary are the request fields the response varies on (canonical
	// names) and varyValues their normalized values in the request
	// that produced it.
	vary       []string
	varyValues []string
	size       int64
}

// NewEntry builds the entry for a response to a request with header req.
// h is cloned; body is kept as is and must not be modified afterwards.
// defaultTTL is the freshness of a response without its own.
func NewEntry(req http.Header, status int, h http.Header, body []byte, reqTime, respTime time.Time, defaultTTL time.Duration) *Entry {
	e := &Entry{Status: status, Header: h.Clone(), Body: body, vary: varyNames(h)}
	if len(e.vary) > 0 {
		e.varyValues = make([]string, len(e.vary))
		for i, name := range e.vary {
			e.varyValues[i] = fieldValue(req, name)
		}
	}
	e.setTimes(reqTime, respTime, defaultTTL)
	e.size = entryOverhead + int64(len(body)) + headerSize(e.Header)
	for i := range e.vary {
		e.size += int64(len(e.vary[i]) + len(e.varyValues[i]))
	}
	return e
}

// setTimes computes the directives, freshness lifetime and initial age
// from the header and the exchange's times.
func (e *Entry) setTimes(reqTime, respTime time.Time, defaultTTL time.Duration) {
	h := e.Header
	e.RequestTime, e.ResponseTime = reqTime, respTime
	e.Directives = ParseCacheControl(h["Cache-Control"])
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		date = respTime
	}
	d := e.Directives
	e.Explicit = true
	switch {
	case d.SMaxAge >= 0:
		e.Lifetime = d.SMaxAge
	case d.MaxAge >= 0:
		e.Lifetime = d.MaxAge
	case h["Expires"] != nil:
		// An invalid Expires (such as "0") means already expired.
		if exp, err := http.ParseTime(h.Get("Expires")); err == nil {
			e.Lifetime = max(0, exp.Sub(date))
		} else {
			e.Lifetime = 0
		}
	default:
		e.Lifetime, e.Explicit = defaultTTL, false
	}
	var ageValue time.Duration
	if a, err := strconv.ParseUint(strings.TrimSpace(h.Get("Age")), 10, 32); err == nil {
		ageValue = time.Duration(a) * time.Second
	}
	apparent := max(0, respTime.Sub(date))
	corrected := ageValue + max(0, respTime.Sub(reqTime))
	e.initialAge = max(apparent, corrected)
}

// Age is the entry's current age at now.
func (e *Entry) Age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.ResponseTime))
}

// TTL is how much longer the entry is fresh at now; negative when stale.
func (e *Entry) TTL(now time.Time) time.Duration { return e.Lifetime - e.Age(now) }

// Fresh reports whether the entry may be served without asking the
// member. A no-cache response is never fresh.
func (e *Entry) Fresh(now time.Time) bool {
	return !e.Directives.NoCache && e.TTL(now) > 0
}

// StaleUsable reports whether the entry may stand in for an error at
// now: it is not a 5xx, its staleness is within maxStale and within its
// own stale-if-error, and neither no-cache, must-revalidate nor
// proxy-revalidate forbids serving it stale. s-maxage implies
// proxy-revalidate unless the response also gives stale-if-error.
func (e *Entry) StaleUsable(now time.Time, maxStale time.Duration) bool {
	d := e.Directives
	if e.Status >= 500 || d.NoCache || d.MustRevalidate || d.ProxyRevalidate {
		return false
	}
	if d.SMaxAge >= 0 && d.StaleIfError < 0 {
		return false
	}
	limit := maxStale
	if d.StaleIfError >= 0 {
		limit = min(limit, d.StaleIfError)
	}
	return -e.TTL(now) <= limit
}

// Validators returns the entry's ETag and Last-Modified ("" when absent).
func (e *Entry) Validators() (etag, lastModified string) {
	return e.Header.Get("Etag"), e.Header.Get("Last-Modified")
}

// Size is the memory the entry is accounted for.
func (e *Entry) Size() int64 { return e.size }

// Matches reports whether the entry was selected by request fields equal
// to those of req for every field it varies on.
func (e *Entry) Matches(req http.Header) bool {
	for i, name := range e.vary {
		if fieldValue(req, name) != e.varyValues[i] {
			return false
		}
	}
	return true
}

// sameVariant reports whether e and o were selected by the same fields
// and values, so that o replaces e.
func (e *Entry) sameVariant(o *Entry) bool {
	if len(e.vary) != len(o.vary) {
		return false
	}
	for i := range e.vary {
		if e.vary[i] != o.vary[i] || e.varyValues[i] != o.varyValues[i] {
			return false
		}
	}
	return true
}

// notUpdated are fields a 304 does not replace in a stored response
// (RFC 9111, section 3.2, and hop-by-hop fields).
var notUpdated = map[string]bool{
	"Content-Length": true, "Content-Encoding": true, "Content-Type": true, "Content-Range": true,
	"Transfer-Encoding": true, "Connection": true, "Keep-Alive": true, "Trailer": true, "Te": true,
	"Upgrade": true, "Proxy-Connection": true, "X-Request-Id": true, "Cache-Status": true,
}

// Refresh returns the entry updated by a 304 Not Modified with header
// h304 received at respTime for a request sent at reqTime: the 304's
// fields replace the stored ones (less Content-Length and the like) and
// freshness starts again. The body is shared.
func (e *Entry) Refresh(h304 http.Header, reqTime, respTime time.Time, defaultTTL time.Duration) *Entry {
	h := e.Header.Clone()
	for k, vv := range h304 {
		if !notUpdated[k] {
			h[k] = vv
		}
	}
	n := &Entry{Status: e.Status, Header: h.Clone(), Body: e.Body, vary: e.vary, varyValues: e.varyValues}
	n.setTimes(reqTime, respTime, defaultTTL)
	n.size = e.size - headerSize(e.Header) + headerSize(n.Header)
	return n
}

// NotModified reports whether the request header req's If-None-Match or,
// without it, If-Modified-Since is satisfied by the entry, so that a 304
// answers it (RFC 9110, section 13.2.2).
func (e *Entry) NotModified(req http.Header) bool {
	if e.Status != http.StatusOK {
		return false
	}
	etag, lm := e.Validators()
	if inm := req["If-None-Match"]; inm != nil {
		if etag == "" {
			return false
		}
		for _, v := range inm {
			for tag := range strings.SplitSeq(v, ",") {
				tag = strings.TrimSpace(tag)
				if tag == "*" || weakEqual(tag, etag) {
					return true
				}
			}
		}
		return false
	}
	ims := req.Get("If-Modified-Since")
	if ims == "" || lm == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	m, err := http.ParseTime(lm)
	return err == nil && !m.After(t)
}

// weakEqual compares entity tags with the weak comparison function.
func weakEqual(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// varyNames returns the canonical field names of h's Vary.
func varyNames(h http.Header) []string {
	var names []string
	for _, v := range h["Vary"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, http.CanonicalHeaderKey(name))
			}
		}
	}
	return names
}

// fieldValue is the normalized value of a request field: its lines
// joined, without spaces or tabs.
func fieldValue(h http.Header, name string) string {
	vv := h[name]
	switch len(vv) {
	case 0:
		return ""
	case 1:
		if !strings.ContainsAny(vv[0], " \t") {
			return vv[0]
		}
	}
	return strings.NewReplacer(" ", "", "\t", "").Replace(strings.Join(vv, ","))
}

func headerSize(h http.Header) int64 {
	n := int64(0)
	for k, vv := range h {
		n += int64(len(k)) + 16
		for _, v := range vv {
			n += int64(len(v)) + 16
		}
	}
	return n
}
