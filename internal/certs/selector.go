package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gatehouse/internal/store"
)

// TLSConfig returns a copy of base (nil: an empty config) whose certificate
// is chosen per handshake by GetCertificate. Its Certificates and
// NameToCertificate are cleared: with no certificate chosen, crypto/tls then
// fails the handshake with the unrecognized_name alert. A GetConfigForClient
// of base is kept, and the configs it returns must use GetCertificate
// themselves.
func (m *Manager) TLSConfig(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.Certificates = nil
	c.NameToCertificate = nil
	c.GetCertificate = m.GetCertificate
	return c
}

// GetCertificate selects the certificate for a handshake by SNI: the bundles
// of the exact name, else those of its wildcard parent ("x.example.com" →
// "*.example.com", one label only), else the unknown-name policy, which also
// applies to a handshake without SNI. Among several bundles it takes the
// first the client supports in the order ECDSA, RSA, others, then latest
// expiry. It returns (nil, nil) for a name to reject, which with no
// Certificates in the config makes crypto/tls send unrecognized_name.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if m.loading.Load() {
		return m.getCertificateLoading(hello)
	}
	var buf [256]byte
	if es := m.match(hello.ServerName, &buf); len(es) > 0 {
		if cert, err := m.choose(hello, es); cert != nil || err != nil {
			return cert, err
		}
		// Every bundle the index named is gone from the store: it was
		// replaced (a renewal) after this node's index last heard, and the
		// replacement is in the store already. Ask the store, so that a
		// renewal never fails a handshake. (A few tries: renewals of one
		// name in quick succession can each replace what was just read.)
		for range 3 {
			es := m.storeEntries(hello, normalizeName(hello.ServerName))
			if len(es) == 0 {
				break
			}
			if cert, err := m.choose(hello, es); cert != nil || err != nil {
				return cert, err
			}
		}
	}
	if m.opts.UnknownSNI == UnknownDefault && m.opts.DefaultHostname != "" {
		if es, _ := m.lookup(m.opts.DefaultHostname); len(es) > 0 {
			return m.choose(hello, es)
		}
	}
	return nil, nil
}

// storeEntries reads the index entries of name, or else of its wildcard
// parent, from the store itself: the rare path of a handshake that met a
// replacement its node's index has not applied yet.
func (m *Manager) storeEntries(hello *tls.ClientHelloInfo, name string) []entry {
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, m.loadTimeout())
	defer cancel()
	for _, n := range []string{name, wildcardParent(name)} {
		if n == "" {
			continue
		}
		kvs, _, err := m.st.List(ctx, namePrefix(n), "", 16)
		if err != nil {
			return nil
		}
		var es []entry
		for _, kv := range kvs {
			host, id, ok := parseNameKey(kv.Key)
			if !ok || host != n {
				continue
			}
			ne, err := decodeNameEntry(kv.Value)
			if err != nil {
				continue
			}
			es = append(es, entry{id: id, keyType: ne.KeyType, notAfter: ne.NotAfter, rank: keyRank(ne.KeyType)})
		}
		if len(es) > 0 {
			slices.SortFunc(es, compareEntries)
			return es
		}
	}
	return nil
}

// wildcardParent returns "*.rest" for "label.rest" ("" if name has no dot).
func wildcardParent(name string) string {
	if i := strings.IndexByte(name, '.'); i > 0 {
		return "*" + name[i:]
	}
	return ""
}

// match returns the entries for a server name as sent by a client, or for
// its wildcard parent, using buf as scratch space instead of allocating.
func (m *Manager) match(name string, buf *[256]byte) []entry {
	if name == "" || len(name) > 253 {
		return nil
	}
	if needsNormalizing(name) {
		return m.lookupBytes(appendNormalized(buf[:0], name), buf[:])
	}
	if es := m.idx.lookup(name); len(es) > 0 {
		return es
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return m.idx.lookupBytes(append(append(buf[:0], '*'), name[i:]...))
	}
	return nil
}

// lookupBytes looks up a normalized name held in b, then its wildcard
// parent, which it builds in scratch (b's own backing array).
func (m *Manager) lookupBytes(b, scratch []byte) []entry {
	if es := m.idx.lookupBytes(b); len(es) > 0 {
		return es
	}
	i := indexByte(b, '.')
	if i <= 0 {
		return nil
	}
	// Shift "x.rest" to "*.rest" in place: the label is at least one byte.
	w := scratch[i-1 : len(b)]
	w[0] = '*'
	return m.idx.lookupBytes(w)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// lookup returns the entries for a normalized name or its wildcard parent,
// and which of the two matched.
func (m *Manager) lookup(name string) ([]entry, string) {
	if m.loading.Load() {
		es, matched, err := m.lookupStore(context.Background(), name)
		if err != nil {
			m.log.Warn("reading a certificate name from the store", "name", name, "err", err)
		}
		return es, matched
	}
	if es := m.idx.lookup(name); len(es) > 0 {
		return es, name
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		w := "*" + name[i:]
		if es := m.idx.lookup(w); len(es) > 0 {
			return es, w
		}
	}
	return nil, ""
}

func needsNormalizing(name string) bool {
	if name[len(name)-1] == '.' {
		return true
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return true
		}
	}
	return false
}

