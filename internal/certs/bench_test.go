package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"gatehouse/internal/store"
)

// BenchmarkGetCertificate measures the handshake path on a cache hit, with
// 100,000 other names in the index.
func BenchmarkGetCertificate(b *testing.B) {
	p := newPKI(b)
	st, _ := openStore(b)
	m := startManager(b, st, Options{})
	mustAdd(b, m, p.leaf(b, leafSpec{names: []string{"app.uni-a.test"}}))
	mustAdd(b, m, p.leaf(b, leafSpec{names: []string{"*.uni-c.test"}}))
	mustAdd(b, m, p.leaf(b, leafSpec{names: []string{"both.uni-a.test"}}))
	mustAdd(b, m, p.leaf(b, leafSpec{names: []string{"both.uni-a.test"}, rsa: true}))
	far := time.Now().Add(time.Hour)
	for i := range 100000 {
		m.idx.put(fmt.Sprintf("filler%d.uni-z.test", i), entry{id: fmt.Sprintf("%020d", i), keyType: "ecdsa-p256", notAfter: far})
	}
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{
			ServerName:        name,
			SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
			CipherSuites:      []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SupportedCurves:   []tls.CurveID{tls.X25519, tls.CurveP256},
			SupportedPoints:   []uint8{0},
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256},
		}
	}
	for _, name := range []string{"app.uni-a.test", "x.uni-c.test", "APP.Uni-A.test", "both.uni-a.test"} {
		b.Run(name, func(b *testing.B) {
			h := hello(name)
			if c, err := m.GetCertificate(h); c == nil || err != nil { // warm the cache
				b.Fatalf("GetCertificate(%q) = %v, %v", name, c, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m.GetCertificate(h)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		h := hello("app.uni-a.test")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.GetCertificate(h)
			}
		})
	})
}

// BenchmarkGetCertificateLoading measures the handshake path while the
// index loads (Options.LoadInBackground): the name (and, for a wildcard,
// the exact name first) read from a bolt store holding 100,000 other
// names, then the cached certificate.
func BenchmarkGetCertificateLoading(b *testing.B) {
	p := newPKI(b)
	st, _ := openStore(b)
	w := startManager(b, st, Options{})
	mustAdd(b, w, p.leaf(b, leafSpec{names: []string{"app.uni-a.test"}}))
	mustAdd(b, w, p.leaf(b, leafSpec{names: []string{"*.uni-c.test"}}))
	val := nameEntry{KeyType: "ecdsa-p256", NotAfter: time.Now().Add(time.Hour)}.encode()
	for i := 0; i < 100000; i += 1000 {
		ops := make([]store.Op, 0, 1000)
		for j := i; j < i+1000; j++ {
			ops = append(ops, store.Put(nameKey(fmt.Sprintf("filler%d.uni-z.test", j), fmt.Sprintf("%020x", j)), val))
		}
		if _, err := st.Txn(context.Background(), nil, ops); err != nil {
			b.Fatal(err)
		}
	}
	gs := &gatedStore{Store: st, release: make(chan struct{}), entered: make(chan struct{}, 16)}
	m := NewManager(gs, testKEK(b), Options{LoadInBackground: true})
	if err := m.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	<-gs.entered
	for _, name := range []string{"app.uni-a.test", "x.uni-c.test"} {
		b.Run(name, func(b *testing.B) {
			h := &tls.ClientHelloInfo{ServerName: name, SupportedVersions: []uint16{tls.VersionTLS13},
				CipherSuites: []uint16{tls.TLS_AES_128_GCM_SHA256}, SupportedCurves: []tls.CurveID{tls.X25519},
				SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}}
			if c, err := m.GetCertificate(h); c == nil || err != nil {
				b.Fatalf("GetCertificate(%q) = %v, %v", name, c, err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				m.GetCertificate(h)
			}
		})
	}
}
