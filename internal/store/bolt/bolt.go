// Package bolt is Gatehouse's embedded store: one bbolt file in the data
// directory, implementing store.Store with in-process watches.
//
// Writes from concurrent callers are group-committed: while one bbolt
// transaction is being written and synced, newly arriving transactions queue
// and are applied together in the next one, each at its own revision. A lone
// writer pays one fsync and no batching delay; many writers share fsyncs.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"

	"gatehouse/internal/store"
)

var (
	_ store.Store = (*Store)(nil)
	_ store.Sizer = (*Store)(nil)
)

// Defaults for Options.
const (
	DefaultEventRetention      = 100000
	DefaultEventRetentionBytes = 64 << 20
	DefaultWatchQueue          = 4096
	// DefaultCheckMaxBytes is the largest file Open checks page by page.
	DefaultCheckMaxBytes = 256 << 20
	// fillPercent is how full bbolt packs a page it splits. Its default of
	// one half leaves pages half empty for good when keys arrive in order
	// (revisions, hostnames of a bulk import); 0.9 packs those and still
	// leaves room for keys that arrive out of order.
	fillPercent = 0.9
	// maxBatch bounds how many transactions share one bbolt commit.
	maxBatch = 1024
)

// Options configure Open. The zero value is usable.
type Options struct {
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
	// EventRetention is how many past revisions of events are kept for
	// watches to replay; a watch from an older revision gets ErrCompacted.
	// 0 means DefaultEventRetention.
	EventRetention int64
	// EventRetentionBytes also bounds the kept events by their encoded size:
	// the oldest revisions are dropped while the events kept exceed it, so a
	// bulk import of a million values does not keep a second copy of them
	// on disk. 0 means DefaultEventRetentionBytes.
	EventRetentionBytes int64
	// QuotaBytes caps the size of the file; a write that would grow it
	// beyond is refused with an error wrapping store.ErrTooLarge. bbolt grows
	// its file in steps (doubling up to 16 MiB, then 16 MiB at a time), so
	// the usable size is the largest step that fits. 0 means no quota.
	QuotaBytes int64
	// OpenTimeout is how long Open waits for another process to release
	// the file lock. 0 means one second.
	OpenTimeout time.Duration
	// WatchQueue is how many responses a watch may have waiting for its
	// consumer before the watch is ended with ErrCompacted. 0 means
	// DefaultWatchQueue.
	WatchQueue int
	// SkipCheck skips the structural check of the whole file at Open; the
	// header, size and format are still checked. The full check reads every
	// page, which takes seconds on a file of gigabytes.
	SkipCheck bool
	// CheckMaxBytes is the largest file whose structure Open checks page
	// by page; a larger file gets the header, size and format checks only,
	// so that start-up does not read (and map into memory) every page of a
	// store of gigabytes. 0 means DefaultCheckMaxBytes; negative means no
	// bound.
	CheckMaxBytes int64
	// ReleaseMappedEvery is how often mapped file pages are dropped from the
	// resident set (see ReleaseMapped). 0 means DefaultReleaseMappedEvery;
	// negative means never.
	ReleaseMappedEvery time.Duration
	// ReadOnly opens an existing store file with a shared lock, which other
	// read-only holders may share, and refuses writes with an error wrapping
	// ErrReadOnly until ReopenWritable. It is how the new process of a binary
	// upgrade opens the file while the old one still serves from it.
	ReadOnly bool
	// Marker, if set, is a file written once the store first holds data.
	// While it exists, Open refuses a store file that is missing, empty or
	// holds no data with an error wrapping ErrDataLost: a lost file (a disk
	// incident, a bad restore) must not silently become an empty store.
	Marker string
	// Hints are files whose presence shows that a node ran with this data
	// directory (its key-encryption key, admin token): for a store written
	// before markers existed, an empty store file beside them is refused too.
	Hints []string
	// NewStore starts anew on purpose: a missing, empty, damaged or
	// truncated store file is moved aside (to <path>.damaged-<time>), the
	// marker removed, and a new empty store created.
	NewStore bool
}

