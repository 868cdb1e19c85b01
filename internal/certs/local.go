package certs

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"gatehouse/internal/store"
)

// DefaultSnapshotEvery is how often a changed index is written to the local
// snapshot when Options.SnapshotEvery is zero.
const DefaultSnapshotEvery = 5 * time.Minute

const (
	// catchUpWait bounds how long Start waits for a node started from its
	// snapshot to apply the changes made since, before it serves anyway.
	catchUpWait = 30 * time.Second
	// failedLoadTTL is how long a bundle whose load failed because the
	// store did not answer fails at once, without asking the store again.
	failedLoadTTL = 3 * time.Second
	// unreachableLoadTimeout bounds a bundle load while the store is known
	// not to answer (see Manager.loadTimeout).
	unreachableLoadTimeout = 500 * time.Millisecond
)

// remoteStore is implemented by stores on other machines (*etcd.Store),
// for which a node keeps a local index snapshot and bundle cache.
type remoteStore interface {
	// Identity names the store's data (cluster and prefix).
	Identity(ctx context.Context) (string, error)
	// Reachable reports the outcome of the last call, without calling.
	Reachable() bool
}

// progressWatcher is implemented by stores whose watch can report that it
// has delivered every change up to a revision (*etcd.Store): a response
// with no events is such a report, sent after RequestProgress.
type progressWatcher interface {
	WatchProgress(ctx context.Context, prefix string, fromRev int64) <-chan store.WatchResponse
	RequestProgress(ctx context.Context) error
}

// local is the state of a node's local copy of a remote store's index.
type local struct {
	dir  string
	rs   remoteStore
	disk *diskCache // nil if it could not be opened

	// mu guards the fields below.
	mu       sync.Mutex
	identity string // of the store the index is from ("" unknown)
	verified bool   // identity was confirmed by the store itself
	savedRev int64  // revision of the snapshot on disk (0: none)
}

// startLocal loads the index from the local snapshot if there is a usable
// one, else lists it from the store. It returns the revision to watch from
// and whether the index came from the snapshot.
func (m *Manager) startLocal(ctx context.Context, rs remoteStore) (int64, bool, error) {
	l := &local{dir: m.opts.Dir, rs: rs}
	m.local = l
	if rs.Reachable() {
		ictx, cancel := context.WithTimeout(ctx, loadTimeout)
		id, err := rs.Identity(ictx)
		cancel()
		if err != nil {
			m.log.Warn("certificate store identity unknown", "err", err)
		}
		l.identity, l.verified = id, err == nil
	}
	dc, err := openDiskCache(l.dir, l.identity, m.opts.DiskCacheBytes, m.log)
	if err != nil {
		m.log.Warn("local bundle cache disabled", "err", err)
	} else {
		l.disk = dc
	}
	snap, err := readSnapshot(l.dir)
	switch {
	case errors.Is(err, errNoSnapshot):
		m.log.Info("no local certificate index snapshot; listing the store", "dir", l.dir)
	case err != nil:
		m.log.Warn("ignoring the local certificate index snapshot", "path", filepath.Join(l.dir, snapshotFile), "err", err)
		snap = nil
	case l.verified && snap.identity != l.identity:
		m.log.Warn("ignoring the local certificate index snapshot of another store", "snapshot", snap.identity, "store", l.identity)
		snap = nil
	}
	if snap == nil {
		rev, err := m.relist(ctx)
		return rev, false, err
	}
	m.pmu.Lock()
	m.idx.replace(snap.b)
	m.watchRev = snap.rev
	m.pmu.Unlock()
	l.mu.Lock()
	l.identity, l.savedRev = snap.identity, snap.rev
	l.mu.Unlock()
	m.log.Info("certificate index loaded from the local snapshot", "bundles", m.Count(), "rev", snap.rev, "taken", snap.taken.UTC().Format(time.RFC3339))
	return snap.rev, true, nil
}

// catchUp closes done once the index reflects the store's revision as of
// when the store first answered, asking the watch for progress reports
// meanwhile. If the store turns out to be another one than the snapshot's,
// it asks run for a full relisting.
func (m *Manager) catchUp(ctx context.Context, done chan<- struct{}) {
	pw, _ := m.st.(progressWatcher)
	var target int64
	wait := 50 * time.Millisecond
	for {
		if target == 0 {
			rev, err := m.st.Rev(ctx)
			if err == nil {
				target = rev
				m.verifyIdentity(ctx)
			}
		}
		if target != 0 {
			if m.currentRev() >= target || pw == nil {
				close(done)
				m.log.Info("certificate index caught up with the store", "rev", m.currentRev(), "bundles", m.Count())
				return
			}
			pw.RequestProgress(ctx)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if target == 0 {
			wait = min(2*wait, 2*time.Second)
		}
	}
}

// verifyIdentity checks, once the store answers, that it is the store the
// index snapshot was taken of; if not, run relists.
func (m *Manager) verifyIdentity(ctx context.Context) {
	l := m.local
	l.mu.Lock()
	verified, want := l.verified, l.identity
	l.mu.Unlock()
	if verified {
		return
	}
	got, err := l.rs.Identity(ctx)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.identity, l.verified = got, true
	l.mu.Unlock()
	if got != want {
		m.log.Warn("the local certificate index snapshot is of another store; relisting", "snapshot", want, "store", got)
		select {
		case m.resync <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) currentRev() int64 {
	m.pmu.Lock()
	defer m.pmu.Unlock()
	return m.watchRev
}

// saveSnapshot writes the index to the local snapshot if it changed since
// the last one.
func (m *Manager) saveSnapshot() {
	l := m.local
	if l == nil {
		return
	}
	l.mu.Lock()
	identity, saved := l.identity, l.savedRev
	l.mu.Unlock()
	if identity == "" {
		return // never write a snapshot that cannot be checked
	}
	m.pmu.Lock()
	rev := m.watchRev
	if rev == saved {
		m.pmu.Unlock()
		return
	}
	hosts := m.idx.capture()
	m.pmu.Unlock()
	start := time.Now()
	size, err := writeSnapshot(l.dir, identity, rev, m.now(), hosts)
	if err != nil {
		m.log.Warn("saving the local certificate index snapshot", "err", err)
		return
	}
	l.mu.Lock()
	l.savedRev = rev
	l.mu.Unlock()
	m.log.Info("certificate index snapshot saved", "rev", rev, "names", len(hosts), "bytes", size, "took", time.Since(start).Round(time.Millisecond))
}

// diskDrop drops bundle id from the local bundle cache, if any.
func (m *Manager) diskDrop(id string) {
	if m.local != nil && m.local.disk != nil {
		m.local.disk.drop(id)
	}
}

// failures remembers bundles whose load failed because the store did not
// answer, so that handshakes for them fail at once for failedLoadTTL
// instead of each waiting for the store.
type failures struct {
	mu sync.Mutex
	m  map[string]failure // mu guards m
}

type failure struct {
	err   error
	until time.Time
}

func (f *failures) get(id string, now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if e, ok := f.m[id]; ok {
		if now.Before(e.until) {
			return e.err
		}
		delete(f.m, id)
	}
	return nil
}

func (f *failures) add(id string, err error, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = make(map[string]failure)
	}
	if len(f.m) >= 10000 {
		for k, e := range f.m {
			if !now.Before(e.until) {
				delete(f.m, k)
			}
		}
	}
	f.m[id] = failure{err: err, until: now.Add(failedLoadTTL)}
}
