package bolt

import (
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"gatehouse/internal/store"
)

// ErrReadOnly is wrapped by the error of a write refused because the store
// is read-only while a binary upgrade hands its file to a new process. It
// wraps store.ErrUnavailable: nothing was written, and the write may be
// retried once the upgrade has finished.
var ErrReadOnly = fmt.Errorf("store is read-only while a binary upgrade is in progress; nothing was written, retry when the upgrade has finished: %w", store.ErrUnavailable)

// reopenLockWait is how long a reopen waits for the file lock. Reads wait
// while the handle is swapped, so it is short; ReopenWritable's caller
// retries.
const reopenLockWait = 200 * time.Millisecond

// ReadOnly reports whether the store refuses writes (see ReopenReadOnly).
func (s *Store) ReadOnly() bool { return s.readOnly.Load() }

// ReopenReadOnly lets the writes in progress commit, then reopens the file
// with a shared lock so that a new process can open it read-only too. Until
// ReopenWritable, writes fail with an error wrapping ErrReadOnly: each write
// either committed before the switch or is refused, never dropped. Reads and
// watches go on; they wait only while the handle is swapped (the time to
// map the file). It does nothing on a store that is already read-only.
func (s *Store) ReopenReadOnly() error { return s.reopen(true) }

// ReopenWritable reopens the file with the exclusive lock and accepts writes
// again. If another process still holds the file after a short wait, it
// returns an error wrapping ErrLocked and the store stays read-only: call it
// again later. It does nothing on a store that is already writable.
func (s *Store) ReopenWritable() error { return s.reopen(false) }

func (s *Store) reopen(readOnly bool) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	mode := map[bool]string{true: "read-only", false: "read-write"}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	was := s.readOnly.Load()
	if s.db != nil && was == readOnly {
		return nil
	}
	start := time.Now()
	if s.db != nil {
		// bbolt releases the mapping, the lock and the file even when it
		// reports an error.
		if err := s.db.Close(); err != nil {
			s.log.Warn("closing the store file to reopen it", "err", err)
		}
		s.db = nil
	}
	o := s.opts
	o.ReadOnly, o.SkipCheck, o.OpenTimeout = readOnly, true, reopenLockWait
	db, err := openDB(s.path, o)
	if err != nil {
		err = fmt.Errorf("reopening store file %s %s: %w", s.path, mode[readOnly], err)
		// Go back to the mode it had, so that reads go on.
		o.ReadOnly = was
		back, berr := openDB(s.path, o)
		if berr != nil {
			s.dbErr = fmt.Errorf("store file %s is closed: %w", s.path, errors.Join(err, berr))
			s.log.Error("store file could not be reopened either way: every call fails until a reopen succeeds", "err", s.dbErr)
			return s.dbErr
		}
		s.db = back
		return err
	}
	s.db, s.dbErr = db, nil
	s.readOnly.Store(readOnly)
	s.catchUpLocked()
	s.log.Info("store file reopened", "mode", mode[readOnly], "took", time.Since(start).Round(time.Microsecond))
	return nil
}

// catchUpLocked publishes to watches the revisions another process wrote
// while this one had the file closed or read-only, so that a watcher misses
// nothing. Under the upgrade protocol no process writes meanwhile and this
// finds nothing. Called with dbMu held for writing.
func (s *Store) catchUpLocked() {
	var fileRev int64
	if err := s.db.View(func(tx *bbolt.Tx) error {
		r, err := readU64(tx.Bucket(bucketMeta).Get(metaRev))
		fileRev = int64(r)
		return err
	}); err != nil {
		s.log.Error("reading the store revision after a reopen", "err", err)
		return
	}
	s.hub.mu.Lock()
	last := s.hub.rev
	s.hub.mu.Unlock()
	if fileRev == last {
		return
	}
	s.log.Warn("store file changed while it was handed over: delivering the changes to watches", "from_rev", last, "to_rev", fileRev)
	for last < fileRev {
		var (
			resps []store.WatchResponse
			next  int64
		)
		err := s.db.View(func(tx *bbolt.Tx) error {
			var err error
			resps, next, err = replayTx(tx, "", last, fileRev)
			return err
		})
		if err != nil {
			s.log.Error("replaying the changes to watches; watchers must relist", "err", err)
			s.hub.mu.Lock()
			s.hub.rev = fileRev
			s.hub.mu.Unlock()
			return
		}
		for _, r := range resps {
			s.hub.publish(r.Rev, r.Events, s)
		}
		last = next
	}
}

// view runs fn in a read transaction of the current file handle.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return s.dbErr
	}
	return s.db.View(fn)
}

// update runs fn in a write transaction, or fails with ErrReadOnly.
func (s *Store) update(fn func(tx *bbolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if err := s.writableLocked(); err != nil {
		return err
	}
	return s.db.Update(fn)
}

// writableLocked reports why db cannot take a write, if it cannot. Called
// with dbMu held.
func (s *Store) writableLocked() error {
	switch {
	case s.db == nil:
		return s.dbErr
	case s.readOnly.Load():
		return ErrReadOnly
	}
	return nil
}