// Store is a store.Store kept in one bbolt file. It is safe for concurrent
// use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	// dbMu guards db and dbErr: calls hold it for reading while they use
	// db; ReopenReadOnly, ReopenWritable and Close hold it for writing while
	// they swap or close the handle.
	dbMu  sync.RWMutex
	db    *bbolt.DB // nil after a reopen failed both ways (dbErr says why)
	dbErr error
	// readOnly is set, under dbMu held for writing, while db is a shared,
	// read-only handle; Txn reads it without the lock to refuse early.
	readOnly atomic.Bool
	// marked is set once the marker was written (or found).
	marked atomic.Bool

	reqs     chan *txnReq  // to the committer
	done     chan struct{} // closed by Close: watches and the committer end
	loopDone chan struct{} // closed when the committer has returned
	hub      hub

	mu sync.Mutex
	// mu guards closed; calls hold a count in calls while they use db.
	closed  bool
	calls   sync.WaitGroup
	watchWG sync.WaitGroup
}

// Open opens the store file at path, creating it (mode 0600) if it does not
// exist. A truncated or damaged file, or one that is not a Gatehouse store,
// is refused with an error wrapping ErrCorrupt; a file held by another
// process, after opts.OpenTimeout, with an error wrapping ErrLocked.
func Open(path string, opts Options) (*Store, error) {
	if opts.EventRetention <= 0 {
		opts.EventRetention = DefaultEventRetention
	}
	if opts.EventRetentionBytes <= 0 {
		opts.EventRetentionBytes = DefaultEventRetentionBytes
	}
	if opts.CheckMaxBytes == 0 {
		opts.CheckMaxBytes = DefaultCheckMaxBytes
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = openTimeoutDefault
	}
	if opts.WatchQueue <= 0 {
		opts.WatchQueue = DefaultWatchQueue
	}
	if opts.QuotaBytes < 0 {
		opts.QuotaBytes = 0
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "store", "path", path)

	if err := checkLost(path, opts); err != nil {
		return nil, err
	}
	db, err := openDB(path, opts)
	if err != nil && opts.NewStore && !opts.ReadOnly && errors.Is(err, ErrCorrupt) {
		if err := startAnew(path, opts, "is damaged"); err != nil {
			return nil, err
		}
		db, err = openDB(path, opts)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{
		path:     path,
		db:       db,
		opts:     opts,
		log:      log,
		reqs:     make(chan *txnReq),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
		hub:      hub{watchers: make(map[*watcher]struct{})},
	}
	s.readOnly.Store(opts.ReadOnly)
	err = db.View(func(tx *bbolt.Tx) error {
		rev, err := readU64(tx.Bucket(bucketMeta).Get(metaRev))
		s.hub.rev = int64(rev)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening store file %s: reading revision: %w", path, err)
	}
	if s.hub.rev == 0 && !opts.ReadOnly {
		if ev := markerEvidence(opts.Marker); ev != "" {
			if !opts.NewStore {
				_ = db.Close()
				return nil, fmt.Errorf("store file %s holds no data, but %s: %w", path, ev, ErrDataLost)
			}
			if err := startAnew("", opts, "holds no data"); err != nil {
				_ = db.Close()
				return nil, err
			}
		}
	} else if s.hub.rev > 0 && !opts.ReadOnly {
		s.writeMarker() // a store from before markers existed
	}
	go s.commitLoop()
	if every := opts.ReleaseMappedEvery; every >= 0 {
		if every == 0 {
			every = DefaultReleaseMappedEvery
		}
		s.watchWG.Add(1)
		go s.releaseLoop(every)
	}
	log.Info("store opened", "rev", s.hub.rev, "read_only", opts.ReadOnly)
	if fi, err := os.Stat(path); err == nil && !opts.SkipCheck && opts.CheckMaxBytes > 0 && fi.Size() > opts.CheckMaxBytes {
		log.Info("store file is larger than the structure check bound: checked its header, size and format only", "bytes", fi.Size(), "check_max_bytes", opts.CheckMaxBytes)
	}
	return s, nil
}

// enter registers a call; it fails once the store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.calls.Add(1)
	return nil
}

// Close waits for calls in progress, ends every watch and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
	close(s.done)
	<-s.loopDone
	s.watchWG.Wait()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db == nil {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store file %s: %w", s.path, err)
	}
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.enter(); err != nil {
		return store.KV{}, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("getting %q: %w", key, store.ErrNotFound)
		}
		var err error
		kv, err = decodeKV(key, v)
		return err
	})
	return kv, err
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, prefix, startAfter string, limit int) ([]store.KV, int64, error) {
	if err := s.enter(); err != nil {
		return nil, 0, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	var (
		kvs []store.KV
		rev int64
	)
	err := s.view(func(tx *bbolt.Tx) error {
		r, err := readU64(tx.Bucket(bucketMeta).Get(metaRev))
		if err != nil {
			return err
		}
		rev = int64(r)
		start := prefix
		if startAfter >= prefix {
			start = startAfter
		}
		c := tx.Bucket(bucketKV).Cursor()
		pre := []byte(prefix)
		k, v := c.Seek([]byte(start))
		if k != nil && startAfter >= prefix && string(k) == startAfter {
			k, v = c.Next()
		}
		for ; k != nil && bytes.HasPrefix(k, pre); k, v = c.Next() {
			if limit > 0 && len(kvs) >= limit {
				break
			}
			kv, err := decodeKV(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
			if len(kvs)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("listing %q: %w", prefix, err)
	}
	return kvs, rev, nil
}

// Rev implements store.Store. It is the last revision whose events have
// been published to watches.
func (s *Store) Rev(ctx context.Context) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.rev, nil
}

// Usage implements store.Sizer: the file size, the quota and the number of
// live keys.
func (s *Store) Usage(ctx context.Context) (store.Usage, error) {
	if err := s.enter(); err != nil {
		return store.Usage{}, err
	}
	defer s.calls.Done()
	u := store.Usage{QuotaBytes: s.quota()}
	err := s.view(func(tx *bbolt.Tx) error {
		n, err := readU64(tx.Bucket(bucketMeta).Get(metaKeys))
		u.Keys = int64(n)
		return err
	})
	if err != nil {
		return store.Usage{}, fmt.Errorf("store usage: %w", err)
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return store.Usage{}, fmt.Errorf("store usage: %w", err)
	}
	u.Bytes = fi.Size()
	return u, nil
}

// Compact drops the events of revisions up to and including rev; a watch
// from before rev then gets ErrCompacted. rev must not be in the future.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		cur, err := readU64(meta.Get(metaRev))
		if err != nil {
			return err
		}
		if rev > int64(cur) {
			return fmt.Errorf("compacting to revision %d: the store is at revision %d", rev, cur)
		}
		comp, err := readU64(meta.Get(metaCompacted))
		if err != nil {
			return err
		}
		_, err = trimEvents(tx, int64(comp), rev)
		return err
	})
}

