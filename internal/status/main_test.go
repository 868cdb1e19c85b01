package status

import (
	"testing"

	"gatehouse/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "internal/status.(") }
