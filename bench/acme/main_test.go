package main

import (
	"fmt"
	"testing"
)

func TestHostname(t *testing.T) {
	for _, i := range []int{0, 7, 1234567, 9999999} {
		want := fmt.Sprintf("www.customer%07d.example", i)
		if got := hostname(i); got != want {
			t.Errorf("hostname(%d) = %q, want %q", i, got, want)
		}
		if got := hostIndex(want); got != i {
			t.Errorf("hostIndex(%q) = %d", want, got)
		}
	}
}

// A small run checks the simulation's invariants: the steady state renews
// every name about once per mean interval, the pace cap holds, and a
// restart rebuilds the same schedule.
func TestRunSmall(t *testing.T) {
	cfg := config{n: 3000, days: 12, pace: 2, seed: 1}
	r := run(cfg, 6*day, "restart")
	want := float64(cfg.n) * 12 / 3 // 3000 names, a renewal every 3 days
	if got := float64(r.renewals); got < want*0.95 || got > want*1.05 {
		t.Errorf("%d renewals in 12 days, want about %.0f", r.renewals, want)
	}
	if r.execPeakM > r.cap {
		t.Errorf("run peak %d per minute over the cap %d", r.execPeakM, r.cap)
	}
	if !r.rebuild.done || !r.rebuild.identical {
		t.Errorf("restart: %+v", r.rebuild)
	}
}
