package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"gatehouse/internal/capacity"
	"gatehouse/internal/store"
)

// served returns the serial of the leaf served for serverName, or the
// handshake error.
func served(t *testing.T, addr, serverName string, tweak func(*tls.Config)) (*big.Int, error) {
	t.Helper()
	leaf, err := handshake(t, addr, serverName, tweak)
	if err != nil {
		return nil, err
	}
	return leaf.SerialNumber, nil
}

func wantServed(t *testing.T, addr, serverName string, want testLeaf) {
	t.Helper()
	got, err := served(t, addr, serverName, nil)
	if err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	if got.Cmp(want.cert.SerialNumber) != 0 {
		t.Fatalf("handshake for %q got serial %v, want %v (%v)", serverName, got, want.cert.SerialNumber, want.cert.DNSNames)
	}
}

func wantRejected(t *testing.T, addr, serverName string) {
	t.Helper()
	_, err := served(t, addr, serverName, nil)
	if err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("handshake for %q: got error %v, want the unrecognized name alert", serverName, err)
	}
}

func TestServeBySNI(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	a := p.leaf(t, leafSpec{names: []string{"app.uni-a.test", "www.uni-a.test"}})
	b := p.leaf(t, leafSpec{names: []string{"api.uni-b.test"}})
	wild := p.leaf(t, leafSpec{names: []string{"*.uni-c.test"}})
	exact := p.leaf(t, leafSpec{names: []string{"special.uni-c.test"}})
	for _, l := range []testLeaf{a, b, wild, exact} {
		mustAdd(t, m, l)
	}
	addr := serveTLS(t, m.TLSConfig(nil))

	tests := []struct {
		serverName string
		want       *testLeaf // nil: rejected
	}{
		{"app.uni-a.test", &a},
		{"www.uni-a.test", &a},
		{"APP.Uni-A.test", &a},
		{"api.uni-b.test", &b},
		{"x.uni-c.test", &wild},
		{"special.uni-c.test", &exact},
		{"a.b.uni-c.test", nil},
		{"uni-c.test", nil},
		{"unknown.test", nil},
		{"", nil}, // no SNI, as for access by IP
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			if tt.want == nil {
				wantRejected(t, addr, tt.serverName)
				return
			}
			leaf, err := handshake(t, addr, tt.serverName, func(c *tls.Config) { c.ServerName = strings.ToLower(tt.serverName) })
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(leaf.DNSNames, tt.want.cert.DNSNames); diff != "" {
				t.Errorf("leaf names (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("uppercase SNI on the wire", func(t *testing.T) {
		leaf, err := handshake(t, addr, "APP.Uni-A.test", func(c *tls.Config) {
			c.InsecureSkipVerify = true
		})
		if err != nil {
			t.Fatal(err)
		}
		if leaf.SerialNumber.Cmp(a.cert.SerialNumber) != 0 {
			t.Errorf("got %v, want the certificate of app.uni-a.test", leaf.DNSNames)
		}
	})
}

func TestUnknownNameDefault(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{UnknownSNI: UnknownDefault, DefaultHostname: "default.uni-a.test"})
	def := p.leaf(t, leafSpec{names: []string{"default.uni-a.test"}})
	other := p.leaf(t, leafSpec{names: []string{"other.uni-a.test"}})
	mustAdd(t, m, def)
	mustAdd(t, m, other)
	addr := serveTLS(t, m.TLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	skip := func(c *tls.Config) { c.InsecureSkipVerify = true }
	for _, name := range []string{"unknown.test", "", "a.b.other.uni-a.test"} {
		t.Run(name, func(t *testing.T) {
			got, err := served(t, addr, name, skip)
			if err != nil {
				t.Fatal(err)
			}
			if got.Cmp(def.cert.SerialNumber) != 0 {
				t.Errorf("served serial %v, want the default certificate's %v", got, def.cert.SerialNumber)
			}
		})
	}
	wantServed(t, addr, "other.uni-a.test", other)
}

func TestKeyTypeByClientCapabilities(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	ec := p.leaf(t, leafSpec{names: []string{"both.uni-a.test"}})
	rsa := p.leaf(t, leafSpec{names: []string{"both.uni-a.test"}, rsa: true})
	rsaOnly := p.leaf(t, leafSpec{names: []string{"rsa.uni-a.test"}, rsa: true})
	mustAdd(t, m, rsa)
	mustAdd(t, m, ec)
	mustAdd(t, m, rsaOnly)
	addr := serveTLS(t, m.TLSConfig(nil))

	rsaClient := func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	ecClient := func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	}
	tests := []struct {
		name   string
		server string
		tweak  func(*tls.Config)
		want   testLeaf
	}{
		{"TLS 1.3 client prefers ECDSA", "both.uni-a.test", nil, ec},
		{"TLS 1.2 ECDSA client", "both.uni-a.test", ecClient, ec},
		{"TLS 1.2 RSA-only client", "both.uni-a.test", rsaClient, rsa},
		{"RSA is all there is", "rsa.uni-a.test", nil, rsaOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := served(t, addr, tt.server, tt.tweak)
			if err != nil {
				t.Fatal(err)
			}
			if got.Cmp(tt.want.cert.SerialNumber) != 0 {
				t.Errorf("served serial %v, want %v", got, tt.want.cert.SerialNumber)
			}
		})
	}
}

