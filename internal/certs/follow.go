package certs

// The index replica: the Manager's copy of the store's certs/names/,
// listed at start (or from the local copy), kept in step by the watch,
// relisted after compaction, with this process's own writes applied at
// once and never undone by older watch events.

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"gatehouse/internal/loop"
	"gatehouse/internal/store"
)

// pendingWrite is a write of this process to certs/names/ (at rev) that
// the watch has not delivered yet.
type pendingWrite struct {
	rev  int64
	put  bool
	host string
	e    entry
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
