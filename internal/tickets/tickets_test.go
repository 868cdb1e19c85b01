package tickets

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gatehouse/internal/certs"
	"gatehouse/internal/store"
	"gatehouse/internal/store/bolt"
	"gatehouse/internal/store/etcd"
	"gatehouse/internal/store/etcd/etcdtest"
)

// clock is a settable time for rotation decisions.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// firstTicket is a client session cache that keeps only the first session
// it is given, so that a test can present one ticket again after later
// handshakes issued newer ones.
type firstTicket struct {
	mu sync.Mutex
	cs *tls.ClientSessionState
}

func (c *firstTicket) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cs, c.cs != nil
}

func (c *firstTicket) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs == nil && cs != nil {
		c.cs = cs
	}
}

type fixture struct {
	cert  tls.Certificate
	roots *x509.CertPool
	kek   *certs.KEK
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "a.test"},
		DNSNames:     []string{"a.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IsCA:         true,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},

		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	raw := make([]byte, certs.KEKSize)
	rand.Read(raw)
	kek, err := certs.ParseKEK(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, roots: roots, kek: kek}
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// startNode starts Keys over st and an HTTPS server (net/http, which copies
// its TLS config) using them, and returns both.
func (f *fixture) startNode(t *testing.T, st store.Store, kek Sealer, now func() time.Time) (*Keys, string) {
	t.Helper()
	k := New(st, kek, Options{Now: now, Period: time.Hour})
	if err := k.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = k.TLSConfig(&tls.Config{Certificates: []tls.Certificate{f.cert}})
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return k, srv.Listener.Addr().String()
}

// get makes one request on a new connection and reports whether its
// handshake resumed a session.
func (f *fixture) get(t *testing.T, addr string, cache tls.ClientSessionCache, maxVersion uint16) bool {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "a.test", RootCAs: f.roots, ClientSessionCache: cache, MaxVersion: maxVersion})
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
	body, err := io.ReadAll(conn) // also reads the TLS 1.3 session tickets
	if err != nil {
		t.Fatalf("reading from %s: %v", addr, err)
	}
	if !bytes.HasSuffix(body, []byte("ok")) {
		t.Fatalf("response from %s: %q", addr, body)
	}
	return conn.ConnectionState().DidResume
}

func TestResumeOnAnotherNode(t *testing.T) {
	f := newFixture(t)
	shared := openStore(t)
	_, addr1 := f.startNode(t, shared, f.kek, nil)
	_, addr2 := f.startNode(t, shared, f.kek, nil)
	_, alone := f.startNode(t, openStore(t), f.kek, nil) // another fleet's store
	for _, tc := range []struct {
		name    string
		version uint16
		second  string
		want    bool
	}{
		{"TLS 1.3, same fleet", tls.VersionTLS13, addr2, true},
		{"TLS 1.2, same fleet", tls.VersionTLS12, addr2, true},
		{"TLS 1.3, other store", tls.VersionTLS13, alone, false},
		{"TLS 1.2, other store", tls.VersionTLS12, alone, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(4)
			if got := f.get(t, addr1, cache, tc.version); got {
				t.Fatalf("first handshake resumed")
			}
			if got := f.get(t, tc.second, cache, tc.version); got != tc.want {
				t.Errorf("second handshake on another node: DidResume = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRotationKeepsPreviousKeyOnePeriod(t *testing.T) {
	f := newFixture(t)
	st := openStore(t)
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	rotator, _ := f.startNode(t, st, f.kek, clk.Now)
	follower, addr := f.startNode(t, st, f.kek, clk.Now)
	cache := &firstTicket{}
	if f.get(t, addr, cache, tls.VersionTLS13) {
		t.Fatal("first handshake resumed")
	}
	steps := []struct {
		name        string
		advance     time.Duration
		wantRotated bool
		wantResume  bool
	}{
		{"not due yet", 59 * time.Minute, false, true},
		{"one rotation: the ticket's key is the previous one", time.Minute, true, true},
		{"two rotations: the ticket's key is gone", time.Hour, true, false},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clk.Add(s.advance)
			rotated, err := rotator.Rotate(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rotated != s.wantRotated {
				t.Fatalf("Rotate = %v, want %v", rotated, s.wantRotated)
			}
			want, _ := rotator.Current()
			waitFor(t, func() bool { got, _ := follower.Current(); return got.Equal(want) })
			if got := f.get(t, addr, cache, tls.VersionTLS13); got != s.wantResume {
				t.Errorf("resuming with the first ticket: DidResume = %v, want %v", got, s.wantResume)
			}
		})
	}
	if _, n := follower.Current(); n != 1+keepPrevious {
		t.Errorf("keys kept = %d, want %d", n, 1+keepPrevious)
	}
}

func TestKeysSealedAtRest(t *testing.T) {
	f := newFixture(t)
	st := openStore(t)
	k, _ := f.startNode(t, st, f.kek, nil)
	kv, err := st.Get(context.Background(), StoreKey)
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	key := bytes.Clone(k.set.Keys[0].Key)
	k.mu.Unlock()
	if bytes.Contains(kv.Value, key) {
		t.Error("the stored value contains the key in the clear")
	}
	other := newFixture(t).kek
	err = New(st, other, Options{}).Start(context.Background())
	if err == nil {
		t.Fatal("Start with another key-encryption key: no error")
	}
	t.Logf("with another KEK: %v", err)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStartBoundedWhenStoreDown: a node whose etcd does not answer starts
// within StartTimeout with its own keys, and adopts the fleet's keys once
// etcd is back.
func TestStartBoundedWhenStoreDown(t *testing.T) {
	f := newFixture(t)
	c := etcdtest.Start(t, 1)
	st, err := etcd.Open(context.Background(), etcd.Options{Endpoints: c.Endpoints(), RequestTimeout: 10 * time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c.StopAll()

	k := New(st, f.kek, Options{StartTimeout: 300 * time.Millisecond})
	began := time.Now()
	if err := k.Start(context.Background()); err != nil {
		t.Fatalf("Start with etcd down: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("Start with etcd down took %v, want about the 300ms start timeout", took)
	}
	if _, n := k.Current(); n != 0 {
		t.Fatalf("keys known with etcd down: %d, want 0", n)
	}

	c.RestartAll()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, n := k.Current(); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fleet keys not adopted 20s after etcd came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	kv, err := st.Get(context.Background(), StoreKey)
	if err != nil {
		t.Fatalf("keys not written to the store after etcd came back: %v", err)
	}
	if kv.ModRev == 0 {
		t.Fatalf("stored keys have no revision")
	}
}