func TestIndexOrder(t *testing.T) {
	ix := newIndex()
	now := time.Now()
	ix.put("a.test", entry{id: "rsa-late", keyType: "rsa-2048", notAfter: now.Add(2 * time.Hour)})
	ix.put("a.test", entry{id: "ec-early", keyType: "ecdsa-p256", notAfter: now.Add(time.Hour)})
	ix.put("a.test", entry{id: "ec-late", keyType: "ecdsa-p384", notAfter: now.Add(3 * time.Hour)})
	ix.put("a.test", entry{id: "ed", keyType: "ed25519", notAfter: now.Add(9 * time.Hour)})
	var got []string
	for _, e := range ix.lookup("a.test") {
		got = append(got, e.id)
	}
	if diff := cmp.Diff(got, []string{"ec-late", "ec-early", "rsa-late", "ed"}); diff != "" {
		t.Errorf("order (-got +want):\n%s", diff)
	}
	ix.remove("a.test", "ec-late")
	ix.remove("a.test", "missing")
	if got, want := len(ix.lookup("a.test")), 3; got != want {
		t.Errorf("after remove: %d entries, want %d", got, want)
	}
	if got, want := ix.bundles.Load(), int64(3); got != want {
		t.Errorf("bundle count %d, want %d", got, want)
	}
}

func TestLiveAddReplaceRemove(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	addr := serveTLS(t, m.TLSConfig(nil))
	ctx := context.Background()

	wantRejected(t, addr, "live.uni-a.test")
	old := p.leaf(t, leafSpec{names: []string{"live.uni-a.test", "keep.uni-a.test"}})
	oldInfo := mustAdd(t, m, old)
	wantServed(t, addr, "live.uni-a.test", old)

	// Renewal for one of the two names: the old bundle keeps the other.
	renewed := p.leaf(t, leafSpec{names: []string{"live.uni-a.test"}})
	newInfo, warnings, err := m.Add(ctx, renewed.certPEM, renewed.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	wantServed(t, addr, "live.uni-a.test", renewed)
	wantServed(t, addr, "keep.uni-a.test", old)
	gotOld, err := m.Get(ctx, oldInfo.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(gotOld.Names, []string{"keep.uni-a.test"}); diff != "" {
		t.Errorf("replaced bundle's names (-got +want):\n%s", diff)
	}
	if got, want := m.Count(), int64(2); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}

	// Renewal for the last name: the old bundle is deleted.
	renewed2 := p.leaf(t, leafSpec{names: []string{"keep.uni-a.test"}})
	mustAdd(t, m, renewed2)
	wantServed(t, addr, "keep.uni-a.test", renewed2)
	if _, err := m.Get(ctx, oldInfo.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of the fully replaced bundle: %v, want ErrNotFound", err)
	}
	if got, want := m.Count(), int64(2); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}

	if err := m.Remove(ctx, newInfo.ID); err != nil {
		t.Fatal(err)
	}
	wantRejected(t, addr, "live.uni-a.test")
	wantServed(t, addr, "keep.uni-a.test", renewed2)
	if err := m.Remove(ctx, newInfo.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second Remove: %v, want ErrNotFound", err)
	}
	if err := m.Remove(ctx, "not-an-id"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Remove of a malformed id: %v, want ErrNotFound", err)
	}
	// The watch delivers the same changes later; they must not undo anything.
	rev, err := st.Rev(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watch to pass the last write", func() bool {
		m.pmu.Lock()
		defer m.pmu.Unlock()
		return m.watchRev >= rev
	})
	m.pmu.Lock()
	if len(m.pending) != 0 {
		t.Errorf("pending local writes after the watch passed them: %v", m.pending)
	}
	m.pmu.Unlock()
	wantRejected(t, addr, "live.uni-a.test")
	wantServed(t, addr, "keep.uni-a.test", renewed2)
	if got, _ := st.Rev(ctx); got != rev {
		t.Errorf("store revision moved from %d to %d without writes", rev, got)
	}
}

