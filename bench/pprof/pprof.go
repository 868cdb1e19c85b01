//go:build benchpprof

// This file is not a package of its own: bench/run.sh with PPROF=1 compiles
// it into cmd/gatehouse through `go build -overlay` (and -tags benchpprof),
// so a benchmark binary serves net/http/pprof on GATEHOUSE_PPROF_ADDR without
// any change to the command's source. Never part of a release build.

package main

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux
	"os"
)

func init() {
	addr := os.Getenv("GATEHOUSE_PPROF_ADDR")
	if addr == "" {
		return
	}
	go func() { _ = http.ListenAndServe(addr, nil) }()
}