// trimEvents deletes the events of revisions up to upTo and records the new
// compacted revision, which it returns.
func trimEvents(tx *bbolt.Tx, compacted, upTo int64) (int64, error) {
	return trimEventsBytes(tx, compacted, upTo, -1)
}

// trimEventsBytes deletes the events of revisions up to upTo, then, while
// the events kept are larger than maxBytes (unless it is negative), those of
// the oldest revisions; it keeps the meta counter of event bytes and records
// the new compacted revision, which it returns.
func trimEventsBytes(tx *bbolt.Tx, compacted, upTo, maxBytes int64) (int64, error) {
	meta := tx.Bucket(bucketMeta)
	size, err := readU64(meta.Get(metaEventBytes))
	if err != nil {
		return 0, err
	}
	kept := int64(size)
	b := tx.Bucket(bucketEvents)
	var dead [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		rev := modRevOf(k)
		if rev > upTo && (maxBytes < 0 || kept <= maxBytes) {
			break
		}
		dead = append(dead, append([]byte(nil), k...))
		kept -= int64(len(v))
		compacted = max(compacted, rev)
	}
	if len(dead) == 0 {
		if upTo <= compacted {
			return compacted, nil
		}
		return upTo, meta.Put(metaCompacted, u64(uint64(upTo)))
	}
	for _, k := range dead {
		if err := b.Delete(k); err != nil {
			return 0, err
		}
	}
	compacted = max(compacted, upTo)
	if err := meta.Put(metaEventBytes, u64(uint64(max(kept, 0)))); err != nil {
		return 0, err
	}
	return compacted, meta.Put(metaCompacted, u64(uint64(compacted)))
}

// txnReq is a transaction waiting for the committer.
type txnReq struct {
	conds []store.Cond
	ops   []store.Op
	done  chan txnResult // capacity 1
	size  int
}

type txnResult struct {
	rev int64
	err error
}

