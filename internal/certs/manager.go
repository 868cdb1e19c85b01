package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"gatehouse/internal/capacity"
	"gatehouse/internal/loop"
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
	st    store.Store
	kek   *KEK
	log   *slog.Logger
	opts  Options
	now   func() time.Time
	idx   *index
	cache *cache
	// flight makes concurrent loads of one bundle share a single store read.
	flight singleflight.Group

	// writeMu serializes this process's writes (Add, AddBatch, Remove), so
	// the limit check and replacement planning see each other's results.
	writeMu sync.Mutex

	// pmu guards pending and orders local index updates with watch events.
	pmu sync.Mutex
	// pending holds this process's writes to certs/names/ that the watch has
	// not delivered yet, so that older watch events do not undo them.
	pending map[string]pendingWrite
	// watchRev is the revision up to which the index reflects the store's
	// certs/names/ (the last watched revision applied, or the listing's).
	watchRev int64

	// diskLimit bounds the local bundle cache (SetLocalCacheBytes).
	diskLimit atomic.Int64

	// expiry caches ExpiryCounts.
	expiry expiryCache

	// local is the node's local copy of a remote store's index (nil for
	// the embedded store or without Options.Dir); set by Start.
	local *local
	// resync asks run for a full relisting.
	resync chan struct{}
	// relists counts the full listings of the index that succeeded.
	relists atomic.Uint64
	// failed holds bundles whose load the store did not answer lately.
	failed failures

	started atomic.Bool // pending writes matter only once a watch may run
	// loading is true while Start's background load of the index runs
	// (Options.LoadInBackground); loaded is closed when the index holds
	// the store's names.
	loading   atomic.Bool
	loaded    chan struct{}
	loadStart time.Time
	loadCount atomic.Int64 // bundles listed so far by the load

	runMu  sync.Mutex // guards cancel and done
	cancel context.CancelFunc
	done   chan struct{}
}

