package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"gatehouse/internal/leakcheck"
	"maps"
	"slices"

	"math/big"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/waittest"
)

// testPKI is a root CA and an intermediate that issues test leaves.
type testPKI struct {
	root      *x509.Certificate
	rootKey   crypto.Signer
	inter     *x509.Certificate
	interKey  crypto.Signer
	interPEM  []byte
	pool      *x509.CertPool
	serial    atomic.Int64
	testStart time.Time
}

var (
	pkiOnce   sync.Once
	sharedPKI *testPKI
	rsaOnce   sync.Once
	rsaKey    *rsa.PrivateKey
)

// newPKI returns the package's shared test CA (made once per test binary).
func newPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		p := &testPKI{testStart: time.Now()}
		p.serial.Store(1000)
		p.rootKey = mustECKey()
		p.root = p.sign(&x509.Certificate{
			Subject:               pkix.Name{CommonName: "Test Root"},
			NotBefore:             p.testStart.Add(-48 * time.Hour),
			NotAfter:              p.testStart.Add(10 * 365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}, p.rootKey.Public(), nil, p.rootKey)
		p.interKey = mustECKey()
		p.inter = p.sign(&x509.Certificate{
			Subject:               pkix.Name{CommonName: "Intermediate"},
			NotBefore:             p.testStart.Add(-48 * time.Hour),
			NotAfter:              p.testStart.Add(5 * 365 * 24 * time.Hour),
			IsCA:                  true,
			BasicConstraintsValid: true,
			KeyUsage:              x509.KeyUsageCertSign,
		}, p.interKey.Public(), p.root, p.rootKey)
		p.interPEM = pemCert(p.inter)
		p.pool = x509.NewCertPool()
		p.pool.AddCert(p.root)
		sharedPKI = p
	})
	return sharedPKI
}

func mustECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// sharedRSAKey is one RSA-2048 key for every RSA leaf: generating RSA keys is slow.
func sharedRSAKey() *rsa.PrivateKey {
	rsaOnce.Do(func() {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		rsaKey = k
	})
	return rsaKey
}

func (p *testPKI) sign(tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, parentKey crypto.Signer) *x509.Certificate {
	tmpl.SerialNumber = big.NewInt(p.serial.Add(1))
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// leafSpec describes a test leaf; zero fields take defaults.
type leafSpec struct {
	names     []string
	cn        string
	rsa       bool
	notBefore time.Time // default: an hour ago
	notAfter  time.Time // default: in 90 days
	keyFormat string    // "pkcs8" (default), "pkcs1" (RSA), "sec1" (EC)
	noChain   bool
}

// testLeaf is an issued leaf with its PEM inputs.
type testLeaf struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte // leaf then intermediate
	keyPEM  []byte
	pkcs8   []byte
}

func (p *testPKI) leaf(t testing.TB, s leafSpec) testLeaf {
	t.Helper()
	if s.notBefore.IsZero() {
		s.notBefore = time.Now().Add(-time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	var key crypto.Signer = mustECKey()
	if s.rsa {
		key = sharedRSAKey()
	}
	cn := s.cn
	if cn == "" && len(s.names) > 0 {
		cn = s.names[0]
	}
	c := p.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    s.names,
		NotBefore:   s.notBefore,
		NotAfter:    s.notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key.Public(), p.inter, p.interKey)
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	switch s.keyFormat {
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key.(*rsa.PrivateKey))}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(key.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	default:
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}
	}
	certPEM := pemCert(c)
	if !s.noChain {
		certPEM = append(certPEM, p.interPEM...)
	}
	return testLeaf{cert: c, key: key, certPEM: certPEM, keyPEM: pem.EncodeToMemory(block), pkcs8: pkcs8}
}

// openStore opens a bolt store in a temporary directory, closed at cleanup.
func openStore(t testing.TB) (*bolt.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gatehouse.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

func testKEK(t testing.TB) *KEK {
	t.Helper()
	k, err := ParseKEK(make([]byte, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startManager returns a started Manager over st, closed at cleanup.
func startManager(t testing.TB, st store.Store, opts Options) *Manager {
	t.Helper()
	m := NewManager(st, testKEK(t), opts)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func mustAdd(t testing.TB, m *Manager, l testLeaf) Info {
	t.Helper()
	info, _, err := m.Add(context.Background(), l.certPEM, l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// serveTLS serves TLS handshakes with cfg on a loopback listener until
// cleanup, and returns its address.
func serveTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := tls.Server(c, cfg)
				tc.SetDeadline(time.Now().Add(10 * time.Second))
				if tc.Handshake() == nil {
					// Let the client finish reading before closing.
					var b [1]byte
					tc.Read(b[:])
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// handshake connects to addr with SNI serverName, verifying against the
// test root, and returns the leaf the server presented.
func handshake(t testing.TB, addr, serverName string, tweak func(*tls.Config)) (*x509.Certificate, error) {
	t.Helper()
	p := newPKI(t)
	cfg := &tls.Config{ServerName: serverName, RootCAs: p.pool}
	if serverName == "" {
		cfg.InsecureSkipVerify = true
	}
	if tweak != nil {
		tweak(cfg)
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waittest.Until(t, 0, what, cond)
}

// countingStore counts Gets of bundle records, to observe cache loads.
type countingStore struct {
	store.Store
	bundleGets atomic.Int64
	gate       chan struct{} // if non-nil, bundle Gets wait for it to close
}

func (s *countingStore) Get(ctx context.Context, key string) (store.KV, error) {
	if len(key) > len(prefixBundles) && key[:len(prefixBundles)] == prefixBundles {
		s.bundleGets.Add(1)
		if s.gate != nil {
			select {
			case <-s.gate:
			case <-ctx.Done():
				return store.KV{}, ctx.Err()
			}
		}
	}
	return s.Store.Get(ctx, key)
}

// storeState is what a refused write must leave unchanged.
type storeState struct {
	Rev  int64
	Keys int
}

func stateOf(t testing.TB, st store.Store) storeState {
	t.Helper()
	kvs, rev, err := st.List(context.Background(), "", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	return storeState{Rev: rev, Keys: len(kvs)}
}

// jsonKeys returns the sorted keys of v's JSON object.
func jsonKeys(v any) ([]string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(m))
	return keys, nil
}

// TestMain fails the run if goroutines outlive the tests.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
