package health

import (
	"testing"

	"gatehouse/internal/leakcheck"
)

// TestMain fails the run if health checks or member connections outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m, "health.(*Watch).run", "net/http.(*persistConn)")
}
