package proxy

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
)

// TestCacheRefreshKeepsPersonalFieldsOut: a 304 that revalidates a stored
// response may carry fields that make the response personal (Set-Cookie,
// private, no-store). The client that asked gets them; the stored response
// must not, or the next client would receive the first one's cookie.
func TestCacheRefreshKeepsPersonalFieldsOut(t *testing.T) {
	tests := []struct {
		name   string
		fields []string // of the 304
	}{
		{"set-cookie", []string{"Set-Cookie", "session=alice"}},
		{"private", []string{"Cache-Control", "private, max-age=60"}},
		{"no-store", []string{"Cache-Control", "no-store"}},
	}
	for _, fp := range forwardingPaths {
		for _, tt := range tests {
			t.Run(fp.name+"/"+tt.name, func(t *testing.T) {
				clock := newFakeClock()
				o := newOrigin(t, clock, func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Etag", `"v1"`)
					if r.Header.Get("If-None-Match") == `"v1"` {
						w.Header().Set("Cache-Control", "max-age=60")
						for i := 0; i < len(tt.fields); i += 2 {
							w.Header().Set(tt.fields[i], tt.fields[i+1])
						}
						w.WriteHeader(http.StatusNotModified)
						return
					}
					w.Header().Set("Cache-Control", "max-age=60")
					io.WriteString(w, "content")
				})
				f := newFront(t, cacheConfig(fp.maxConns, config.RouteCache{}, o.addr()), Options{Now: clock.Now})
				type answer struct {
					Status          int
					Body, SetCookie string
					Count           int
				}
				get := func() answer {
					res, body := f.do(t, http.MethodGet, host, "/p", nil, nil)
					return answer{res.StatusCode, body, res.Header.Get("Set-Cookie"), o.count("/p")}
				}
				get() // stored
				clock.Advance(61 * time.Second)
				revalidated := get() // 304 from the member, answered from the cache
				next := get()        // another client
				wantRevalidated := answer{200, "content", "", 2}
				if tt.fields[0] == "Set-Cookie" {
					wantRevalidated.SetCookie = "session=alice" // the client that asked gets its cookie
				}
				if diff := cmp.Diff(revalidated, wantRevalidated); diff != "" {
					t.Errorf("revalidated answer (-got +want):\n%s", diff)
				}
				// The next client is not answered with the refreshed entry:
				// it goes to the member (and gets no cookie of another).
				if diff := cmp.Diff(next, answer{200, "content", "", 3}); diff != "" {
					t.Errorf("next client's answer (-got +want):\n%s", diff)
				}
			})
		}
	}
}
