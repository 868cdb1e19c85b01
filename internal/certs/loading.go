package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Serving while the index loads (Options.LoadInBackground).
//
// On the embedded store the store file is itself an index of the names:
// certs/names/<host>/<id> are keys of a B+tree read in place from the
// mapped file, so one name costs one seek (microseconds) whatever the
// number of installed certificates. Start therefore returns as soon as the
// store answers, and until the in-memory index holds every name:
//
//   - handshakes (GetCertificate) and Lookup read the exact name, then its
//     wildcard parent, then the unknown-name policy's default name, from
//     the store: what they serve is what the store holds at that moment, so
//     a certificate added or removed meanwhile, by this process or any
//     other writer, is seen at once;
//   - Add and AddBatch wait for the load, since their limit and quota
//     checks count the installed bundles from the index; Remove, Get and
//     List read the store and do not wait;
//   - Count shows the bundles listed so far (updated every 4096 names),
//     and ExpiryCounts counts nothing until the loaded content is swapped
//     in at the end; Loading reports that neither is final.
//
// The load itself is the listing of store.Follow's first Reset; the watch
// from its revision then applies whatever changed during it, as after any
// relisting. Once it is swapped in, the index serves as usual.

// startLoading starts following certs/names/ with the listing in the
// background and returns once the store answers.
func (m *Manager) startLoading(ctx context.Context) error {
	rev, err := m.st.Rev(ctx)
	if err != nil {
		return fmt.Errorf("certificate store: %w", err)
	}
	m.loading.Store(true)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.done = make(chan struct{})
	m.loadStart = time.Now()
	go m.run(runCtx, 0, nil)
	m.log.Info("certificate index loading in the background; serving names from the store meanwhile", "rev", rev)
	return nil
}

// markLoaded ends the loading phase after the first listing was swapped in.
func (m *Manager) markLoaded() {
	if !m.loading.CompareAndSwap(true, false) {
		return
	}
	close(m.loaded)
	m.log.Info("certificate index loaded", "bundles", m.Count(), "rev", m.currentRev(), "took", time.Since(m.loadStart).Round(time.Millisecond))
}

// Loading reports whether the index is still being loaded in the background
// (Options.LoadInBackground): Count shows the bundles listed so far and
// ExpiryCounts none yet.
func (m *Manager) Loading() bool { return m.loading.Load() }

// Loaded returns a channel closed once the index is loaded (at once after
// Start when not loading in the background).
func (m *Manager) Loaded() <-chan struct{} { return m.loaded }

// errNotLoaded is returned by a write that waited for a load that ended
// with the Manager.
var errNotLoaded = errors.New("certificate index not loaded: the manager was closed")

// waitLoaded waits until the index is loaded, ctx is done or the manager
// is closed.
func (m *Manager) waitLoaded(ctx context.Context) error {
	if !m.loading.Load() {
		return nil
	}
	m.runMu.Lock()
	done := m.done
	m.runMu.Unlock()
	select {
	case <-m.loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the certificate index to load: %w", ctx.Err())
	case <-done:
		return errNotLoaded
	}
}

// getCertificateLoading is GetCertificate while the index loads: the same
// choice, with the names read from the store.
func (m *Manager) getCertificateLoading(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if name := hello.ServerName; name != "" && len(name) <= 253 {
		es, _, err := m.lookupStore(ctx, normalizeName(name))
		if err != nil {
			// Never fall back to the unknown-name policy for a name the
			// store could not be asked about.
			m.log.Warn("reading a certificate name from the store", "server_name", name, "err", err)
			return nil, err
		}
		if len(es) > 0 {
			if cert, err := m.choose(hello, es); cert != nil || err != nil {
				return cert, err
			}
		}
	}
	if m.opts.UnknownSNI == UnknownDefault && m.opts.DefaultHostname != "" {
		es, _, err := m.lookupStore(ctx, m.opts.DefaultHostname)
		if err != nil {
			return nil, err
		}
		if len(es) > 0 {
			return m.choose(hello, es)
		}
	}
	return nil, nil
}

// lookupStore is lookup reading the store: the entries of a normalized name
// or else of its wildcard parent, and which of the two matched.
func (m *Manager) lookupStore(ctx context.Context, name string) ([]entry, string, error) {
	ctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	es, err := m.readNameEntries(ctx, name)
	if err != nil || len(es) > 0 {
		return es, name, err
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		w := "*" + name[i:]
		es, err := m.readNameEntries(ctx, w)
		if err != nil || len(es) > 0 {
			return es, w, err
		}
	}
	return nil, "", nil
}

// readNameEntries reads the index entries of one name from the store, in
// preference order.
func (m *Manager) readNameEntries(ctx context.Context, name string) ([]entry, error) {
	if name == "" || strings.IndexByte(name, '/') >= 0 {
		return nil, nil // no such key: the prefix would reach other names
	}
	kvs, _, err := m.st.List(ctx, namePrefix(name), "", 0)
	if err != nil {
		return nil, fmt.Errorf("reading the certificates of %q: %w", name, err)
	}
	var es []entry
	for _, kv := range kvs {
		host, id, ok := parseNameKey(kv.Key)
		if !ok || host != name {
			continue
		}
		ne, err := decodeNameEntry(kv.Value)
		if err != nil {
			m.log.Warn("ignoring malformed name index entry", "key", kv.Key, "err", err)
			continue
		}
		es = append(es, entry{id: id, keyType: ne.KeyType, notAfter: ne.NotAfter, rank: keyRank(ne.KeyType)})
	}
	slices.SortFunc(es, compareEntries)
	return es, nil
}