type pendingWrite struct {
	rev  int64
	put  bool
	host string
	e    entry
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
		st:      st,
		kek:     kek,
		log:     opts.Logger.With("component", "certs"),
		opts:    opts,
		now:     now,
		idx:     newIndex(),
		cache:   newCache(opts.CacheBytes),
		pending: make(map[string]pendingWrite),
		resync:  make(chan struct{}, 1),
		loaded:  make(chan struct{}),
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

// nameFeed is the store.Handler that keeps the index in step with
// certs/names/ (see store.Follow).
type nameFeed struct {
	m *Manager
	// relisted, if not nil, is called after every relisting.
	relisted func()
}

// Reset rebuilds the index from a listing (see relist).
func (f nameFeed) Reset(ctx context.Context, l *store.Listing) error {
	if err := f.m.relist(ctx, l); err != nil {
		return err
	}
	if f.relisted != nil {
		f.relisted()
	}
	return nil
}

// Apply applies watched transactions (and progress reports) in order.
func (f nameFeed) Apply(resps []store.WatchResponse) {
	for _, r := range resps {
		f.m.applyWatch(r)
	}
}

// followOptions are how the index follows certs/names/: streamed at one
// revision, with progress reports and resync requests for the local copy.
func (m *Manager) followOptions() store.FollowOptions {
	return store.FollowOptions{
		What:     "certificate names",
		Logger:   m.log,
		PageSize: listPageSize,
		Stream:   true,
		Progress: m.local != nil,
		Resync:   m.resync,
	}
}

// loadIndex lists the index and returns the revision to watch from.
func (m *Manager) loadIndex(ctx context.Context) (int64, error) {
	return store.Load(ctx, m.st, prefixNames, m.followOptions(), nameFeed{m: m})
}

// relist rebuilds the index from the listing l of certs/names/.
func (m *Manager) relist(ctx context.Context, l *store.Listing) error {
	hint := 0
	if sz, ok := m.st.(store.Sizer); ok {
		// About one name key per bundle key: half the keys are names.
		if u, err := sz.Usage(ctx); err == nil && u.Keys > 0 {
			hint = int(min(u.Keys/2, 1<<26))
		}
	}
	b := newIndexBuilder(hint)
	// The listing is in key order, so the entries of a host are adjacent:
	// collect them and set each host once.
	var host string
	var es []entry
	flushHost := func() {
		if len(es) > 0 {
			b.add(host, es)
		}
		es = nil
	}
	yield := m.loading.Load()
	n := 0
	for kv, err := range l.All() {
		if err != nil {
			return fmt.Errorf("listing certificate names: %w", err)
		}
		if n++; yield && n%4096 == 0 {
			// Loading while serving (startLoading): publish the progress
			// for Count, and let the handshakes waiting for the processor
			// go first, as a node with GOMAXPROCS=1 would otherwise queue
			// them behind the load's time slices.
			m.loadCount.Store(int64(len(b.names)))
			runtime.Gosched()
		}
		h, id, ok := parseNameKey(kv.Key)
		if !ok {
			m.log.Warn("ignoring malformed name index key", "key", kv.Key)
			continue
		}
		// One string holds host and id, without the prefix the index
		// need not keep.
		rest := strings.Clone(kv.Key[len(prefixNames):])
		h, id = rest[:len(h)], rest[len(h)+1:]
		ne, err := decodeNameEntry(kv.Value)
		if err != nil {
			m.log.Warn("ignoring malformed name index entry", "host", h, "id", id, "err", err)
			continue
		}
		if h != host {
			flushHost()
			host = h
		}
		es = append(es, entry{id: id, keyType: ne.KeyType, notAfter: ne.NotAfter})
	}
	firstRev := l.Rev()
	flushHost()
	m.pmu.Lock()
	defer m.pmu.Unlock()
	for _, p := range m.pending {
		if p.rev <= firstRev {
			continue
		}
		if p.put {
			b.put(p.host, p.e)
		} else {
			b.remove(p.host, p.e.id)
		}
	}
	m.idx.replace(b)
	m.watchRev = firstRev
	m.diskClear()
	if l := m.local; l != nil {
		// The index is now this store's: snapshots may name it (the
		// identity is known from the listing's answer, without a call).
		if id, err := l.rs.Identity(ctx); err == nil {
			l.mu.Lock()
			l.identity, l.verified = id, true
			l.mu.Unlock()
		}
	}
	m.relists.Add(1)
	return nil
}

// run follows certs/names/ from rev until ctx is done, relisting when the
// store no longer has the history to resume from or checkSnapshot asks.
// With a local copy it saves the index snapshot after a full listing and
// then every Options.SnapshotEvery if changed. caughtUp, if not nil, is
// closed once the index has caught up with the store (see catchUp).
func (m *Manager) run(ctx context.Context, rev int64, caughtUp chan struct{}) {
	defer close(m.done)
	var bg sync.WaitGroup
	defer bg.Wait()
	// save asks for a snapshot; one goroutine writes them, one at a time.
	save := make(chan struct{}, 1)
	requestSave := func() {
		select {
		case save <- struct{}{}:
		default:
		}
	}
	if m.local != nil {
		bg.Go(func() { loop.Every(ctx, m.opts.SnapshotEvery, requestSave) })
		bg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-save:
					m.saveSnapshot()
				}
			}
		})
		if caughtUp == nil {
			requestSave()
		}
	}
	if caughtUp != nil {
		bg.Go(func() { m.catchUp(ctx, caughtUp) })
	}
	if m.local != nil && m.local.reopen {
		bg.Go(func() { m.reopenDisk(ctx) })
	}
	opts := m.followOptions()
	relisted := requestSave
	if m.loading.Load() {
		// startLoading: the first listing is the load.
		relisted = func() { m.markLoaded(); requestSave() }
	} else {
		opts.Loaded, opts.FromRev = true, rev
	}
	<-store.Follow(ctx, m.st, prefixNames, opts, nameFeed{m: m, relisted: relisted}).Done()
}

// applyWatch applies one watched transaction to the index, skipping keys
// that this process has since written itself.
func (m *Manager) applyWatch(resp store.WatchResponse) {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	// A transaction is one change: its puts go in before its deletes, so a
	// renewal (delete the old bundle's entry, put the new one's) never
	// leaves the name without a certificate between the two.
	for _, put := range [2]bool{true, false} {
		for _, ev := range resp.Events {
			if (ev.Type == store.EventPut) != put {
				continue
			}
			if p, ok := m.pending[ev.KV.Key]; ok && resp.Rev <= p.rev {
				continue
			}
			host, id, ok := parseNameKey(ev.KV.Key)
			if !ok {
				continue
			}
			switch ev.Type {
			case store.EventPut:
				ne, err := decodeNameEntry(ev.KV.Value)
				if err != nil {
					m.log.Warn("ignoring malformed name index entry", "key", ev.KV.Key, "err", err)
					continue
				}
				m.idx.put(host, entry{id: id, keyType: ne.KeyType, notAfter: ne.NotAfter})
			case store.EventDelete:
				m.idx.remove(host, id)
				m.cacheDropIfUnused(id)
			}
		}
	}
	for k, p := range m.pending {
		if p.rev <= resp.Rev {
			delete(m.pending, k)
		}
	}
	m.watchRev = max(m.watchRev, resp.Rev)
}

