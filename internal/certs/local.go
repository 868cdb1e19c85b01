package certs

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"gatehouse/internal/loop"
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
	// snapshotMaxLag bounds how far the saved snapshot's revision may lag
	// the store when no name changed: far below any sensible compaction
	// retention (store.etcd.compaction_retention, 24h by default).
	snapshotMaxLag = time.Hour
	// unreachableLoadTimeout bounds a bundle load while the store is known
	// not to answer (see Manager.loadTimeout).
	unreachableLoadTimeout = 500 * time.Millisecond
	// diskRetryEvery is how often a node whose local bundle cache is
	// locked by another process (the one it replaces in a binary upgrade)
	// tries to open it again.
	diskRetryEvery = 2 * time.Second
	// maxMissedDrops bounds the removed bundles remembered while the local
	// bundle cache is not open; past it, the cache is emptied on opening.
	maxMissedDrops = 10000
)

// local is the state of a node's local copy of a remote store's index.
type local struct {
	dir  string
	rs   store.Remote
	disk atomic.Pointer[diskCache] // nil while not open
	// reopen is set when the bundle cache was locked by another process
	// at start: run opens it once that process lets go.
	reopen bool

	// saveMu makes each snapshot save whole: the capture, the write and
	// the record of what was saved, so that a save that read an older
	// index can never overwrite a newer one or its record.
	saveMu sync.Mutex

	// mu guards the fields below, and the opening of disk after start.
	mu       sync.Mutex
	identity string // of the store the index is from ("" unknown)
	verified bool   // identity was confirmed by the store itself
	savedRev int64  // revision of the snapshot on disk (0: none)
	// savedChanges and savedAt are the index's change count and the time
	// at that save.
	savedChanges uint64
	savedAt      time.Time
	// missed are the bundles dropped while disk was not open, to drop
	// from it once open; missedAll means empty its records instead (a
	// relisting, or too many drops).
	missed    map[string]struct{}
	missedAll bool
}

// startLocal loads the index from the local snapshot if there is a usable
// one, else lists it from the store. It returns the revision to watch from
// and whether the index came from the snapshot.
func (m *Manager) startLocal(ctx context.Context, rs store.Remote) (int64, bool, error) {
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
	dc, err := openDiskCache(l.dir, l.identity, m.diskLimit.Load(), m.log)
	switch {
	case errors.Is(err, bbolt.ErrTimeout):
		// The process this one replaces still has it: open it once that
		// one stops.
		m.log.Info("local bundle cache in use by another process; opening it when it is released", "err", err)
		l.reopen = true
	case err != nil:
		m.log.Warn("local bundle cache disabled", "err", err)
	default:
		l.disk.Store(dc)
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
		rev, err := m.loadIndex(ctx)
		return rev, false, err
	}
	m.pmu.Lock()
	m.idx.replace(snap.b)
	m.watchRev = snap.rev
	changes := m.idx.changes.Load()
	m.pmu.Unlock()
	l.mu.Lock()
	l.identity, l.savedRev = snap.identity, snap.rev
	l.savedChanges, l.savedAt = changes, snap.taken
	l.mu.Unlock()
	m.log.Info("certificate index loaded from the local snapshot", "bundles", m.Count(), "rev", snap.rev, "taken", snap.taken.UTC().Format(time.RFC3339))
	return snap.rev, true, nil
}

// catchUp closes done once the index reflects the store's revision as of
// when the store first answered, asking the watch for progress reports
// meanwhile. If the snapshot turns out not to be of this store's history
// (see checkSnapshot), it asks run for a full relisting and waits for it.
func (m *Manager) catchUp(ctx context.Context, done chan<- struct{}) {
	pw, _ := m.st.(store.ProgressWatcher)
	var (
		target    int64
		relisting bool   // a relisting was asked for
		relists   uint64 // m.relists before it was asked for
	)
	wait := 50 * time.Millisecond
	for {
		if target == 0 {
			n := m.relists.Load()
			if rev, err := m.st.Rev(ctx); err == nil {
				if relist, ok := m.checkSnapshot(ctx, rev); ok {
					target, relisting, relists = rev, relist, n
				}
			}
		}
		if target != 0 {
			listed := !relisting || m.relists.Load() != relists
			if listed && (m.currentRev() >= target || pw == nil) {
				close(done)
				m.log.Info("certificate index caught up with the store", "rev", m.currentRev(), "bundles", m.Count())
				return
			}
			if pw != nil && listed {
				pw.RequestProgress(ctx)
			}
		}
		if !loop.Sleep(ctx, wait) {
			return
		}
		if target == 0 {
			wait = min(2*wait, 2*time.Second)
		}
	}
}