// Txn implements store.Store.
func (s *Store) Txn(ctx context.Context, conds []store.Cond, ops []store.Op) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	size := 0
	for _, c := range conds {
		if err := store.ValidateKey(c.Key); err != nil {
			return 0, fmt.Errorf("txn condition: %w", err)
		}
	}
	for _, op := range ops {
		if err := store.ValidateKey(op.Key); err != nil {
			return 0, fmt.Errorf("txn op: %w", err)
		}
		if op.Type != store.OpPut && op.Type != store.OpDelete {
			return 0, fmt.Errorf("txn op on %q: unknown op type %d", op.Key, op.Type)
		}
		size += len(op.Key) + len(op.Value)
	}
	if len(ops) == 0 {
		return s.check(conds)
	}
	if s.readOnly.Load() {
		return 0, fmt.Errorf("txn of %d ops: %w", len(ops), ErrReadOnly)
	}
	r := &txnReq{conds: conds, ops: ops, done: make(chan txnResult, 1), size: size}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	// Once queued the transaction will be decided promptly; wait for the
	// outcome rather than report a cancellation for a write that happened.
	res := <-r.done
	return res.rev, res.err
}

// check evaluates conditions without writing.
func (s *Store) check(conds []store.Cond) (int64, error) {
	var rev int64
	err := s.view(func(tx *bbolt.Tx) error {
		if err := checkConds(tx.Bucket(bucketKV), conds); err != nil {
			return err
		}
		r, err := readU64(tx.Bucket(bucketMeta).Get(metaRev))
		rev = int64(r)
		return err
	})
	return rev, err
}

func checkConds(kv *bbolt.Bucket, conds []store.Cond) error {
	for _, c := range conds {
		v := kv.Get([]byte(c.Key))
		switch {
		case c.ModRev == 0 && v != nil:
			return fmt.Errorf("txn condition on %q: key exists at revision %d, want absent: %w", c.Key, modRevOf(v), store.ErrConflict)
		case c.ModRev != 0 && v == nil:
			return fmt.Errorf("txn condition on %q: key is absent, want revision %d: %w", c.Key, c.ModRev, store.ErrConflict)
		case c.ModRev != 0 && modRevOf(v) != c.ModRev:
			return fmt.Errorf("txn condition on %q: key is at revision %d, want %d: %w", c.Key, modRevOf(v), c.ModRev, store.ErrConflict)
		}
	}
	return nil
}

// commitLoop is the single writer: it takes every transaction queued while
// the previous commit was in flight and commits them together.
func (s *Store) commitLoop() {
	defer close(s.loopDone)
	batch := make([]*txnReq, 0, maxBatch)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.done:
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// applied is the outcome of one transaction inside a bbolt transaction.
type applied struct {
	rev int64
	evs []store.Event
	err error // a failed condition
}

// commit applies batch in one bbolt transaction, publishes the events in
// revision order and answers every caller. If the commit itself fails (the
// quota, a disk error) each transaction is retried alone so that only the
// one at fault fails.
func (s *Store) commit(batch []*txnReq) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if err := s.writableLocked(); err != nil {
		// The store turned read-only after the caller's check.
		for _, r := range batch {
			r.done <- txnResult{err: fmt.Errorf("txn of %d ops: %w", len(r.ops), err)}
		}
		return
	}
	s.commitLocked(batch)
}

