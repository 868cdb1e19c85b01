package cache

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestParseCacheControl(t *testing.T) {
	const s = time.Second
	tests := []struct {
		in   []string
		want Directives
	}{
		{nil, Directives{MaxAge: -1, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"max-age=60"}, Directives{MaxAge: 60 * s, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"Public, S-MaxAge=10", "max-age=5"}, Directives{Public: true, MaxAge: 5 * s, SMaxAge: 10 * s, StaleIfError: -1}},
		{[]string{`private="Set-Cookie", no-cache="x, y", no-store`}, Directives{Private: true, NoCache: true, NoStore: true, MaxAge: -1, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"must-revalidate,proxy-revalidate, stale-if-error=86400"}, Directives{MustRevalidate: true, ProxyRevalidate: true, MaxAge: -1, SMaxAge: -1, StaleIfError: 86400 * s}},
		{[]string{"max-age=abc"}, Directives{MaxAge: 0, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"max-age=-5"}, Directives{MaxAge: 0, SMaxAge: -1, StaleIfError: -1}},
		{[]string{`max-age="30"`}, Directives{MaxAge: 30 * s, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"max-age=99999999999999999999999"}, Directives{MaxAge: maxDelta * s, SMaxAge: -1, StaleIfError: -1}},
		{[]string{"max-age=60, max-age=10"}, Directives{MaxAge: 10 * s, SMaxAge: -1, StaleIfError: -1}},
		{[]string{" , ,max-age=1,,"}, Directives{MaxAge: s, SMaxAge: -1, StaleIfError: -1}},
		{[]string{`ext="a\"b,c", public`}, Directives{Public: true, MaxAge: -1, SMaxAge: -1, StaleIfError: -1}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, "|"), func(t *testing.T) {
			got := ParseCacheControl(tt.in)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func FuzzParseCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60, public", `private="a,b"`, `x="\`, "s-maxage=1,stale-if-error=2", ",,=,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseCacheControl([]string{s})
		for _, v := range []time.Duration{d.MaxAge, d.SMaxAge, d.StaleIfError} {
			if v < -1 || v > maxDelta*time.Second {
				t.Fatalf("ParseCacheControl(%q) gave out of range %v", s, v)
			}
		}
	})
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		h    http.Header
		want Request
	}{
		{"none", hdr(), Request{}},
		{"no-cache", hdr("Cache-Control", "no-cache"), Request{NoCache: true}},
		{"max-age=0", hdr("Cache-Control", "max-age=0"), Request{NoCache: true}},
		{"max-age=10", hdr("Cache-Control", "max-age=10"), Request{}},
		{"no-store", hdr("Cache-Control", "no-store"), Request{NoStore: true}},
		{"pragma", hdr("Pragma", "no-cache"), Request{NoCache: true}},
		{"pragma ignored with cache-control", hdr("Pragma", "no-cache", "Cache-Control", "max-age=5"), Request{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseRequest(tt.h); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStorable(t *testing.T) {
	tests := []struct {
		name   string
		method string
		req    http.Header
		status int
		h      http.Header
		want   string
	}{
		{"plain 200", "GET", hdr(), 200, hdr(), ""},
		{"max-age", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60"), ""},
		{"404", "GET", hdr(), 404, hdr(), ""},
		{"head", "HEAD", hdr(), 200, hdr("Cache-Control", "max-age=60"), ReasonMethod},
		{"post", "POST", hdr(), 200, hdr("Cache-Control", "max-age=60"), ReasonMethod},
		{"request no-store", "GET", hdr("Cache-Control", "no-store"), 200, hdr(), ReasonRequestStore},
		{"500", "GET", hdr(), 500, hdr("Cache-Control", "max-age=60"), ReasonStatus},
		{"206", "GET", hdr(), 206, hdr("Cache-Control", "max-age=60"), ReasonStatus},
		{"302 without freshness", "GET", hdr(), 302, hdr(), ReasonNoFreshness},
		{"302 with max-age", "GET", hdr(), 302, hdr("Cache-Control", "max-age=60"), ""},
		{"no-store", "GET", hdr(), 200, hdr("Cache-Control", "no-store, max-age=60"), ReasonNoStore},
		{"private", "GET", hdr(), 200, hdr("Cache-Control", "private, max-age=60"), ReasonPrivate},
		{"set-cookie", "GET", hdr(), 200, hdr("Cache-Control", "public, max-age=60", "Set-Cookie", "a=b"), ReasonSetCookie},
		{"vary star", "GET", hdr(), 200, hdr("Cache-Control", "max-age=60", "Vary", "Accept, *"), ReasonVaryAll},
		{"authorization", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "max-age=60"), ReasonCredentials},
		{"authorization public", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "public, max-age=60"), ""},
		{"authorization s-maxage only", "GET", hdr("Authorization", "Bearer x"), 200, hdr("Cache-Control", "s-maxage=60"), ReasonCredentials},
		{"cookie", "GET", hdr("Cookie", "s=1"), 200, hdr("Cache-Control", "max-age=60"), ReasonCredentials},
		{"cookie public", "GET", hdr("Cookie", "s=1"), 200, hdr("Cache-Control", "public"), ""},
		{"trailers", "GET", hdr(), 200, hdr("Trailer", "X-Sum"), ReasonTrailers},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Storable(tt.method, tt.req, tt.status, tt.h); got != tt.want {
				t.Errorf("Storable = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEntryFreshness(t *testing.T) {
	date := t0.Format(http.TimeFormat)
	tests := []struct {
		name       string
		h          http.Header
		defaultTTL time.Duration
		// at is how long after the response the entry is looked at.
		at           time.Duration
		wantLifetime time.Duration
		wantAge      time.Duration
		wantFresh    bool
		wantExplicit bool
	}{
		{"max-age fresh", hdr("Date", date, "Cache-Control", "max-age=60"), 0, 30 * time.Second, time.Minute, 30 * time.Second, true, true},
		{"max-age stale", hdr("Date", date, "Cache-Control", "max-age=60"), 0, 61 * time.Second, time.Minute, 61 * time.Second, false, true},
		{"s-maxage wins", hdr("Date", date, "Cache-Control", "max-age=600, s-maxage=10"), 0, 11 * time.Second, 10 * time.Second, 11 * time.Second, false, true},
		{"expires", hdr("Date", date, "Expires", t0.Add(time.Hour).Format(http.TimeFormat)), 0, time.Minute, time.Hour, time.Minute, true, true},
		{"invalid expires", hdr("Date", date, "Expires", "0"), time.Hour, 0, 0, 0, false, true},
		{"age header", hdr("Date", date, "Cache-Control", "max-age=60", "Age", "50"), 0, 5 * time.Second, time.Minute, 55 * time.Second, true, true},
		{"default ttl", hdr("Date", date), 10 * time.Minute, time.Minute, 10 * time.Minute, time.Minute, true, false},
		{"no freshness", hdr("Date", date), 0, 0, 0, 0, false, false},
		{"no-cache never fresh", hdr("Date", date, "Cache-Control", "no-cache, max-age=60"), 0, 0, time.Minute, 0, false, true},
		{"date in the past counts", hdr("Date", t0.Add(-20*time.Second).Format(http.TimeFormat), "Cache-Control", "max-age=60"), 0, 0, time.Minute, 20 * time.Second, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEntry(hdr(), 200, tt.h, []byte("x"), t0, t0, tt.defaultTTL)
			now := t0.Add(tt.at)
			type result struct {
				Lifetime, Age   time.Duration
				Fresh, Explicit bool
			}
			got := result{e.Lifetime, e.Age(now), e.Fresh(now), e.Explicit}
			want := result{tt.wantLifetime, tt.wantAge, tt.wantFresh, tt.wantExplicit}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("(-got +want):\n%s", diff)
			}
		})
	}
}

func TestStaleUsable(t *testing.T) {
	const maxStale = 24 * time.Hour
	tests := []struct {
		name   string
		status int
		cc     string
		at     time.Duration
		want   bool
	}{
		{"fresh", 200, "max-age=60", time.Second, true},
		{"stale within max_stale", 200, "max-age=60", time.Hour, true},
		{"beyond max_stale", 200, "max-age=60", maxStale + 2*time.Minute, false},
		{"own stale-if-error shortens", 200, "max-age=60, stale-if-error=30", 100 * time.Second, false},
		{"within own stale-if-error", 200, "max-age=60, stale-if-error=30", 80 * time.Second, true},
		{"stale-if-error cannot extend max_stale", 200, "max-age=60, stale-if-error=999999", maxStale + 2*time.Minute, false},
		{"must-revalidate", 200, "max-age=60, must-revalidate", time.Hour, false},
		{"proxy-revalidate", 200, "max-age=60, proxy-revalidate", time.Hour, false},
		{"no-cache", 200, "no-cache", time.Second, false},
		{"s-maxage implies proxy-revalidate", 200, "s-maxage=60", time.Hour, false},
		{"s-maxage with stale-if-error", 200, "s-maxage=60, stale-if-error=7200", time.Hour, true},
		{"no freshness info", 200, "", time.Hour, true},
		{"404 stands in too", 404, "max-age=60", time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hdr("Date", t0.Format(http.TimeFormat))
			if tt.cc != "" {
				h.Set("Cache-Control", tt.cc)
			}
			e := NewEntry(hdr(), tt.status, h, nil, t0, t0, 0)
			if got := e.StaleUsable(t0.Add(tt.at), maxStale); got != tt.want {
				t.Errorf("StaleUsable = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRefresh(t *testing.T) {
	h := hdr("Date", t0.Format(http.TimeFormat), "Cache-Control", "max-age=60", "Etag", `"v1"`,
		"Content-Length", "5", "X-Old", "kept")
	e := NewEntry(hdr(), 200, h, []byte("hello"), t0, t0, 0)
	later := t0.Add(2 * time.Minute)
	if e.Fresh(later) {
		t.Fatal("entry fresh after 2m with max-age=60")
	}
	h304 := hdr("Date", later.Format(http.TimeFormat), "Cache-Control", "max-age=120", "Etag", `"v1"`, "Content-Length", "0")
	n := e.Refresh(h304, later, later, 0)
	type view struct {
		Fresh         bool
		Lifetime      time.Duration
		CL, Old, Body string
	}
	got := view{n.Fresh(later.Add(time.Minute)), n.Lifetime, n.Header.Get("Content-Length"), n.Header.Get("X-Old"), string(n.Body)}
	want := view{true, 2 * time.Minute, "5", "kept", "hello"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
	if e.Lifetime != time.Minute {
		t.Errorf("Refresh changed the old entry: lifetime %v", e.Lifetime)
	}
}

func TestNotModified(t *testing.T) {
	lm := t0.Format(http.TimeFormat)
	e := NewEntry(hdr(), 200, hdr("Etag", `W/"v1"`, "Last-Modified", lm), nil, t0, t0, 0)
	tests := []struct {
		name string
		req  http.Header
		want bool
	}{
		{"none", hdr(), false},
		{"etag match weak", hdr("If-None-Match", `"x", "v1"`), true},
		{"etag star", hdr("If-None-Match", `*`), true},
		{"etag mismatch", hdr("If-None-Match", `"v2"`), false},
		{"ims equal", hdr("If-Modified-Since", lm), true},
		{"ims before", hdr("If-Modified-Since", t0.Add(-time.Hour).Format(http.TimeFormat)), false},
		{"inm wins over ims", hdr("If-None-Match", `"v2"`, "If-Modified-Since", lm), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := e.NotModified(tt.req); got != tt.want {
				t.Errorf("NotModified = %v, want %v", got, tt.want)
			}
		})
	}
}

func entry(req http.Header, h http.Header, body string) *Entry {
	return NewEntry(req, 200, h, []byte(body), t0, t0, 0)
}

func TestVariants(t *testing.T) {
	c := New(1 << 20)
	vary := hdr("Vary", "accept-encoding")
	gz, plain := hdr("Accept-Encoding", "gzip, br"), hdr()
	c.Store("k", entry(gz, vary, "zipped"))
	c.Store("k", entry(plain, vary, "plain"))
	c.Store("k", entry(hdr("Accept-Encoding", "gzip,br"), vary, "zipped again"))
	tests := []struct {
		name      string
		req       http.Header
		want      string
		wantKnown bool
	}{
		{"gzip (whitespace ignored, replaced)", hdr("Accept-Encoding", "gzip,  br"), "zipped again", true},
		{"identity", plain, "plain", true},
		{"other", hdr("Accept-Encoding", "deflate"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, known := c.Lookup("k", tt.req)
			got := ""
			if e != nil {
				got = string(e.Body)
			}
			if got != tt.want || known != tt.wantKnown {
				t.Errorf("Lookup = %q, known %v; want %q, %v", got, known, tt.want, tt.wantKnown)
			}
		})
	}
	if _, known := c.Lookup("other", plain); known {
		t.Error("unknown key reported known")
	}
	// Many variants: the oldest go, the bytes follow.
	for i := range 3 * maxVariants {
		c.Store("k", entry(hdr("Accept-Encoding", fmt.Sprint(i)), vary, "v"))
	}
	if e, _ := c.Lookup("k", plain); e != nil {
		t.Error("oldest variant still stored after many newer ones")
	}
	used, _ := c.Usage()
	c.Delete("k")
	if after, _ := c.Usage(); after != 0 || used == 0 {
		t.Errorf("usage %d before Delete, %d after; want >0 and 0", used, after)
	}
}

func TestBound(t *testing.T) {
	const limit = 256 << 10
	c := New(limit)
	body := strings.Repeat("x", 4<<10)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprintf("k%d-%d", g, i)
				c.Store(key, entry(hdr(), hdr(), body))
				c.Lookup(fmt.Sprintf("k%d-%d", g, i/2), hdr())
				// Usage counts the room the 4 writers reserve
				// before they evict.
				if used, _ := c.Usage(); used > limit+4*int64(len(body)+1024) {
					t.Errorf("usage %d far over limit %d", used, limit)
				}
			}
		})
	}
	wg.Wait()
	used, lim := c.Usage()
	if used > lim || used < lim/2 {
		t.Errorf("usage %d after filling, want between %d and %d", used, lim/2, lim)
	}
	// The accounted bytes match what is stored.
	sum := int64(0)
	n := 0
	for i := range c.shards {
		for _, it := range c.shards[i].items {
			sum += it.size
			n++
		}
	}
	if sum != used || n != c.Len() {
		t.Errorf("items add up to %d bytes in %d keys; Usage %d, Len %d", sum, n, used, c.Len())
	}
	if n >= 2000 || n == 0 {
		t.Errorf("%d keys stored of 2000, want some evicted and some kept", n)
	}
	if !c.Store("big", entry(hdr(), hdr(), strings.Repeat("y", 64<<10))) {
		t.Error("Store of an entry under the limit failed")
	}
	if c.Store("huge", entry(hdr(), hdr(), strings.Repeat("y", limit))) {
		t.Error("Store of an entry over the whole limit succeeded")
	}
	c.SetLimit(64 << 10)
	if used, _ := c.Usage(); used > 64<<10 {
		t.Errorf("usage %d after SetLimit(64KiB)", used)
	}
}

func TestClockKeepsHotEntries(t *testing.T) {
	body := strings.Repeat("x", 1<<10)
	size := entry(hdr(), hdr(), body).Size() + 4
	c := New(20 * size)
	c.Store("hot0", entry(hdr(), hdr(), body))
	for i := range 200 {
		c.Lookup("hot0", hdr())
		c.Store(fmt.Sprintf("c%03d", i), entry(hdr(), hdr(), body))
	}
	if e, _ := c.Lookup("hot0", hdr()); e == nil {
		t.Error("an entry looked up before every store was evicted")
	}
}

func TestJoin(t *testing.T) {
	c := New(1 << 20)
	wait, done := c.Join("k")
	if wait != nil || done == nil {
		t.Fatal("first Join did not lead")
	}
	w2, d2 := c.Join("k")
	if w2 == nil || d2 != nil {
		t.Fatal("second Join led")
	}
	if w3, d3 := c.Join("other"); d3 == nil || w3 != nil {
		t.Fatal("Join of another key did not lead")
	} else {
		d3()
	}
	select {
	case <-w2:
		t.Fatal("wait closed before done")
	default:
	}
	done()
	done() // twice is fine
	<-w2
	if _, d := c.Join("k"); d == nil {
		t.Error("Join after done did not lead")
	} else {
		d()
	}
}
