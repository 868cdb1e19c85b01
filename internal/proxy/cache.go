package proxy

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gatehouse/internal/cache"
	"gatehouse/internal/config"
)

// The response cache sits in front of both paths (direct and
// ReverseProxy) of the routes that enable it: serve hands their requests
// to serveCached, which answers fresh hits itself and otherwise forwards
// through a cacheWriter. The cacheWriter sees the member's answer (or the
// edge's own 502/503/504) before the client does, so it can store it,
// turn a 304 to a revalidation into the stored response, or replace an
// error with a stale stored response. A route without caching pays one
// nil check.
//
// Every answer of a caching route carries a Cache-Status field (RFC
// 9211) naming the cache "gatehouse": "hit; ttl=N" from the cache,
// "fwd=uri-miss|vary-miss|stale|request; fwd-status=N" forwarded (with
// "stored" when stored), "fwd=bypass" when the request cannot use the
// cache, and "fwd=...; fwd-status=502; ttl=-N; detail=stale-if-error"
// with Warning: 110 when a stale response stands in for an error.

// cacheName names this cache in Cache-Status.
const cacheName = "gatehouse"

var (
	cacheStatusBypass = []string{cacheName + "; fwd=bypass"}
	warningStale      = []string{`110 ` + cacheName + ` "Response is Stale"`}
)

// responseCache is the store of a Proxy's caching routes. A reload's
// Proxy shares the store and counters of the one it replaces.
type responseCache struct {
	store     *cache.Cache
	stats     *cacheCounters
	maxObject int64
}

// cacheCounters count the cache's answers over the process's life.
type cacheCounters struct {
	hits, misses, revalidated, stale, stored, coalesced atomic.Uint64
}

// routeCache is the cache policy of one route.
type routeCache struct {
	c          *responseCache
	defaultTTL time.Duration
	maxStale   time.Duration
}

func newResponseCache(cfg config.ResponseCache, prev *responseCache) *responseCache {
	maxBytes := int64(cfg.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = config.DefaultResponseCacheBytes
	}
	maxObject := int64(cfg.MaxObjectBytes)
	if maxObject <= 0 {
		maxObject = config.DefaultMaxObjectBytes
	}
	if prev != nil {
		prev.store.SetLimit(maxBytes)
		return &responseCache{store: prev.store, stats: prev.stats, maxObject: maxObject}
	}
	return &responseCache{store: cache.New(maxBytes), stats: new(cacheCounters), maxObject: maxObject}
}

func (c *responseCache) policy(rc config.RouteCache) *routeCache {
	maxStale := rc.MaxStale.D()
	if maxStale <= 0 {
		maxStale = config.DefaultMaxStale
	}
	return &routeCache{c: c, defaultTTL: rc.DefaultTTL.D(), maxStale: maxStale}
}

// CacheStats are the response cache's memory and its counters since the
// process started (reloads keep counting while some route caches).
type CacheStats struct {
	// Bytes is the memory the stored responses take; Limit bounds it
	// (response_cache.max_bytes). Both are 0 when no route caches.
	Bytes, Limit int64
	// Entries counts the stored resources (each with its variants).
	Entries int
	// Hits were answered from the cache, Misses forwarded to a member
	// (or failed without a stale stand-in), Revalidated answered from the
	// cache after a member's 304, Stale answered with a stale response in
	// place of an error; Stored counts responses stored; Coalesced
	// counts requests that waited for another's miss of the same key.
	Hits, Misses, Revalidated, Stale, Stored, Coalesced uint64
}

// CacheStats returns the state of the response cache.
func (px *Proxy) CacheStats() CacheStats {
	c := px.cache
	if c == nil {
		return CacheStats{}
	}
	used, limit := c.store.Usage()
	return CacheStats{
		Bytes: used, Limit: limit, Entries: c.store.Len(),
		Hits: c.stats.hits.Load(), Misses: c.stats.misses.Load(), Revalidated: c.stats.revalidated.Load(),
		Stale: c.stats.stale.Load(), Stored: c.stats.stored.Load(), Coalesced: c.stats.coalesced.Load(),
	}
}

