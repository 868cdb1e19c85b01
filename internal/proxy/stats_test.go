package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/config"
)

// counts returns the request and failure counters of pool.
func counts(px *Proxy, pool string) [2]uint64 {
	for _, p := range px.Pools() {
		if p.Name == pool {
			return [2]uint64{p.Requests, p.Failures}
		}
	}
	return [2]uint64{}
}

// TestPoolCounters checks what counts as an answered and as a failed
// request, on both proxy paths, and that a reload keeps counting.
func TestPoolCounters(t *testing.T) {
	// A real member that answers the status code named by the path.
	member := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(member.Close)
	down := poolConfig("down", "", closedAddr(t))
	down.Retries = -1
	cfg := &config.Config{
		Pools: []config.Pool{poolConfig("web", "", strings.TrimPrefix(member.URL, "http://")), down},
		Routes: []config.Route{
			{Host: "web.test", PathPrefix: "/", Pool: "web"},
			{Host: "down.test", PathPrefix: "/", Pool: "down"},
		},
	}
	f := newFront(t, cfg, Options{})
	tests := []struct {
		name, method, host, path string
		wantStatus               int
		want                     map[string][2]uint64 // pool → {requests, failures} added
	}{
		{"ok on the direct path", http.MethodGet, "web.test", "/", 200, map[string][2]uint64{"web": {1, 0}}},
		{"404 from a member is no failure", http.MethodGet, "web.test", "/404", 404, map[string][2]uint64{"web": {1, 0}}},
		{"500 on the direct path", http.MethodGet, "web.test", "/500", 500, map[string][2]uint64{"web": {1, 1}}},
		{"503 from a member", http.MethodGet, "web.test", "/503", 503, map[string][2]uint64{"web": {1, 1}}},
		{"500 through ReverseProxy", http.MethodPost, "web.test", "/500", 500, map[string][2]uint64{"web": {1, 1}}},
		{"ok through ReverseProxy", http.MethodPost, "web.test", "/", 200, map[string][2]uint64{"web": {1, 0}}},
		{"connection refused is a 502", http.MethodGet, "down.test", "/", 502, map[string][2]uint64{"down": {1, 1}}},
		{"connection refused through ReverseProxy", http.MethodPost, "down.test", "/", 502, map[string][2]uint64{"down": {1, 1}}},
		{"no route counts nowhere", http.MethodGet, "nothing.test", "/", 404, map[string][2]uint64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := map[string][2]uint64{"web": counts(f.px, "web"), "down": counts(f.px, "down")}
			var body io.Reader
			if tt.method == http.MethodPost {
				body = strings.NewReader("payload")
			}
			res, _ := f.do(t, tt.method, tt.host, tt.path, body, nil)
			if res.StatusCode != tt.wantStatus {
				t.Fatalf("status: got %d, want %d", res.StatusCode, tt.wantStatus)
			}
			got := map[string][2]uint64{}
			for _, pool := range []string{"web", "down"} {
				c := counts(f.px, pool)
				if d := [2]uint64{c[0] - before[pool][0], c[1] - before[pool][1]}; d != ([2]uint64{}) {
					got[pool] = d
				}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("counters added (-got +want):\n%s", diff)
			}
		})
	}

	// No healthy member: the edge's own 503 is a failure.
	f.px.byName["down"].members[0].up.Store(false)
	f.px.byName["down"].rebuild()
	before := counts(f.px, "down")
	if code, _ := f.get(t, "down.test", "/"); code != http.StatusServiceUnavailable {
		t.Fatalf("no healthy member: got %d, want 503", code)
	}
	if got, want := counts(f.px, "down"), [2]uint64{before[0] + 1, before[1] + 1}; got != want {
		t.Errorf("after a 503 for no healthy member: got %v, want %v", got, want)
	}

	// A reload keeps counting from where the previous proxy was.
	web := counts(f.px, "web")
	px2, err := New(cfg, Options{Previous: f.px})
	if err != nil {
		t.Fatal(err)
	}
	defer px2.Close()
	if got := counts(px2, "web"); got != web {
		t.Errorf("after reload: got %v, want %v", got, web)
	}
}

// TestCountingDoesNotAllocate guards the request path: counting an answer
// is two atomic adds.
func TestCountingDoesNotAllocate(t *testing.T) {
	p := newPool(poolConfig("web", "", "127.0.0.1:1"))
	if n := testing.AllocsPerRun(100, func() { p.countAnswer(true) }); n != 0 {
		t.Errorf("countAnswer allocates %v times", n)
	}
}
