package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"
)

// flatCost compares the full-handshake rate and server CPU for a hot set of
// 1,000 names with c.n installed against 1,000 installed, then measures SNI
// drawn from all names. It stops nd and returns the node to go on with.
func flatCost(c *runConfig, nd *node, data string, caPEM []byte, res *results) (*node, error) {
	hot := filepath.Join(c.work, "hot-1000.txt")
	if err := writeLines(hot, min(1000, c.n), hostName); err != nil {
		return nd, err
	}
	all := filepath.Join(c.work, fmt.Sprintf("certs-%d", c.n), "hosts.txt")
	hotRun := func(nd *node, label string) (hsResult, float64, error) {
		if _, _, err := hsload(c, nd, hot, 3*time.Second); err != nil { // warm the cache
			return hsResult{}, 0, err
		}
		r, cpu, err := hsload(c, nd, hot, c.loadDur)
		if err == nil {
			log.Printf("%s: %.0f hs/s, p99 %.1f ms, %d errors, server CPU %.2f s per 1000", label, r.Rate, r.P99, r.Errors, 1000*cpu/float64(max(r.OK, 1)))
		}
		return r, 1000 * cpu / float64(max(r.OK, 1)), err
	}

	bigA, cpuA, err := hotRun(nd, fmt.Sprintf("hot 1000 of %d", c.n))
	if err != nil {
		return nd, err
	}
	cold, coldCPU, err := hsload(c, nd, all, c.loadDur)
	if err != nil {
		return nd, err
	}
	coldCPU = 1000 * coldCPU / float64(max(cold.OK, 1))
	nd.stop()

	// The baseline: 1,000 installed.
	baseData := filepath.Join(c.work, "data-base-1000")
	if !exists(filepath.Join(baseData, "gatehouse.db")) {
		baseCerts := filepath.Join(c.work, "certs-base-1000")
		if err := generate(baseCerts, 1000, 0, nil); err != nil {
			return nd, err
		}
		if _, _, _, err := importOffline(c, filepath.Join(baseCerts, "import"), baseData); err != nil {
			return nd, err
		}
	}
	baseCA, err := os.ReadFile(filepath.Join(c.work, "certs-base-1000", "ca.pem"))
	if err != nil {
		return nd, err
	}
	bn, err := startNode(c.gatehouse, baseData, c.serverCPU, baseCA)
	if err != nil {
		return nd, err
	}
	if _, err := bn.waitServing(hostName(0), time.Minute); err != nil {
		bn.stop()
		return nd, err
	}
	base, cpuBase, err := hotRun(bn, "hot 1000 of 1000")
	bn.stop()
	if err != nil {
		return nd, err
	}

	// The large store again, so that drift of the machine shows.
	nd, err = startNode(c.gatehouse, data, c.serverCPU, caPEM)
	if err != nil {
		return nd, err
	}
	if _, err := nd.waitServing(hostName(0), 2*time.Minute); err != nil {
		return nd, err
	}
	bigB, cpuB, err := hotRun(nd, fmt.Sprintf("hot 1000 of %d (again)", c.n))
	if err != nil {
		return nd, err
	}
	bigRate := (bigA.Rate + bigB.Rate) / 2
	bigCPU := (cpuA + cpuB) / 2
	ratio := bigRate / base.Rate
	res.add("hot set, 1,000 installed: rate / CPU per 1,000", fmt.Sprintf("%.0f hs/s / %.3f s (p99 %.1f ms)", base.Rate, cpuBase, base.P99), "", nil)
	res.add(fmt.Sprintf("hot set, %d installed: rate / CPU per 1,000", c.n+c.wild), fmt.Sprintf("%.0f hs/s / %.3f s (runs %.0f, %.0f; p99 %.1f ms)", bigRate, bigCPU, bigA.Rate, bigB.Rate, max(bigA.P99, bigB.P99)), "", nil)
	res.add("  ratio rate / CPU per handshake", fmt.Sprintf("%.3f / %.3f", ratio, bigCPU/cpuBase), "within 10%", ptr(ratio >= 0.9 && bigCPU/cpuBase <= 1.1))
	res.add(fmt.Sprintf("SNI uniform over all %d (cold misses)", c.n), fmt.Sprintf("%.0f hs/s, p50 %.1f ms, p99 %.1f ms, CPU %.3f s per 1,000, %d errors", cold.Rate, cold.P50, cold.P99, coldCPU, cold.Errors), "", nil)
	if n := bigA.Errors + bigB.Errors + base.Errors; n > 0 {
		res.add("  handshake errors in hot runs", fmt.Sprint(n), "0", ptr(false))
	}
	return nd, nil
}
