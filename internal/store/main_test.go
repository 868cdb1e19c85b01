package store_test

import (
	"testing"

	"gatehouse/internal/leakcheck"
)

// Every Follow's goroutine must end with its context or its store.
func TestMain(m *testing.M) { leakcheck.Main(m, "internal/store.(*Follower)") }
