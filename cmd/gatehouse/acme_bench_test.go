package main

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/admin"
	"gatehouse/internal/hostnames"
	"gatehouse/internal/store"
)

var acmeIssueN = flag.Int("acme-issue-n", 20, "hostnames TestACMEIssueMany registers")

// TestACMEIssueMany registers -acme-issue-n hostnames on one node (bolt) and waits
// until every one is active, issued by the in-process CA over TLS-ALPN-01
// against the node's HTTPS listener, while a client loop handshakes with a
// name that is already active. It reports orders per second, process CPU
// per certificate (the CA and its validation run in the same process and
// are included), store bytes per hostname and failed handshakes; none may
// fail.
//
//	go test -run TestACMEIssueMany -acme-issue-n 1000 -v ./cmd/gatehouse
func TestACMEIssueMany(t *testing.T) {
	n := *acmeIssueN
	tn, ca := startACME(t, 0, "  challenges: [tls-alpn-01]\n  workers: 8\n  rate_limits: {orders_per_3h: 1000000, certs_per_domain_per_7d: 1000000}\n")
	ctx := context.Background()
	roots, _ := ca.Roots()
	if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: "steady.bench.test", Pool: "a"}); err != nil {
		t.Fatal(err)
	}
	waitState(t, tn.client, "steady.bench.test", hostnames.Active, time.Minute)
	size0 := storeBytes(tn)
	stop := make(chan struct{})
	ok, failed, done := handshakeLoop(tn.Addr("https"), "steady.bench.test", roots, stop)
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	var addErr atomic.Value
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			// One registered domain per name: the CA's per-domain limit is not what is measured.
			if _, err := tn.client.AddHostname(ctx, admin.HostnameRequest{Name: fmt.Sprintf("shop.tenant%d.test", i), Pool: "a"}); err != nil {
				addErr.Store(err)
			}
		})
	}
	wg.Wait()
	if err, _ := addErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	for {
		c := tn.Hostnames().Counts()
		if c[hostnames.Active] == n+1 {
			break
		}
		if c[hostnames.Failed] > 0 {
			hs, _ := tn.client.ListHostnames(ctx, "failed")
			t.Fatalf("%d failed: %+v", c[hostnames.Failed], hs[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
	wall := time.Since(start)
	cpu := cpuTime() - cpu0
	close(stop)
	<-done
	t.Logf("%d hostnames issued in %v: %.1f orders/s, %.1f ms CPU per certificate (CA included), %d store bytes per hostname; %d handshakes of an active name meanwhile, %d failed",
		n, wall.Round(time.Millisecond), float64(n)/wall.Seconds(), cpu.Seconds()*1000/float64(n), (storeBytes(tn)-size0)/int64(n), ok.Load(), failed.Load())
	if failed.Load() != 0 {
		t.Errorf("%d handshakes of an active name failed during issuance", failed.Load())
	}
}

func storeBytes(tn *testNode) int64 {
	u, err := tn.Store().(store.Sizer).Usage(context.Background())
	if err != nil {
		return 0
	}
	return u.Bytes
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
