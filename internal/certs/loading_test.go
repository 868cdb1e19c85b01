package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"gatehouse/internal/store/bolt"
)

// gatedStore is a real bolt store whose streamed listings (the index load)
// wait until release is closed, holding a Manager in its loading phase.
type gatedStore struct {
	*bolt.Store
	release chan struct{}
	entered chan struct{} // receives once per listing that began waiting
}

func newGated(st *bolt.Store) *gatedStore {
	return &gatedStore{Store: st, release: make(chan struct{}), entered: make(chan struct{}, 16)}
}

func (s *gatedStore) Scan(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	s.entered <- struct{}{}
	select {
	case <-s.release:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	return s.Store.Scan(ctx, prefix, fn)
}

// startLoading returns a Manager over gs started with LoadInBackground and
// held in its loading phase until gs.release is closed.
func startLoadingManager(t *testing.T, gs *gatedStore, opts Options) *Manager {
	t.Helper()
	opts.LoadInBackground = true
	m := startManager(t, gs, opts)
	select {
	case <-gs.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the background load did not begin")
	}
	if !m.Loading() {
		t.Fatal("Loading() = false while the load waits")
	}
	return m
}

func TestServeWhileLoading(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	// Another writer on the same store: its changes reach m only through
	// the store (during the load) and the watch (after it).
	w := startManager(t, st, Options{})
	a := p.leaf(t, leafSpec{names: []string{"app.uni-a.test", "www.uni-a.test"}})
	aRSA := p.leaf(t, leafSpec{names: []string{"app.uni-a.test"}, rsa: true})
	wild := p.leaf(t, leafSpec{names: []string{"*.uni-c.test"}})
	exact := p.leaf(t, leafSpec{names: []string{"special.uni-c.test"}})
	gone := p.leaf(t, leafSpec{names: []string{"gone.uni-a.test"}})
	mine := p.leaf(t, leafSpec{names: []string{"mine.uni-a.test"}})
	var goneID, mineID string
	for _, l := range []testLeaf{a, aRSA, wild, exact, gone, mine} {
		info := mustAdd(t, w, l)
		switch l.cert.DNSNames[0] {
		case "gone.uni-a.test":
			goneID = info.ID
		case "mine.uni-a.test":
			mineID = info.ID
		}
	}

	gs := newGated(st)
	m := startLoadingManager(t, gs, Options{})
	if got := m.Count(); got != 0 {
		t.Errorf("Count while loading = %d, want 0 (nothing swapped in yet)", got)
	}
	addr := serveTLS(t, m.TLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))

	t.Run("while loading", func(t *testing.T) {
		wantServed(t, addr, "app.uni-a.test", a) // ECDSA before RSA
		wantServed(t, addr, "WWW.Uni-A.test.", a)
		wantServed(t, addr, "x.uni-c.test", wild)
		wantServed(t, addr, "special.uni-c.test", exact)
		wantServed(t, addr, "gone.uni-a.test", gone)
		wantRejected(t, addr, "unknown.uni-a.test")
		wantRejected(t, addr, "a.b.uni-c.test") // the wildcard covers one label
		wantRejected(t, addr, "uni-c.test")
		wantRejected(t, addr, "app.uni-a.test/x")
		if got := m.Lookup("y.uni-c.test"); len(got) != 1 || got[0].Names[0] != "*.uni-c.test" {
			t.Errorf("Lookup(y.uni-c.test) = %+v, want the wildcard bundle", got)
		}
		rsaOnly := func(c *tls.Config) {
			c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
			c.MaxVersion = tls.VersionTLS12
		}
		got, err := served(t, addr, "app.uni-a.test", rsaOnly)
		if err != nil || got.Cmp(aRSA.cert.SerialNumber) != 0 {
			t.Errorf("RSA-only client got %v, %v; want the RSA bundle", got, err)
		}
	})

	var added testLeaf
	t.Run("changes during the load", func(t *testing.T) {
		// Another writer's removal and addition are seen at once.
		if err := w.Remove(context.Background(), goneID); err != nil {
			t.Fatal(err)
		}
		wantRejected(t, addr, "gone.uni-a.test")
		added = p.leaf(t, leafSpec{names: []string{"added.uni-a.test"}})
		mustAdd(t, w, added)
		wantServed(t, addr, "added.uni-a.test", added)
		// This manager's own Remove does not wait for the load.
		wantServed(t, addr, "mine.uni-a.test", mine)
		if err := m.Remove(context.Background(), mineID); err != nil {
			t.Fatal(err)
		}
		wantRejected(t, addr, "mine.uni-a.test")
	})

	// Its Add waits for the load: the limit check counts from the index.
	late := p.leaf(t, leafSpec{names: []string{"late.uni-a.test"}})
	addDone := make(chan error, 1)
	go func() {
		_, _, err := m.Add(context.Background(), late.certPEM, late.keyPEM)
		addDone <- err
	}()
	select {
	case err := <-addDone:
		t.Fatalf("Add returned while the index was loading: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	_, _, err := m.Add(ctx, late.certPEM, late.keyPEM)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Add with a context ending during the load: %v, want the deadline", err)
	}

	close(gs.release)
	select {
	case <-m.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("the index did not load")
	}
	if err := <-addDone; err != nil {
		t.Fatalf("Add after the load: %v", err)
	}

	t.Run("loaded", func(t *testing.T) {
		if m.Loading() {
			t.Error("Loading() = true after Loaded")
		}
		// a, aRSA, wild, exact, added, late.
		if got, want := m.Count(), int64(6); got != want {
			t.Errorf("Count = %d, want %d", got, want)
		}
		wantServed(t, addr, "app.uni-a.test", a)
		wantServed(t, addr, "x.uni-c.test", wild)
		wantServed(t, addr, "special.uni-c.test", exact)
		wantServed(t, addr, "added.uni-a.test", added)
		wantServed(t, addr, "late.uni-a.test", late)
		wantRejected(t, addr, "gone.uni-a.test")
		wantRejected(t, addr, "mine.uni-a.test")
		wantRejected(t, addr, "unknown.uni-a.test")
		// The watch follows the other writer from the load's revision.
		after := p.leaf(t, leafSpec{names: []string{"after.uni-a.test"}})
		mustAdd(t, w, after)
		eventually(t, "the watch after the load", func() bool { return len(m.Lookup("after.uni-a.test")) == 1 })
		wantServed(t, addr, "after.uni-a.test", after)
	})
}

