package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"gatehouse/internal/store"
)

// Unknown-name policies (Options.UnknownSNI).
const (
	// UnknownReject fails the handshake with the unrecognized_name alert.
	UnknownReject = "reject"
	// UnknownDefault serves the certificate of Options.DefaultHostname.
	UnknownDefault = "default"
)

// DefaultCacheBytes bounds the decoded-certificate cache when
// Options.CacheBytes is zero.
const DefaultCacheBytes = 256 << 20

const (
	listPageSize = 10000
	// maxTxnOps bounds the operations AddBatch puts in one transaction.
	maxTxnOps = 64
	// maxAttempts bounds retries of a write that lost a race with another writer.
	maxAttempts = 5
	// loadTimeout bounds loading one bundle from the store for a handshake.
	loadTimeout = 10 * time.Second
)

// Options configure a Manager. The zero value is usable.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// CacheBytes bounds the decoded-certificate cache (0: DefaultCacheBytes).
	CacheBytes int64
	// UnknownSNI is the policy for a hostname with no certificate, and for a
	// handshake without SNI: UnknownReject ("", the default) or UnknownDefault.
	UnknownSNI string
	// DefaultHostname names the installed certificate served under
	// UnknownDefault (an exact name or a wildcard such as "*.example.com").
	DefaultHostname string
	// Admission decides whether a change that adds bundles or store bytes
	// fits the limits in force (the node's *capacity.Registry, whose
	// limits a reload swaps). Nil: the manager's own registry, with
	// MaxCertificates and the store's own quota.
	Admission Admission
	// MaxCertificates caps the number of installed bundles when Admission
	// is nil (0: no cap).
	MaxCertificates int64
	// ExpiryWarning is how close to expiry a certificate is reported as
	// expiring (0: DefaultExpiryWarning).
	ExpiryWarning time.Duration
	// Now returns the current time (nil: time.Now).
	Now func() time.Time
	// Dir is where a node on a remote store (etcd) keeps its local copy:
	// a snapshot of the hostname index with the revision it reflects, so
	// that a restart reads it instead of listing the store and then follows
	// the store from that revision, and a cache of the bundle records it
	// has read (private keys sealed, as in the store). Empty: neither. The
	// embedded store needs neither and ignores Dir.
	Dir string
	// DiskCacheBytes bounds the local bundle cache in Dir (0:
	// DefaultDiskCacheBytes).
	DiskCacheBytes int64
	// SnapshotEvery is how often a changed index is saved to Dir (0:
	// DefaultSnapshotEvery); it is also saved after a full listing and by
	// Close.
	SnapshotEvery time.Duration
	// LoadInBackground makes Start on the embedded store (a store that is
	// not store.Remote) return before the hostname index is loaded: until
	// it is, handshakes and lookups read each name from the store itself
	// (see loading.go). Ignored on a remote store.
	LoadInBackground bool
}

// Manager installs, removes and serves certificates. It keeps the hostname
// index of the store in memory, follows changes by any writer through a
// watch, and selects a certificate for each TLS handshake. It is safe for
// concurrent use.
type Manager struct {
	st   store.Store
	kek  *KEK
	log  *slog.Logger
	opts Options
	now  func() time.Time
	// idx is the index of names to bundles: the replica keeps it in step
	// with the store, the handshake path reads it, the write path plans
	// against it.
	idx *index

	selection // the handshake path: selection and bundle loading (selector.go)
	replica   // following the store (follow.go)
	writes    // the write path (write.go)
	lifecycle // Start and Close

	// expiry caches ExpiryCounts.
	expiry expiryCache
	// local is the node's local copy of a remote store's index (nil for
	// the embedded store or without Options.Dir); set by Start.
	local *local
}

// selection is the Manager's state for serving handshakes: the decoded
// certificates, the loads in flight and the loads that failed lately.
type selection struct {
	cache *cache
	// flight makes concurrent loads of one bundle share a single store read.
	flight singleflight.Group
	// failed holds bundles whose load the store did not answer lately.
	failed failures
	// diskLimit bounds the local bundle cache (SetLocalCacheBytes).
	diskLimit atomic.Int64
}