// checkSnapshot checks, once the store answers at revision storeRev, that
// the index loaded from the snapshot is of this store's history: the store
// is the one the snapshot was taken of, and it has reached the snapshot's
// revision (an etcd restored from an older backup keeps its cluster id but
// not its later revisions, and a watch from a revision it has not reached
// waits for it). If not, it forgets the identity, so that no snapshot is
// saved of the index until it is listed again, and asks run to relist;
// relist reports whether it did. ok is false if the store's identity could
// not be read.
func (m *Manager) checkSnapshot(ctx context.Context, storeRev int64) (relist, ok bool) {
	l := m.local
	l.mu.Lock()
	verified, want := l.verified, l.identity
	l.mu.Unlock()
	got := want
	if !verified {
		id, err := l.rs.Identity(ctx)
		if err != nil {
			return false, false
		}
		got = id
	}
	switch cur := m.currentRev(); {
	case got != want:
		m.log.Warn("the local certificate index snapshot is of another store; relisting", "snapshot", want, "store", got)
	case cur > storeRev:
		m.log.Warn("the local certificate index snapshot is ahead of the store (restored from an older backup?); relisting", "snapshot_rev", cur, "store_rev", storeRev)
	default:
		l.mu.Lock()
		l.verified = true
		l.mu.Unlock()
		return false, true
	}
	l.mu.Lock()
	l.identity, l.verified = "", false
	l.mu.Unlock()
	select {
	case m.resync <- struct{}{}:
	default:
	}
	return true, true
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
	l.saveMu.Lock()
	defer l.saveMu.Unlock()
	l.mu.Lock()
	identity, saved, savedChanges, savedAt := l.identity, l.savedRev, l.savedChanges, l.savedAt
	l.mu.Unlock()
	if identity == "" {
		return // never write a snapshot that cannot be checked
	}
	m.pmu.Lock()
	rev, changes := m.watchRev, m.idx.changes.Load()
	// The store's revision moves with every write of any kind (status
	// observations every few seconds); rewrite the snapshot only when the
	// index changed, or when the saved revision is getting old enough that
	// resuming from it could meet compaction.
	if rev == saved || (saved != 0 && changes == savedChanges && m.now().Sub(savedAt) < snapshotMaxLag) {
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
	l.savedRev, l.savedChanges, l.savedAt = rev, changes, m.now()
	l.mu.Unlock()
	m.log.Info("certificate index snapshot saved", "rev", rev, "names", len(hosts), "bytes", size, "took", time.Since(start).Round(time.Millisecond))
}

// disk returns the local bundle cache, nil if there is none (yet).
func (m *Manager) disk() *diskCache {
	if m.local == nil {
		return nil
	}
	return m.local.disk.Load()
}

// diskDrop drops bundle id from the local bundle cache, if any, or
// remembers to once it is open.
func (m *Manager) diskDrop(id string) {
	l := m.local
	if l == nil {
		return
	}
	l.mu.Lock()
	d := l.disk.Load()
	if d == nil && l.reopen {
		if len(l.missed) >= maxMissedDrops {
			l.missedAll, l.missed = true, nil
		} else if !l.missedAll {
			if l.missed == nil {
				l.missed = make(map[string]struct{})
			}
			l.missed[id] = struct{}{}
		}
	}
	l.mu.Unlock()
	if d != nil {
		d.drop(id)
	}
}

// diskClear empties the records of the local bundle cache, or remembers to
// once it is open.
func (m *Manager) diskClear() {
	l := m.local
	if l == nil {
		return
	}
	l.mu.Lock()
	d := l.disk.Load()
	if d == nil && l.reopen {
		l.missedAll, l.missed = true, nil
	}
	l.mu.Unlock()
	if d != nil {
		if err := d.clearRecords(); err != nil {
			m.log.Warn("clearing the local bundle cache", "err", err)
		}
	}
}

// reopenDisk opens the local bundle cache once the process that held it
// lets go, applying the drops missed meanwhile, until ctx is done.
func (m *Manager) reopenDisk(ctx context.Context) {
	l := m.local
	t := time.NewTicker(diskRetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		identity := l.identity
		l.mu.Unlock()
		dc, err := openDiskCache(l.dir, identity, m.diskLimit.Load(), m.log)
		if errors.Is(err, bbolt.ErrTimeout) {
			continue
		}
		if err != nil {
			m.log.Warn("local bundle cache disabled", "err", err)
			return
		}
		l.mu.Lock()
		if l.missedAll {
			if err := dc.clearRecords(); err != nil {
				m.log.Warn("clearing the local bundle cache", "err", err)
			}
		} else {
			for id := range l.missed {
				dc.drop(id)
			}
		}
		l.missed, l.missedAll = nil, false
		l.disk.Store(dc)
		l.mu.Unlock()
		m.log.Info("local bundle cache opened")
		return
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
