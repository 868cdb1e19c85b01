package main

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUnavailablePageLinksPortal: a pool whose only member is down answers
// with the 503 page, which links the status portal of status.url, and the
// member's transition is counted in gatehouse_member_transitions_total.
func TestUnavailablePageLinksPortal(t *testing.T) {
	// A member address nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	tn := startTestNode(t, `status: {url: "https://status.uni-a.test/"}
pools:
  - name: gone
    members: [{address: "`+dead+`"}]
    health_check: {path: /health, interval: 200ms, timeout: 100ms, fall: 1, rise: 1}
routes:
  - {host: gone.uni-a.test, pool: gone}
`)
	tn.addCert("gone.uni-a.test")
	deadline := time.Now().Add(10 * time.Second)
	for tn.metric(`gatehouse_member_transitions_total{pool="gone",state="down"}`) == "" {
		if time.Now().After(deadline) {
			t.Fatal("the member's down transition was never counted in gatehouse_member_transitions_total")
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := get(t, tn.httpClient(false), "https://gone.uni-a.test/")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `<a href="https://status.uni-a.test/">status page</a>`) {
		t.Fatalf("GET with no healthy member: %d %q; want 503 linking https://status.uni-a.test/", code, body)
	}
}