// cacheDropIfUnused drops bundle id from the decoded cache once no name uses it.
func (m *Manager) cacheDropIfUnused(id string) {
	if !m.idx.has(id) {
		m.cache.remove(id)
		m.diskDrop(id)
	}
}

// nameChange is one change to the hostname index made by a plan.
type nameChange struct {
	put  bool
	host string
	e    entry
}

// applyLocal applies this process's committed changes to the index at once,
// so the next handshake sees them without waiting for the watch.
func (m *Manager) applyLocal(rev int64, changes []nameChange, dropped []string) {
	m.pmu.Lock()
	if rev <= m.watchRev {
		// The watch got there first, and may have applied later changes too.
		changes = nil
	}
	// Puts before removes, as in applyWatch: a replaced name is never
	// without a certificate.
	for _, put := range [2]bool{true, false} {
		for _, c := range changes {
			if c.put != put {
				continue
			}
			if c.put {
				m.idx.put(c.host, c.e)
			} else {
				m.idx.remove(c.host, c.e.id)
			}
			if m.started.Load() {
				m.pending[nameKey(c.host, c.e.id)] = pendingWrite{rev: rev, put: c.put, host: c.host, e: c.e}
			}
		}
	}
	m.pmu.Unlock()
	for _, id := range dropped {
		m.cache.remove(id)
		m.diskDrop(id)
	}
}

// plan is the store transaction that installs one bundle.
type plan struct {
	b        *Bundle
	rec      *record
	existing *record // the bundle is already installed (Add is a no-op)
	conds    []store.Cond
	ops      []store.Op
	changes  []nameChange
	// touched are the bundles whose records the plan rewrites or deletes;
	// dropped those it deletes (they leave the decoded cache).
	touched  []string
	dropped  []string
	chains   []string // chain keys the plan puts
	warnings []string
}

