package proxy

import (
	"testing"

	"gatehouse/internal/leakcheck"
)

// TestMain fails the run if goroutines of health checks, reverse proxying
// or member connections outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m, "health.(*Watch).run", "httputil.", "net/http.(*persistConn)", "gatehouse/internal/proxy.(")
}