// cacheKey is the cache key of r: scheme, host (without port) and the
// escaped path and query.
func cacheKey(r *http.Request) string {
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return scheme + normalizeHost(r.Host) + r.URL.EscapedPath() + "?" + r.URL.RawQuery
}

// cacheBypass reports whether a GET or HEAD cannot use the cache: it has
// a body, asks for an upgrade or a range, or has preconditions other
// than If-None-Match and If-Modified-Since.
func cacheBypass(r *http.Request) bool {
	h := r.Header
	return r.ContentLength != 0 || h["Upgrade"] != nil || h["Range"] != nil || h["If-Range"] != nil ||
		h["If-Match"] != nil || h["If-Unmodified-Since"] != nil
}

// unsafeMethod reports whether a successful request with method
// invalidates the stored responses of its URI (RFC 9111, section 4.4).
func unsafeMethod(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch:
		return true
	}
	return false
}

// serveCached serves a request of a caching route.
func (px *Proxy) serveCached(w http.ResponseWriter, r *http.Request, rt *prefixRoute) {
	p, rc := rt.pool, rt.cache
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if !unsafeMethod(r.Method) {
			px.forward(w, r, rt)
			return
		}
		key := cacheKey(r)
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		px.forward(sw, r, rt)
		if sw.status < 400 {
			rc.c.store.Delete(key)
		}
		return
	}
	if cacheBypass(r) {
		w.Header()["Cache-Status"] = cacheStatusBypass
		px.forward(w, r, rt)
		return
	}
	store, stats := rc.c.store, rc.c.stats
	key := cacheKey(r)
	now := px.now()
	creds := cache.Credentialed(r.Header)
	req := cache.ParseRequest(r.Header)
	e, known := store.Lookup(key, r.Header)
	if e != nil && creds && !e.Directives.Public {
		e, known = nil, false
	}
	fwd := "uri-miss"
	switch {
	case e == nil && known:
		fwd = "vary-miss"
	case e == nil:
	case req.NoCache:
		fwd = "request"
	case e.Fresh(now):
		stats.hits.Add(1)
		px.writeEntry(w, r, e, now, hitStatus(e, now), true, false)
		return
	default:
		fwd = "stale"
	}

	var done func()
	if e == nil && r.Method == http.MethodGet && !creds && !req.NoStore {
		var wait <-chan struct{}
		wait, done = store.Join(key)
		if done != nil {
			defer done()
		} else {
			stats.coalesced.Add(1)
			select {
			case <-wait:
			case <-r.Context().Done():
				w.WriteHeader(499) // the client went away
				return
			}
			now = px.now()
			if e, _ = store.Lookup(key, r.Header); e != nil && e.Fresh(now) {
				stats.hits.Add(1)
				px.writeEntry(w, r, e, now, hitStatus(e, now), true, false)
				return
			}
		}
	}

	cw := &cacheWriter{w: w, h: make(http.Header, 16), px: px, r: r, rc: rc, pool: p.name, key: key,
		stored: e, fwd: fwd, creds: creds, reqTime: now, done: done}
	if e != nil && r.Header["If-None-Match"] == nil && r.Header["If-Modified-Since"] == nil {
		etag, lm := e.Validators()
		if etag != "" {
			r.Header["If-None-Match"] = []string{etag}
			cw.revalidating = true
		}
		if lm != "" {
			r.Header["If-Modified-Since"] = []string{lm}
			cw.revalidating = true
		}
	}
	px.forward(cw, r, rt)
	cw.finish()
}

func hitStatus(e *cache.Entry, now time.Time) string {
	return cacheName + "; hit; ttl=" + strconv.FormatInt(int64(e.TTL(now)/time.Second), 10)
}