// commitLocked is commit with dbMu held for reading and db writable.
func (s *Store) commitLocked(batch []*txnReq) {
	res := make([]applied, len(batch))
	err := s.db.Update(func(tx *bbolt.Tx) error {
		kv, meta := tx.Bucket(bucketKV), tx.Bucket(bucketMeta)
		kv.FillPercent = fillPercent
		events := tx.Bucket(bucketEvents)
		events.FillPercent = fillPercent
		r, err := readU64(meta.Get(metaRev))
		if err != nil {
			return err
		}
		rev := int64(r)
		comp, err := readU64(meta.Get(metaCompacted))
		if err != nil {
			return err
		}
		keys, err := readU64(meta.Get(metaKeys))
		if err != nil {
			return err
		}
		evBytes, err := readU64(meta.Get(metaEventBytes))
		if err != nil {
			return err
		}
		compacted, startRev := int64(comp), rev
		for i, req := range batch {
			res[i] = applied{rev: rev}
			if err := checkConds(kv, req.conds); err != nil {
				res[i].err = err
				continue
			}
			next := rev + 1
			var evs []store.Event
			for _, op := range req.ops {
				k := []byte(op.Key)
				old := kv.Get(k)
				switch op.Type {
				case store.OpPut:
					buf := encodeKV(next, op.Value)
					if err := kv.Put(k, buf); err != nil {
						return fmt.Errorf("putting %q: %w", op.Key, err)
					}
					if old == nil {
						keys++
					}
					evs = append(evs, store.Event{Type: store.EventPut, KV: store.KV{Key: op.Key, Value: buf[8:], ModRev: next}})
				case store.OpDelete:
					if old == nil {
						continue
					}
					if err := kv.Delete(k); err != nil {
						return fmt.Errorf("deleting %q: %w", op.Key, err)
					}
					keys--
					evs = append(evs, store.Event{Type: store.EventDelete, KV: store.KV{Key: op.Key, ModRev: next}})
				}
			}
			if len(evs) == 0 {
				continue // only deletes of absent keys: nothing changed
			}
			rev = next
			res[i] = applied{rev: rev, evs: evs}
			enc := encodeEvents(evs)
			if err := events.Put(revKey(rev), enc); err != nil {
				return fmt.Errorf("recording events of revision %d: %w", rev, err)
			}
			evBytes += uint64(len(enc))
		}
		if rev == startRev {
			return nil
		}
		if err := meta.Put(metaEventBytes, u64(evBytes)); err != nil {
			return err
		}
		if compacted, err = trimEventsBytes(tx, compacted, rev-s.opts.EventRetention, s.opts.EventRetentionBytes); err != nil {
			return fmt.Errorf("trimming events: %w", err)
		}
		if err := meta.Put(metaRev, u64(uint64(rev))); err != nil {
			return err
		}
		return meta.Put(metaKeys, u64(keys))
	})
	if err != nil {
		if len(batch) > 1 {
			for _, r := range batch {
				s.commitLocked([]*txnReq{r})
			}
			return
		}
		batch[0].done <- txnResult{err: s.writeError(batch[0], err)}
		return
	}
	if !s.marked.Load() {
		for i := range res {
			if res[i].err == nil && len(res[i].evs) > 0 {
				s.writeMarker() // before any caller hears of its first data
				break
			}
		}
	}
	for i, r := range batch {
		if res[i].err == nil && len(res[i].evs) > 0 {
			s.hub.publish(res[i].rev, res[i].evs, s)
		}
		if res[i].err != nil {
			r.done <- txnResult{err: res[i].err}
			continue
		}
		r.done <- txnResult{rev: res[i].rev}
	}
}

func (s *Store) writeError(r *txnReq, err error) error {
	if errors.Is(err, bberrors.ErrMaxSizeReached) {
		var size int64
		if fi, serr := os.Stat(s.path); serr == nil {
			size = fi.Size()
		}
		return fmt.Errorf("txn of %d ops (%d bytes of keys and values): store file %s would grow beyond its quota of %d bytes (it is %d bytes): %w",
			len(r.ops), r.size, s.path, s.opts.QuotaBytes, size, store.ErrTooLarge)
	}
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("txn of %d ops: writing store file %s: the disk is full (free space on it, then retry): %w", len(r.ops), s.path, err)
	}
	return fmt.Errorf("txn: writing store file %s: %w", s.path, err)
}

// scanChunk is how many keys Scan reads per bbolt read transaction, so that
// a long scan never holds one open (and a writer's remap waiting) for long.
const scanChunk = 10000

// Scan calls fn for each key with the given prefix, in byte order, without
// copying: key and value are valid only during the call and must not be
// modified. It reads in chunks of consistent read transactions and returns
// the revision of the first, like paging with List; changes after that
// revision may or may not be seen, and a watch from it delivers them. An
// error from fn stops the scan and is returned. fn must not call the store.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key, value []byte) error) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	var firstRev int64
	pre := []byte(prefix)
	var next []byte // the first key of the next chunk
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n := 0
		err := s.view(func(tx *bbolt.Tx) error {
			if firstRev == 0 {
				r, err := readU64(tx.Bucket(bucketMeta).Get(metaRev))
				if err != nil {
					return err
				}
				firstRev = int64(r)
			}
			c := tx.Bucket(bucketKV).Cursor()
			var k, v []byte
			if next == nil {
				k, v = c.Seek(pre)
			} else {
				k, v = c.Seek(next)
			}
			for ; k != nil && bytes.HasPrefix(k, pre); k, v = c.Next() {
				if n == scanChunk {
					next = append(next[:0], k...)
					return nil
				}
				if len(v) < 8 {
					return fmt.Errorf("decoding key %q: stored value of %d bytes is shorter than its header", k, len(v))
				}
				if err := fn(k, v[8:]); err != nil {
					return err
				}
				n++
			}
			n = -1 // done
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("scanning %q: %w", prefix, err)
		}
		if n < 0 {
			return firstRev, nil
		}
	}
}
