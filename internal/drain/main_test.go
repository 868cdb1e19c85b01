package drain

import (
	"testing"

	"gatehouse/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m, "gatehouse/internal/store.", "gatehouse/internal/drain.", "gatehouse/internal/proxy.(")
}