func TestUnknownNameDefaultWhileLoading(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	w := startManager(t, st, Options{})
	def := p.leaf(t, leafSpec{names: []string{"*.default.uni-a.test"}})
	other := p.leaf(t, leafSpec{names: []string{"other.uni-a.test"}})
	mustAdd(t, w, def)
	mustAdd(t, w, other)
	gs := newGated(st)
	m := startLoadingManager(t, gs, Options{UnknownSNI: UnknownDefault, DefaultHostname: "*.default.uni-a.test"})
	addr := serveTLS(t, m.TLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	skip := func(c *tls.Config) { c.InsecureSkipVerify = true }
	for _, name := range []string{"unknown.test", "", "a.b.other.uni-a.test"} {
		got, err := served(t, addr, name, skip)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if got.Cmp(def.cert.SerialNumber) != 0 {
			t.Errorf("%q: served serial %v, want the default certificate's", name, got)
		}
	}
	wantServed(t, addr, "other.uni-a.test", other)
	close(gs.release)
	<-m.Loaded()
	if got, err := served(t, addr, "unknown.test", skip); err != nil || got.Cmp(def.cert.SerialNumber) != 0 {
		t.Errorf("after the load: %v, %v; want the default certificate", got, err)
	}
}

func TestCloseWhileLoading(t *testing.T) {
	p := newPKI(t)
	st, _ := openStore(t)
	gs := newGated(st)
	m := startLoadingManager(t, gs, Options{})
	l := p.leaf(t, leafSpec{names: []string{"x.uni-a.test"}})
	addDone := make(chan error, 1)
	go func() {
		_, _, err := m.Add(context.Background(), l.certPEM, l.keyPEM)
		addDone <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-addDone:
		if !errors.Is(err, errNotLoaded) {
			t.Errorf("Add waiting when the manager closed: %v, want errNotLoaded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Add still waits after Close")
	}
	if _, err := st.Get(context.Background(), bundleKey(mustParse(t, l).ID)); err == nil {
		t.Error("the bundle was installed although the index never loaded")
	}
}

func mustParse(t *testing.T, l testLeaf) *Bundle {
	t.Helper()
	b, err := ParseBundle(l.certPEM, l.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