// plan reads what the store holds for b's names and builds the transaction
// that installs b, replacing bundles of the same key family on those names.
func (m *Manager) plan(ctx context.Context, b *Bundle, now time.Time) (*plan, error) {
	p := &plan{b: b}
	kv, err := m.st.Get(ctx, bundleKey(b.ID))
	switch {
	case err == nil:
		rec, derr := decodeRecord(kv.Value)
		if derr != nil {
			return nil, fmt.Errorf("reading installed bundle %s: %w", b.ID, derr)
		}
		p.existing = rec
		return p, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("reading bundle %s: %w", b.ID, err)
	}

	rec := &record{
		Leaf:      b.Leaf.Raw,
		KeyType:   b.KeyType,
		Names:     b.Names,
		NotBefore: b.NotBefore,
		NotAfter:  b.NotAfter,
		AddedAt:   now,
	}
	for _, c := range b.Chain {
		sum := sha256.Sum256(c.Raw)
		key := chainKeyOf(sum)
		rec.Chain = append(rec.Chain, sum)
		if slices.Contains(p.chains, key) {
			continue
		}
		kv, err := m.st.Get(ctx, key)
		switch {
		case err == nil:
			// Rewrite it so that a concurrent SweepChains, which deletes on
			// the revision it saw, cannot remove it under this bundle.
			p.conds = append(p.conds, store.Cond{Key: key, ModRev: kv.ModRev})
		case errors.Is(err, store.ErrNotFound):
			p.conds = append(p.conds, store.Absent(key))
		default:
			return nil, fmt.Errorf("reading chain certificate %s: %w", key, err)
		}
		p.ops = append(p.ops, store.Put(key, c.Raw))
		p.chains = append(p.chains, key)
	}

	// Bundles of the same key family serving one of b's names lose that name.
	family := keyFamily(b.KeyType)
	lost := make(map[string][]string) // bundle id -> names it loses
	var lostOrder []string
	for _, name := range b.Names {
		kvs, _, err := m.st.List(ctx, namePrefix(name), "", 0)
		if err != nil {
			return nil, fmt.Errorf("reading bundles for %q: %w", name, err)
		}
		for _, kv := range kvs {
			_, id, ok := parseNameKey(kv.Key)
			if !ok || id == b.ID {
				continue
			}
			ne, err := decodeNameEntry(kv.Value)
			if err != nil || keyFamily(ne.KeyType) != family {
				continue
			}
			if _, seen := lost[id]; !seen {
				lostOrder = append(lostOrder, id)
			}
			lost[id] = append(lost[id], name)
			if ne.NotAfter.After(b.NotAfter) {
				p.warnings = append(p.warnings, fmt.Sprintf("replaces certificate %s for %q, which expires later (%s)", id, name, ne.NotAfter.UTC().Format(time.RFC3339)))
			}
		}
	}
	for _, id := range lostOrder {
		names := lost[id]
		for _, n := range names {
			p.ops = append(p.ops, store.Delete(nameKey(n, id)))
			p.changes = append(p.changes, nameChange{host: n, e: entry{id: id}})
		}
		p.touched = append(p.touched, id)
		kv, err := m.st.Get(ctx, bundleKey(id))
		if errors.Is(err, store.ErrNotFound) {
			continue // index entries without a bundle: just remove them
		}
		if err != nil {
			return nil, fmt.Errorf("reading replaced bundle %s: %w", id, err)
		}
		old, err := decodeRecord(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("reading replaced bundle %s: %w", id, err)
		}
		p.conds = append(p.conds, store.Cond{Key: bundleKey(id), ModRev: kv.ModRev})
		old.Names = slices.DeleteFunc(old.Names, func(n string) bool { return slices.Contains(names, n) })
		if len(old.Names) == 0 {
			p.ops = append(p.ops, store.Delete(bundleKey(id)))
			p.dropped = append(p.dropped, id)
		} else {
			p.ops = append(p.ops, store.Put(bundleKey(id), old.encode()))
		}
	}

	pkcs8, err := x509.MarshalPKCS8PrivateKey(b.Key)
	if err != nil {
		return nil, &InputError{Part: "private key", Problem: fmt.Sprintf("cannot encode: %v", err), Err: err}
	}
	rec.SealedKey = m.kek.seal(b.ID, pkcs8)
	clear(pkcs8)
	p.rec = rec
	p.conds = append(p.conds, store.Absent(bundleKey(b.ID)))
	p.ops = append(p.ops, store.Put(bundleKey(b.ID), rec.encode()))
	ne := nameEntry{KeyType: b.KeyType, NotAfter: b.NotAfter}
	val := ne.encode()
	for _, n := range b.Names {
		p.ops = append(p.ops, store.Put(nameKey(n, b.ID), val))
		p.changes = append(p.changes, nameChange{put: true, host: n, e: entry{id: b.ID, keyType: b.KeyType, notAfter: b.NotAfter}})
	}
	return p, nil
}