// writeEntry answers r with the stored response e: its fields with Age
// and Cache-Status, a 304 when conditional is set and r's
// If-None-Match or If-Modified-Since matches, and Warning: 110 when it
// stands in for an error (stale).
func (px *Proxy) writeEntry(w http.ResponseWriter, r *http.Request, e *cache.Entry, now time.Time, status string, conditional, stale bool) {
	h := w.Header()
	for k, vv := range e.Header {
		h[k] = vv
	}
	px.requestID(w, r)
	h["Age"] = []string{strconv.FormatInt(int64(e.Age(now)/time.Second), 10)}
	h["Cache-Status"] = []string{status}
	if stale && !e.Fresh(now) {
		h["Warning"] = warningStale
	}
	if conditional && e.NotModified(r.Header) {
		delete(h, "Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if e.Status != http.StatusNoContent {
		h["Content-Length"] = []string{strconv.Itoa(len(e.Body))}
	}
	if r.ProtoMajor == 2 {
		armPage(w, r, px.writeIdle) // HTTP/1 is armed when its request starts
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}

// Modes of a cacheWriter, decided at the final response's WriteHeader.
const (
	modeUndecided = iota
	modePass      // the answer goes to the client
	modeStore     // the answer goes to the client and is kept for storing
	modeSwallow   // the answer is dropped: the client got a stored response
)

// cacheWriter is the http.ResponseWriter the forwarding paths write a
// caching route's answer to. It collects the header in its own map and
// decides at WriteHeader what the client gets.
type cacheWriter struct {
	w    http.ResponseWriter
	h    http.Header
	px   *Proxy
	r    *http.Request
	rc   *routeCache
	pool string
	key  string
	// stored is the entry the request found (stale, or fresh but the
	// client asked for validation), nil on a miss.
	stored *cache.Entry
	fwd    string
	creds  bool
	// revalidating is set when the validators of stored were added to
	// the request: a 304 then refreshes stored and answers with it.
	revalidating      bool
	reqTime, respTime time.Time
	// done ends the request's lead of a coalesced miss (nil if none).
	done func()

	mode   int
	status int
	header http.Header // the header to store (modeStore)
	body   []byte      // the body to store (modeStore)
}

// Header implements http.ResponseWriter.
func (cw *cacheWriter) Header() http.Header { return cw.h }

// release lets the requests waiting on this one's miss go on.
func (cw *cacheWriter) release() {
	if cw.done != nil {
		cw.done()
	}
}

// WriteHeader implements http.ResponseWriter: informational responses go
// to the client at once; the final one decides the mode.
func (cw *cacheWriter) WriteHeader(code int) {
	if cw.mode != modeUndecided {
		return
	}
	if code < 200 {
		h := cw.w.Header()
		var addedBuf [8]string
		added := addedBuf[:0]
		for k, vv := range cw.h {
			if h[k] == nil {
				h[k] = vv
				added = append(added, k)
			}
		}
		cw.w.WriteHeader(code)
		for _, k := range added {
			delete(h, k)
		}
		return
	}
	now := cw.px.now()
	cw.status, cw.respTime = code, now
	rc, e, stats := cw.rc, cw.stored, cw.rc.c.stats
	switch {
	case code >= 500 && e != nil && e.StaleUsable(now, rc.maxStale):
		cw.mode = modeSwallow
		cw.release()
		stats.stale.Add(1)
		status := cacheName + "; fwd=" + cw.fwd + "; fwd-status=" + strconv.Itoa(code) +
			"; ttl=" + strconv.FormatInt(int64(e.TTL(now)/time.Second), 10) + "; detail=stale-if-error"
		cw.px.log.Debug("serving a stale response in place of an error", keyPool, cw.pool, keyStatus, code,
			"key", cw.key, "age", e.Age(now).Round(time.Second))
		cw.px.writeEntry(cw.w, cw.r, e, now, status, !cw.revalidating, true)
		return
	case code == http.StatusNotModified && e != nil && (cw.revalidating || sameValidator(cw.h, e)):
		fresh := e.Refresh(cw.h, cw.reqTime, now, rc.defaultTTL)
		// The 304's fields may make the response personal (Set-Cookie,
		// private, no-store): the client that asked gets them, the store
		// does not, as with a full response.
		switch cache.Storable(http.MethodGet, cw.r.Header, fresh.Status, fresh.Header) {
		case "":
			rc.c.store.Store(cw.key, fresh)
		case cache.ReasonNoStore, cache.ReasonPrivate, cache.ReasonSetCookie, cache.ReasonVaryAll:
			if !cw.creds {
				rc.c.store.Delete(cw.key)
			}
		}
		stats.revalidated.Add(1)
		if cw.revalidating {
			cw.mode = modeSwallow
			cw.release()
			cw.px.writeEntry(cw.w, cw.r, fresh, now, cacheName+"; fwd="+cw.fwd+"; fwd-status=304; ttl="+
				strconv.FormatInt(int64(fresh.TTL(now)/time.Second), 10), false, false)
			return
		}
	default:
		stats.misses.Add(1)
	}

	cw.mode = modePass
	status := cacheName + "; fwd=" + cw.fwd + "; fwd-status=" + strconv.Itoa(code)
	if cw.r.Method == http.MethodGet {
		switch reason := cache.Storable(http.MethodGet, cw.r.Header, code, cw.h); reason {
		case "":
			cl, err := strconv.ParseInt(cw.h.Get("Content-Length"), 10, 64)
			if err != nil || cl <= rc.c.maxObject {
				cw.mode = modeStore
				cw.header = cw.h.Clone()
				delete(cw.header, headerRequestID)
				if err == nil {
					cw.body = make([]byte, 0, cl)
				}
				status += "; stored"
			}
		case cache.ReasonNoStore, cache.ReasonPrivate, cache.ReasonSetCookie, cache.ReasonVaryAll:
			// The member no longer lets this resource be stored: forget
			// what was, unless the answer is personal to credentials.
			if !cw.creds && code < 500 {
				rc.c.store.Delete(cw.key)
			}
		}
	}
	if cw.mode != modeStore {
		cw.release()
	}
	h := cw.w.Header()
	for k, vv := range cw.h {
		h[k] = vv
	}
	if ids := cw.r.Header[headerRequestID]; ids != nil {
		// ReverseProxy clears the header map after a 1xx.
		h[headerRequestID] = ids
	}
	if up := cw.h["Cache-Status"]; len(up) > 0 {
		// Caches nearer the member come first (RFC 9211, section 2).
		status = strings.Join(up, ", ") + ", " + status
	}
	h["Cache-Status"] = []string{status}
	cw.w.WriteHeader(code)
}

// sameValidator reports whether a 304 (header h) is about the stored
// response e: the same entity tag, or without one the same Last-Modified.
func sameValidator(h http.Header, e *cache.Entry) bool {
	etag, lm := e.Validators()
	if got := h.Get("Etag"); got != "" || etag != "" {
		return got == etag
	}
	return lm != "" && h.Get("Last-Modified") == lm
}

// Write implements http.ResponseWriter.
func (cw *cacheWriter) Write(b []byte) (int, error) {
	if cw.mode == modeUndecided {
		cw.WriteHeader(http.StatusOK)
	}
	switch cw.mode {
	case modeSwallow:
		return len(b), nil
	case modeStore:
		if int64(len(cw.body)+len(b)) > cw.rc.c.maxObject {
			cw.abandon()
		} else {
			cw.body = append(cw.body, b...)
		}
	}
	n, err := cw.w.Write(b)
	if err != nil {
		cw.abandon()
	}
	return n, err
}

// abandon gives up storing the response.
func (cw *cacheWriter) abandon() {
	if cw.mode == modeStore {
		cw.mode, cw.body, cw.header = modePass, nil, nil
		cw.release()
	}
}

// FlushError lets http.ResponseController flush through the writer.
func (cw *cacheWriter) FlushError() error {
	if cw.mode == modeUndecided {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.mode == modeSwallow {
		return nil
	}
	return http.NewResponseController(cw.w).Flush()
}

// finish stores a complete storable response. It is not reached when
// the forwarding path aborts the response (panic).
func (cw *cacheWriter) finish() {
	if cw.mode == modeUndecided {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.mode == modeSwallow {
		return
	}
	// Fields set after the header was written are trailers.
	h := cw.w.Header()
	for k, vv := range cw.h {
		if h[k] == nil {
			h[k] = vv
		}
	}
	if cw.mode != modeStore {
		return
	}
	if cl := cw.header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(cw.body)) {
		cw.release()
		return // truncated
	}
	e := cache.NewEntry(cw.r.Header, cw.status, cw.header, cw.body, cw.reqTime, cw.respTime, cw.rc.defaultTTL)
	if cw.rc.c.store.Store(cw.key, e) {
		cw.rc.c.stats.stored.Add(1)
	}
	cw.release()
}