// appendNormalized appends name lowercased and without a trailing dot.
func appendNormalized(b []byte, name string) []byte {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	return b
}

// normalizeName lowercases a hostname and drops a trailing dot.
func normalizeName(name string) string {
	if name == "" || !needsNormalizing(name) {
		return name
	}
	return string(appendNormalized(nil, name))
}

// choose returns the first of es, in preference order, that the client
// supports; if it supports none, the first that loads.
func (m *Manager) choose(hello *tls.ClientHelloInfo, es []entry) (*tls.Certificate, error) {
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	// The index already matched the name: judge only the client's
	// algorithms, which also spares a hostname check per candidate.
	var caps *tls.ClientHelloInfo
	var first *tls.Certificate
	var lastErr error
	for _, e := range es {
		cert, err := m.certificate(ctx, e.id)
		if err != nil {
			if !errors.Is(err, store.ErrNotFound) {
				lastErr = err
			}
			continue
		}
		if len(es) == 1 {
			return cert, nil
		}
		if first == nil {
			first = cert
		}
		if caps == nil {
			if hello.ServerName == "" {
				caps = hello
			} else {
				h := *hello
				h.ServerName = ""
				caps = &h
			}
		}
		if caps.SupportsCertificate(cert) == nil {
			return cert, nil
		}
	}
	if first != nil {
		return first, nil
	}
	if lastErr != nil {
		m.log.Warn("no certificate could be loaded for a handshake", "server_name", hello.ServerName, "err", lastErr)
		return nil, lastErr
	}
	return nil, nil
}

// certificate returns the decoded certificate of bundle id from the cache,
// loading it from the store on a miss. Concurrent misses for one id share one
// load, which outlives the cancellation of the handshake that started it.
func (m *Manager) certificate(ctx context.Context, id string) (*tls.Certificate, error) {
	if c := m.cache.get(id); c != nil {
		return c, nil
	}
	if err := m.failed.get(id, time.Now()); err != nil {
		return nil, err
	}
	ch := m.flight.DoChan(id, func() (any, error) {
		if c := m.cache.peek(id); c != nil {
			return c, nil
		}
		if err := m.failed.get(id, time.Now()); err != nil {
			return nil, err // a load that just ended failed
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.loadTimeout())
		defer cancel()
		cert, size, err := m.load(lctx, id)
		if err != nil {
			if errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				// The store is down: the next handshakes for this bundle
				// fail at once rather than each waiting for it.
				m.failed.add(id, err, time.Now())
			}
			return nil, err
		}
		m.cache.add(id, cert, size)
		return cert, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*tls.Certificate), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// loadTimeout bounds one bundle load for a handshake: loadTimeout, or
// unreachableLoadTimeout while a remote store is known not to answer, so
// that even the first handshake for a name this node has not cached fails
// fast then (a member that still answers serializable reads answers well
// within it).
func (m *Manager) loadTimeout() time.Duration {
	if rs, ok := m.st.(store.Remote); ok && !rs.Reachable() {
		return unreachableLoadTimeout
	}
	return loadTimeout
}

// load reads and decodes bundle id: its record, its chain and its key,
// from the local bundle cache if it has them, else from the store (and
// then keeps them in the local cache).
func (m *Manager) load(ctx context.Context, id string) (*tls.Certificate, int64, error) {
	disk := m.disk()
	var raw []byte
	fromStore := true
	if disk != nil {
		raw, fromStore = disk.record(id)
		fromStore = !fromStore
	}
	if fromStore {
		kv, err := m.getForHandshake(ctx, bundleKey(id))
		if err != nil {
			return nil, 0, fmt.Errorf("loading bundle %s: %w", id, err)
		}
		raw = kv.Value
	}
	rec, err := decodeRecord(raw)
	if err != nil {
		return nil, 0, fmt.Errorf("loading bundle %s: %w", id, err)
	}
	var chains map[string][]byte // read from the store, for the local cache
	leaf, err := x509.ParseCertificate(rec.Leaf)
	if err != nil {
		return nil, 0, fmt.Errorf("loading bundle %s: leaf: %w", id, err)
	}
	ders := make([][]byte, 0, 1+len(rec.Chain))
	ders = append(ders, rec.Leaf)
	for _, h := range rec.Chain {
		key := chainKeyOf(h)
		if disk != nil {
			if der, ok := disk.chain(key); ok {
				ders = append(ders, der)
				continue
			}
		}
		kv, err := m.getForHandshake(ctx, key)
		if err != nil {
			return nil, 0, fmt.Errorf("loading bundle %s: chain: %w", id, err)
		}
		ders = append(ders, kv.Value)
		if chains == nil {
			chains = make(map[string][]byte)
		}
		chains[key] = kv.Value
	}
	pkcs8, err := m.kek.open(id, rec.SealedKey)
	if err != nil {
		return nil, 0, fmt.Errorf("loading bundle %s: %w", id, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(pkcs8)
	clear(pkcs8)
	if err != nil {
		return nil, 0, fmt.Errorf("loading bundle %s: private key: %w", id, err)
	}
	if disk != nil && (fromStore || chains != nil) {
		disk.put(id, raw, chains)
	}
	cert := &tls.Certificate{Certificate: ders, PrivateKey: key, Leaf: leaf}
	return cert, certSize(cert, rec.KeyType), nil
}