func TestIdempotentAdd(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	l := p.leaf(t, leafSpec{names: []string{"same.uni-a.test"}})
	first := mustAdd(t, m, l)
	before := stateOf(t, st)
	combined := append(append([]byte{}, l.certPEM...), l.keyPEM...)
	second, _, err := m.Add(context.Background(), combined, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(second, first); diff != "" {
		t.Errorf("second Add (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(stateOf(t, st), before); diff != "" {
		t.Errorf("store changed (-got +want):\n%s", diff)
	}
}

func TestAddRefusalsLeaveStoreUnchanged(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	good := p.leaf(t, leafSpec{names: []string{"app.uni-a.test"}})
	mustAdd(t, m, good)
	other := p.leaf(t, leafSpec{names: []string{"other.uni-a.test"}})
	expired := p.leaf(t, leafSpec{names: []string{"old.uni-a.test"},
		notBefore: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)})
	future := p.leaf(t, leafSpec{names: []string{"new.uni-a.test"},
		notBefore: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2099, 6, 1, 0, 0, 0, 0, time.UTC)})
	badName := p.leaf(t, leafSpec{names: []string{"a..b"}})
	wildTLD := p.leaf(t, leafSpec{names: []string{"*.test"}})
	broken := append(pemCert(other.cert), pemCert(p.root)...)

	tests := []struct {
		name         string
		certPEM, key []byte
		want         string
	}{
		{"garbage PEM", []byte("-----BEGIN GARBAGE-----\nAAAA\n-----END GARBAGE-----\n"), good.keyPEM, "certificate PEM: no CERTIFICATE block found"},
		{"mismatched key", other.certPEM, good.keyPEM, "private key: does not match the leaf certificate's public key"},
		{"expired", expired.certPEM, expired.keyPEM, "certificate: expired on 2025-01-01T00:00:00Z"},
		{"not yet valid", future.certPEM, future.keyPEM, "certificate: not valid until 2099-01-01T00:00:00Z"},
		{"bad name", badName.certPEM, badName.keyPEM, `name "a..b": empty label`},
		{"wildcard over a top-level domain", wildTLD.certPEM, wildTLD.keyPEM, `name "*.test": a wildcard must be followed by at least two labels ("*.example.com")`},
		{"broken chain", broken, other.keyPEM, `chain: certificate 1 ("CN=Test Root") did not sign certificate 0 ("CN=other.uni-a.test")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := stateOf(t, st)
			_, _, err := m.Add(context.Background(), tt.certPEM, tt.key)
			if err == nil {
				t.Fatalf("Add succeeded, want %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error = %q\nwant    %q", got, tt.want)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Errorf("error %T is not an *InputError", err)
			}
			if diff := cmp.Diff(stateOf(t, st), before); diff != "" {
				t.Errorf("store changed (-got +want):\n%s", diff)
			}
		})
	}
	if got, want := m.Count(), int64(1); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
}

func TestCertificateLimit(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{MaxCertificates: 2})
	ctx := context.Background()
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"one.uni-a.test"}}))
	mustAdd(t, m, p.leaf(t, leafSpec{names: []string{"two.uni-a.test"}}))

	t.Run("add", func(t *testing.T) {
		before := stateOf(t, st)
		third := p.leaf(t, leafSpec{names: []string{"three.uni-a.test"}})
		_, _, err := m.Add(ctx, third.certPEM, third.keyPEM)
		if got, want := fmt.Sprint(err), "certificates limit reached: 2 of 2 in use; adding 1 would exceed the limit (limits.max_certificates) by 1"; got != want {
			t.Errorf("error = %q\nwant    %q", got, want)
		}
		var le *capacity.LimitError
		if !errors.As(err, &le) || le.Usage != 2 || le.Limit != 2 || le.Adding != 1 {
			t.Errorf("error %v is not a *capacity.LimitError with the numbers", err)
		}
		if diff := cmp.Diff(stateOf(t, st), before); diff != "" {
			t.Errorf("store changed (-got +want):\n%s", diff)
		}
	})
	t.Run("batch", func(t *testing.T) {
		before := stateOf(t, st)
		items := []Item{
			{Source: "a", CertPEM: p.leaf(t, leafSpec{names: []string{"b1.uni-a.test"}}).certPEM},
			{Source: "bad", CertPEM: []byte("junk")},
		}
		l := p.leaf(t, leafSpec{names: []string{"b2.uni-a.test"}})
		items = append(items, Item{Source: "b", CertPEM: l.certPEM, KeyPEM: l.keyPEM})
		l = p.leaf(t, leafSpec{names: []string{"b3.uni-a.test"}})
		items = append(items, Item{Source: "c", CertPEM: l.certPEM, KeyPEM: l.keyPEM})
		results := m.AddBatch(ctx, items)
		var got []string
		for _, r := range results {
			got = append(got, r.Source+": "+fmt.Sprint(r.Err))
		}
		want := []string{
			"a: private key PEM: no PRIVATE KEY block found in the certificate PEM and no key PEM given",
			"bad: certificate PEM: no CERTIFICATE block found",
			"b: certificates limit reached: 2 of 2 in use; adding 2 would exceed the limit (limits.max_certificates) by 2",
			"c: certificates limit reached: 2 of 2 in use; adding 2 would exceed the limit (limits.max_certificates) by 2",
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("results (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(stateOf(t, st), before); diff != "" {
			t.Errorf("store changed (-got +want):\n%s", diff)
		}
	})
	t.Run("renewal at the limit", func(t *testing.T) {
		renewed := p.leaf(t, leafSpec{names: []string{"one.uni-a.test"}})
		if _, _, err := m.Add(ctx, renewed.certPEM, renewed.keyPEM); err != nil {
			t.Fatalf("renewing at the limit: %v", err)
		}
		if got, want := m.Count(), int64(2); got != want {
			t.Errorf("Count = %d, want %d", got, want)
		}
	})
}

func TestSecondManagerFollowsWatch(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m1 := startManager(t, st, Options{})
	m2 := startManager(t, st, Options{})
	addr := serveTLS(t, m2.TLSConfig(nil))
	l := p.leaf(t, leafSpec{names: []string{"fleet.uni-a.test"}})
	info := mustAdd(t, m1, l)
	eventually(t, "the second manager to see the add", func() bool { return len(m2.Lookup("fleet.uni-a.test")) == 1 })
	wantServed(t, addr, "fleet.uni-a.test", l)
	if got := m2.Lookup("fleet.uni-a.test")[0]; got.ID != info.ID || got.Subject != "CN=fleet.uni-a.test" {
		t.Errorf("Lookup = %+v, want id %s with subject CN=fleet.uni-a.test", got, info.ID)
	}
	if err := m1.Remove(context.Background(), info.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second manager to see the removal", func() bool { return len(m2.Lookup("fleet.uni-a.test")) == 0 })
	wantRejected(t, addr, "fleet.uni-a.test")
}

// compactOnce is a real store whose first watch reports ErrCompacted at
// once, as a store does when a watcher fell too far behind.
type compactOnce struct {
	store.Store
	done   atomic.Bool
	before func() // runs before the compacted response
}

func (s *compactOnce) Watch(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse {
	if s.done.Swap(true) {
		return s.Store.Watch(ctx, prefix, fromRev)
	}
	s.before()
	ch := make(chan store.WatchResponse, 1)
	ch <- store.WatchResponse{Err: store.ErrCompacted}
	close(ch)
	return ch
}

func TestRelistAfterCompaction(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	writer := startManager(t, st, Options{})
	gone := p.leaf(t, leafSpec{names: []string{"gone.uni-a.test"}})
	goneInfo := mustAdd(t, writer, gone)
	added := p.leaf(t, leafSpec{names: []string{"added.uni-a.test"}})
	cs := &compactOnce{Store: st, before: func() {
		// Changes the watcher misses and must pick up by listing again.
		mustAdd(t, writer, added)
		if err := writer.Remove(context.Background(), goneInfo.ID); err != nil {
			t.Error(err)
		}
	}}
	m := startManager(t, cs, Options{})
	eventually(t, "the relist", func() bool {
		return len(m.Lookup("added.uni-a.test")) == 1 && len(m.Lookup("gone.uni-a.test")) == 0
	})
	// And the new watch works.
	later := p.leaf(t, leafSpec{names: []string{"later.uni-a.test"}})
	mustAdd(t, writer, later)
	eventually(t, "the watch after the relist", func() bool { return len(m.Lookup("later.uni-a.test")) == 1 })
}

// recordingStore records the reads made through it.
type recordingStore struct {
	store.Store
	mu    sync.Mutex
	reads []string
}

func (s *recordingStore) Get(ctx context.Context, key string) (store.KV, error) {
	s.mu.Lock()
	s.reads = append(s.reads, "get "+key)
	s.mu.Unlock()
	return s.Store.Get(ctx, key)
}

func (s *recordingStore) List(ctx context.Context, prefix, after string, limit int) ([]store.KV, int64, error) {
	s.mu.Lock()
	s.reads = append(s.reads, fmt.Sprintf("list %s limit %d", prefix, limit))
	s.mu.Unlock()
	return s.Store.List(ctx, prefix, after, limit)
}

func TestStartReadsOnlyTheIndex(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	w := startManager(t, st, Options{})
	for i := range 3 {
		mustAdd(t, w, p.leaf(t, leafSpec{names: []string{fmt.Sprintf("s%d.uni-a.test", i), fmt.Sprintf("t%d.uni-a.test", i)}}))
	}
	rs := &recordingStore{Store: st}
	m := startManager(t, rs, Options{})
	rs.mu.Lock()
	got := rs.reads
	rs.mu.Unlock()
	if diff := cmp.Diff(got, []string{"list certs/names/ limit 10000"}); diff != "" {
		t.Errorf("reads at start (-got +want):\n%s", diff)
	}
	if got, want := m.Count(), int64(3); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
}

func TestPrivateKeyEncryptedAtRest(t *testing.T) {
	p := newPKI(t)
	st, path := openStore(t)
	m := startManager(t, st, Options{})
	ec := p.leaf(t, leafSpec{names: []string{"secret.uni-a.test"}})
	rsa := p.leaf(t, leafSpec{names: []string{"secret.uni-a.test"}, rsa: true, keyFormat: "pkcs1"})
	mustAdd(t, m, ec)
	mustAdd(t, m, rsa)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, ec.cert.Raw) {
		t.Fatal("the leaf DER is not in the store file; the search below would prove nothing")
	}
	for _, l := range []testLeaf{ec, rsa} {
		if bytes.Contains(data, l.pkcs8) {
			t.Errorf("the store file contains the %s private key in plaintext (PKCS#8 DER)", l.cert.PublicKeyAlgorithm)
		}
		if bytes.Contains(data, l.keyPEM) {
			t.Errorf("the store file contains the %s private key PEM", l.cert.PublicKeyAlgorithm)
		}
	}
}

func TestWrongKEKCannotServe(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	l := p.leaf(t, leafSpec{names: []string{"kek.uni-a.test"}})
	mustAdd(t, m, l)
	other, err := ParseKEK(bytes.Repeat([]byte{1}, KEKSize))
	if err != nil {
		t.Fatal(err)
	}
	m2 := NewManager(st, other, Options{})
	if err := m2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	addr := serveTLS(t, m2.TLSConfig(nil))
	_, err = served(t, addr, "kek.uni-a.test", nil)
	if err == nil || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("handshake with the wrong KEK: %v, want an internal error alert", err)
	}
}

func TestSingleflightLoad(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	cs := &countingStore{Store: st}
	m := startManager(t, cs, Options{})
	l := p.leaf(t, leafSpec{names: []string{"cold.uni-a.test"}})
	mustAdd(t, m, l)

	const n = 16
	gate := make(chan struct{})
	cs.bundleGets.Store(0)
	cs.gate = gate
	var arrived atomic.Int64
	cfg := m.TLSConfig(nil)
	cfg.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		arrived.Add(1)
		return m.GetCertificate(h)
	}
	addr := serveTLS(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			leaf, err := handshake(t, addr, "cold.uni-a.test", nil)
			if err == nil && leaf.SerialNumber.Cmp(l.cert.SerialNumber) != 0 {
				err = fmt.Errorf("served serial %v, want %v", leaf.SerialNumber, l.cert.SerialNumber)
			}
			errs <- err
		}()
	}
	eventually(t, "every handshake to ask for the certificate", func() bool { return arrived.Load() == n })
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if got := cs.bundleGets.Load(); got != 1 {
		t.Errorf("%d concurrent handshakes loaded the bundle %d times, want 1", n, got)
	}
	_, _, entries, hits, misses := m.CacheStats()
	if entries != 1 || misses < 1 || hits+misses < n {
		t.Errorf("cache entries, hits, misses = %d, %d, %d; want 1 entry and %d lookups", entries, hits, misses, n)
	}
}

func TestCacheBoundThroughHandshakes(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	const limit = 16 << 10
	m := startManager(t, st, Options{CacheBytes: limit})
	addr := serveTLS(t, m.TLSConfig(nil))
	var leaves []testLeaf
	for i := range 12 {
		l := p.leaf(t, leafSpec{names: []string{fmt.Sprintf("c%d.uni-a.test", i)}})
		mustAdd(t, m, l)
		leaves = append(leaves, l)
	}
	for i, l := range leaves {
		wantServed(t, addr, fmt.Sprintf("c%d.uni-a.test", i), l)
		bytes, limitBytes, _, _, _ := m.CacheStats()
		if limitBytes != limit {
			t.Fatalf("limit = %d, want %d", limitBytes, limit)
		}
		if bytes > limit {
			t.Fatalf("cache holds %d bytes, over its %d byte limit", bytes, limit)
		}
	}
	_, _, entries, _, misses := m.CacheStats()
	if entries == 0 || entries >= int64(len(leaves)) {
		t.Errorf("cache holds %d entries; want some but fewer than %d", entries, len(leaves))
	}
	if misses < uint64(len(leaves)) {
		t.Errorf("misses = %d, want at least %d", misses, len(leaves))
	}
}

func TestAddBatch(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	m := startManager(t, st, Options{})
	addr := serveTLS(t, m.TLSConfig(nil))
	ctx := context.Background()
	existing := p.leaf(t, leafSpec{names: []string{"b0.uni-b.test"}})
	mustAdd(t, m, existing)

	var items []Item
	var leaves []testLeaf
	for i := range 40 {
		l := p.leaf(t, leafSpec{names: []string{fmt.Sprintf("b%d.uni-b.test", i)}})
		leaves = append(leaves, l)
		items = append(items, Item{Source: fmt.Sprintf("item%02d", i), CertPEM: l.certPEM, KeyPEM: l.keyPEM})
	}
	// A later item for a name of an earlier one replaces it, as Add would.
	sameName := p.leaf(t, leafSpec{names: []string{"b7.uni-b.test", "extra.uni-b.test"}})
	items = append(items,
		Item{Source: "dup", CertPEM: leaves[3].certPEM, KeyPEM: leaves[3].keyPEM},
		Item{Source: "bad", CertPEM: leaves[4].certPEM, KeyPEM: leaves[5].keyPEM},
		Item{Source: "same-name", CertPEM: sameName.certPEM, KeyPEM: sameName.keyPEM},
	)

	rev0, _ := st.Rev(ctx)
	results := m.AddBatch(ctx, items)
	rev1, _ := st.Rev(ctx)
	if len(results) != len(items) {
		t.Fatalf("%d results for %d items", len(results), len(items))
	}
	for i, r := range results {
		switch r.Source {
		case "bad":
			if got, want := fmt.Sprint(r.Err), "private key: does not match the leaf certificate's public key"; got != want {
				t.Errorf("bad item: %q, want %q", got, want)
			}
		case "dup":
			if r.Err != nil || r.Info.ID != results[3].Info.ID {
				t.Errorf("duplicate item: %+v, want the result of item03", r)
			}
		default:
			if r.Err != nil {
				t.Errorf("item %d (%s): %v", i, r.Source, r.Err)
			}
		}
	}
	if txns := rev1 - rev0; txns < 2 || txns > 10 {
		t.Errorf("the batch took %d transactions; want a few of at most %d operations", txns, maxTxnOps)
	}
	wantServed(t, addr, "b0.uni-b.test", leaves[0]) // replaced the existing bundle
	wantServed(t, addr, "b7.uni-b.test", sameName)  // the later item replaced the earlier
	wantServed(t, addr, "b39.uni-b.test", leaves[39])
	wantServed(t, addr, "extra.uni-b.test", sameName)
	// The existing b0 and item b7 were replaced entirely: 1 + 40 + 1 - 2.
	if got, want := m.Count(), int64(40); got != want {
		t.Errorf("Count = %d, want %d", got, want)
	}
	chains, _, err := st.List(ctx, prefixChains, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 {
		t.Errorf("%d chain entries stored, want the shared intermediate once", len(chains))
	}
}

func TestListGetAndSweep(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	now := time.Now()
	m := startManager(t, st, Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	soon := p.leaf(t, leafSpec{names: []string{"soon.uni-a.test"}, notAfter: now.Add(10 * 24 * time.Hour)})
	later := p.leaf(t, leafSpec{names: []string{"later.uni-a.test"}})
	si, warnings, err := m.Add(ctx, soon.certPEM, soon.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0], "certificate expires in 9 days, on ") {
		t.Errorf("warnings = %q, want one about expiry in 9 days", warnings)
	}
	li := mustAdd(t, m, later)
	want := Info{
		ID: si.ID, Names: []string{"soon.uni-a.test"}, KeyType: "ecdsa-p256",
		Subject: "CN=soon.uni-a.test", Issuer: "CN=Intermediate", Serial: soon.cert.SerialNumber.Text(16),
		NotBefore: soon.cert.NotBefore, NotAfter: soon.cert.NotAfter, AddedAt: now.UTC(), Status: "expiring",
	}
	got, err := m.Get(ctx, si.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Get (-got +want):\n%s", diff)
	}
	if li.Status != "valid" {
		t.Errorf("status of a 90-day certificate = %q, want valid", li.Status)
	}
	if _, err := m.Get(ctx, "00000000000000000000"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get of an unknown id: %v, want ErrNotFound", err)
	}

	var ids []string
	after := ""
	for {
		page, err := m.List(ctx, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		ids = append(ids, page[0].ID)
		after = page[0].ID
	}
	wantIDs := []string{si.ID, li.ID}
	if wantIDs[0] > wantIDs[1] {
		wantIDs[0], wantIDs[1] = wantIDs[1], wantIDs[0]
	}
	if diff := cmp.Diff(ids, wantIDs); diff != "" {
		t.Errorf("paged List (-got +want):\n%s", diff)
	}

	// The shared intermediate stays while a bundle uses it.
	if err := m.Remove(ctx, si.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := m.SweepChains(ctx); err != nil || n != 0 {
		t.Errorf("SweepChains with the chain in use = %d, %v; want 0, nil", n, err)
	}
	m.cache.remove(li.ID)
	addr := serveTLS(t, m.TLSConfig(nil))
	wantServed(t, addr, "later.uni-a.test", later)
	if err := m.Remove(ctx, li.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := m.SweepChains(ctx); err != nil || n != 1 {
		t.Errorf("SweepChains with the chain unused = %d, %v; want 1, nil", n, err)
	}
	// Only the bundle counter stays, at 0.
	if s := stateOf(t, st); s.Keys != 1 {
		t.Errorf("%d keys left after removing everything and sweeping, want the counter only", s.Keys)
	}
	if kv, err := st.Get(ctx, counterKey); err != nil || string(kv.Value) != "0" {
		t.Errorf("bundle counter = %q, %v; want 0", kv.Value, err)
	}
}

func TestInfoJSONNames(t *testing.T) {
	b, err := jsonKeys(Info{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"added_at", "id", "issuer", "key_type", "names", "not_after", "not_before", "serial", "status", "subject"}
	if diff := cmp.Diff(b, want); diff != "" {
		t.Errorf("JSON keys (-got +want):\n%s", diff)
	}
}