// replica is the Manager's state for following the store's certs/names/.
type replica struct {
	// pmu guards pending and orders local index updates with watch events.
	pmu sync.Mutex
	// pending holds this process's writes to certs/names/ that the watch has
	// not delivered yet, so that older watch events do not undo them.
	pending map[string]pendingWrite
	// watchRev is the revision up to which the index reflects the store's
	// certs/names/ (the last watched revision applied, or the listing's).
	watchRev int64
	// resync asks run for a full relisting.
	resync chan struct{}
	// relists counts the full listings of the index that succeeded.
	relists atomic.Uint64
	started atomic.Bool // pending writes matter only once a watch may run
	// loading is true while Start's background load of the index runs
	// (Options.LoadInBackground); loaded is closed when the index holds
	// the store's names.
	loading   atomic.Bool
	loaded    chan struct{}
	loadStart time.Time
	loadCount atomic.Int64 // bundles listed so far by the load
}

// writes is the Manager's state for the write path.
type writes struct {
	// writeMu serializes this process's writes (Add, AddBatch, Remove), so
	// the limit check and replacement planning see each other's results.
	writeMu sync.Mutex
}

// lifecycle is what Start leaves for Close.
type lifecycle struct {
	runMu  sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a Manager over st that seals private keys with kek.
// Call Start to load the index and follow changes, and Close to stop.
func NewManager(st store.Store, kek *KEK, opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.UnknownSNI == "" {
		opts.UnknownSNI = UnknownReject
	}
	if opts.ExpiryWarning <= 0 {
		opts.ExpiryWarning = DefaultExpiryWarning
	}
	if opts.DiskCacheBytes <= 0 {
		opts.DiskCacheBytes = DefaultDiskCacheBytes
	}
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = DefaultSnapshotEvery
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	m := &Manager{
		st:        st,
		kek:       kek,
		log:       opts.Logger.With("component", "certs"),
		opts:      opts,
		now:       now,
		idx:       newIndex(),
		selection: selection{cache: newCache(opts.CacheBytes)},
		replica: replica{
			pending: make(map[string]pendingWrite),
			resync:  make(chan struct{}, 1),
			loaded:  make(chan struct{}),
		},
	}
	m.diskLimit.Store(opts.DiskCacheBytes)
	if m.opts.Admission == nil {
		m.opts.Admission = m.ownAdmission()
	}
	return m
}

// Info describes an installed bundle.
type Info struct {
	ID string `json:"id"`
	// Names are the names the bundle serves: its leaf's names less any that
	// a later bundle of the same key family took over.
	Names     []string  `json:"names"`
	KeyType   string    `json:"key_type"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	Serial    string    `json:"serial"` // lowercase hex
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	AddedAt   time.Time `json:"added_at"`
	// Status is "valid", "expiring" (within the expiry warning) or "expired".
	Status string `json:"status"`
	// Source is "acme" for a certificate obtained for a customer hostname,
	// "uploaded" for one brought by the operator; set by the admin API.
	Source string `json:"source,omitempty"`
}

// Count returns the number of installed bundles known to this process.
func (m *Manager) Count() int64 {
	if m.loading.Load() {
		return m.loadCount.Load() // see Loading
	}
	return m.idx.bundles.Load()
}

// CacheStats reports the decoded-certificate cache: bytes used (estimated),
// the byte limit, entries, and hit and miss counts.
func (m *Manager) CacheStats() (bytes, limitBytes, entries int64, hits, misses uint64) {
	bytes, entries, hits, misses = m.cache.stats()
	return bytes, m.cache.limit.Load(), entries, hits, misses
}

// Start loads the hostname index by listing certs/names/ (never the bundles
// themselves), then follows changes by any writer with a watch until Close.
// ctx bounds only the initial listing.
//
// On a remote store with Options.Dir set, Start loads the local index
// snapshot instead when there is one of this store, and returns once the
// changes made since it was taken are applied (a certificate removed
// meanwhile is not served). If the store does not answer, the node serves
// from the snapshot and catches up in the background when it does.
func (m *Manager) Start(ctx context.Context) error {
	m.runMu.Lock()
	defer m.runMu.Unlock()
	if m.done != nil {
		return errors.New("certs: manager already started")
	}
	m.started.Store(true)
	var (
		rev      int64
		fromSnap bool
		err      error
	)
	rs, remote := m.st.(store.Remote)
	if !remote && m.opts.LoadInBackground {
		return m.startLoading(ctx)
	}
	if remote && m.opts.Dir != "" {
		rev, fromSnap, err = m.startLocal(ctx, rs)
	} else {
		rev, err = m.loadIndex(ctx)
	}
	if err != nil {
		m.closeLocal()
		return err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.done = make(chan struct{})
	var caughtUp chan struct{}
	if fromSnap {
		caughtUp = make(chan struct{})
	}
	go m.run(runCtx, rev, caughtUp)
	close(m.loaded)
	if !fromSnap {
		m.log.Info("certificate index loaded", "bundles", m.Count(), "rev", rev)
		return nil
	}
	if !rs.Reachable() {
		m.log.Warn("certificate store unreachable at start: serving from the local index snapshot; catching up when the store answers", "rev", rev, "bundles", m.Count())
		return nil
	}
	t := time.NewTimer(catchUpWait)
	defer t.Stop()
	select {
	case <-caughtUp:
	case <-ctx.Done():
		m.log.Warn("serving from the local index snapshot before catching up with the store", "rev", rev, "err", ctx.Err())
	case <-t.C:
		m.log.Warn("serving from the local index snapshot before catching up with the store", "rev", rev, "waited", catchUpWait)
	}
	return nil
}

// Close stops following the store and waits for the watch to end; with a
// local copy (Options.Dir), it saves the index snapshot. It does not close
// the store.
func (m *Manager) Close() error {
	m.runMu.Lock()
	cancel, done := m.cancel, m.done
	m.runMu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		m.saveSnapshot()
		m.closeLocal()
	}
	return nil
}

func (m *Manager) closeLocal() {
	if d := m.disk(); d != nil {
		if err := d.close(); err != nil {
			m.log.Warn("closing the local bundle cache", "err", err)
		}
	}
}

// Get returns the Info of bundle id, or an error wrapping store.ErrNotFound.
func (m *Manager) Get(ctx context.Context, id string) (Info, error) {
	if !isBundleID(id) {
		return Info{}, fmt.Errorf("certificate %q: %w", id, store.ErrNotFound)
	}
	kv, err := m.st.Get(ctx, bundleKey(id))
	if err != nil {
		return Info{}, fmt.Errorf("certificate %q: %w", id, err)
	}
	rec, err := decodeRecord(kv.Value)
	if err != nil {
		return Info{}, fmt.Errorf("certificate %q: %w", id, err)
	}
	return m.info(id, rec), nil
}

// List returns up to limit bundles (0: 100) in ID order, starting after the
// ID after ("" for the first page).
func (m *Manager) List(ctx context.Context, after string, limit int) ([]Info, error) {
	if limit <= 0 {
		limit = 100
	}
	start := ""
	if after != "" {
		start = bundleKey(after)
	}
	kvs, _, err := m.st.List(ctx, prefixBundles, start, limit)
	if err != nil {
		return nil, fmt.Errorf("listing certificates: %w", err)
	}
	infos := make([]Info, 0, len(kvs))
	for _, kv := range kvs {
		id := idFromBundleKey(kv.Key)
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			m.log.Warn("skipping corrupt bundle record", "id", id, "err", err)
			continue
		}
		infos = append(infos, m.info(id, rec))
	}
	return infos, nil
}

// Lookup returns the bundles that would serve hostname, best first: those
// of the exact name if any, else those of its wildcard parent.
func (m *Manager) Lookup(hostname string) []Info {
	es, name := m.lookup(normalizeName(hostname))
	if len(es) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	infos := make([]Info, 0, len(es))
	for _, e := range es {
		info, err := m.Get(ctx, e.id)
		if err != nil {
			info = Info{ID: e.id, Names: []string{name}, KeyType: e.keyType, NotAfter: e.notAfter, Status: m.status(e.notAfter)}
		}
		infos = append(infos, info)
	}
	return infos
}

func (m *Manager) status(notAfter time.Time) string {
	now := m.now()
	switch {
	case !now.Before(notAfter):
		return "expired"
	case notAfter.Sub(now) < m.opts.ExpiryWarning:
		return "expiring"
	}
	return "valid"
}

func (m *Manager) info(id string, rec *record) Info {
	info := Info{
		ID:        id,
		Names:     slices.Clone(rec.Names),
		KeyType:   rec.KeyType,
		NotBefore: rec.NotBefore,
		NotAfter:  rec.NotAfter,
		AddedAt:   rec.AddedAt,
		Status:    m.status(rec.NotAfter),
	}
	if leaf, err := x509.ParseCertificate(rec.Leaf); err == nil {
		info.Subject = leaf.Subject.String()
		info.Issuer = leaf.Issuer.String()
		info.Serial = leaf.SerialNumber.Text(16)
	}
	return info
}
