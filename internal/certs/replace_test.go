package certs

import (
	"crypto/tls"
	"sync"
	"sync/atomic"
	"testing"
)

// TestReplaceNeverUnserved renews one name's certificate again and again
// while handshakes for it run without pause, on the writing manager and on
// a second one that follows the store's watch: a replacement is one
// transaction, so no handshake may find the name without a certificate
// (which crypto/tls answers with unrecognized_name).
func TestReplaceNeverUnserved(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m1 := startManager(t, st, Options{})
	m2 := startManager(t, st, Options{})
	const name = "renew.uni-a.test"
	mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{name}}))
	eventually(t, "the second manager to see the first certificate", func() bool { return len(m2.Lookup(name)) == 1 })

	var stop atomic.Bool
	var served, missed atomic.Int64
	var wg sync.WaitGroup
	for _, m := range []*Manager{m1, m2} {
		for range 2 {
			wg.Go(func() {
				hello := &tls.ClientHelloInfo{ServerName: name}
				for !stop.Load() {
					cert, err := m.GetCertificate(hello)
					if err != nil || cert == nil {
						missed.Add(1)
						continue
					}
					served.Add(1)
				}
			})
		}
	}
	for range 40 {
		mustAdd(t, m1, p.leaf(t, leafSpec{names: []string{name}}))
	}
	stop.Store(true)
	wg.Wait()
	if missed.Load() != 0 || served.Load() == 0 {
		t.Errorf("during 40 replacements: %d lookups served, %d found no certificate; want none unserved", served.Load(), missed.Load())
	}
}
