package main

import (
	"testing"
	"time"
)

// TestFleetNodeStopsWithEtcdDown: a node told to stop while etcd does not
// answer must not wait on it (final status writes, resigning elections):
// it drains and stops at once. (It took 9 s with a 1 s request timeout,
// and several times the request timeout in general, before the fix.)
func TestFleetNodeStopsWithEtcdDown(t *testing.T) {
	f := startFleet(t, 1, 1)
	tn := f.nodes[0]
	tn.addCert("stop.fleet.test")
	f.etcd.StopAll()
	waitUnreachable(t, tn, 1, 10*time.Second)
	start := time.Now()
	tn.client.CloseIdleConnections()
	tn.cancel()
	select {
	case err := <-tn.done:
		tn.done <- err // for the cleanup's stop
	case <-time.After(20 * time.Second):
		t.Fatalf("node did not stop within 20s with etcd down")
	}
	took := time.Since(start)
	t.Logf("stopped %v after SIGTERM with etcd down", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("stopping with etcd down took %v, want well under the 1s request timeout times the store calls", took)
	}
}