// Add validates and installs a bundle (see ParseBundle for the inputs) and
// returns its Info and any warnings. For each name of the new bundle, a
// bundle of the same key family (ECDSA, RSA, Ed25519) that serves that name
// stops serving it, in the same transaction; a bundle left with no names is
// deleted. Adding a leaf that is already installed changes nothing and
// returns the installed bundle's Info without error. Once Add returns, the
// next handshake on this process sees the change. Invalid input is an
// *InputError; crossing the certificate limit or the store quota is a
// *capacity.LimitError.
func (m *Manager) Add(ctx context.Context, certPEM, keyPEM []byte) (Info, []string, error) {
	now := m.now()
	b, err := ParseBundle(certPEM, keyPEM)
	if err != nil {
		return Info{}, nil, err
	}
	warnings, err := Validate(b, now, ValidateOptions{ExpiryWarning: m.opts.ExpiryWarning})
	if err != nil {
		return Info{}, nil, err
	}
	if err := m.waitLoaded(ctx); err != nil {
		return Info{}, nil, err
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	// A store that cannot tell its size now (etcd's status not yet
	// answered after an outage) is not judged for one bundle: the write
	// goes on, and fails on its own if the store is down or full.
	if err := m.admitStore(ctx, []*Bundle{b}); err != nil && !errors.Is(err, store.ErrUnavailable) { // quota.go
		return Info{}, nil, err
	}
	info, more, err := m.addLocked(ctx, b, now)
	return info, append(warnings, more...), err
}

// addLocked installs b in one transaction that also moves the bundle
// counter, admitted against the counter's value in that transaction.
func (m *Manager) addLocked(ctx context.Context, b *Bundle, now time.Time) (Info, []string, error) {
	for range maxAttempts {
		p, err := m.plan(ctx, b, now)
		if err != nil {
			return Info{}, nil, err
		}
		if p.existing != nil {
			return m.info(b.ID, p.existing), nil, nil
		}
		cnt, err := m.readCounter(ctx)
		if err != nil {
			return Info{}, nil, err
		}
		after := cnt.Value + 1 - int64(len(p.dropped))
		// Admitted by what it adds net: a renewal that replaces a bundle
		// does not grow the count and passes even above a lowered limit.
		if err := m.opts.Admission.Admit(ctx, capacity.Certificates, cnt.Value, 1-int64(len(p.dropped))); err != nil {
			return Info{}, nil, err
		}
		rev, err := m.st.Txn(ctx, append(p.conds, cnt.Cond), append(p.ops, cnt.Op(after)))
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return Info{}, nil, fmt.Errorf("installing bundle %s: %w", b.ID, err)
		}
		// A re-added leaf may come with another chain: drop its old decoding too.
		m.applyLocal(rev, p.changes, append(p.dropped, b.ID))
		m.opts.Admission.Record(capacity.Certificates, after)
		m.opts.Admission.Record(capacity.Store, -1)
		m.log.Info("certificate added", "id", b.ID, "names", b.Names, "key_type", b.KeyType, "replaced", p.touched)
		return m.info(b.ID, p.rec), p.warnings, nil
	}
	return Info{}, nil, fmt.Errorf("installing bundle %s: gave up after %d conflicting concurrent changes: %w", b.ID, maxAttempts, store.ErrConflict)
}

// Remove deletes bundle id and its index entries. Once it returns, this
// process no longer serves it. An unknown id is an error wrapping
// store.ErrNotFound.
func (m *Manager) Remove(ctx context.Context, id string) error {
	if !isBundleID(id) {
		return fmt.Errorf("certificate %q: %w", id, store.ErrNotFound)
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	for range maxAttempts {
		kv, err := m.st.Get(ctx, bundleKey(id))
		if err != nil {
			return fmt.Errorf("certificate %q: %w", id, err)
		}
		cnt, err := m.readCounter(ctx)
		if err != nil {
			return err
		}
		after := max(cnt.Value-1, 0)
		ops := []store.Op{store.Delete(bundleKey(id)), cnt.Op(after)}
		var changes []nameChange
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			m.log.Warn("removing corrupt bundle record", "id", id, "err", err)
		} else {
			for _, n := range rec.Names {
				ops = append(ops, store.Delete(nameKey(n, id)))
				changes = append(changes, nameChange{host: n, e: entry{id: id}})
			}
		}
		rev, err := m.st.Txn(ctx, []store.Cond{{Key: bundleKey(id), ModRev: kv.ModRev}, cnt.Cond}, ops)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("removing certificate %q: %w", id, err)
		}
		m.applyLocal(rev, changes, []string{id})
		m.opts.Admission.Record(capacity.Certificates, after)
		m.log.Info("certificate removed", "id", id)
		return nil
	}
	return fmt.Errorf("removing certificate %q: gave up after %d conflicting concurrent changes: %w", id, maxAttempts, store.ErrConflict)
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

// Item is one bundle to import: its PEM inputs (see ParseBundle) and where
// they came from, for reporting.
type Item struct {
	Source  string
	CertPEM []byte
	KeyPEM  []byte
}

// Result is the outcome of one Item of AddBatch.
type Result struct {
	Source   string
	Info     Info     // set when Err is nil
	Warnings []string // set when Err is nil
	Err      error
}

// AddBatch installs many bundles, each validated on its own and with the
// semantics of Add, writing them in transactions of at most 64 operations
// (one bundle is never split across transactions). Admission covers the
// whole batch up front: if installing every valid new bundle would cross
// the certificate limit or the store quota, nothing is written and every
// valid item reports the *capacity.LimitError. Each transaction moves the
// bundle counter too and is admitted against it again, so that writers on
// other nodes meanwhile cannot take the fleet past the limit (an item
// refused then reports the error). Results are in the order of items.
func (m *Manager) AddBatch(ctx context.Context, items []Item) []Result {
	now := m.now()
	results := make([]Result, len(items))
	bundles := make([]*Bundle, len(items))
	firstOf := make(map[string]int) // bundle id -> first item with it
	dupOf := make([]int, len(items))
	for i, it := range items {
		results[i].Source = it.Source
		dupOf[i] = -1
		b, err := ParseBundle(it.CertPEM, it.KeyPEM)
		if err == nil {
			results[i].Warnings, err = Validate(b, now, ValidateOptions{ExpiryWarning: m.opts.ExpiryWarning})
		}
		if err != nil {
			results[i].Err = err
			continue
		}
		if j, ok := firstOf[b.ID]; ok {
			dupOf[i] = j
			continue
		}
		firstOf[b.ID] = i
		bundles[i] = b
	}

	if err := m.waitLoaded(ctx); err != nil {
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = err
			}
		}
		return results
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	err := m.admitBatch(ctx, bundles)
	if err == nil {
		err = m.admitStore(ctx, bundles) // quota.go
	}
	if err != nil {
		for i := range results {
			if results[i].Err == nil {
				results[i].Err = err
				results[i].Warnings = nil
			}
		}
		return results
	}

	var group []*plan
	var groupIdx []int
	var groupOps int
	groupNames := make(map[string]bool) // family + "/" + name
	groupTouched := make(map[string]bool)
	flush := func() {
		if len(group) == 0 {
			return
		}
		m.flush(ctx, group, groupIdx, results, now)
		group, groupIdx, groupOps = nil, nil, 0
		clear(groupNames)
		clear(groupTouched)
	}
	conflicts := func(p *plan) bool {
		if groupOps+len(p.ops) > maxTxnOps {
			return true
		}
		fam := keyFamily(p.b.KeyType)
		for _, n := range p.b.Names {
			if groupNames[fam+"/"+n] {
				return true
			}
		}
		for _, id := range p.touched {
			if groupTouched[id] {
				return true
			}
		}
		return false
	}
	for i, b := range bundles {
		if b == nil {
			continue
		}
		p, err := m.plan(ctx, b, now)
		if err == nil && p.existing == nil && len(group) > 0 && conflicts(p) {
			// Plan again once the store reflects the group.
			flush()
			p, err = m.plan(ctx, b, now)
		}
		switch {
		case err != nil:
			results[i].Err = err
			continue
		case p.existing != nil:
			results[i].Info = m.info(b.ID, p.existing)
			continue
		}
		// Chains already written by the group need no second put.
		p.conds, p.ops = dropChainOps(p, group)
		group = append(group, p)
		groupIdx = append(groupIdx, i)
		groupOps += len(p.ops)
		fam := keyFamily(b.KeyType)
		for _, n := range b.Names {
			groupNames[fam+"/"+n] = true
		}
		for _, id := range p.touched {
			groupTouched[id] = true
		}
	}
	flush()
	for i, j := range dupOf {
		if j >= 0 {
			results[i].Info, results[i].Err = results[j].Info, results[j].Err
		}
	}
	return results
}

// dropChainOps removes from p the chain puts and conditions that an earlier
// plan of the group already carries.
func dropChainOps(p *plan, group []*plan) ([]store.Cond, []store.Op) {
	have := func(key string) bool {
		for _, q := range group {
			if slices.Contains(q.chains, key) {
				return true
			}
		}
		return false
	}
	conds := p.conds[:0:0]
	for _, c := range p.conds {
		if !strings.HasPrefix(c.Key, prefixChains) || !have(c.Key) {
			conds = append(conds, c)
		}
	}
	ops := p.ops[:0:0]
	for _, o := range p.ops {
		if !strings.HasPrefix(o.Key, prefixChains) || !have(o.Key) {
			ops = append(ops, o)
		}
	}
	return conds, ops
}

// flush writes a group of plans in one transaction with the bundle
// counter, admitted against it. If another writer moved only the counter,
// the group is admitted and written again; if it changed what the plans
// read, each bundle is installed on its own instead.
func (m *Manager) flush(ctx context.Context, group []*plan, idx []int, results []Result, now time.Time) {
	var conds []store.Cond
	var ops []store.Op
	var dropped int64
	for _, p := range group {
		conds = append(conds, p.conds...)
		ops = append(ops, p.ops...)
		dropped += int64(len(p.dropped))
	}
	adding := int64(len(group))
	var rev, after int64
	cnt, err := m.readCounter(ctx)
	for attempt := 1; err == nil; attempt++ {
		if err = m.opts.Admission.Admit(ctx, capacity.Certificates, cnt.Value, adding-dropped); err != nil {
			break
		}
		after = cnt.Value + adding - dropped
		rev, err = m.st.Txn(ctx, append(conds, cnt.Cond), append(ops, cnt.Op(after)))
		if !errors.Is(err, store.ErrConflict) || attempt == maxAttempts {
			break
		}
		// Another writer of the fleet moved the counter: admit the group
		// again against it. If the counter did not move, a bundle or name
		// changed, and the group is planned again item by item below.
		cur, rerr := m.readCounter(ctx)
		if rerr != nil || cur.Cond == cnt.Cond {
			break
		}
		cnt = cur
	}
	if err == nil {
		for k, p := range group {
			m.applyLocal(rev, p.changes, append(p.dropped, p.b.ID))
			r := &results[idx[k]]
			r.Info = m.info(p.b.ID, p.rec)
			r.Warnings = append(r.Warnings, p.warnings...)
		}
		m.opts.Admission.Record(capacity.Certificates, after)
		m.opts.Admission.Record(capacity.Store, -1)
		m.log.Info("certificates imported", "count", len(group), "rev", rev)
		return
	}
	for k, p := range group {
		r := &results[idx[k]]
		if !errors.Is(err, store.ErrConflict) {
			r.Err = fmt.Errorf("installing bundle %s: %w", p.b.ID, err)
			r.Warnings = nil
			continue
		}
		info, more, err := m.addLocked(ctx, p.b, now)
		r.Info, r.Err = info, err
		r.Warnings = append(r.Warnings, more...)
	}
}

// estimateBatch returns how many bundles a batch would add and how many it
// would replace entirely, judged from the local index.
func (m *Manager) estimateBatch(bundles []*Bundle) (adding, removing int64) {
	left := make(map[string]int) // replaced bundle id -> names it still serves
	inBatch := make(map[string]bool)
	for _, b := range bundles {
		if b != nil {
			inBatch[b.ID] = true
		}
	}
	for _, b := range bundles {
		if b == nil || m.idx.has(b.ID) {
			continue
		}
		adding++
		fam := keyFamily(b.KeyType)
		for _, n := range b.Names {
			for _, e := range m.idx.lookup(n) {
				if e.id == b.ID || inBatch[e.id] || keyFamily(e.keyType) != fam {
					continue
				}
				c, ok := left[e.id]
				if !ok {
					c = m.idx.nameCount(e.id)
				}
				if c--; c == 0 {
					removing++
				}
				left[e.id] = c
			}
		}
	}
	return adding, removing
}

// SweepChains deletes stored intermediates that no bundle references and
// returns how many it deleted. It is safe to run while bundles are added
// anywhere: a chain entry that an addition reuses is rewritten by it, so the
// sweep's conditional delete of that entry fails and the entry stays.
func (m *Manager) SweepChains(ctx context.Context) (int, error) {
	chains := make(map[string]int64) // key -> mod revision
	for kv, err := range store.All(ctx, m.st, prefixChains, listPageSize) {
		if err != nil {
			return 0, fmt.Errorf("listing chain certificates: %w", err)
		}
		chains[kv.Key] = kv.ModRev
	}
	if len(chains) == 0 {
		return 0, nil
	}
	for kv, err := range store.All(ctx, m.st, prefixBundles, 1000) {
		if err != nil {
			return 0, fmt.Errorf("listing certificates: %w", err)
		}
		rec, err := decodeRecord(kv.Value)
		if err != nil {
			return 0, fmt.Errorf("sweeping chains: bundle %s: %w", idFromBundleKey(kv.Key), err)
		}
		for _, h := range rec.Chain {
			delete(chains, chainKeyOf(h))
		}
	}
	deleted := 0
	for key, rev := range chains {
		_, err := m.st.Txn(ctx, []store.Cond{{Key: key, ModRev: rev}}, []store.Op{store.Delete(key)})
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, store.ErrConflict):
		default:
			return deleted, fmt.Errorf("deleting chain certificate %s: %w", key, err)
		}
	}
	return deleted, nil
}
